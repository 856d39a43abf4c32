// Plain interface of the gated cached-sampler kernels (no torch and no CUDA headers): what the host side packs
// (gated_host.h) and the kernels (gated_kernels.cuh) read. Compiled by nvcc for the GPU and by the host compiler
// for the CPU emulation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sampler_kernels.h"

namespace pixelcnn_cuda {

// One gated layer (docs/DESIGN.md §3). Each conv is a Layer whose `w` is the live rectangle of its mask as a
// [K][cout] matrix (taps row by row, each tap's cin inputs in order), whose `buf` is the ring buffer
// [N][rows][wp][cin] it reads (wp = W + 2p, padding columns zero) and whose K is the rectangle's taps times cin.
template <typename T>
struct GatedLayer {
  Layer<T> v;        // vertical conv, rows i-p .. i-p+vrows-1 x all k columns: buf = the image ring (layer 0) or the
                     // ring of the previous layer's gated vertical output
  Layer<T> h;        // horizontal conv, row i x columns j-p .. j: buf = the image ring (layer 0) or a one-row buffer
                     // of the previous layer's horizontal output
  Layer<T> link;     // 1x1, 2h -> 2h (buf nullptr)
  Layer<T> proj;     // 1x1, h -> h (buf nullptr)
  const T* embed_v;  // class vectors [N][2h], or nullptr
  const T* embed_h;
  int vrows;  // live rows of the vertical conv: p (layer 0, mask vA) or p + 1 (mask vB)
};

// Everything one gated sampling run reads or writes, as device pointers.
template <typename T>
struct GatedNet {
  const GatedLayer<T>* layers;  // device array of L layers
  int L;
  Layer<T> head_hidden, head_out;  // 1x1 layers [h -> hh], [hh -> 256*C]
  int N, C, H, W, hidden;
  const float* u;          // uniforms [N][C][H][W]
  uint8_t* image;          // output [N][C][H][W], zero on entry
  const uint8_t* known;    // completion values [N][C][H][W], or nullptr
  const bool* known_mask;  // completion mask [N][C][H][W], or nullptr
  double temperature;
  T* link;        // link state [L][W][N][2h]: link(v_pre) + embed_h of every layer and position of the current row
  int patch;      // step kernel's per-image input patch: the largest horizontal K
  int row_patch;  // row kernel's per-position input patch: the largest vertical K
};

// How a run is launched, chosen by plan_gated() (gated_kernels.cuh) from the net and the device's limits.
struct GatedPlan {
  int group;                   // step kernel: images per block (they share each weight load)
  int grid;                    // step kernel blocks; each loops over image groups
  size_t shared_bytes;         // step kernel dynamic shared memory per block
  int row_group;               // row kernel: positions (w, n) per block
  int row_grid;                // row kernel blocks; each loops over position tiles
  size_t row_shared_bytes;     // row kernel dynamic shared memory per block
  long long steps_per_row;     // sub-pixel steps of one row: W * C
  long long steps_per_launch;  // steps one step-kernel launch runs (never across a row)
  long long launches;          // kernel launches in all: H * (L + ceil(steps_per_row / steps_per_launch))
};

template <typename T>
struct GatedSampling {
  GatedNet<T> net;
  LaunchOptions options;  // steps_per_launch: 0 = a row's W*C sub-pixels per launch
};

// Runs the whole sampling loop on `stream` (cudaStream_t) and waits for it; throws std::runtime_error on a launch
// or kernel error. Defined in gated_kernels.cuh, instantiated by gated_kernels.cu (GPU) and
// csrc/emulation/gated_kernels_emulated.cpp (CPU).
template <typename T>
GatedPlan enqueue_gated_sampling(const GatedSampling<T>& run, void* stream);

template <typename T>
GatedPlan enqueue_gated_sampling_emulated(const GatedSampling<T>& run);

}  // namespace pixelcnn_cuda
