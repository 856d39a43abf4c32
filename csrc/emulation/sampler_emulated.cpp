// pixelcnn::cached_sample_emulated: the CUDA sampler's own kernel source (csrc/cuda/sampler_kernels.cuh) run on the
// CPU under the CUDA emulation, with the GPU op's host side (csrc/cuda/sampler_host.h). Same schema and results as
// cached_sample; CI compares it bit for bit with the CPU op (docs/DESIGN.md §6).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../cuda/sampler_host.h"
#include "../cuda/sampler_kernels.h"
#include "../sampler.h"

namespace pixelcnn_cuda {
long long emulated_launch_count();  // sampler_kernels_emulated.cpp
}

namespace pixelcnn {
namespace {

at::Tensor cached_sample_emulated(const at::Tensor& u, at::TensorList weights_, at::TensorList biases_,
                                  at::TensorList conds_, int64_t channels, double temperature,
                                  const c10::optional<at::Tensor>& known, const c10::optional<at::Tensor>& known_mask) {
  std::vector<at::Tensor> weights(weights_.begin(), weights_.end()), biases(biases_.begin(), biases_.end()),
      conds(conds_.begin(), conds_.end());
  const int64_t blocks = check_sampler_args(u, weights, biases, conds, channels, temperature);
  check_known(u, known, known_mask);
  TORCH_CHECK(u.is_cpu(),
              "cached_sample_emulated runs the CUDA kernels on the CPU: pass CPU tensors, got uniforms "
              "on ",
              u.device());
  pixelcnn_cuda::check_placement("cached_sample_emulated", u.device(), u, weights, biases, conds, known, known_mask);
  const auto options = pixelcnn_cuda::launch_options_from_env();
  if (weights[0].scalar_type() == at::kFloat) {
    pixelcnn_cuda::Prepared<float> p;
    pixelcnn_cuda::prepare(p, u, weights, biases, conds, channels, temperature, blocks, known, known_mask);
    pixelcnn_cuda::enqueue_sampling_emulated<float>({p.net, options});
    return p.image;
  }
  pixelcnn_cuda::Prepared<double> p;
  pixelcnn_cuda::prepare(p, u, weights, biases, conds, channels, temperature, blocks, known, known_mask);
  pixelcnn_cuda::enqueue_sampling_emulated<double>({p.net, options});
  return p.image;
}

int64_t emulated_launches() { return pixelcnn_cuda::emulated_launch_count(); }

}  // namespace

TORCH_LIBRARY_IMPL(pixelcnn, CPU, m) { m.impl("cached_sample_emulated", &cached_sample_emulated); }
TORCH_LIBRARY_IMPL(pixelcnn, CatchAll, m) { m.impl("emulated_launches", &emulated_launches); }

}  // namespace pixelcnn
