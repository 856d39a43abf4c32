// Shared declarations of the cached-sampler op family (schema in ops.cpp).
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace pixelcnn {

// Argument checks shared by the CPU and CUDA implementations (shapes, dtypes, devices, and that each layer's
// inputs are the previous layer's outputs); returns the number of residual blocks.
int64_t check_sampler_args(const at::Tensor& u, const std::vector<at::Tensor>& weights,
                           const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds,
                           int64_t channels, double temperature);

// Completion inputs of cached_sample: both or neither; uint8 and bool of the uniforms' shape and device.
void check_known(const at::Tensor& u, const c10::optional<at::Tensor>& known,
                 const c10::optional<at::Tensor>& known_mask);

// A masked weight [Cout, Cin, k, k] as the matrix [K][Cout] of its live taps, K = (p*k + p + 1) * Cin, p = k/2:
// rows above the centre (all k columns), then the centre row up to and including the centre, each tap's Cin
// inputs in order. A ring-buffer row laid out [W + 2p][Cin] yields the matching input vector by contiguous copies.
at::Tensor live_tap_matrix(const at::Tensor& weight);

}  // namespace pixelcnn
