// The gated cached-sampler kernels (docs/DESIGN.md §3, §5, §6) and their launch site, compiled by nvcc
// (gated_kernels.cu) and by the host compiler under the CUDA emulation (csrc/emulation/gated_kernels_emulated.cpp).
//
// Schedule (GatedCachedStep in pixelcnn/step.py). Per row i:
// - one `vertical_row` launch per layer b, in order: the vertical stack at all W positions of all N images, as a
//   product with M = W*N rows (position m = w*N + n; a block per tile of positions, its threads splitting the 2h
//   outputs): v_pre = v_conv(rows above) + embed_v, then gate(v_pre) into the next layer's ring at row i and
//   link(v_pre) + embed_h into the link state. Layer b+1 reads layer b's row i at columns w-p .. w+p, written by
//   other blocks: the launch boundary is the grid-wide barrier between them.
// - `horizontal_steps` runs the row's W*C sub-pixels (several launches when PIXELCNN_CUDA_STEPS_PER_LAUNCH splits
//   the row), a block per image group as in sample_steps: per layer the 1 x (p+1) horizontal conv over its input row
//   plus the stored link term, the gate, proj and the residual; the head for colour c; the warp draw (draw_group,
//   shared with sample_steps); the drawn value into the image ring, where later sub-pixels and rows read it.
//
// Numerics: every product is dense() of sampler_kernels.cuh (one thread per output, k in order, no fused
// multiply-add); the gate is computed in double from csrc/draw.h's exp_rn, so that the GPU build and the emulation
// give the same bits (CUDA's and libm's tanh differ in the last bit).
#pragma once

#include "sampler_kernels.cuh"  // first: real CUDA or the emulation; dense, ring_at, draw_group

#include "gated_kernels.h"

