// The one switch between real CUDA (nvcc) and the CPU emulation (host compiler, csrc/emulation/cuda_emulation.h):
// kernels and their launch sites are written once against these names.
//   PIXELCNN_LAUNCH(kernel, grid, block, shared_bytes, stream, args...)  launch, then check for a launch error
//   PIXELCNN_UNROLL                     unroll the next loop (#pragma unroll / GCC unroll)
//   PIXELCNN_DYNAMIC_SHARED(name)       `unsigned char* name`-like view of the dynamic shared memory (16-aligned)
//   pixelcnn_cuda::device_limits()      multiprocessors and shared-memory limits of the current device
//   pixelcnn_cuda::allow_shared(kernel, bytes)   cudaFuncAttributeMaxDynamicSharedMemorySize when above 48 KB
//   pixelcnn_cuda::finish(stream)       wait for the stream and turn an asynchronous kernel fault into an exception
// Errors are std::runtime_error (torch turns them into a Python RuntimeError).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace pixelcnn_cuda {

struct DeviceLimits {
  int multiprocessors;
  size_t shared_default;  // dynamic shared memory a kernel may use without an attribute
  size_t shared_optin;    // the most a kernel may use after cudaFuncSetAttribute
};

}  // namespace pixelcnn_cuda

#if defined(__CUDACC__)
#include <cuda_runtime.h>

#define PIXELCNN_UNROLL _Pragma("unroll")
#define PIXELCNN_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]

namespace pixelcnn_cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("cached_sample (CUDA): ") + what + " failed: " + cudaGetErrorString(err));
  }
}

inline DeviceLimits device_limits() {
  int device = 0, sms = 0, optin = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
  return {sms, 48 * 1024, static_cast<size_t>(optin)};
}

template <typename Kernel>
void allow_shared(Kernel* kernel, size_t bytes) {
  check(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes)),
        "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
}

inline void finish(cudaStream_t stream) { check(cudaStreamSynchronize(stream), "kernel execution"); }

}  // namespace pixelcnn_cuda

#define PIXELCNN_LAUNCH(kernel, grid, block, shared_bytes, stream, ...) \
  do {                                                                  \
    kernel<<<(grid), (block), (shared_bytes), (stream)>>>(__VA_ARGS__); \
    ::pixelcnn_cuda::check(cudaGetLastError(), "launch of " #kernel);   \
  } while (0)

#else
#include "../emulation/cuda_emulation.h"

#define PIXELCNN_UNROLL _Pragma("GCC unroll 8")
#define PIXELCNN_DYNAMIC_SHARED(name) unsigned char* name = ::pixelcnn_emu::block().dynamic_shared

namespace pixelcnn_cuda {

inline DeviceLimits device_limits() {
  return {pixelcnn_emu::kMultiprocessors, pixelcnn_emu::kDefaultSharedBytes, pixelcnn_emu::kOptinSharedBytes};
}

template <typename Kernel>
void allow_shared(Kernel* kernel, size_t bytes) {
  pixelcnn_emu::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), bytes);
}

inline void finish(cudaStream_t) {}  // the emulation runs synchronously

}  // namespace pixelcnn_cuda

#define PIXELCNN_LAUNCH(kernel, grid, block, shared_bytes, stream, ...)                            \
  do {                                                                                             \
    (void)(stream);                                                                                \
    ::pixelcnn_emu::launch(reinterpret_cast<const void*>(kernel), (grid), (block), (shared_bytes), \
                           [&] { kernel(__VA_ARGS__); });                                          \
  } while (0)

#endif
