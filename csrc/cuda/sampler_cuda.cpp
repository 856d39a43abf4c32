// CUDA implementation of pixelcnn::cached_sample: checks, packs the layers (sampler_host.h) and runs the fused
// kernel (sampler_kernels.cuh) on torch's current stream. Compiled by the host compiler; the kernels live in
// sampler_kernels.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../sampler.h"
#include "sampler_host.h"
#include "sampler_kernels.h"

namespace pixelcnn {
namespace {

at::Tensor cached_sample_cuda(const at::Tensor& u, at::TensorList weights_, at::TensorList biases_,
                              at::TensorList conds_, int64_t channels, double temperature,
                              const c10::optional<at::Tensor>& known, const c10::optional<at::Tensor>& known_mask) {
  std::vector<at::Tensor> weights(weights_.begin(), weights_.end()), biases(biases_.begin(), biases_.end()),
      conds(conds_.begin(), conds_.end());
  const int64_t blocks = check_sampler_args(u, weights, biases, conds, channels, temperature);
  check_known(u, known, known_mask);
  TORCH_CHECK(u.is_cuda(), "cached_sample (CUDA): uniforms must be a CUDA tensor, got ", u.device());
  pixelcnn_cuda::check_placement("cached_sample (CUDA)", u.device(), u, weights, biases, conds, known, known_mask);
  c10::cuda::CUDAGuard guard(u.device());
  void* stream = c10::cuda::getCurrentCUDAStream(u.device().index()).stream();
  const auto options = pixelcnn_cuda::launch_options_from_env();
  if (weights[0].scalar_type() == at::kFloat) {
    pixelcnn_cuda::Prepared<float> p;
    pixelcnn_cuda::prepare(p, u, weights, biases, conds, channels, temperature, blocks, known, known_mask);
    pixelcnn_cuda::enqueue_sampling<float>({p.net, options}, stream);
    return p.image;
  }
  pixelcnn_cuda::Prepared<double> p;
  pixelcnn_cuda::prepare(p, u, weights, biases, conds, channels, temperature, blocks, known, known_mask);
  pixelcnn_cuda::enqueue_sampling<double>({p.net, options}, stream);
  return p.image;
}

}  // namespace

TORCH_LIBRARY_IMPL(pixelcnn, CUDA, m) { m.impl("cached_sample", &cached_sample_cuda); }

}  // namespace pixelcnn
