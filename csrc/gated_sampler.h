// Shared declarations of the gated cached sampler (schema in ops.cpp: gated_cached_sample), used by the CPU
// implementation (gated_sampler.cpp), the CUDA one and the CUDA emulation.
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace pixelcnn {

// Shape of a gated model as the gated_cached_sample arguments give it (layer order in ops.cpp).
struct GatedShape {
  int64_t layers = 0;        // L: the first layer and the blocks
  int64_t hidden = 0;        // h: channels of each stack (pre-activations have 2h)
  int64_t head_hidden = 0;   // hh
  int64_t k0 = 0, k = 0;     // kernel size of layer 0 and of the later layers
  bool conditional = false;  // conds given (2 per layer)
};

// Argument checks shared by every back-end: shapes, dtypes, devices, that each layer reads what the one before gives,
// and that each spatial weight keeps no tap the schedule cannot serve (vertical: rows above the centre and, for
// layers after the first, the centre row; horizontal: the centre row left of and at the centre). Throws a message
// naming the argument and what was expected.
GatedShape check_gated_sampler_args(const at::Tensor& u, const std::vector<at::Tensor>& weights,
                                    const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds,
                                    int64_t channels, double temperature);

}  // namespace pixelcnn
