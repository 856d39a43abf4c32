// The fused cached-sampler kernel (docs/DESIGN.md §5/§6) and its launch site, compiled by nvcc (sampler_kernels.cu)
// and by the host compiler under the CUDA emulation (csrc/emulation/sampler_kernels_emulated.cpp).
//
// One launch runs sub-pixel steps [step0, step1) of every image: block b takes image groups b, b + gridDim.x, ...
// (any batch size, no grid limit), and for each group runs the steps in order; a step evaluates every layer at the
// current position (i, j) inside the block, the block's threads splitting the output channels, and draws the
// sub-pixel with one warp per image. Images never interact, so no grid-wide barrier is needed and the whole
// H*W*C loop can be one persistent launch (steps_per_launch = 0) or one launch per step (steps_per_launch = 1).
//
// Numerics: every output is bias (+ class vector) and then + input[k] * w[k] for k in the packed order, one thread
// per output, exactly the CPU op's order in float64 (csrc/sampler.cpp; it skips zero inputs, which changes at most
// the sign of a zero sum and never a drawn value), and the draw is csrc/draw.h's rule done by 32 lanes (a chunk of 8
// levels each) with the chunk offsets summed left to right. No fused multiply-add (nvcc --fmad=false; the host build
// -ffp-contract=off), so the GPU and the emulation compute the same bits.
#pragma once

#include "cuda_compat.cuh"  // first: real CUDA or the emulation

#include "../draw.h"
#include "../pixels.h"
#include "sampler_kernels.h"

// The GPU build and the emulation are two different sets of host functions with the same source: an inline
// namespace per back-end keeps their symbols apart inside the one library.
#if defined(__CUDACC__)
#define PIXELCNN_KERNEL_NS gpu
#else
#define PIXELCNN_KERNEL_NS emulated
#endif

