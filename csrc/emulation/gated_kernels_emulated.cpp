// The CPU build of the gated cached-sampler kernels: gated_kernels.cuh compiled by the host compiler under the CUDA
// emulation (cuda_emulation.h). Built with -ffp-contract=off, so it does the GPU build's float arithmetic.
#include "../cuda/gated_kernels.cuh"

namespace pixelcnn_cuda {

template <typename T>
GatedPlan enqueue_gated_sampling_emulated(const GatedSampling<T>& run) {
  return run_gated_sampling(run, nullptr);
}

template GatedPlan enqueue_gated_sampling_emulated<float>(const GatedSampling<float>&);
template GatedPlan enqueue_gated_sampling_emulated<double>(const GatedSampling<double>&);

}  // namespace pixelcnn_cuda
