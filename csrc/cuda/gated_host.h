// Host side of the gated CUDA sampler, shared by the GPU op (gated_cuda.cpp) and the CPU emulation
// (csrc/emulation/gated_emulated.cpp): the checks, each conv packed as the live rectangle of its mask on the
// uniforms' device, the ring buffers and the link state, and the tensors that own every buffer the kernels read
// (freed by RAII, also when a launch throws).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <algorithm>
#include <vector>

#include "../gated_sampler.h"
#include "../sampler.h"
#include "gated_kernels.h"
#include "sampler_host.h"

namespace pixelcnn_cuda {

// Every check of the gated op on `device`: shapes and masks (check_gated_sampler_args), completion inputs,
// dtypes and placement. Returns the model's shape.
inline pixelcnn::GatedShape check_gated(const char* op, const at::Device& device, const at::Tensor& u,
                                        const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
                                        const std::vector<at::Tensor>& conds, int64_t channels, double temperature,
                                        const c10::optional<at::Tensor>& known,
                                        const c10::optional<at::Tensor>& known_mask) {
  const pixelcnn::GatedShape shape =
      pixelcnn::check_gated_sampler_args(u, weights, biases, conds, channels, temperature);
  pixelcnn::check_known(u, known, known_mask);
  check_placement(op, device, u, weights, biases, conds, known, known_mask);
  TORCH_CHECK(u.size(0) < (int64_t(1) << 31) && u.size(0) * u.size(3) < (int64_t(1) << 31), op,
              ": batch x width must be below 2^31, got ", u.size(0), " x ", u.size(3));
  return shape;
}

// Weight [Cout, Cin, k, k] restricted to rows [r0, r0 + rows) x columns [c0, c0 + cols), as the matrix
// [rows * cols * Cin][Cout] (taps row by row, each tap's Cin inputs in order: the layout of `cols` adjacent
// positions of a ring-buffer row). The packing of pixelcnn.step.SpatialLayer.
inline at::Tensor rectangle_matrix(const at::Tensor& w, int64_t r0, int64_t rows, int64_t c0, int64_t cols) {
  return w.slice(2, r0, r0 + rows).slice(3, c0, c0 + cols).permute({2, 3, 1, 0}).reshape({-1, w.size(0)}).contiguous();
}

// Owns the packed layers, ring buffers, link state and output of one run, and the GatedNet of raw pointers into them.
template <typename T>
struct GatedPrepared {
  Held held;
  at::Tensor image;
  GatedNet<T> net{};
};

// Packs the model for the kernels on the uniforms' device (argument order: csrc/ops.cpp, gated_cached_sample).
template <typename T>
void prepare_gated(GatedPrepared<T>& out, const pixelcnn::GatedShape& shape, const at::Tensor& u,
                   const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
                   const std::vector<at::Tensor>& conds, int64_t C, double temperature,
                   const c10::optional<at::Tensor>& known, const c10::optional<at::Tensor>& known_mask) {
  const int64_t N = u.size(0), W = u.size(3), L = shape.layers, h = shape.hidden;
  Held& hold = out.held;
  const auto options = weights[0].options();
  // a conv at one position from its packed matrix; buf, rows and wp are set by the caller for spatial ones
  auto layer = [&](int64_t index, const at::Tensor& packed, int64_t k) {
    Layer<T> Lr{};
    Lr.cout = static_cast<int>(weights[index].size(0));
    Lr.cin = static_cast<int>(weights[index].size(1));
    Lr.k = static_cast<int>(k);
    Lr.p = Lr.k / 2;
    Lr.rows = 1;
    Lr.wp = static_cast<int>(W) + 2 * Lr.p;
    const at::Tensor& w = hold(packed);
    Lr.w = w.template data_ptr<T>();
    Lr.K = static_cast<int>(w.size(0));
    Lr.bias = hold(biases[index].contiguous()).template data_ptr<T>();
    return Lr;
  };
  auto dense = [&](int64_t index) {
    return layer(index, rectangle_matrix(weights[index].contiguous(), 0, 1, 0, 1), 1);
  };

  const int64_t p0 = shape.k0 / 2;
  T* image_ring = hold(at::zeros({N, p0 + 1, W + 2 * p0, C}, options)).template data_ptr<T>();
  std::vector<GatedLayer<T>> layers;
  int patch = 0, row_patch = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t k = l == 0 ? shape.k0 : shape.k, p = k / 2, cin = l == 0 ? C : h;
    const at::Tensor wv = weights[4 * l].contiguous(), wh = weights[4 * l + 1].contiguous();
    GatedLayer<T> G{};
    G.vrows = static_cast<int>(l == 0 ? p : p + 1);  // mask vA: rows above the centre; vB: and the centre row
    G.v = layer(4 * l, rectangle_matrix(wv, 0, G.vrows, 0, k), k);
    G.h = layer(4 * l + 1, rectangle_matrix(wh, p, 1, 0, p + 1), k);  // centre row up to the centre
    if (l == 0) {                                                     // both convs read the image ring
      for (Layer<T>* s : {&G.v, &G.h}) {
        s->buf = image_ring;
        s->rows = static_cast<int>(p0 + 1);
      }
    } else {
      G.v.buf = hold(at::zeros({N, p + 1, W + 2 * p, cin}, options)).template data_ptr<T>();
      G.v.rows = static_cast<int>(p + 1);
      G.h.buf = hold(at::zeros({N, 1, W + 2 * p, cin}, options)).template data_ptr<T>();
    }
    G.link = dense(4 * l + 2);
    G.proj = dense(4 * l + 3);
    G.embed_v = conds.empty() ? nullptr : hold(conds[2 * l].contiguous()).template data_ptr<T>();
    G.embed_h = conds.empty() ? nullptr : hold(conds[2 * l + 1].contiguous()).template data_ptr<T>();
    patch = std::max(patch, G.h.K);
    row_patch = std::max(row_patch, G.v.K);
    layers.push_back(G);
  }
  GatedNet<T>& net = out.net;
  net.layers = hold.table(layers, u.device());
  net.L = static_cast<int>(L);
  net.head_hidden = dense(4 * L);
  net.head_out = dense(4 * L + 1);
  net.hidden = static_cast<int>(h);
  out.image = set_io(net, hold, u, temperature, known, known_mask);
  net.link = hold(at::zeros({L, W, N, 2 * h}, options)).template data_ptr<T>();
  net.patch = patch;
  net.row_patch = row_patch;
}

}  // namespace pixelcnn_cuda
