// Per-step kernels of the cached sampler on CUDA (DESIGN.md §5/§6). One launch sequence computes every layer at
// position (i, j) for the whole batch, draws sub-pixel (i, j, c) and advances the device-side step counter;
// the host captures it once as a CUDA graph and replays it N*C*H*W... times, so no per-step host work remains.
#include "sampler_kernels.h"

namespace pixelcnn_cuda {
namespace {

constexpr int kThreads = 128;

struct Pos {
  int i, j, c;
};

__device__ __forceinline__ Pos decode(const int* pos, int W, int C) {
  const int s = *pos;
  return {s / (W * C), (s / C) % W, s % C};
}

template <typename T>
__global__ void clear_row_slot(T* buf, int N, int rows, int wp, int cin, const int* pos, int W, int C) {
  const Pos q = decode(pos, W, C);
  if (q.j != 0 || q.c != 0) return;
  const long per = static_cast<long>(wp) * cin;
  for (long t = blockIdx.x * blockDim.x + threadIdx.x; t < N * per; t += gridDim.x * blockDim.x) {
    const long n = t / per;
    buf[(n * rows + q.i % rows) * per + t % per] = T(0);
  }
}

template <typename T>
__global__ void store_pixel(Spatial<T> L, const uint8_t* image, int N, int C, int H, int W, const int* pos) {
  const Pos q = decode(pos, W, C);
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= N * C) return;
  const int n = t / C, cc = t % C;
  const T v = T(image[((n * C + cc) * H + q.i) * W + q.j]) / T(127.5) - T(1);
  L.buf[((static_cast<long>(n) * L.rows + q.i % L.rows) * L.wp + q.j + L.p) * L.cin + cc] = v;
}

template <typename T>
__global__ void store_hidden(Spatial<T> L, const T* src, int N, int W, int C, const int* pos) {
  const Pos q = decode(pos, W, C);
  const int n = blockIdx.y;
  for (int ci = blockIdx.x * blockDim.x + threadIdx.x; ci < L.cin; ci += gridDim.x * blockDim.x) {
    L.buf[((static_cast<long>(n) * L.rows + q.i % L.rows) * L.wp + q.j + L.p) * L.cin + ci] = src[n * L.cin + ci];
  }
}

// out[n][co] = act(bias + cond + sum over live taps of w * ring-buffer input); grid (cout tiles, N).
template <typename T>
__global__ void spatial_conv(Spatial<T> L, T* out, bool relu, int W, int C, const int* pos) {
  extern __shared__ unsigned char smem[];
  T* patch = reinterpret_cast<T*>(smem);
  const Pos q = decode(pos, W, C);
  const int n = blockIdx.y;
  const int above = L.p * L.k * L.cin;
  for (int t = threadIdx.x; t < L.K; t += blockDim.x) {
    const int r = t < above ? t / (L.k * L.cin) : L.p;
    const int rem = t < above ? t % (L.k * L.cin) : t - above;
    const int row = q.i - L.p + r;
    const int slot = ((row % L.rows) + L.rows) % L.rows;
    patch[t] = row < 0 ? T(0)
                       : L.buf[((static_cast<long>(n) * L.rows + slot) * L.wp + q.j) * L.cin + rem];
  }
  __syncthreads();
  const int co = blockIdx.x * blockDim.x + threadIdx.x;
  if (co >= L.cout) return;
  T acc = L.bias[co] + (L.cond ? L.cond[n * L.cout + co] : T(0));
  for (int t = 0; t < L.K; ++t) acc += patch[t] * L.w[static_cast<long>(t) * L.cout + co];
  out[n * L.cout + co] = relu ? (acc > T(0) ? acc : T(0)) : acc;
}

// out[n][v] = act(bias[col] + sum_k f(in[n][k]) * w[k][col]) (+ residual[n][v]), col = v * stride + offset,
// offset = the current colour when `colour_offset` (the head picks rows v*C + c of the last layer).
template <typename T>
__global__ void dense(Dense<T> D, const T* in, T* out, const T* residual, int ncols, int stride, bool colour_offset,
                      bool relu_in, bool relu_out, int W, int C, const int* pos) {
  extern __shared__ unsigned char smem[];
  T* row = reinterpret_cast<T*>(smem);
  const int n = blockIdx.y;
  for (int k = threadIdx.x; k < D.cin; k += blockDim.x) {
    const T a = in[n * D.cin + k];
    row[k] = relu_in ? (a > T(0) ? a : T(0)) : a;
  }
  __syncthreads();
  const int v = blockIdx.x * blockDim.x + threadIdx.x;
  if (v >= ncols) return;
  const int col = v * stride + (colour_offset ? decode(pos, W, C).c : 0);
  T acc = D.bias[col];
  for (int k = 0; k < D.cin; ++k) acc += row[k] * D.w[static_cast<long>(k) * D.cout + col];
  if (relu_out) acc = acc > T(0) ? acc : T(0);
  if (residual) acc += residual[n * ncols + v];
  out[n * ncols + v] = acc;
}

// Inverse-CDF draw, the rule of pixelcnn.sampling.pick_values; one block per image.
// Also writes the drawn value into the first layer's ring buffer: later pixels read it from there.
template <typename T>
__global__ void draw(const T* logits, const float* u, float temperature, uint8_t* image, Spatial<T> first, int C,
                     int H, int W, int* pos) {
  __shared__ float p[256];
  const Pos q = decode(pos, W, C);
  const int n = blockIdx.x;
  p[threadIdx.x] = static_cast<float>(logits[n * 256 + threadIdx.x] / static_cast<T>(temperature));
  __syncthreads();
  if (threadIdx.x != 0) return;
  float m = p[0];
  for (int v = 1; v < 256; ++v) m = fmaxf(m, p[v]);
  float sum = 0.f;
  for (int v = 0; v < 256; ++v) sum += expf(p[v] - m);
  const float target = u[((n * C + q.c) * H + q.i) * W + q.j];
  float cdf = 0.f;
  int count = 0;
  for (int v = 0; v < 256; ++v) {
    cdf += expf(p[v] - m) / sum;
    count += cdf <= target;
  }
  const int value = count > 255 ? 255 : count;
  image[((n * C + q.c) * H + q.i) * W + q.j] = static_cast<uint8_t>(value);
  first.buf[((static_cast<long>(n) * first.rows + q.i % first.rows) * first.wp + q.j + first.p) * first.cin + q.c] =
      T(value) / T(127.5) - T(1);
}

__global__ void advance(int* pos) { *pos += 1; }

inline dim3 tiles(int cols, int n) { return dim3((cols + kThreads - 1) / kThreads, n); }

template <typename T>
void launch_clear(const Spatial<T>& L, const Net<T>& net, cudaStream_t s) {
  const long total = static_cast<long>(net.N) * L.wp * L.cin;
  const int grid = static_cast<int>((total + kThreads - 1) / kThreads);
  clear_row_slot<T><<<grid, kThreads, 0, s>>>(L.buf, net.N, L.rows, L.wp, L.cin, net.pos, net.W, net.C);
}

}  // namespace

