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
// Everything is double, and only +, *, /, floor and exact powers of two (2^k built from its bits, the same as
// ldexp(1, k)) are used: IEEE-754 gives every back-end the same bits as long as no compiler fuses a multiply and an
// add (build with -ffp-contract=off and nvcc --fmad=false). The chunked order lets a CUDA warp draw with one chunk
// per lane and still match a sequential loop.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

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

constexpr double kRound = 6755399441055744.0;      // 1.5 * 2^52: (t + kRound) - kRound rounds t to an integer
constexpr uint64_t kOneBits = 0x3FF0000000000000;  // the bits of 1.0

// The bits of a double and back (memcpy on the host, the CUDA intrinsics on the device).
PIXELCNN_HD uint64_t bits_of(double d) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(d));
#else
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  return b;
#endif
}

PIXELCNN_HD double from_bits(uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(b));
#else
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
#endif
}

// exp(x) for kExpMin <= x <= 0 from +, *, floor and a power of two only (Cody-Waite reduction, degree-11 Taylor
// polynomial in Horner form, about 1 ulp): the same bits on every IEEE-754 machine, unlike libm's or CUDA's exp.
// No branch, call or float-to-int conversion, so that a loop of it vectorises (SSE2 and AVX2), and any other x
// (even NaN) gives some value without undefined behaviour; exp_rn replaces that value by 0.
// - k = floor(t): the nearest integer n = (t + kRound) - kRound (exact for |t| < 2^51), minus 1 where n > t, that is
//   where the exact difference t - n is negative (t is never -0);
// - 2^k from its bits: the low bits of k + kRound are k in two's complement, so (bits + 1023) << 52 is 2^k for k in
//   [-1022, 1023]. Here k is in [-1021, 0] and p (in [0.7, 1.5]) times 2^k is normal, hence exact: ldexp(p, k).
PIXELCNN_HD double exp_rn_unchecked(double x) {
  const double t = x * kLog2e + 0.5;
  const double big = t + kRound;
  const double n = big - kRound;
  const uint64_t below = bits_of(t - n) >> 63;             // 1 where n > t
  const double k = n - from_bits((0 - below) & kOneBits);  // floor(t): n - 1 or n - 0
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
  return p * from_bits((bits_of(big) - below + 1023) << 52);  // p * 2^k
}

// exp(x) for x <= 0, and 0 below kExpMin (where e^x is (nearly) subnormal) or for NaN.
PIXELCNN_HD double exp_rn(double x) { return x >= kExpMin ? exp_rn_unchecked(x) : 0.0; }

// The sequential form of the rule (CPU op, emulation, reference): `logits` holds 256 values `stride` apart. The
// scaling, the max (any order gives the same max), the exponentials and the count are loops of independent steps
// that the compiler can vectorise; only the sums run in the rule's order (exp_rn's test for kExpMin is done there).
template <typename T>
PIXELCNN_HD int draw_value(const T* logits, int64_t stride, double temperature, float u) {
  double x[kLevels];
  for (int v = 0; v < kLevels; ++v) x[v] = static_cast<double>(logits[v * stride]) / temperature;
  double lane[kChunk];
  for (int i = 0; i < kChunk; ++i) lane[i] = -INFINITY;
  for (int c = 0; c < kChunks; ++c) {
    for (int i = 0; i < kChunk; ++i) lane[i] = x[c * kChunk + i] > lane[i] ? x[c * kChunk + i] : lane[i];
  }
  double m = -INFINITY;
  for (int i = 0; i < kChunk; ++i) m = lane[i] > m ? lane[i] : m;
  double e[kLevels];
  for (int v = 0; v < kLevels; ++v) {
    x[v] = x[v] - m;
    e[v] = exp_rn_unchecked(x[v]);
  }
  double offset[kChunks];
  double acc = 0.0;
  for (int c = 0; c < kChunks; ++c) {
    double local = 0.0;
    for (int i = 0; i < kChunk; ++i) {
      local = local + (x[c * kChunk + i] >= kExpMin ? e[c * kChunk + i] : 0.0);  // + exp_rn(x)
      e[c * kChunk + i] = local;  // e now holds the chunk-local cumulative sums
    }
    offset[c] = acc;
    acc = acc + local;
  }
  const double target = static_cast<double>(u) * acc;
  int count = 0;
  for (int c = 0; c < kChunks; ++c) {
    for (int i = 0; i < kChunk; ++i) count += (offset[c] + e[c * kChunk + i] <= target) ? 1 : 0;
  }
  return count < kLevels - 1 ? count : kLevels - 1;
}

}  // namespace draw
}  // namespace pixelcnn
