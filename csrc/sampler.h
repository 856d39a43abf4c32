// Shared declarations of the cached-sampler op family (schema in sampler.cpp).
#pragma once
#include <ATen/ATen.h>
#include <vector>

namespace pixelcnn {

// Argument checks shared by the CPU and CUDA implementations; returns the number of residual blocks.
int64_t check_sampler_args(const at::Tensor& u, const std::vector<at::Tensor>& weights,
                           const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds,
                           int64_t channels, double temperature);

// The same inverse-CDF rule as pixelcnn.sampling.pick_values: logits [N,256], u [N] -> int64 [N].
at::Tensor pick_values(const at::Tensor& logits, const at::Tensor& u, double temperature);

// A masked weight [Cout, Cin, k, k] packed to its live taps [K][Cout], K = (p*k + p + 1) * Cin, p = k/2: rows above
// the centre (all k columns), then the centre row up to and including the centre, each tap's Cin inputs in order.
// A ring-buffer row laid out [W + 2p][Cin] yields the matching input vector by contiguous copies.
at::Tensor pack_live_taps(const at::Tensor& weight);

}  // namespace pixelcnn
