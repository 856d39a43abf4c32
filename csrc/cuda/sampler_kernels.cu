// The GPU build of the fused cached-sampler kernel (source: sampler_kernels.cuh, which the CPU emulation also
// compiles). Built with --fmad=false so that it does the emulation's float arithmetic.
#include "sampler_kernels.cuh"

namespace pixelcnn_cuda {

template <typename T>
LaunchPlan enqueue_sampling(const Sampling<T>& run, void* stream) {
  return run_sampling(run, static_cast<cudaStream_t>(stream));
}

template LaunchPlan enqueue_sampling<float>(const Sampling<float>&, void*);
template LaunchPlan enqueue_sampling<double>(const Sampling<double>&, void*);

}  // namespace pixelcnn_cuda
