// Host side of the CUDA cached sampler, shared by the GPU op (sampler_cuda.cpp) and the CPU emulation
// (csrc/emulation/sampler_emulated.cpp): argument checks, packing the layers on the uniforms' device, and the
// tensors that own every buffer the kernel reads (freed by RAII, also when a launch throws).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "../sampler.h"
#include "sampler_kernels.h"

namespace pixelcnn_cuda {

// Every input on `device`, weights/biases/class vectors of one floating dtype: a clear error otherwise.
inline void check_placement(const char* op, const at::Device& device, const at::Tensor& u,
                            const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
                            const std::vector<at::Tensor>& conds, const c10::optional<at::Tensor>& known,
                            const c10::optional<at::Tensor>& known_mask) {
  const auto dtype = weights[0].scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, op, ": weights must be float32 or float64, got ", dtype);
  auto here = [&](const at::Tensor& t, const std::string& what) {
    TORCH_CHECK(t.device() == device, op, ": ", what, " is on ", t.device(), ", expected ", device,
                " (move every input to one device)");
  };
  here(u, "uniforms");
  for (size_t l = 0; l < weights.size(); ++l) {
    here(weights[l], "weight " + std::to_string(l));
    here(biases[l], "bias " + std::to_string(l));
    TORCH_CHECK(biases[l].scalar_type() == dtype && biases[l].dim() == 1 && biases[l].size(0) == weights[l].size(0), op,
                ": bias ", l, " must be ", dtype, " [", weights[l].size(0), "], got ", biases[l].scalar_type(), " ",
                biases[l].sizes());
  }
  for (size_t l = 0; l < conds.size(); ++l) {
    here(conds[l], "class vector " + std::to_string(l));
    TORCH_CHECK(conds[l].scalar_type() == dtype, op, ": class vector ", l, " must be ", dtype,
                " like the weights, "
                "got ",
                conds[l].scalar_type());
  }
  if (known.has_value()) {
    here(*known, "known");
    here(*known_mask, "known_mask");
  }
}

// LaunchOptions from the environment: PIXELCNN_CUDA_STEPS_PER_LAUNCH = 0 (default: the whole loop in one
// persistent launch) or a positive number of sub-pixel steps per launch (1: one launch per step).
inline LaunchOptions launch_options_from_env() {
  LaunchOptions options;
  const char* v = std::getenv("PIXELCNN_CUDA_STEPS_PER_LAUNCH");
  if (v != nullptr && *v != '\0') {
    char* end = nullptr;
    const long long n = std::strtoll(v, &end, 10);
    TORCH_CHECK(end != v && *end == '\0' && n >= 0,
                "PIXELCNN_CUDA_STEPS_PER_LAUNCH must be an integer >= 0 (0: "
                "one launch for the whole loop), got '",
                v, "'");
    options.steps_per_launch = n;
  }
  return options;
}

// The tensors a run's raw pointers point into, alive as long as the run. A deque: a reference hold() returned stays
// valid however many tensors are held after it.
class Held {
 public:
  at::Tensor& operator()(at::Tensor t) {
    tensors_.push_back(std::move(t));
    return tensors_.back();
  }
  // The layer structs `rows` copied to `device` as one array (held here).
  template <class Row>
  const Row* table(const std::vector<Row>& rows, const at::Device& device) {
    at::Tensor host = at::empty({static_cast<int64_t>(rows.size() * sizeof(Row))}, at::kByte);
    std::memcpy(host.data_ptr(), rows.data(), rows.size() * sizeof(Row));
    return reinterpret_cast<const Row*>((*this)(host.to(device)).data_ptr());
  }

 private:
  std::deque<at::Tensor> tensors_;
};

// The fields every sampler net has (shape, uniforms, output image, completion inputs, temperature) from the op's
// arguments; returns the output image, zeros [N, C, H, W] uint8 on the uniforms' device.
template <class SamplerNet>
at::Tensor set_io(SamplerNet& net, Held& hold, const at::Tensor& u, double temperature,
                  const c10::optional<at::Tensor>& known, const c10::optional<at::Tensor>& known_mask) {
  net.N = static_cast<int>(u.size(0));
  net.C = static_cast<int>(u.size(1));
  net.H = static_cast<int>(u.size(2));
  net.W = static_cast<int>(u.size(3));
  net.u = hold(u.contiguous()).template data_ptr<float>();
  at::Tensor image = at::zeros(u.sizes(), u.options().dtype(at::kByte));
  net.image = image.template data_ptr<uint8_t>();
  net.known = known.has_value() ? hold(known->contiguous()).template data_ptr<uint8_t>() : nullptr;
  net.known_mask = known.has_value() ? hold(known_mask->contiguous()).template data_ptr<bool>() : nullptr;
  net.temperature = temperature;
  return image;
}

