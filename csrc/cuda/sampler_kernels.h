// Plain-CUDA interface of the cached sampler's per-step kernels (no torch headers: keeps nvcc fast).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace pixelcnn_cuda {

template <typename T>
struct Spatial {  // a k x k masked conv with its ring buffer [N][rows][wp][cin]
  T* buf;
  const T* w;     // live taps [K][cout]
  const T* bias;  // [cout]
  const T* cond;  // [N][cout] or nullptr
  int cin, cout, k, p, rows, K, wp;
};

template <typename T>
struct Dense {  // a 1x1 masked conv: w [cin][cout]
  const T* w;
  const T* bias;
  int cin, cout;
};

template <typename T>
struct Net {
  int N, C, H, W;
  Spatial<T> first;
  std::vector<Dense<T>> ins, outs;
  std::vector<Spatial<T>> mids;
  Dense<T> head_hidden, head_out;
  T *x, *y, *z, *logits;  // scratch: [N][2h], [N][max], [N][max], [N][256]
  const float* u;         // [N][C][H][W]
  uint8_t* image;         // [N][C][H][W]
  float temperature;
  int* pos;               // device step counter s -> (i, j, c) = (s / (W*C), (s / C) % W, s % C)
};

// Enqueue one sub-pixel step (every layer at the current position, then the draw, then pos += 1) on `stream`.
// It reads the position from device memory, so one captured CUDA graph replays every step.
template <typename T>
void enqueue_step(const Net<T>& net, cudaStream_t stream);

}  // namespace pixelcnn_cuda
