// CUDA implementation of pixelcnn::gated_cached_sample: checks, packs the layers (gated_host.h) and runs the gated
// kernels (gated_kernels.cuh) on torch's current stream. Compiled by the host compiler; the kernels live in
// gated_kernels.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "gated_host.h"
#include "gated_kernels.h"

namespace pixelcnn {
namespace {

template <typename T>
at::Tensor run(const GatedShape& shape, const at::Tensor& u, const std::vector<at::Tensor>& weights,
               const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds, int64_t channels,
               double temperature, const c10::optional<at::Tensor>& known,
               const c10::optional<at::Tensor>& known_mask) {
  void* stream = c10::cuda::getCurrentCUDAStream(u.device().index()).stream();
  pixelcnn_cuda::GatedPrepared<T> p;
  pixelcnn_cuda::prepare_gated(p, shape, u, weights, biases, conds, channels, temperature, known, known_mask);
  pixelcnn_cuda::enqueue_gated_sampling<T>({p.net, pixelcnn_cuda::launch_options_from_env()}, stream);
  return p.image;
}

at::Tensor gated_cached_sample_cuda(const at::Tensor& u, at::TensorList weights_, at::TensorList biases_,
                                    at::TensorList conds_, int64_t channels, double temperature,
                                    const c10::optional<at::Tensor>& known,
                                    const c10::optional<at::Tensor>& known_mask) {
  std::vector<at::Tensor> weights(weights_.begin(), weights_.end()), biases(biases_.begin(), biases_.end()),
      conds(conds_.begin(), conds_.end());
  TORCH_CHECK(u.is_cuda(), "gated_cached_sample (CUDA): uniforms must be a CUDA tensor, got ", u.device());
  const GatedShape shape = pixelcnn_cuda::check_gated("gated_cached_sample (CUDA)", u.device(), u, weights, biases,
                                                      conds, channels, temperature, known, known_mask);
  c10::cuda::CUDAGuard guard(u.device());
  if (weights[0].scalar_type() == at::kFloat) {
    return run<float>(shape, u, weights, biases, conds, channels, temperature, known, known_mask);
  }
  return run<double>(shape, u, weights, biases, conds, channels, temperature, known, known_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(pixelcnn, CUDA, m) { m.impl("gated_cached_sample", &gated_cached_sample_cuda); }

}  // namespace pixelcnn
