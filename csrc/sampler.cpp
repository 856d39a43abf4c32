// Cached incremental PixelCNN sampler (DESIGN.md §5), CPU implementation and the op schema.
//
// Layer order in `weights`/`biases` (masked weights [Cout, Cin, k, k]): first conv (mask A, k0 x k0), then per
// residual block (1x1 in, k x k mask B, 1x1 out), then head_hidden (1x1), head_out (1x1, 256*C outputs).
// `conds` is empty (unconditional) or [first [N, 2h], block_0 [N, h], ...].
// Each spatial layer keeps, per image, a ring buffer [rows = k/2+1][W + 2p][Cin] of its input rows;
// sub-pixel (i, j, c) evaluates every layer at (i, j) only.
#include <immintrin.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "draw.h"
#include "pixels.h"
#include "sampler.h"

namespace pixelcnn {

int64_t check_sampler_args(const at::Tensor& u, const std::vector<at::Tensor>& weights,
                           const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds,
                           int64_t channels, double temperature) {
  TORCH_CHECK(u.dim() == 4 && u.scalar_type() == at::kFloat,
              "cached_sample: uniforms must be float32 [N, C, H, W], got ", u.scalar_type(), " ", u.sizes());
  TORCH_CHECK(channels == 1 || channels == 3, "cached_sample: channels must be 1 or 3, got ", channels);
  TORCH_CHECK(u.size(1) == channels, "cached_sample: uniforms have ", u.size(1), " channels, model has ",
              channels);
  TORCH_CHECK(temperature > 0, "cached_sample: temperature must be > 0, got ", temperature);
  TORCH_CHECK(weights.size() >= 3 && (weights.size() - 3) % 3 == 0 && biases.size() == weights.size(),
              "cached_sample: expected 3 + 3*blocks weights and as many biases, got ", weights.size(), " and ",
              biases.size());
  const int64_t blocks = (weights.size() - 3) / 3;
  TORCH_CHECK(conds.empty() || conds.size() == static_cast<size_t>(blocks + 1),
              "cached_sample: expected 0 or ", blocks + 1, " class-vector tensors, got ", conds.size());
  for (size_t l = 0; l < weights.size(); ++l) {
    TORCH_CHECK(weights[l].dim() == 4 && weights[l].size(2) == weights[l].size(3) && weights[l].size(2) % 2 == 1,
                "cached_sample: weight ", l, " must be [Cout, Cin, k, k] with odd k");
    TORCH_CHECK(weights[l].scalar_type() == weights[0].scalar_type() && weights[l].device() == u.device(),
                "cached_sample: all weights must share dtype and the uniforms' device");
  }
  TORCH_CHECK(weights.back().size(0) == 256 * channels, "cached_sample: last layer must have 256*C outputs");
  for (const auto& c : conds) {
    TORCH_CHECK(c.dim() == 2 && c.size(0) == u.size(0), "cached_sample: class vectors must be [N, channels]");
  }
  return blocks;
}

void check_known(const at::Tensor& u, const c10::optional<at::Tensor>& known,
                 const c10::optional<at::Tensor>& known_mask) {
  TORCH_CHECK(known.has_value() == known_mask.has_value(), "cached_sample: pass both known and known_mask, or "
              "neither");
  if (!known.has_value()) return;
  TORCH_CHECK(known->scalar_type() == at::kByte && known->sizes() == u.sizes(), "cached_sample: known must be "
              "uint8 ", u.sizes(), " (the uniforms' shape), got ", known->scalar_type(), " ", known->sizes());
  TORCH_CHECK(known_mask->scalar_type() == at::kBool && known_mask->sizes() == u.sizes(), "cached_sample: "
              "known_mask must be bool ", u.sizes(), ", got ", known_mask->scalar_type(), " ", known_mask->sizes());
  TORCH_CHECK(known->device() == u.device() && known_mask->device() == u.device(),
              "cached_sample: known and known_mask must be on the uniforms' device");
}

at::Tensor pack_live_taps(const at::Tensor& weight) {
  const int64_t cout = weight.size(0), p = weight.size(2) / 2;
  auto wt = weight.permute({2, 3, 1, 0});  // [ky, kx, cin, cout]
  auto above = wt.slice(0, 0, p).reshape({-1, cout});
  auto centre = wt.select(0, p).slice(0, 0, p + 1).reshape({-1, cout});
  return at::cat({above, centre}, 0).contiguous();
}

namespace {

// out[n][co] (+)= sum_k in[n][k] * w[k][co] for a chunk of images, adding the terms in k order to the value
// already in out.
// axpy form: each weight row is loaded once per chunk; zero inputs (half of all ReLU outputs) are skipped, since
// adding 0*w would not change the sum.
template <typename T>
inline __attribute__((always_inline)) void dense_axpy(const T* in, int64_t K, int64_t n0, int64_t n1, const T* w,
                                                      int64_t cout, int64_t co0, T* out) {
  for (int64_t k = 0; k < K; ++k) {
    const T* wk = w + k * cout;
    for (int64_t n = n0; n < n1; ++n) {
      const T a = in[n * K + k];
      if (a == T(0)) continue;
      T* o = out + n * cout;
      for (int64_t co = co0; co < cout; ++co) o[co] += a * wk[co];
    }
  }
}

__attribute__((target_clones("avx2", "default"))) void dense_axpy_f32(const float* in, int64_t K, int64_t n0,
                                                                      int64_t n1, const float* w, int64_t cout,
                                                                      int64_t co0, float* out) {
  dense_axpy(in, K, n0, n1, w, cout, co0, out);
}

// AVX2+FMA register tile: 4 images x 16 outputs held in 8 registers over all K (each weight vector serves 4
// images, each broadcast input 16 outputs). No zero skipping: a branch per input would cost more than the FMA.
__attribute__((target("avx2,fma"))) void dense_tiles_f32(const float* in, int64_t K, int64_t nfull,
                                                         const float* w, int64_t cout, int64_t cfull, float* out) {
  for (int64_t n = 0; n < nfull; n += 4) {
    const float* i0 = in + n * K;
    for (int64_t co = 0; co < cfull; co += 16) {
      float* o = out + n * cout + co;
      __m256 a00 = _mm256_loadu_ps(o), a01 = _mm256_loadu_ps(o + 8);
      __m256 a10 = _mm256_loadu_ps(o + cout), a11 = _mm256_loadu_ps(o + cout + 8);
      __m256 a20 = _mm256_loadu_ps(o + 2 * cout), a21 = _mm256_loadu_ps(o + 2 * cout + 8);
      __m256 a30 = _mm256_loadu_ps(o + 3 * cout), a31 = _mm256_loadu_ps(o + 3 * cout + 8);
      const float* wk = w + co;
      for (int64_t k = 0; k < K; ++k, wk += cout) {
        const __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8);
        __m256 x = _mm256_broadcast_ss(i0 + k);
        a00 = _mm256_fmadd_ps(x, w0, a00);
        a01 = _mm256_fmadd_ps(x, w1, a01);
        x = _mm256_broadcast_ss(i0 + K + k);
        a10 = _mm256_fmadd_ps(x, w0, a10);
        a11 = _mm256_fmadd_ps(x, w1, a11);
        x = _mm256_broadcast_ss(i0 + 2 * K + k);
        a20 = _mm256_fmadd_ps(x, w0, a20);
        a21 = _mm256_fmadd_ps(x, w1, a21);
        x = _mm256_broadcast_ss(i0 + 3 * K + k);
        a30 = _mm256_fmadd_ps(x, w0, a30);
        a31 = _mm256_fmadd_ps(x, w1, a31);
      }
      _mm256_storeu_ps(o, a00);
      _mm256_storeu_ps(o + 8, a01);
      _mm256_storeu_ps(o + cout, a10);
      _mm256_storeu_ps(o + cout + 8, a11);
      _mm256_storeu_ps(o + 2 * cout, a20);
      _mm256_storeu_ps(o + 2 * cout + 8, a21);
      _mm256_storeu_ps(o + 3 * cout, a30);
      _mm256_storeu_ps(o + 3 * cout + 8, a31);
    }
  }
}

bool have_fma() {
  static const bool yes = [] {
    __builtin_cpu_init();  // may run before libgcc's own constructor has filled in the CPU model
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}

// Tiles cover images [0, nfull) x outputs [0, cfull); axpy does the rest (everything without AVX2/FMA).
void dense(const float* in, int64_t K, int64_t nimg, const float* w, int64_t cout, float* out) {
  const bool tiles = have_fma();
  const int64_t nfull = tiles ? nimg / 4 * 4 : 0, cfull = tiles ? cout / 16 * 16 : 0;
  dense_tiles_f32(in, K, nfull, w, cout, cfull, out);
  dense_axpy_f32(in, K, 0, nfull, w, cout, cfull, out);
  dense_axpy_f32(in, K, nfull, nimg, w, cout, 0, out);
}

__attribute__((target_clones("avx2", "default"))) void dense(const double* in, int64_t K, int64_t nimg,
                                                             const double* w, int64_t cout, double* out) {
  dense_axpy(in, K, 0, nimg, w, cout, 0, out);
}

template <typename T>
struct Layer {
  int64_t cin = 0, cout = 0, k = 1, p = 0, rows = 1, K = 0;
  at::Tensor w;     // packed live taps [K][cout]
  at::Tensor bias;  // [cout]
  at::Tensor buf;   // spatial layers: [N][rows][W + 2p][cin]
};

template <typename T>
Layer<T> make_layer(const at::Tensor& weight, const at::Tensor& bias, int64_t n, int64_t width) {
  Layer<T> L;
  L.cout = weight.size(0);
  L.cin = weight.size(1);
  L.k = weight.size(2);
  L.p = L.k / 2;
  L.rows = L.p + 1;
  L.w = pack_live_taps(weight);
  L.K = L.w.size(0);
  L.bias = bias.contiguous();
  if (L.k > 1) L.buf = at::zeros({n, L.rows, width + 2 * L.p, L.cin}, weight.options());
  return L;
}

template <typename T>
void gather(const Layer<T>& L, int64_t n, int64_t i, int64_t j, T* patch) {
  const int64_t wp = L.buf.size(2);
  const T* base = L.buf.template data_ptr<T>() + n * L.rows * wp * L.cin;
  T* dst = patch;
  for (int64_t r = 0; r < L.rows; ++r) {
    const int64_t row = i - L.p + r;  // rows above the image are zero: their slots were never written
    const int64_t slot = ((row % L.rows) + L.rows) % L.rows;
    const int64_t cols = (r < L.p ? L.k : L.p + 1) * L.cin;
    if (row < 0) {
      std::fill(dst, dst + cols, T(0));
    } else {
      std::memcpy(dst, base + (slot * wp + j) * L.cin, cols * sizeof(T));
    }
    dst += cols;
  }
}

template <typename T>
void store(Layer<T>& L, int64_t n, int64_t i, int64_t j, const T* x) {
  const int64_t wp = L.buf.size(2);
  T* dst = L.buf.template data_ptr<T>() + ((n * L.rows + i % L.rows) * wp + j + L.p) * L.cin;
  std::memcpy(dst, x, L.cin * sizeof(T));
}

template <typename T>
void init_rows(T* out, const at::Tensor& bias, const T* cond, int64_t nimg, int64_t cout, int64_t cond_stride) {
  const T* b = bias.template data_ptr<T>();
  for (int64_t n = 0; n < nimg; ++n) {
    for (int64_t co = 0; co < cout; ++co) out[n * cout + co] = b[co] + (cond ? cond[n * cond_stride + co] : T(0));
  }
}

template <typename T>
at::Tensor cached_sample_cpu_impl(const at::Tensor& u, const std::vector<at::Tensor>& weights,
                                  const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds,
                                  int64_t C, double temperature, int64_t blocks,
                                  const c10::optional<at::Tensor>& known, const c10::optional<at::Tensor>& known_mask) {
  const int64_t N = u.size(0), H = u.size(2), W = u.size(3);
  std::vector<Layer<T>> layers;
  for (size_t l = 0; l < weights.size(); ++l) {
    layers.push_back(make_layer<T>(weights[l].contiguous(), biases[l], N, W));
  }
  Layer<T>& first = layers[0];
  const Layer<T>& hh = layers[layers.size() - 2];
  // head_out per colour: rows v*C + c of the last layer -> [C][K][256]
  const Layer<T>& ho = layers.back();
  std::vector<at::Tensor> head_c;
  for (int64_t c = 0; c < C; ++c) head_c.push_back(ho.w.slice(1, c, ho.w.size(1), C).contiguous());
  auto head_bias = ho.bias.view({256, C}).t().contiguous();  // [C][256]
  std::vector<at::Tensor> cond_c;
  for (const auto& x : conds) cond_c.push_back(x.contiguous());
  const int64_t h2 = first.cout;

  auto image = at::zeros({N, C, H, W}, u.options().dtype(at::kByte));
  auto logits = at::empty({N, 256}, weights[0].options());
  uint8_t* img = image.data_ptr<uint8_t>();
  const float* up = u.data_ptr<float>();
  const uint8_t* kval = known ? known->data_ptr<uint8_t>() : nullptr;
  const bool* kmask = known ? known_mask->data_ptr<bool>() : nullptr;

  for (int64_t i = 0; i < H; ++i) {
    for (int64_t j = 0; j < W; ++j) {
      for (int64_t c = 0; c < C; ++c) {
        at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
          const int64_t m = n1 - n0;
          int64_t maxK = 0, maxC = 0;
          for (const auto& L : layers) {
            maxK = std::max(maxK, L.K);
            maxC = std::max(maxC, L.cout);
          }
          std::vector<T> a(m * std::max(maxK, maxC)), x(m * h2), y(m * maxC), z(m * maxC);
          // image pixel (normalised) into the first layer's ring buffer
          for (int64_t n = n0; n < n1; ++n) {
            if (j == 0 && c == 0) {
              for (auto& L : layers) {
                if (L.k > 1) {
                  const int64_t wp = L.buf.size(2);
                  T* s = L.buf.template data_ptr<T>() + (n * L.rows + i % L.rows) * wp * L.cin;
                  std::fill(s, s + wp * L.cin, T(0));
                }
              }
            }
            T pix[3];
            for (int64_t cc = 0; cc < C; ++cc) pix[cc] = to_unit<T>(img[((n * C + cc) * H + i) * W + j]);
            store(first, n, i, j, pix);
            gather(first, n, i, j, a.data() + (n - n0) * first.K);
          }
          const T* cf = cond_c.empty() ? nullptr : cond_c[0].template data_ptr<T>() + n0 * h2;
          init_rows(x.data(), first.bias, cf, m, h2, h2);
          dense(a.data(), first.K, m, first.w.template data_ptr<T>(), h2, x.data());
          for (int64_t b = 0; b < blocks; ++b) {
            Layer<T>& lin = layers[1 + 3 * b];
            Layer<T>& mid = layers[2 + 3 * b];
            Layer<T>& lout = layers[3 + 3 * b];
            const int64_t h = lin.cout;
            for (int64_t q = 0; q < m * h2; ++q) a[q] = std::max(x[q], T(0));
            init_rows(y.data(), lin.bias, static_cast<const T*>(nullptr), m, h, 0);
            dense(a.data(), h2, m, lin.w.template data_ptr<T>(), h, y.data());
            for (int64_t n = n0; n < n1; ++n) {
              T* yn = y.data() + (n - n0) * h;
              for (int64_t q = 0; q < h; ++q) yn[q] = std::max(yn[q], T(0));
              store(mid, n, i, j, yn);
              gather(mid, n, i, j, a.data() + (n - n0) * mid.K);
            }
            const T* cb = cond_c.empty() ? nullptr : cond_c[1 + b].template data_ptr<T>() + n0 * h;
            init_rows(z.data(), mid.bias, cb, m, h, h);
            dense(a.data(), mid.K, m, mid.w.template data_ptr<T>(), h, z.data());
            for (int64_t q = 0; q < m * h; ++q) z[q] = std::max(z[q], T(0));
            // residual: x += conv_out(z) + bias
            const T* bo = lout.bias.template data_ptr<T>();
            for (int64_t n = 0; n < m; ++n)
              for (int64_t q = 0; q < h2; ++q) y[n * h2 + q] = bo[q];
            dense(z.data(), h, m, lout.w.template data_ptr<T>(), h2, y.data());
            for (int64_t q = 0; q < m * h2; ++q) x[q] += y[q];
          }
          for (int64_t q = 0; q < m * h2; ++q) a[q] = std::max(x[q], T(0));
          init_rows(y.data(), hh.bias, static_cast<const T*>(nullptr), m, hh.cout, 0);
          dense(a.data(), h2, m, hh.w.template data_ptr<T>(), hh.cout, y.data());
          for (int64_t q = 0; q < m * hh.cout; ++q) y[q] = std::max(y[q], T(0));
          T* out = logits.template data_ptr<T>() + n0 * 256;
          const T* hb = head_bias.template data_ptr<T>() + c * 256;
          for (int64_t n = 0; n < m; ++n) std::copy(hb, hb + 256, out + n * 256);
          dense(y.data(), hh.cout, m, head_c[c].template data_ptr<T>(), 256, out);
        });
        const T* lg = logits.template data_ptr<T>();
        for (int64_t n = 0; n < N; ++n) {
          const int64_t at = ((n * C + c) * H + i) * W + j;
          img[at] = kmask && kmask[at] ? kval[at]
                                       : static_cast<uint8_t>(draw::draw_value(lg + n * 256, 1, temperature, up[at]));
        }
        if (c == C - 1) {  // later pixels read this one's final value from the first layer's buffer
          for (int64_t n = 0; n < N; ++n) {
            T pix[3];
            for (int64_t cc = 0; cc < C; ++cc) pix[cc] = to_unit<T>(img[((n * C + cc) * H + i) * W + j]);
            store(first, n, i, j, pix);
          }
        }
      }
    }
  }
  return image;
}

