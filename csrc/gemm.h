// Small dense products for the C++ cached sampler (docs/DESIGN.md §6): one layer at one position for a batch of
// images is C[M x N] += A[M x K] · B[K x N] (M images, K live taps x input channels, N output channels), with B a
// weight matrix packed once into panels of the vector width.
//
// Summation order: every output starts from the value already in C (bias, class vector) and adds the K terms one at
// a time, k ascending, whatever the ISA, tile shape or thread split. The vector paths add each term with one fused
// multiply-add, the scalar path with a multiply and an add (two roundings), so scalar and vector results may differ
// in the last bits; two runs on the same path give the same bits. A row whose input a[k] is exactly 0 adds nothing
// (0 * w + c == c), so single-row products skip those terms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "cpu_isa.h"

namespace pixelcnn {
namespace gemm {

// Zero-initialised, 64-byte aligned storage (whole cache lines; aligned vector loads).
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(int64_t count) : count_(count) {
    const size_t bytes = (static_cast<size_t>(count) * sizeof(T) + 63) / 64 * 64;
    data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes)));
    if (!data_) throw std::bad_alloc();
    for (int64_t i = 0; i < count; ++i) data_.get()[i] = T(0);
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  int64_t size() const { return count_; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  int64_t count_ = 0;
};

// Elements per vector register of `isa` (the panel width): 16 / 8 floats or 8 / 4 doubles; 1 for scalar.
int64_t panel_width(cpu::Isa isa, size_t element_size);

// B [K][N] (row stride ldb) in panels of `width` columns: panel q holds columns [q*width, (q+1)*width) as
// [K][width], zero past column N, so a product writes whole panels.
template <typename T>
struct Panels {
  int64_t K = 0, cols = 0, width = 1, count = 0;
  Buffer<T> data;
  int64_t padded_cols() const { return count * width; }
};

template <typename T>
Panels<T> pack_panels(const T* b, int64_t ldb, int64_t K, int64_t N, int64_t width);

// C[m][q*width + w] += sum_k A[m][k] * B[k][q*width + w] for rows m < M and panels q in [q0, q1) (row strides
// lda, ldc; C rows hold whole panels). `b` must be packed with panel_width(isa, sizeof(T)).
template <typename T>
void multiply_add(cpu::Isa isa, const T* a, int64_t lda, int64_t M, const Panels<T>& b, int64_t q0, int64_t q1, T* c,
                  int64_t ldc);

}  // namespace gemm
}  // namespace pixelcnn
