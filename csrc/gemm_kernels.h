// The register-blocked micro-kernels of gemm.h and their driver, written once for any vector type. gemm.cpp
// includes this file once per ISA, inside that ISA's namespace, after defining
//   PIXELCNN_GEMM_TARGET  the function attribute that lets the compiler use the ISA (empty for scalar), and
//   vector types (Vec) with members T, V, kWidth, kRows (most rows of a tile), kAccumulators (registers a tile may
//   hold), load, store, broadcast and multiply_add(x, w, acc) = acc + x * w.
// No include guard: it is meant to be included several times.

// A tile of MR rows x NV panels: the MR*NV accumulators stay in registers over all K; each loaded weight vector
// serves MR rows, each broadcast input NV vectors. Terms are added k ascending, to the value already in C.
template <class Vec, int MR, int NV>
PIXELCNN_GEMM_TARGET void tile(const typename Vec::T* a, int64_t lda, const typename Vec::T* b, int64_t panel_stride,
                               int64_t K, typename Vec::T* c, int64_t ldc) {
  using V = typename Vec::V;
  constexpr int W = Vec::kWidth;
  V acc[MR][NV];
  for (int m = 0; m < MR; ++m) {
    for (int v = 0; v < NV; ++v) acc[m][v] = Vec::load(c + m * ldc + v * W);
  }
  for (int64_t k = 0; k < K; ++k) {
    V w[NV];
    for (int v = 0; v < NV; ++v) w[v] = Vec::load(b + v * panel_stride + k * W);
    for (int m = 0; m < MR; ++m) {
      const V x = Vec::broadcast(a[m * lda + k]);
      for (int v = 0; v < NV; ++v) acc[m][v] = Vec::multiply_add(x, w[v], acc[m][v]);
    }
  }
  for (int m = 0; m < MR; ++m) {
    for (int v = 0; v < NV; ++v) Vec::store(c + m * ldc + v * W, acc[m][v]);
  }
}

// One row over NV panels, only for the `n` inputs listed in `nonzero` (ascending k): a single image's product
// skips the ReLU zeros, about half of every input, and with them half of the weight traffic.
template <class Vec, int NV>
PIXELCNN_GEMM_TARGET void sparse_row(const typename Vec::T* a, const int32_t* nonzero, int64_t n,
                                     const typename Vec::T* b, int64_t panel_stride, typename Vec::T* c) {
  using V = typename Vec::V;
  constexpr int W = Vec::kWidth;
  V acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = Vec::load(c + v * W);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = nonzero[i];
    const V x = Vec::broadcast(a[k]);
    for (int v = 0; v < NV; ++v) acc[v] = Vec::multiply_add(x, Vec::load(b + v * panel_stride + k * W), acc[v]);
  }
  for (int v = 0; v < NV; ++v) Vec::store(c + v * W, acc[v]);
}

// Panels a tile of `rows` rows takes at a time: as many as the accumulator budget allows, at most 8.
template <class Vec>
constexpr int tile_panels(int rows) {
  return Vec::kAccumulators / rows < 8 ? Vec::kAccumulators / rows : 8;
}

template <class Vec>
using TileFn = void (*)(const typename Vec::T*, int64_t, const typename Vec::T*, int64_t, int64_t, typename Vec::T*,
                        int64_t);
template <class Vec>
using SparseFn = void (*)(const typename Vec::T*, const int32_t*, int64_t, const typename Vec::T*, int64_t,
                          typename Vec::T*);

// tiles[(mr - 1) * 8 + nv - 1] = tile<mr, nv> for the shapes the driver uses (nv <= tile_panels(mr)), else null.
template <class Vec, int... I>
constexpr std::array<TileFn<Vec>, sizeof...(I)> tile_table(std::integer_sequence<int, I...>) {
  return {{(I % 8 + 1 <= tile_panels<Vec>(I / 8 + 1) ? &tile<Vec, I / 8 + 1, I % 8 + 1> : nullptr)...}};
}
template <class Vec, int... I>
constexpr std::array<SparseFn<Vec>, sizeof...(I)> sparse_table(std::integer_sequence<int, I...>) {
  return {{&sparse_row<Vec, I + 1>...}};
}

// C += A · B over panels [q0, q1): panel groups outer (a group's weights stay in L1 across the row tiles), row tiles
// of up to kRows inner. A single row takes the sparse kernel.
template <class Vec>
void multiply_add(const typename Vec::T* a, int64_t lda, int64_t M, const typename Vec::T* panels, int64_t K,
                  int64_t q0, int64_t q1, typename Vec::T* c, int64_t ldc) {
  using T = typename Vec::T;
  constexpr int W = Vec::kWidth;
  const int64_t stride = K * W;  // one panel
  if (M <= 0 || q1 <= q0) return;
  if (M == 1) {
    static constexpr auto sparse = sparse_table<Vec>(std::make_integer_sequence<int, tile_panels<Vec>(1)>());
    thread_local std::vector<int32_t> nonzero;
    if (static_cast<int64_t>(nonzero.size()) < K) nonzero.resize(K);
    int64_t n = 0;
    for (int64_t k = 0; k < K; ++k) {  // branch-free compaction
      nonzero[n] = static_cast<int32_t>(k);
      n += a[k] != T(0);
    }
    for (int64_t q = q0; q < q1;) {
      const int64_t nv = std::min<int64_t>(tile_panels<Vec>(1), q1 - q);
      sparse[nv - 1](a, nonzero.data(), n, panels + q * stride, stride, c + q * W);
      q += nv;
    }
    return;
  }
  static constexpr auto tiles = tile_table<Vec>(std::make_integer_sequence<int, Vec::kRows * 8>());
  const int64_t rows = std::min<int64_t>(M, Vec::kRows);
  const int64_t group = tile_panels<Vec>(static_cast<int>(rows));
  for (int64_t q = q0; q < q1;) {
    const int64_t nv = std::min(group, q1 - q);
    for (int64_t m = 0; m < M;) {
      const int64_t mr = std::min(rows, M - m);
      tiles[(mr - 1) * 8 + nv - 1](a + m * lda, lda, panels + q * stride, stride, K, c + m * ldc + q * W, ldc);
      m += mr;
    }
    q += nv;
  }
}
