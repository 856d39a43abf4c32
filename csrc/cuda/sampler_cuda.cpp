// CUDA implementation of pixelcnn::cached_sample: packs the layers, captures one sub-pixel step as a CUDA graph
// and replays it for every sub-pixel (launch overhead paid once). Compiled by the host compiler; the kernels live
// in sampler_kernels.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <algorithm>

#include "../sampler.h"
#include "sampler_kernels.h"

namespace pixelcnn {
namespace {

#define PIXELCNN_CUDA_CHECK(expr)                                                   \
  do {                                                                              \
    cudaError_t err_ = (expr);                                                      \
    TORCH_CHECK(err_ == cudaSuccess, "cached_sample (CUDA): ", #expr, " failed: ", \
                cudaGetErrorString(err_));                                          \
  } while (0)

template <typename T>
at::Tensor run(const at::Tensor& u, const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
               const std::vector<at::Tensor>& conds, int64_t C, double temperature, int64_t blocks) {
  const int64_t N = u.size(0), H = u.size(2), W = u.size(3);
  std::vector<at::Tensor> keep;  // owns every packed tensor until the graph has run
  auto spatial = [&](size_t l, const at::Tensor* cond) {
    pixelcnn_cuda::Spatial<T> L{};
    const auto& w = weights[l];
    L.cout = w.size(0);
    L.cin = w.size(1);
    L.k = w.size(2);
    L.p = L.k / 2;
    L.rows = L.p + 1;
    L.wp = W + 2 * L.p;
    keep.push_back(live_tap_matrix(w.contiguous()));
    L.w = keep.back().template data_ptr<T>();
    L.K = keep.back().size(0);
    keep.push_back(biases[l].contiguous());
    L.bias = keep.back().template data_ptr<T>();
    L.cond = nullptr;
    if (cond) {
      keep.push_back(cond->contiguous());
      L.cond = keep.back().template data_ptr<T>();
    }
    keep.push_back(at::zeros({N, L.rows, L.wp, L.cin}, w.options()));
    L.buf = keep.back().template data_ptr<T>();
    return L;
  };
  auto dense = [&](size_t l) {
    pixelcnn_cuda::Dense<T> D{};
    keep.push_back(weights[l].select(3, 0).select(2, 0).t().contiguous());  // [cin][cout]
    D.w = keep.back().template data_ptr<T>();
    D.cin = weights[l].size(1);
    D.cout = weights[l].size(0);
    keep.push_back(biases[l].contiguous());
    D.bias = keep.back().template data_ptr<T>();
    return D;
  };
  pixelcnn_cuda::Net<T> net{};
  net.N = N;
  net.C = C;
  net.H = H;
  net.W = W;
  net.first = spatial(0, conds.empty() ? nullptr : &conds[0]);
  int64_t widest = 256;
  for (int64_t b = 0; b < blocks; ++b) {
    net.ins.push_back(dense(1 + 3 * b));
    net.mids.push_back(spatial(2 + 3 * b, conds.empty() ? nullptr : &conds[1 + b]));
    net.outs.push_back(dense(3 + 3 * b));
  }
  net.head_hidden = dense(weights.size() - 2);
  net.head_out = dense(weights.size() - 1);
  for (const auto& w : weights) widest = std::max<int64_t>(widest, w.size(0));
  auto opts = weights[0].options();
  auto scratch = at::zeros({4, N, widest}, opts);
  net.x = scratch[0].template data_ptr<T>();
  net.y = scratch[1].template data_ptr<T>();
  net.z = scratch[2].template data_ptr<T>();
  net.logits = scratch[3].template data_ptr<T>();
  auto image = at::zeros({N, C, H, W}, u.options().dtype(at::kByte));
  auto pos = at::zeros({1}, u.options().dtype(at::kInt));
  net.u = u.data_ptr<float>();
  net.image = image.data_ptr<uint8_t>();
  net.temperature = static_cast<float>(temperature);
  net.pos = pos.data_ptr<int>();

  // a side stream: capture is not allowed on the legacy default stream
  auto stream = c10::cuda::getStreamFromPool();
  PIXELCNN_CUDA_CHECK(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream().stream()));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  PIXELCNN_CUDA_CHECK(cudaStreamBeginCapture(stream.stream(), cudaStreamCaptureModeThreadLocal));
  pixelcnn_cuda::enqueue_step<T>(net, stream.stream());
  PIXELCNN_CUDA_CHECK(cudaStreamEndCapture(stream.stream(), &graph));
  PIXELCNN_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const int64_t steps = C * H * W;
  for (int64_t s = 0; s < steps; ++s) PIXELCNN_CUDA_CHECK(cudaGraphLaunch(exec, stream.stream()));
  PIXELCNN_CUDA_CHECK(cudaStreamSynchronize(stream.stream()));
  PIXELCNN_CUDA_CHECK(cudaGraphExecDestroy(exec));
  PIXELCNN_CUDA_CHECK(cudaGraphDestroy(graph));
  return image;
}

at::Tensor cached_sample_cuda(const at::Tensor& u, at::TensorList weights_, at::TensorList biases_,
                              at::TensorList conds_, int64_t channels, double temperature,
                              const c10::optional<at::Tensor>& known, const c10::optional<at::Tensor>& known_mask) {
  std::vector<at::Tensor> weights(weights_.begin(), weights_.end()), biases(biases_.begin(), biases_.end()),
      conds(conds_.begin(), conds_.end());
  const int64_t blocks = check_sampler_args(u, weights, biases, conds, channels, temperature);
  check_known(u, known, known_mask);
  TORCH_CHECK(!known.has_value(), "cached_sample (CUDA): completion (known/known_mask) is not implemented on CUDA "
              "yet; sample on CPU with method='cached_ext'");
  c10::cuda::CUDAGuard guard(u.device());
  auto dtype = weights[0].scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "cached_sample (CUDA): weights must be float32 or "
              "float64, got ", dtype);
  auto uc = u.contiguous();
  if (dtype == at::kFloat) return run<float>(uc, weights, biases, conds, channels, temperature, blocks);
  return run<double>(uc, weights, biases, conds, channels, temperature, blocks);
}

}  // namespace

TORCH_LIBRARY_IMPL(pixelcnn, CUDA, m) { m.impl("cached_sample", &cached_sample_cuda); }

}  // namespace pixelcnn
