// The op schema of the pixelcnn library: every back-end (CPU in sampler.cpp, CUDA in cuda/, the CUDA emulation)
// registers an implementation of these, and only these, definitions.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "draw.h"

namespace pixelcnn {
namespace {

// pixelcnn::draw on CPU: the draw rule (draw.h) for each row of logits [N, 256] with uniforms u [N].
at::Tensor draw_cpu(const at::Tensor& logits, const at::Tensor& u, double temperature) {
  TORCH_CHECK(logits.dim() == 2 && logits.size(1) == draw::kLevels, "draw: logits must be [N, 256], got ",
              logits.sizes());
  TORCH_CHECK(logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kDouble,
              "draw: logits must be float32 or float64, got ", logits.scalar_type());
  TORCH_CHECK(u.dim() == 1 && u.size(0) == logits.size(0) && u.scalar_type() == at::kFloat,
              "draw: u must be float32 [N] with N = ", logits.size(0), ", got ", u.scalar_type(), " ", u.sizes());
  TORCH_CHECK(temperature > 0, "draw: temperature must be > 0, got ", temperature);
  auto l = logits.contiguous();
  auto uc = u.contiguous();
  auto out = at::empty({l.size(0)}, l.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  const float* up = uc.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES(l.scalar_type(), "draw", [&] {
    const scalar_t* lp = l.data_ptr<scalar_t>();
    for (int64_t n = 0; n < l.size(0); ++n) o[n] = draw::draw_value(lp + n * draw::kLevels, 1, temperature, up[n]);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(pixelcnn, m) {
  // Whole images by the cached incremental sampler (docs/DESIGN.md §5). known/known_mask (uint8 and bool
  // [N, C, H, W]) give completion: a known sub-pixel is copied, not drawn, and still flows through the caches.
  m.def(
      "cached_sample(Tensor uniforms, Tensor[] weights, Tensor[] biases, Tensor[] conds, int channels, "
      "float temperature, Tensor? known=None, Tensor? known_mask=None) -> Tensor");
  // The CUDA kernels' own source run on the CPU under the CUDA emulation (csrc/emulation); CPU tensors only.
  m.def(
      "cached_sample_emulated(Tensor uniforms, Tensor[] weights, Tensor[] biases, Tensor[] conds, int channels, "
      "float temperature, Tensor? known=None, Tensor? known_mask=None) -> Tensor");
  // The gated PixelCNN (docs/DESIGN.md §3, §5): the vertical stack once per row (all W positions in one product),
  // the horizontal stack per sub-pixel. weights/biases per layer l = 0..L-1: v_conv [2h, Cin, k, k], h_conv
  // [2h, Cin, k, k] (masked; Cin = C for l = 0, else h), link [2h, 2h, 1, 1], proj [h, h, 1, 1] (masked); then
  // head_hidden [hh, h, 1, 1], head_out [256*C, hh, 1, 1]. conds: empty, or per layer embed_v, embed_h [N, 2h].
  // Same uniforms, draw rule and completion contract as cached_sample.
  m.def(
      "gated_cached_sample(Tensor uniforms, Tensor[] weights, Tensor[] biases, Tensor[] conds, int channels, "
      "float temperature, Tensor? known=None, Tensor? known_mask=None) -> Tensor");
  m.def(
      "gated_cached_sample_emulated(Tensor uniforms, Tensor[] weights, Tensor[] biases, Tensor[] conds, "
      "int channels, float temperature, Tensor? known=None, Tensor? known_mask=None) -> Tensor");
  m.def("emulated_launches() -> int");  // kernel launches the emulation has run in this process
  m.def("draw(Tensor logits, Tensor u, float temperature) -> Tensor");
}

TORCH_LIBRARY_IMPL(pixelcnn, CPU, m) { m.impl("draw", &draw_cpu); }

}  // namespace pixelcnn