at::Tensor cached_sample_cpu(const at::Tensor& u, at::TensorList weights_, at::TensorList biases_,
                             at::TensorList conds_, int64_t channels, double temperature,
                             const c10::optional<at::Tensor>& known_, const c10::optional<at::Tensor>& mask_) {
  std::vector<at::Tensor> weights(weights_.begin(), weights_.end()), biases(biases_.begin(), biases_.end()),
      conds(conds_.begin(), conds_.end());
  const int64_t blocks = check_sampler_args(u, weights, biases, conds, channels, temperature);
  auto dtype = weights[0].scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "cached_sample (CPU): weights must be float32 or "
              "float64, got ", dtype);
  check_known(u, known_, mask_);
  auto uc = u.contiguous();
  c10::optional<at::Tensor> known, known_mask;
  if (known_.has_value()) {
    known = known_->contiguous();
    known_mask = mask_->contiguous();
  }
  if (dtype == at::kFloat) {
    return cached_sample_cpu_impl<float>(uc, weights, biases, conds, channels, temperature, blocks, known,
                                         known_mask);
  }
  return cached_sample_cpu_impl<double>(uc, weights, biases, conds, channels, temperature, blocks, known,
                                        known_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(pixelcnn, CPU, m) { m.impl("cached_sample", &cached_sample_cpu); }

}  // namespace pixelcnn
