// pixelcnn::gated_cached_sample_emulated: the gated CUDA sampler's own kernel source (csrc/cuda/gated_kernels.cuh)
// run on the CPU under the CUDA emulation, with the GPU op's host side (csrc/cuda/gated_host.h). Same schema and
// results as gated_cached_sample; CI compares it with the cached samplers (docs/DESIGN.md §6).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../cuda/gated_host.h"
#include "../cuda/gated_kernels.h"

namespace pixelcnn {
namespace {

template <typename T>
at::Tensor run(const GatedShape& shape, const at::Tensor& u, const std::vector<at::Tensor>& weights,
               const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds, int64_t channels,
               double temperature, const c10::optional<at::Tensor>& known,
               const c10::optional<at::Tensor>& known_mask) {
  pixelcnn_cuda::GatedPrepared<T> p;
  pixelcnn_cuda::prepare_gated(p, shape, u, weights, biases, conds, channels, temperature, known, known_mask);
  pixelcnn_cuda::enqueue_gated_sampling_emulated<T>({p.net, pixelcnn_cuda::launch_options_from_env()});
  return p.image;
}

at::Tensor gated_cached_sample_emulated(const at::Tensor& u, at::TensorList weights_, at::TensorList biases_,
                                        at::TensorList conds_, int64_t channels, double temperature,
                                        const c10::optional<at::Tensor>& known,
                                        const c10::optional<at::Tensor>& known_mask) {
  std::vector<at::Tensor> weights(weights_.begin(), weights_.end()), biases(biases_.begin(), biases_.end()),
      conds(conds_.begin(), conds_.end());
  TORCH_CHECK(u.is_cpu(), "gated_cached_sample_emulated runs the CUDA kernels on the CPU: pass CPU tensors, got ",
              "uniforms on ", u.device());
  const GatedShape shape = pixelcnn_cuda::check_gated("gated_cached_sample_emulated", u.device(), u, weights, biases,
                                                      conds, channels, temperature, known, known_mask);
  if (weights[0].scalar_type() == at::kFloat) {
    return run<float>(shape, u, weights, biases, conds, channels, temperature, known, known_mask);
  }
  return run<double>(shape, u, weights, biases, conds, channels, temperature, known, known_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(pixelcnn, CPU, m) { m.impl("gated_cached_sample_emulated", &gated_cached_sample_emulated); }

}  // namespace pixelcnn
