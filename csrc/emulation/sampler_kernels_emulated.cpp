// The CPU build of the fused cached-sampler kernel: sampler_kernels.cuh compiled by the host compiler under the
// CUDA emulation (cuda_emulation.h). Built with -ffp-contract=off, so it does the GPU build's float arithmetic.
#include "../cuda/sampler_kernels.cuh"

namespace pixelcnn_cuda {

template <typename T>
LaunchPlan enqueue_sampling_emulated(const Sampling<T>& run) {
  return run_sampling(run, nullptr);
}

template LaunchPlan enqueue_sampling_emulated<float>(const Sampling<float>&);
template LaunchPlan enqueue_sampling_emulated<double>(const Sampling<double>&);

long long emulated_launch_count() { return pixelcnn_emu::launch_count(); }

}  // namespace pixelcnn_cuda