template <typename T>
void enqueue_step(const Net<T>& net, cudaStream_t s) {
  const int N = net.N, W = net.W, C = net.C;
  launch_clear(net.first, net, s);
  for (const auto& mid : net.mids) launch_clear(mid, net, s);
  store_pixel<T><<<(N * C + kThreads - 1) / kThreads, kThreads, 0, s>>>(net.first, net.image, N, C, net.H, W,
                                                                        net.pos);
  const int h2 = net.first.cout;
  spatial_conv<T><<<tiles(h2, N), kThreads, net.first.K * sizeof(T), s>>>(net.first, net.x, false, W, C, net.pos);
  for (size_t b = 0; b < net.mids.size(); ++b) {
    const Dense<T>& in = net.ins[b];
    const Spatial<T>& mid = net.mids[b];
    const Dense<T>& out = net.outs[b];
    dense<T><<<tiles(in.cout, N), kThreads, in.cin * sizeof(T), s>>>(in, net.x, net.y, nullptr, in.cout, 1, false,
                                                                    true, true, W, C, net.pos);
    store_hidden<T><<<tiles(mid.cin, N), kThreads, 0, s>>>(mid, net.y, N, W, C, net.pos);
    spatial_conv<T><<<tiles(mid.cout, N), kThreads, mid.K * sizeof(T), s>>>(mid, net.z, true, W, C, net.pos);
    dense<T><<<tiles(out.cout, N), kThreads, out.cin * sizeof(T), s>>>(out, net.z, net.x, net.x, out.cout, 1, false,
                                                                      false, false, W, C, net.pos);
  }
  const Dense<T>& hh = net.head_hidden;
  dense<T><<<tiles(hh.cout, N), kThreads, hh.cin * sizeof(T), s>>>(hh, net.x, net.y, nullptr, hh.cout, 1, false, true,
                                                                   true, W, C, net.pos);
  const Dense<T>& ho = net.head_out;
  dense<T><<<tiles(256, N), kThreads, ho.cin * sizeof(T), s>>>(ho, net.y, net.logits, nullptr, 256, C, true, false,
                                                              false, W, C, net.pos);
  draw<T><<<N, 256, 0, s>>>(net.logits, net.u, net.temperature, net.image, net.first, C, net.H, W, net.pos);
  advance<<<1, 1, 0, s>>>(net.pos);
}

template void enqueue_step<float>(const Net<float>&, cudaStream_t);
template void enqueue_step<double>(const Net<double>&, cudaStream_t);

}  // namespace pixelcnn_cuda