namespace pixelcnn_cuda {
inline namespace PIXELCNN_KERNEL_NS {

namespace draw = ::pixelcnn::draw;

constexpr int kThreads = 128;
constexpr int kWarp = 32;
constexpr int kMaxGroup = kThreads / kWarp;  // one drawing warp per image of a group
constexpr int kGroupFromBatch = 16;          // batches this large share weight loads across kMaxGroup images

static_assert(draw::kChunks == kWarp, "the warp draw gives each lane one chunk of the CDF");

template <typename T>
__device__ __forceinline__ T relu(T a) {
  return a < T(0) ? T(0) : a;  // std::max(a, 0), as the CPU op
}

// What a dense step applies (named flags, combined with |).
enum DenseFlags : unsigned { kPlain = 0, kReluIn = 1, kReluOut = 2, kAddToOut = 4 };

// Where a dense step reads and writes, for a group of images (g = 0 .. G-1, rows `*_stride` apart).
template <typename T>
struct DenseIo {
  const T* in;
  long long in_stride;
  T* out;
  long long out_stride;
  int ncols;       // outputs v = 0 .. ncols-1 use layer column v * col_stride + col_offset
  unsigned flags;  // DenseFlags: ReLU on the input, ReLU on the output, out = out + result (residual)
  int col_stride = 1;
  int col_offset = 0;
};

// out[g][v] = act(bias[col] (+ cond[g][col]) + sum_k f(in[g][k]) * w[k][col]), k in order, for images g < m.
template <typename T, int G>
__device__ void dense(const Layer<T>& L, const T* cond, const DenseIo<T>& io, int m) {
  const bool relu_in = io.flags & kReluIn, relu_out = io.flags & kReluOut, add = io.flags & kAddToOut;
  for (int v = threadIdx.x; v < io.ncols; v += blockDim.x) {
    const int col = v * io.col_stride + io.col_offset;
    T acc[G];
    PIXELCNN_UNROLL
    for (int g = 0; g < G; ++g) acc[g] = cond != nullptr && g < m ? L.bias[col] + cond[g * L.cout + col] : L.bias[col];
    const T* w = L.w + col;
    for (int k = 0; k < L.K; ++k) {
      const T wk = w[static_cast<long long>(k) * L.cout];
      PIXELCNN_UNROLL
      for (int g = 0; g < G; ++g) {
        const T a = relu_in ? relu(io.in[g * io.in_stride + k]) : io.in[g * io.in_stride + k];
        acc[g] = acc[g] + a * wk;
      }
    }
    PIXELCNN_UNROLL
    for (int g = 0; g < G; ++g) {
      if (g >= m) break;
      const T r = relu_out ? relu(acc[g]) : acc[g];
      T* o = io.out + g * io.out_stride + v;
      *o = add ? *o + r : r;
    }
  }
}

// The input patch of a spatial layer at (i, j) from its ring buffer, in the packed-tap order: rows i-p .. i-1
// (k columns each), then row i up to and including column j; rows above the image are zero.
template <typename T, int G>
__device__ void gather(const Layer<T>& L, int n0, int m, int i, int j, T* patch, int ps) {
  const int above = L.p * L.k * L.cin;
  for (int t = threadIdx.x; t < G * L.K; t += blockDim.x) {
    const int g = t / L.K, q = t % L.K;
    T v = T(0);
    const int r = q < above ? q / (L.k * L.cin) : L.p;
    const int rem = q < above ? q % (L.k * L.cin) : q - above;
    const int row = i - L.p + r;
    if (g < m && row >= 0) {
      const long long slot = row % L.rows;
      v = L.buf[((static_cast<long long>(n0 + g) * L.rows + slot) * L.wp + j) * L.cin + rem];
    }
    patch[g * ps + q] = v;
  }
}

// The ring-buffer address of position (i, j), channel 0, image n (image rows rows*wp*cin apart).
template <typename T>
__device__ __forceinline__ T* ring_at(const Layer<T>& L, int n, int i, int j) {
  return L.buf + ((static_cast<long long>(n) * L.rows + i % L.rows) * L.wp + j + L.p) * L.cin;
}

// The pixel (i, j) of images n0 .. n0+m-1, normalised, into the first layer's ring buffer.
template <typename T>
__device__ void store_pixel(const Net<T>& net, const Layer<T>& first, int n0, int m, int i, int j) {
  for (int t = threadIdx.x; t < m * net.C; t += blockDim.x) {
    const int n = n0 + t / net.C, cc = t % net.C;
    ring_at(first, n, i, j)[cc] =
        pixelcnn::to_unit<T>(net.image[((static_cast<long long>(n) * net.C + cc) * net.H + i) * net.W + j]);
  }
}

// Scratch of the warp draw: one row of 32 per drawing warp.
struct DrawScratch {
  double (*vals)[kWarp];
  int (*counts)[kWarp];
};

// Sub-pixel (i, j, c) of images n0 + w, w < m, by warp w: csrc/draw.h's rule with lane l holding levels
// 8l .. 8l+7. Every thread of the block must call it (it holds barriers). `net`: any sampler's net (Net, GatedNet)
// with N, C, H, W, u, image, known, known_mask and temperature.
template <typename NetT, typename T>
__device__ void draw_group(const NetT& net, const T* logits, int n0, int m, int i, int j, int c, DrawScratch s) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const bool active = warp < m;
  double local[draw::kChunk];
  double top = -INFINITY;
  if (active) {
    const T* l = logits + warp * draw::kLevels + lane * draw::kChunk;
    for (int q = 0; q < draw::kChunk; ++q) {
      local[q] = static_cast<double>(l[q]) / net.temperature;
      top = local[q] > top ? local[q] : top;
    }
    s.vals[warp][lane] = top;
  }
  __syncthreads();
  if (active) {
    for (int q = 0; q < kWarp; ++q) top = s.vals[warp][q] > top ? s.vals[warp][q] : top;  // max: any order
  }
  __syncthreads();
  if (active) {
    double run = 0.0;
    for (int q = 0; q < draw::kChunk; ++q) {
      run = run + draw::exp_rn(local[q] - top);
      local[q] = run;
    }
    s.vals[warp][lane] = run;  // the chunk total
  }
  __syncthreads();
  if (active) {
    double offset = 0.0;  // ((t_0 + t_1) + ...) + t_(lane-1): the prefix of the sequential loop's sum
    for (int q = 0; q < lane; ++q) offset = offset + s.vals[warp][q];
    double total = offset;
    for (int q = lane; q < kWarp; ++q) total = total + s.vals[warp][q];
    const long long at = ((static_cast<long long>(n0 + warp) * net.C + c) * net.H + i) * net.W + j;
    const double target = static_cast<double>(net.u[at]) * total;
    int count = 0;
    for (int q = 0; q < draw::kChunk; ++q) count += offset + local[q] <= target ? 1 : 0;
    s.counts[warp][lane] = count;
  }
  __syncthreads();
  if (active && lane == 0) {
    int count = 0;
    for (int q = 0; q < kWarp; ++q) count += s.counts[warp][q];
    const long long at = ((static_cast<long long>(n0 + warp) * net.C + c) * net.H + i) * net.W + j;
    const int value = count < draw::kLevels - 1 ? count : draw::kLevels - 1;
    net.image[at] = net.known_mask != nullptr && net.known_mask[at] ? net.known[at] : static_cast<uint8_t>(value);
  }
  __syncthreads();
}

// Per-image rows of the dynamic shared memory.
template <typename T>
struct Rows {
  T *x, *y, *z, *patch, *logits;
};

template <typename T>
__host__ __device__ __forceinline__ size_t row_elements(const Net<T>& net) {
  return static_cast<size_t>(net.xs) + net.ys + net.zs + net.ps + draw::kLevels;
}

// Sub-pixel step (i, j, c) for images n0 .. n0+m-1: every layer at (i, j), then the draw.
template <typename T, int G>
__device__ void step(const Net<T>& net, const Rows<T>& r, DrawScratch scratch, int n0, int m, int i, int j, int c) {
  const Layer<T> first = net.layers[0];
  store_pixel(net, first, n0, m, i, j);
  __syncthreads();
  gather<T, G>(first, n0, m, i, j, r.patch, net.ps);
  __syncthreads();
  const T* cond0 = first.cond ? first.cond + static_cast<long long>(n0) * first.cout : nullptr;
  dense<T, G>(first, cond0, {r.patch, net.ps, r.x, net.xs, first.cout, kPlain}, m);
  __syncthreads();
  for (int b = 0; b < net.blocks; ++b) {
    const Layer<T> lin = net.layers[1 + 3 * b], mid = net.layers[2 + 3 * b], lout = net.layers[3 + 3 * b];
    // conv_in straight into conv_mid's ring buffer at (i, j)
    const long long ring_stride = static_cast<long long>(mid.rows) * mid.wp * mid.cin;
    dense<T, G>(lin, nullptr, {r.x, net.xs, ring_at(mid, n0, i, j), ring_stride, lin.cout, kReluIn | kReluOut}, m);
    __syncthreads();
    gather<T, G>(mid, n0, m, i, j, r.patch, net.ps);
    __syncthreads();
    const T* condb = mid.cond ? mid.cond + static_cast<long long>(n0) * mid.cout : nullptr;
    dense<T, G>(mid, condb, {r.patch, net.ps, r.z, net.zs, mid.cout, kReluOut}, m);
    __syncthreads();
    dense<T, G>(lout, nullptr, {r.z, net.zs, r.x, net.xs, lout.cout, kAddToOut}, m);
    __syncthreads();
  }
  const Layer<T> hh = net.layers[1 + 3 * net.blocks], ho = net.layers[2 + 3 * net.blocks];
  dense<T, G>(hh, nullptr, {r.x, net.xs, r.y, net.ys, hh.cout, kReluIn | kReluOut}, m);
  __syncthreads();
  // head_out rows v*C + c are colour c's 256 logits
  dense<T, G>(ho, nullptr, {r.y, net.ys, r.logits, draw::kLevels, draw::kLevels, kPlain, net.C, c}, m);
  __syncthreads();
  draw_group(net, r.logits, n0, m, i, j, c, scratch);
  if (c == net.C - 1) {  // later pixels read this one's final value from the first layer's buffer
    store_pixel(net, first, n0, m, i, j);
    __syncthreads();
  }
}

template <typename T, int G>
__global__ void __launch_bounds__(kThreads, 4) sample_steps(Net<T> net, long long step0, long long step1) {
  PIXELCNN_DYNAMIC_SHARED(shared);
  __shared__ double draw_vals[kMaxGroup][kWarp];
  __shared__ int draw_counts[kMaxGroup][kWarp];
  const size_t row = row_elements(net);
  T* base = reinterpret_cast<T*>(shared);
  const Rows<T> r{base, base + G * net.xs, base + G * (net.xs + net.ys), base + G * (net.xs + net.ys + net.zs),
                  base + G * (net.xs + net.ys + net.zs + net.ps)};
  const DrawScratch scratch{draw_vals, draw_counts};
  const int groups = (net.N + G - 1) / G;
  for (int grp = blockIdx.x; grp < groups; grp += gridDim.x) {
    const int n0 = grp * G, m = net.N - n0 < G ? net.N - n0 : G;
    // rows of absent images (m < G) are computed but never stored: keep them finite
    for (size_t t = threadIdx.x; t < G * row; t += blockDim.x) base[t] = T(0);
    __syncthreads();
    for (long long s = step0; s < step1; ++s) {
      const int i = static_cast<int>(s / (static_cast<long long>(net.W) * net.C));
      const int j = static_cast<int>((s / net.C) % net.W), c = static_cast<int>(s % net.C);
      step<T, G>(net, r, scratch, n0, m, i, j, c);
    }
  }
}

// Group size, grid and shared memory for `net` on a device with `limits`; throws when even one image's rows do
// not fit in shared memory.
template <typename T>
LaunchPlan plan_launch(const Net<T>& net, const DeviceLimits& limits, const LaunchOptions& options) {
  LaunchPlan plan{};
  const size_t per_image = row_elements(net) * sizeof(T);
  plan.group = net.N >= kGroupFromBatch && kMaxGroup * per_image <= limits.shared_optin ? kMaxGroup : 1;
  plan.shared_bytes = plan.group * per_image;
  if (plan.shared_bytes > limits.shared_optin) {
    throw std::runtime_error("cached_sample (CUDA): one image's activations need " + std::to_string(per_image) +
                             " bytes of shared memory, the device allows " + std::to_string(limits.shared_optin) +
                             " per block; use a smaller hidden size or float32, or sample on CPU (cached_ext)");
  }
  const long long groups = (static_cast<long long>(net.N) + plan.group - 1) / plan.group;
  const long long resident = 8LL * limits.multiprocessors;  // enough blocks to fill the device, no more
  plan.grid = static_cast<int>(groups < resident ? groups : resident);
  plan.steps = static_cast<long long>(net.H) * net.W * net.C;
  plan.steps_per_launch = options.steps_per_launch > 0 ? options.steps_per_launch : plan.steps;
  return plan;
}

template <typename T, int G>
void launch_all(const Net<T>& net, const LaunchPlan& plan, const DeviceLimits& limits, cudaStream_t stream) {
  auto kernel = sample_steps<T, G>;
  if (plan.shared_bytes > limits.shared_default) allow_shared(kernel, plan.shared_bytes);
  for (long long s = 0; s < plan.steps; s += plan.steps_per_launch) {
    const long long end = s + plan.steps_per_launch < plan.steps ? s + plan.steps_per_launch : plan.steps;
    PIXELCNN_LAUNCH(kernel, dim3(plan.grid), dim3(kThreads), plan.shared_bytes, stream, net, s, end);
  }
}

// The launch site shared by the GPU and the emulation.
template <typename T>
LaunchPlan run_sampling(const Sampling<T>& run, cudaStream_t stream) {
  if (run.net.N == 0) return LaunchPlan{};
  const DeviceLimits limits = device_limits();
  const LaunchPlan plan = plan_launch(run.net, limits, run.options);
  if (plan.group == kMaxGroup) {
    launch_all<T, kMaxGroup>(run.net, plan, limits, stream);
  } else {
    launch_all<T, 1>(run.net, plan, limits, stream);
  }
  finish(stream);
  return plan;
}

}  // namespace PIXELCNN_KERNEL_NS
}  // namespace pixelcnn_cuda
