// The GPU build of the gated cached-sampler kernels (source: gated_kernels.cuh, which the CPU emulation also
// compiles). Built with --fmad=false so that it does the emulation's float arithmetic.
#include "gated_kernels.cuh"

namespace pixelcnn_cuda {

template <typename T>
GatedPlan enqueue_gated_sampling(const GatedSampling<T>& run, void* stream) {
  return run_gated_sampling(run, static_cast<cudaStream_t>(stream));
}

template GatedPlan enqueue_gated_sampling<float>(const GatedSampling<float>&, void*);
template GatedPlan enqueue_gated_sampling<double>(const GatedSampling<double>&, void*);

}  // namespace pixelcnn_cuda
