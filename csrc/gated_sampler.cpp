// Gated cached sampler (docs/DESIGN.md §3, §5): the argument checks every back-end shares.
#include "gated_sampler.h"

#include <torch/library.h>

#include "sampler.h"

namespace pixelcnn {

namespace {

// True when weight [Cout, Cin, k, k] is zero at every tap outside rows [r0, r1] x columns [c0, c1] (0-based).
bool zero_outside(const at::Tensor& weight, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  auto live = at::zeros({weight.size(2), weight.size(3)}, weight.options().dtype(at::kBool));
  live.slice(0, r0, r1 + 1).slice(1, c0, c1 + 1).fill_(true);
  return !weight.masked_select(live.logical_not().expand_as(weight)).ne(0).any().item<bool>();
}

}  // namespace

GatedShape check_gated_sampler_args(const at::Tensor& u, const std::vector<at::Tensor>& weights,
                                    const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds,
                                    int64_t channels, double temperature) {
  const char* op = "gated_cached_sample";
  TORCH_CHECK(u.dim() == 4 && u.scalar_type() == at::kFloat, op, ": uniforms must be float32 [N, C, H, W], got ",
              u.scalar_type(), " ", u.sizes());
  TORCH_CHECK(channels == 1 || channels == 3, op, ": channels must be 1 or 3, got ", channels);
  TORCH_CHECK(u.size(1) == channels, op, ": uniforms have ", u.size(1), " channels, model has ", channels);
  TORCH_CHECK(temperature > 0, op, ": temperature must be > 0, got ", temperature);
  TORCH_CHECK(weights.size() >= 6 && (weights.size() - 2) % 4 == 0 && biases.size() == weights.size(), op,
              ": expected 4 weights per layer (v_conv, h_conv, link, proj) + 2 (head) and as many biases, got ",
              weights.size(), " and ", biases.size());
  GatedShape s;
  s.layers = static_cast<int64_t>(weights.size() - 2) / 4;
  s.hidden = weights[3].size(0);
  s.head_hidden = weights[weights.size() - 2].size(0);
  s.k0 = weights[0].size(2);
  s.k = s.layers > 1 ? weights[4].size(2) : s.k0;
  s.conditional = !conds.empty();
  const int64_t h = s.hidden, h2 = 2 * s.hidden;
  for (size_t l = 0; l < weights.size(); ++l) {
    const auto& w = weights[l];
    TORCH_CHECK(w.dim() == 4 && w.size(2) == w.size(3) && w.size(2) % 2 == 1, op, ": weight ", l,
                " must be [Cout, Cin, k, k] with odd k, got ", w.sizes());
    TORCH_CHECK(w.scalar_type() == weights[0].scalar_type() && w.device() == u.device(), op,
                ": all weights must share dtype and the uniforms' device");
    TORCH_CHECK(biases[l].dim() == 1 && biases[l].size(0) == w.size(0) &&
                    biases[l].scalar_type() == weights[0].scalar_type() && biases[l].device() == u.device(),
                op, ": bias ", l, " must be [", w.size(0), "] of the weights' dtype and device, got ",
                biases[l].scalar_type(), " ", biases[l].sizes(), " on ", biases[l].device());
  }
  for (int64_t l = 0; l < s.layers; ++l) {
    const int64_t cin = l == 0 ? channels : h, k = l == 0 ? s.k0 : s.k, p = k / 2;
    const std::vector<int64_t> v{h2, cin, k, k}, link{h2, h2, 1, 1}, proj{h, h, 1, 1};
    const auto& wv = weights[4 * l];
    const auto& wh = weights[4 * l + 1];
    TORCH_CHECK(wv.sizes() == at::IntArrayRef(v) && wh.sizes() == at::IntArrayRef(v), op, ": layer ", l,
                " v_conv and h_conv must be ", at::IntArrayRef(v), ", got ", wv.sizes(), " and ", wh.sizes());
    TORCH_CHECK(weights[4 * l + 2].sizes() == at::IntArrayRef(link), op, ": layer ", l, " link must be ",
                at::IntArrayRef(link), ", got ", weights[4 * l + 2].sizes());
    TORCH_CHECK(weights[4 * l + 3].sizes() == at::IntArrayRef(proj), op, ": layer ", l, " proj must be ",
                at::IntArrayRef(proj), ", got ", weights[4 * l + 3].sizes());
    // the vertical conv reads rows above (and, after layer 0, the centre row: the input there is the layer below's
    // vertical output, which carries only rows above); the horizontal conv the centre row up to the centre
    TORCH_CHECK(zero_outside(wv, 0, l == 0 ? p - 1 : p, 0, k - 1), op, ": layer ", l,
                " v_conv must be masked (mask ", l == 0 ? "vA" : "vB", "): it has taps below its live rows");
    TORCH_CHECK(zero_outside(wh, p, p, 0, p), op, ": layer ", l, " h_conv must be masked (mask ",
                l == 0 ? "hA" : "hB", "): it has taps outside the centre row's left half");
  }
  const auto& head_hidden = weights[weights.size() - 2];
  const auto& head_out = weights.back();
  TORCH_CHECK(head_hidden.size(1) == h && head_hidden.size(2) == 1, op, ": head_hidden must be [hh, ", h,
              ", 1, 1], got ", head_hidden.sizes());
  TORCH_CHECK(head_out.size(0) == 256 * channels && head_out.size(1) == s.head_hidden && head_out.size(2) == 1, op,
              ": head_out must be [", 256 * channels, ", ", s.head_hidden, ", 1, 1], got ", head_out.sizes());
  TORCH_CHECK(conds.empty() || conds.size() == static_cast<size_t>(2 * s.layers), op, ": expected 0 or ",
              2 * s.layers, " class-vector tensors (embed_v, embed_h per layer), got ", conds.size());
  for (size_t i = 0; i < conds.size(); ++i) {
    TORCH_CHECK(conds[i].dim() == 2 && conds[i].size(0) == u.size(0) && conds[i].size(1) == h2 &&
                    conds[i].scalar_type() == weights[0].scalar_type() && conds[i].device() == u.device(),
                op, ": class vector ", i, " must be [", u.size(0), ", ", h2, "] of the weights' dtype and device, got ",
                conds[i].scalar_type(), " ", conds[i].sizes());
  }
  return s;
}

}  // namespace pixelcnn
