// Plain interface of the fused cached-sampler kernel (no torch and no CUDA headers): what the host side packs
// (sampler_host.h) and the kernel (sampler_kernels.cuh) reads. Compiled by nvcc for the GPU and by the host
// compiler for the CPU emulation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pixelcnn_cuda {

// One masked conv at one position. k == 1 for the 1x1 layers (no ring buffer).
template <typename T>
struct Layer {
  const T* w;     // live taps [K][cout] (csrc/sampler.h live_tap_matrix)
  const T* bias;  // [cout]
  const T* cond;  // class vectors [N][cout], or nullptr
  T* buf;         // spatial layers: ring buffer [N][rows][wp][cin] of input rows; nullptr for 1x1 layers
  int cin, cout, k, p, rows, K, wp;
};

// Everything one sampling run reads or writes, as device pointers.
template <typename T>
struct Net {
  const Layer<T>* layers;  // device array: first, (conv_in, conv_mid, conv_out) per block, head_hidden, head_out
  int blocks;
  int N, C, H, W;
  const float* u;          // uniforms [N][C][H][W]
  uint8_t* image;          // output [N][C][H][W], zero on entry
  const uint8_t* known;    // completion values [N][C][H][W], or nullptr
  const bool* known_mask;  // completion mask [N][C][H][W], or nullptr
  double temperature;
  int xs, ys, zs, ps;  // per-image shared rows: residual stream, head hidden, block hidden, patch (elements)
};

// How a run is launched, chosen by plan_launch() (sampler_kernels.cuh) from the net and the device's limits.
struct LaunchPlan {
  int group;                   // images per block (they share each weight load)
  int grid;                    // blocks; each loops over image groups blockIdx.x, + gridDim.x, ...
  size_t shared_bytes;         // dynamic shared memory per block
  long long steps;             // sub-pixel steps in all: H * W * C
  long long steps_per_launch;  // steps one launch runs (all of them: one persistent launch)
};

// What the caller may choose.
struct LaunchOptions {
  long long steps_per_launch = 0;  // 0: the whole H*W*C loop in one launch; 1: one launch per sub-pixel step
};

template <typename T>
struct Sampling {
  Net<T> net;
  LaunchOptions options;
};

// Runs the whole sampling loop on `stream` (cudaStream_t, or the emulation's) and waits for it; throws
// std::runtime_error on a launch or kernel error. Defined in sampler_kernels.cuh, instantiated by
// sampler_kernels.cu (GPU) and csrc/emulation/sampler_kernels_emulated.cpp (CPU).
template <typename T>
LaunchPlan enqueue_sampling(const Sampling<T>& run, void* stream);

template <typename T>
LaunchPlan enqueue_sampling_emulated(const Sampling<T>& run);

}  // namespace pixelcnn_cuda