// Owns the packed layers, ring buffers and output of one run, and the Net of raw pointers into them.
template <typename T>
struct Prepared {
  Held held;
  at::Tensor image;
  Net<T> net{};
};

// Packs the model for the kernel on the uniforms' device. Inputs are made contiguous here (any layout is accepted).
template <typename T>
void prepare(Prepared<T>& out, const at::Tensor& u, const std::vector<at::Tensor>& weights,
             const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds, int64_t C, double temperature,
             int64_t blocks, const c10::optional<at::Tensor>& known, const c10::optional<at::Tensor>& known_mask) {
  const int64_t N = u.size(0), H = u.size(2), W = u.size(3);
  TORCH_CHECK(N < (int64_t(1) << 31) && H * W * C < (int64_t(1) << 40),
              "cached_sample (CUDA): batch or image too "
              "large");
  Held& hold = out.held;
  std::vector<Layer<T>> layers;
  for (size_t l = 0; l < weights.size(); ++l) {
    const at::Tensor& w = weights[l];
    Layer<T> L{};
    L.cout = static_cast<int>(w.size(0));
    L.cin = static_cast<int>(w.size(1));
    L.k = static_cast<int>(w.size(2));
    L.p = L.k / 2;
    L.rows = L.p + 1;
    L.wp = static_cast<int>(W) + 2 * L.p;
    const at::Tensor& packed = hold(pixelcnn::live_tap_matrix(w.contiguous()));
    L.w = packed.template data_ptr<T>();
    L.K = static_cast<int>(packed.size(0));
    L.bias = hold(biases[l].contiguous()).template data_ptr<T>();
    L.cond = nullptr;
    L.buf = nullptr;
    if (L.k > 1) L.buf = hold(at::zeros({N, L.rows, L.wp, L.cin}, w.options())).template data_ptr<T>();
    layers.push_back(L);
  }
  // class vectors: the first conv's and each block's conv_mid's
  if (!conds.empty()) {
    layers[0].cond = hold(conds[0].contiguous()).template data_ptr<T>();
    for (int64_t b = 0; b < blocks; ++b)
      layers[2 + 3 * b].cond = hold(conds[1 + b].contiguous()).template data_ptr<T>();
    TORCH_CHECK(conds[0].size(1) == layers[0].cout, "cached_sample: class vector 0 must be [N, ", layers[0].cout, "]");
    for (int64_t b = 0; b < blocks; ++b) {
      TORCH_CHECK(conds[1 + b].size(1) == layers[2 + 3 * b].cout, "cached_sample: class vector ", 1 + b,
                  " must be [N, ", layers[2 + 3 * b].cout, "]");
    }
  }
  Net<T>& net = out.net;
  net.layers = hold.table(layers, u.device());
  net.blocks = static_cast<int>(blocks);
  out.image = set_io(net, hold, u, temperature, known, known_mask);
  net.xs = layers[0].cout;
  net.ys = layers[1 + 3 * blocks].cout;
  net.zs = 0;
  net.ps = 0;
  for (const auto& L : layers) {
    if (L.k > 1) net.ps = std::max(net.ps, L.K);
  }
  for (int64_t b = 0; b < blocks; ++b) {
    const Layer<T>& lin = layers[1 + 3 * b];
    const Layer<T>& mid = layers[2 + 3 * b];
    const Layer<T>& lout = layers[3 + 3 * b];
    net.zs = std::max(net.zs, mid.cout);
    TORCH_CHECK(lin.k == 1 && lout.k == 1 && lin.cin == net.xs && lout.cout == net.xs && mid.cin == lin.cout &&
                    lout.cin == mid.cout,
                "cached_sample: block ", b, " must be 1x1 [", net.xs, " -> h], kxk [h -> h'], 1x1 [h' -> ", net.xs,
                "]");
  }
  const Layer<T>& hh = layers[1 + 3 * blocks];
  const Layer<T>& ho = layers[2 + 3 * blocks];
  TORCH_CHECK(hh.k == 1 && ho.k == 1 && hh.cin == net.xs && ho.cin == hh.cout && layers[0].cin == C,
              "cached_sample: the first conv must take C inputs and the head be 1x1 layers [", net.xs,
              " -> h -> 256*C]");
}

}  // namespace pixelcnn_cuda
