// What the CPU samplers (sampler.cpp: cached_sample, gated_sampler.cpp: gated_cached_sample) share: the draw rule's
// ISA dispatch, a layer's packed weights with its ring buffer of input rows, and how a thread team splits work.
#pragma once
#include <ATen/ATen.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstdint>

#include "cpu_isa.h"
#include "draw.h"
#include "gemm.h"

namespace pixelcnn {
namespace cpu_sampler {

using gemm::Buffer;
using gemm::Panels;

// The draw rule (draw.h) as built for any CPU, and built for AVX2 (flatten: draw_value is compiled into this
// function, floor as one instruction; the same bits, since nothing is fused: -ffp-contract=off).
template <typename T>
int draw_portable(const T* logits, double temperature, float u) {
  return draw::draw_value(logits, 1, temperature, u);
}
#if PIXELCNN_X86
template <typename T>
__attribute__((target("avx2"), flatten)) int draw_avx2(const T* logits, double temperature, float u) {
  return draw::draw_value(logits, 1, temperature, u);
}
#endif

// The value the draw rule gives for 256 contiguous logits, on the ISA the sampler runs.
template <typename T>
int draw_on(cpu::Isa isa, const T* logits, double temperature, float u) {
#if PIXELCNN_X86
  if (isa != cpu::Isa::kScalar) return draw_avx2(logits, temperature, u);
#else
  (void)isa;
#endif
  return draw_portable(logits, temperature, u);
}

// The value of the sub-pixel at flat index `at` of the image [N, C, H, W]: the known one where known_mask is set
// (completion; known may be null when nothing is), else drawn from its 256 logits and uniform.
template <typename T>
uint8_t value_of(cpu::Isa isa, const T* logits, double temperature, const float* uniforms, const uint8_t* known,
                 const bool* known_mask, int64_t at) {
  if (known_mask && known_mask[at]) return known[at];
  return static_cast<uint8_t>(draw_on(isa, logits, temperature, uniforms[at]));
}

// One layer: its live taps packed for the products, its bias (zero past cout) and, when it reads neighbouring
// positions, the ring buffer of its input rows for every image, [N][rows][wp][cin] with wp = W + 2p (the padding
// columns stay 0).
template <typename T>
struct Layer {
  int64_t cin = 0, cout = 0, k = 1, p = 0, rows = 0, wp = 0;
  Panels<T> w;
  Buffer<T> bias;
  Buffer<T> ring;

  int64_t K() const { return w.K; }
  int64_t cols() const { return w.padded_cols(); }
  // input vector of image n at (row, col) of the image (col may reach into the padding: -p <= col < W + p)
  T* at(int64_t n, int64_t row, int64_t col) { return ring.data() + ((n * rows + row % rows) * wp + col + p) * cin; }
  // distance between two images' rings
  int64_t image_stride() const { return rows * wp * cin; }
};

// `live_taps` is the weight as the [K][cout] matrix the layer multiplies its input vector by (a slice of taps of
// `weight` [Cout, Cin, k, k]); `rows` ring rows per image (0: no ring).
template <typename T>
Layer<T> make_layer(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& live_taps, int64_t n,
                    int64_t image_width, int64_t panel, int64_t rows) {
  Layer<T> L;
  L.cout = live_taps.size(1);
  L.cin = weight.size(1);
  L.k = weight.size(2);
  L.p = L.k / 2;
  L.rows = rows;
  L.wp = image_width + 2 * L.p;
  L.w = gemm::pack_panels(live_taps.data_ptr<T>(), L.cout, live_taps.size(0), L.cout, panel);
  L.bias = Buffer<T>(L.cols());
  const T* b = bias.data_ptr<T>();
  std::copy(b, b + L.cout, L.bias.data());
  if (rows > 0) L.ring = Buffer<T>(n * L.rows * L.wp * L.cin);
  return L;
}

// Who computes what: images [n0, n1), and share t of nt of the work the team splits. A team (nt > 1) meets at a
// barrier (sync) after each step whose output another thread reads.
struct Share {
  int64_t n0, n1;
  int t, nt;
  int64_t images() const { return n1 - n0; }
};

inline void sync(const Share& s) {
#ifdef _OPENMP
  if (s.nt > 1) {
#pragma omp barrier
  }
#else
  (void)s;
#endif
}

}  // namespace cpu_sampler
}  // namespace pixelcnn
