// The draw rule of the sampling contract (docs/DESIGN.md §5), one definition for every back-end: the C++ CPU op,
// the CUDA kernels (compiled by nvcc, or by the host compiler under the CUDA emulation) and, mirrored operation
// for operation, pixelcnn/draw.py.
//
// Sub-pixel value from 256 logits, a temperature T and a uniform u in [0, 1):
//   s[v] = double(logit[v]) / T;  m = max_v s[v];  e[v] = exp_rn(s[v] - m)
//   the 256 levels form 32 chunks of 8; local[v] = e[8c] + ... + e[v] summed left to right inside chunk c;
//   offset[c] = ((total_0 + total_1) + ...) + total_{c-1} summed left to right (total_c = local[8c + 7]);
//   cdf[v] = offset[c] + local[v];  target = double(u) * cdf[255]
//   value = #{v : cdf[v] <= target}, at most 255   (the smallest v whose cdf exceeds the target)
// Everything is double, and only +, *, /, floor and ldexp are used: IEEE-754 gives every back-end the same bits as
// long as no compiler fuses a multiply and an add (build with -ffp-contract=off and nvcc --fmad=false). The chunked
// order lets a CUDA warp draw with one chunk per lane and still match a sequential loop.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define PIXELCNN_HD __host__ __device__ __forceinline__
#else
#define PIXELCNN_HD inline
#endif

namespace pixelcnn {
namespace draw {

constexpr int kLevels = 256;
constexpr int kChunks = 32;
constexpr int kChunk = 8;  // kChunks * kChunk == kLevels
constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2 split so that k * kLn2Hi is exact for |k| < 2^20
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr double kExpMin = -708.0;  // below this e^x is (nearly) subnormal: it counts as 0

// exp(x) for x <= 0 from +, *, floor and ldexp only (Cody-Waite reduction, degree-11 Taylor polynomial in Horner
// form, about 1 ulp): the same bits on every IEEE-754 machine, unlike libm's or CUDA's exp.
PIXELCNN_HD double exp_rn(double x) {
  if (!(x >= kExpMin)) return 0.0;
  const double k = floor(x * kLog2e + 0.5);
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;
  double p = 1.0 / 39916800.0;  // 1/11!
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  return ldexp(p, static_cast<int>(k));
}

// The sequential form of the rule (CPU op, emulation, reference): `logits` holds 256 values `stride` apart.
template <typename T>
PIXELCNN_HD int draw_value(const T* logits, int64_t stride, double temperature, float u) {
  double s[kLevels];
  double m = -INFINITY;
  for (int v = 0; v < kLevels; ++v) {
    s[v] = static_cast<double>(logits[v * stride]) / temperature;
    m = s[v] > m ? s[v] : m;
  }
  double offset[kChunks];
  double acc = 0.0;
  for (int c = 0; c < kChunks; ++c) {
    double local = 0.0;
    for (int i = 0; i < kChunk; ++i) {
      local = local + exp_rn(s[c * kChunk + i] - m);
      s[c * kChunk + i] = local;  // s now holds the chunk-local cumulative sums
    }
    offset[c] = acc;
    acc = acc + local;
  }
  const double target = static_cast<double>(u) * acc;
  int count = 0;
  for (int v = 0; v < kLevels; ++v) count += (offset[v / kChunk] + s[v] <= target) ? 1 : 0;
  return count < kLevels - 1 ? count : kLevels - 1;
}

}  // namespace draw
}  // namespace pixelcnn