namespace pixelcnn_cuda {
inline namespace PIXELCNN_KERNEL_NS {

constexpr int kRowGroup = 8;  // positions per row-kernel tile: each weight load serves 8 of them

// tanh(a) * sigmoid(b) from exp_rn (x <= 0 only), in double: tanh|a| = (1 - e) / (1 + e) with e = exp(-2|a|),
// sigmoid(b) = 1 / (1 + f) or f / (1 + f) with f = exp(-|b|). Absolute error a few 2^-53, the size of the rounding
// of the sums that produce a and b.
template <typename T>
__device__ __forceinline__ T gate(T a, T b) {
  const double x = static_cast<double>(a), y = static_cast<double>(b);
  const double e = draw::exp_rn(-2.0 * (x < 0 ? -x : x));
  const double t = (1.0 - e) / (1.0 + e);
  const double f = draw::exp_rn(y < 0 ? y : -y);
  const double s = y < 0 ? f / (1.0 + f) : 1.0 / (1.0 + f);
  return static_cast<T>((x < 0 ? -t : t) * s);
}

// Elements of one position's rows in the row kernel's shared memory: input patch, v_pre (2h), link (2h).
template <typename T>
__host__ __device__ __forceinline__ size_t vertical_row_elements(const GatedNet<T>& net) {
  return static_cast<size_t>(net.row_patch) + 4 * static_cast<size_t>(net.hidden);
}

// The vertical stack of layer b at row i for positions m0 .. m0+G-1 per tile (m = w*N + n).
template <typename T, int G>
__global__ void __launch_bounds__(kThreads, 4) vertical_row(GatedNet<T> net, int b, int i) {
  PIXELCNN_DYNAMIC_SHARED(shared);
  const GatedLayer<T> layer = net.layers[b];
  const Layer<T>& V = layer.v;
  const int h = net.hidden, h2 = 2 * h, ps = net.row_patch;
  T* patch = reinterpret_cast<T*>(shared);
  T* pre = patch + G * ps;
  T* lk = pre + G * h2;
  // rows of absent positions (the last tile) are computed but never stored: keep them finite
  for (size_t t = threadIdx.x; t < G * vertical_row_elements(net); t += blockDim.x) patch[t] = T(0);
  __syncthreads();
  const long long M = static_cast<long long>(net.W) * net.N;
  const long long tiles = (M + G - 1) / G;
  const int span = V.k * V.cin;  // one ring row of the patch: k columns of cin inputs, contiguous
  const bool has_next = b + 1 < net.L;
  const Layer<T> next = has_next ? net.layers[b + 1].v : V;
  T* link_out = net.link + static_cast<long long>(b) * M * h2;
  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const long long m0 = tile * G;
    const int m = M - m0 < G ? static_cast<int>(M - m0) : G;
    // patch rows i-p .. i-p+vrows-1 (above the image: zero), columns w-p .. w+p
    for (int t = threadIdx.x; t < m * V.K; t += blockDim.x) {
      const int g = t / V.K, q = t % V.K;
      const int w = static_cast<int>((m0 + g) / net.N), n = static_cast<int>((m0 + g) % net.N);
      const int row = i - V.p + q / span;
      T v = T(0);
      if (row >= 0) v = V.buf[((static_cast<long long>(n) * V.rows + row % V.rows) * V.wp + w) * V.cin + q % span];
      patch[g * ps + q] = v;
    }
    __syncthreads();
    dense<T, G>(V, nullptr, {patch, ps, pre, h2, h2, kPlain}, m);
    __syncthreads();
    if (layer.embed_v != nullptr) {  // v_pre = v_conv + embed_v, as the Python step adds it
      for (int t = threadIdx.x; t < m * h2; t += blockDim.x) {
        const long long n = (m0 + t / h2) % net.N;
        pre[t] = pre[t] + layer.embed_v[n * h2 + t % h2];
      }
      __syncthreads();
    }
    dense<T, G>(layer.link, nullptr, {pre, h2, lk, h2, h2, kPlain}, m);
    if (has_next) {  // gate(v_pre) at (i, w): the next layer's vertical input
      for (int t = threadIdx.x; t < m * h; t += blockDim.x) {
        const int g = t / h, u = t % h;
        const int w = static_cast<int>((m0 + g) / net.N), n = static_cast<int>((m0 + g) % net.N);
        ring_at(next, n, i, w)[u] = gate(pre[g * h2 + u], pre[g * h2 + h + u]);
      }
    }
    __syncthreads();
    for (int t = threadIdx.x; t < m * h2; t += blockDim.x) {
      const long long n = (m0 + t / h2) % net.N;
      link_out[m0 * h2 + t] = layer.embed_h != nullptr ? lk[t] + layer.embed_h[n * h2 + t % h2] : lk[t];
    }
    __syncthreads();
  }
}

// Per-image rows of the step kernel's dynamic shared memory.
template <typename T>
struct GatedRows {
  T *patch, *pre, *gated, *x, *y, *logits;
};

template <typename T>
__host__ __device__ __forceinline__ size_t gated_row_elements(const GatedNet<T>& net) {
  // patch, h_pre (2h), gate (h), horizontal stream x (h), head hidden, 256 logits
  return static_cast<size_t>(net.patch) + 4 * static_cast<size_t>(net.hidden) + net.head_hidden.cout + draw::kLevels;
}

// The horizontal stack of layer b at (i, j) for images n0 .. n0+m-1: x = proj(gate(h_conv(row) + link)), plus x
// from layer 1 on. The row is the image ring's row i (layer 0) or the layer's one-row buffer, into which x (its
// input at (i, j)) is stored on the way.
template <typename T, int G>
__device__ void horizontal_layer(const GatedNet<T>& net, const GatedRows<T>& r, int b, int n0, int m, int i, int j) {
  const GatedLayer<T> layer = net.layers[b];
  const Layer<T>& Hc = layer.h;
  const int h = net.hidden, h2 = 2 * h, ps = net.patch;
  const int before = b == 0 ? Hc.K : Hc.K - h;  // inputs read from the buffer (columns j-p ..), then x at j
  for (int t = threadIdx.x; t < m * Hc.K; t += blockDim.x) {
    const int g = t / Hc.K, q = t % Hc.K;
    if (q < before) {
      r.patch[g * ps + q] = ring_at(Hc, n0 + g, i, j - Hc.p)[q];
    } else {
      const T v = r.x[g * h + q - before];
      r.patch[g * ps + q] = v;
      ring_at(Hc, n0 + g, i, j)[q - before] = v;
    }
  }
  __syncthreads();
  const T* link = net.link + ((static_cast<long long>(b) * net.W + j) * net.N + n0) * h2;
  dense<T, G>(Hc, link, {r.patch, ps, r.pre, h2, h2, kPlain}, m);
  __syncthreads();
  for (int t = threadIdx.x; t < m * h; t += blockDim.x) {
    const int g = t / h, u = t % h;
    r.gated[t] = gate(r.pre[g * h2 + u], r.pre[g * h2 + h + u]);
  }
  __syncthreads();
  dense<T, G>(layer.proj, nullptr, {r.gated, h, r.x, h, h, b == 0 ? kPlain : kAddToOut}, m);
  __syncthreads();
}

// Sub-pixel step (i, j, c) for images n0 .. n0+m-1: the horizontal stack, the head, the draw, the image ring.
template <typename T, int G>
__device__ void gated_step(const GatedNet<T>& net, const GatedRows<T>& r, DrawScratch scratch, int n0, int m, int i,
                           int j, int c) {
  for (int b = 0; b < net.L; ++b) horizontal_layer<T, G>(net, r, b, n0, m, i, j);
  const Layer<T> hh = net.head_hidden, ho = net.head_out;
  dense<T, G>(hh, nullptr, {r.x, net.hidden, r.y, hh.cout, hh.cout, kReluIn | kReluOut}, m);
  __syncthreads();
  // head_out rows v*C + c are colour c's 256 logits
  dense<T, G>(ho, nullptr, {r.y, hh.cout, r.logits, draw::kLevels, draw::kLevels, kPlain, net.C, c}, m);
  __syncthreads();
  draw_group(net, r.logits, n0, m, i, j, c, scratch);
  const Layer<T> image_ring = net.layers[0].h;
  for (int g = threadIdx.x; g < m; g += blockDim.x) {
    const long long at = ((static_cast<long long>(n0 + g) * net.C + c) * net.H + i) * net.W + j;
    ring_at(image_ring, n0 + g, i, j)[c] = pixelcnn::to_unit<T>(net.image[at]);
  }
  __syncthreads();
}

// Sub-pixels [step0, step1) of row i (step s = j*C + c) of every image group.
template <typename T, int G>
__global__ void __launch_bounds__(kThreads, 4)
    horizontal_steps(GatedNet<T> net, int i, long long step0, long long step1) {
  PIXELCNN_DYNAMIC_SHARED(shared);
  __shared__ double draw_vals[kMaxGroup][kWarp];
  __shared__ int draw_counts[kMaxGroup][kWarp];
  const size_t row = gated_row_elements(net);
  T* base = reinterpret_cast<T*>(shared);
  GatedRows<T> r;
  r.patch = base;
  r.pre = r.patch + G * net.patch;
  r.gated = r.pre + G * 2 * net.hidden;
  r.x = r.gated + G * net.hidden;
  r.y = r.x + G * net.hidden;
  r.logits = r.y + G * net.head_hidden.cout;
  const DrawScratch scratch{draw_vals, draw_counts};
  const int groups = (net.N + G - 1) / G;
  for (int grp = blockIdx.x; grp < groups; grp += gridDim.x) {
    const int n0 = grp * G, m = net.N - n0 < G ? net.N - n0 : G;
    // rows of absent images (m < G) are computed but never stored: keep them finite
    for (size_t t = threadIdx.x; t < G * row; t += blockDim.x) base[t] = T(0);
    __syncthreads();
    for (long long s = step0; s < step1; ++s) {
      gated_step<T, G>(net, r, scratch, n0, m, i, static_cast<int>(s / net.C), static_cast<int>(s % net.C));
    }
  }
}

// Tiles, grids and shared memory for `net` on a device with `limits`; throws when even one image's (or one
// position's) rows do not fit in shared memory.
template <typename T>
GatedPlan plan_gated(const GatedNet<T>& net, const DeviceLimits& limits, const LaunchOptions& options) {
  GatedPlan plan{};
  const size_t per_image = gated_row_elements(net) * sizeof(T);
  const size_t per_position = vertical_row_elements(net) * sizeof(T);
  const bool image_fits = per_image <= limits.shared_optin;
  if (!image_fits || per_position > limits.shared_optin) {
    throw std::runtime_error(
        std::string("gated_cached_sample (CUDA): ") +
        (image_fits ? "one position's vertical patch and rows need " : "one image's activations need ") +
        std::to_string(image_fits ? per_position : per_image) + " bytes of shared memory, the device allows " +
        std::to_string(limits.shared_optin) +
        " per block; use a smaller hidden size or kernel, or float32, or sample on CPU "
        "(cached_ext)");
  }
  plan.group = net.N >= kGroupFromBatch && kMaxGroup * per_image <= limits.shared_optin ? kMaxGroup : 1;
  plan.shared_bytes = plan.group * per_image;
  plan.row_group = kRowGroup * per_position <= limits.shared_optin ? kRowGroup : 1;
  plan.row_shared_bytes = plan.row_group * per_position;
  const long long resident = 8LL * limits.multiprocessors;  // enough blocks to fill the device, no more
  const long long groups = (static_cast<long long>(net.N) + plan.group - 1) / plan.group;
  const long long tiles = (static_cast<long long>(net.W) * net.N + plan.row_group - 1) / plan.row_group;
  plan.grid = static_cast<int>(groups < resident ? groups : resident);
  plan.row_grid = static_cast<int>(tiles < resident ? tiles : resident);
  plan.steps_per_row = static_cast<long long>(net.W) * net.C;
  const long long chosen = options.steps_per_launch > 0 ? options.steps_per_launch : plan.steps_per_row;
  plan.steps_per_launch = chosen < plan.steps_per_row ? chosen : plan.steps_per_row;
  if (plan.steps_per_launch < 1) plan.steps_per_launch = 1;
  plan.launches = static_cast<long long>(net.H) *
                  (net.L + (plan.steps_per_row + plan.steps_per_launch - 1) / plan.steps_per_launch);
  return plan;
}

template <typename T, int G, int RG>
void launch_gated(const GatedNet<T>& net, const GatedPlan& plan, const DeviceLimits& limits, cudaStream_t stream) {
  auto rows = vertical_row<T, RG>;
  auto steps = horizontal_steps<T, G>;
  if (plan.row_shared_bytes > limits.shared_default) allow_shared(rows, plan.row_shared_bytes);
  if (plan.shared_bytes > limits.shared_default) allow_shared(steps, plan.shared_bytes);
  for (int i = 0; i < net.H; ++i) {
    for (int b = 0; b < net.L; ++b) {
      PIXELCNN_LAUNCH(rows, dim3(plan.row_grid), dim3(kThreads), plan.row_shared_bytes, stream, net, b, i);
    }
    for (long long s = 0; s < plan.steps_per_row; s += plan.steps_per_launch) {
      const long long end =
          s + plan.steps_per_launch < plan.steps_per_row ? s + plan.steps_per_launch : plan.steps_per_row;
      PIXELCNN_LAUNCH(steps, dim3(plan.grid), dim3(kThreads), plan.shared_bytes, stream, net, i, s, end);
    }
  }
}

// The launch site shared by the GPU and the emulation.
template <typename T>
GatedPlan run_gated_sampling(const GatedSampling<T>& run, cudaStream_t stream) {
  if (run.net.N == 0) return GatedPlan{};
  const DeviceLimits limits = device_limits();
  const GatedPlan plan = plan_gated(run.net, limits, run.options);
  if (plan.group == kMaxGroup) {
    if (plan.row_group == kRowGroup) {
      launch_gated<T, kMaxGroup, kRowGroup>(run.net, plan, limits, stream);
    } else {
      launch_gated<T, kMaxGroup, 1>(run.net, plan, limits, stream);
    }
  } else if (plan.row_group == kRowGroup) {
    launch_gated<T, 1, kRowGroup>(run.net, plan, limits, stream);
  } else {
    launch_gated<T, 1, 1>(run.net, plan, limits, stream);
  }
  finish(stream);
  return plan;
}

}  // namespace PIXELCNN_KERNEL_NS
}  // namespace pixelcnn_cuda
