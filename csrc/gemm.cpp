// gemm.h for three instruction sets, chosen at run time: AVX-512F and AVX2+FMA kernels (x86 builds only, each
// behind __attribute__((target)) so the rest of the library needs neither) and a portable scalar fallback.
#include "gemm.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#if PIXELCNN_X86
#include <immintrin.h>
#endif

namespace pixelcnn {
namespace gemm {

namespace scalar {
#define PIXELCNN_GEMM_TARGET
// "Vectors" of one element; a multiply and an add per term (the build does not contract them, -ffp-contract=off).
template <typename E>
struct Vec {
  using T = E;
  using V = E;
  static constexpr int kWidth = 1, kRows = 4, kAccumulators = 16;
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static V broadcast(T x) { return x; }
  static V multiply_add(V x, V w, V acc) { return acc + x * w; }
};
#include "gemm_kernels.h"
#undef PIXELCNN_GEMM_TARGET
}  // namespace scalar

#if PIXELCNN_X86
namespace avx2 {
#define PIXELCNN_GEMM_TARGET __attribute__((target("avx2,fma")))
#define PIXELCNN_GEMM_INLINE __attribute__((always_inline, target("avx2,fma"))) static inline
// 16 ymm registers: tiles of up to 4 rows x 2 (float) or 3 (double) panels, measured best on a Zen 3 EPYC.
struct F32 {
  using T = float;
  using V = __m256;
  static constexpr int kWidth = 8, kRows = 4, kAccumulators = 8;
  PIXELCNN_GEMM_INLINE V load(const T* p) { return _mm256_loadu_ps(p); }
  PIXELCNN_GEMM_INLINE void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  PIXELCNN_GEMM_INLINE V broadcast(T x) { return _mm256_set1_ps(x); }
  PIXELCNN_GEMM_INLINE V multiply_add(V x, V w, V acc) { return _mm256_fmadd_ps(x, w, acc); }
};
struct F64 {
  using T = double;
  using V = __m256d;
  static constexpr int kWidth = 4, kRows = 4, kAccumulators = 12;
  PIXELCNN_GEMM_INLINE V load(const T* p) { return _mm256_loadu_pd(p); }
  PIXELCNN_GEMM_INLINE void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  PIXELCNN_GEMM_INLINE V broadcast(T x) { return _mm256_set1_pd(x); }
  PIXELCNN_GEMM_INLINE V multiply_add(V x, V w, V acc) { return _mm256_fmadd_pd(x, w, acc); }
};
#include "gemm_kernels.h"
#undef PIXELCNN_GEMM_INLINE
#undef PIXELCNN_GEMM_TARGET
}  // namespace avx2

namespace avx512 {
#define PIXELCNN_GEMM_TARGET __attribute__((target("avx512f")))
#define PIXELCNN_GEMM_INLINE __attribute__((always_inline, target("avx512f"))) static inline
// 32 zmm registers: tiles of up to 8 rows x 3 panels (24 accumulators).
struct F32 {
  using T = float;
  using V = __m512;
  static constexpr int kWidth = 16, kRows = 8, kAccumulators = 24;
  PIXELCNN_GEMM_INLINE V load(const T* p) { return _mm512_loadu_ps(p); }
  PIXELCNN_GEMM_INLINE void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  PIXELCNN_GEMM_INLINE V broadcast(T x) { return _mm512_set1_ps(x); }
  PIXELCNN_GEMM_INLINE V multiply_add(V x, V w, V acc) { return _mm512_fmadd_ps(x, w, acc); }
};
struct F64 {
  using T = double;
  using V = __m512d;
  static constexpr int kWidth = 8, kRows = 8, kAccumulators = 24;
  PIXELCNN_GEMM_INLINE V load(const T* p) { return _mm512_loadu_pd(p); }
  PIXELCNN_GEMM_INLINE void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  PIXELCNN_GEMM_INLINE V broadcast(T x) { return _mm512_set1_pd(x); }
  PIXELCNN_GEMM_INLINE V multiply_add(V x, V w, V acc) { return _mm512_fmadd_pd(x, w, acc); }
};
#include "gemm_kernels.h"
#undef PIXELCNN_GEMM_INLINE
#undef PIXELCNN_GEMM_TARGET
}  // namespace avx512
#endif  // PIXELCNN_X86

int64_t panel_width(cpu::Isa isa, size_t element_size) {
  switch (isa) {
    case cpu::Isa::kAvx512:
      return 64 / static_cast<int64_t>(element_size);
    case cpu::Isa::kAvx2:
      return 32 / static_cast<int64_t>(element_size);
    default:
      return 1;
  }
}

template <typename T>
Panels<T> pack_panels(const T* b, int64_t ldb, int64_t K, int64_t N, int64_t width) {
  Panels<T> p;
  p.K = K;
  p.cols = N;
  p.width = width;
  p.count = (N + width - 1) / width;
  p.data = Buffer<T>(p.count * K * width);
  T* out = p.data.data();
  for (int64_t q = 0; q < p.count; ++q) {
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t w = 0; w < width && q * width + w < N; ++w)
        out[(q * K + k) * width + w] = b[k * ldb + q * width + w];
    }
  }
  return p;
}

template <typename T>
void multiply_add(cpu::Isa isa, const T* a, int64_t lda, int64_t M, const Panels<T>& b, int64_t q0, int64_t q1, T* c,
                  int64_t ldc) {
  assert(b.width == panel_width(isa, sizeof(T)) && q0 >= 0 && q1 <= b.count && ldc >= b.padded_cols());
  const T* w = b.data.data();
#if PIXELCNN_X86
  constexpr bool f32 = sizeof(T) == 4;
  using Avx2 = std::conditional_t<f32, avx2::F32, avx2::F64>;
  using Avx512 = std::conditional_t<f32, avx512::F32, avx512::F64>;
  if (isa == cpu::Isa::kAvx512) return avx512::multiply_add<Avx512>(a, lda, M, w, b.K, q0, q1, c, ldc);
  if (isa == cpu::Isa::kAvx2) return avx2::multiply_add<Avx2>(a, lda, M, w, b.K, q0, q1, c, ldc);
#endif
  scalar::multiply_add<scalar::Vec<T>>(a, lda, M, w, b.K, q0, q1, c, ldc);
}

template Panels<float> pack_panels(const float*, int64_t, int64_t, int64_t, int64_t);
template Panels<double> pack_panels(const double*, int64_t, int64_t, int64_t, int64_t);
template void multiply_add(cpu::Isa, const float*, int64_t, int64_t, const Panels<float>&, int64_t, int64_t, float*,
                           int64_t);
template void multiply_add(cpu::Isa, const double*, int64_t, int64_t, const Panels<double>&, int64_t, int64_t, double*,
                           int64_t);

}  // namespace gemm
}  // namespace pixelcnn
