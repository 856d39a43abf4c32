// Gated cached sampler (docs/DESIGN.md §3, §5): the argument checks every back-end shares, and the CPU
// implementation of pixelcnn::gated_cached_sample.
//
// Per row i (row i-1 complete), the vertical stack of every layer for all W positions at once: one product with
// M = images x W rows per layer from the ring of its input rows (the image for layer 0, layer b-1's gated vertical
// output after), keeping link(v_pre) + embed_h per layer and position. Per sub-pixel only the horizontal stack:
// the 1 x (p+1) conv over its input row (read in place: columns j-p..j are contiguous), the stored link term, the
// gate, proj and the residual, then the head, the draw (draw.h) and the write into the image ring. Products:
// gemm.h on the ISA cpu_isa.h selects. Stale ring values from an older row sit where the weights are exactly 0.
//
// Threads: from two images on, each thread samples its own images with no synchronisation. A single image on two
// threads or more runs as a pipeline of two threads: thread 1 computes the vertical stacks a few columns behind the
// pixels thread 0 draws (a hand-over per pixel through two atomic counters), so at batch 1 the row work and the
// sub-pixels overlap. The sums do not depend on the split, so neither do the images.
#include "gated_sampler.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cpu_isa.h"
#include "cpu_sampler.h"
#include "draw.h"
#include "gemm.h"
#include "pixels.h"
#include "sampler.h"

namespace pixelcnn {

namespace {

// True when weight [Cout, Cin, k, k] is zero at every tap outside rows [r0, r1] x columns [c0, c1] (0-based).
// Reduced to the k x k taps first: a masked_select over the whole weight cost ~0.5 ms a weight, more than sampling a
// small image.
bool zero_outside(const at::Tensor& weight, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  auto used = weight.ne(0).flatten(0, 1).any(0);  // [k, k]: taps with a non-zero (or NaN) weight
  used.slice(0, r0, r1 + 1).slice(1, c0, c1 + 1).fill_(false);
  return !used.any().item<bool>();
}

}  // namespace

GatedShape check_gated_sampler_args(const at::Tensor& u, const std::vector<at::Tensor>& weights,
                                    const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds,
                                    int64_t channels, double temperature) {
  const char* op = "gated_cached_sample";
  TORCH_CHECK(u.dim() == 4 && u.scalar_type() == at::kFloat, op, ": uniforms must be float32 [N, C, H, W], got ",
              u.scalar_type(), " ", u.sizes());
  TORCH_CHECK(channels == 1 || channels == 3, op, ": channels must be 1 or 3, got ", channels);
  TORCH_CHECK(u.size(1) == channels, op, ": uniforms have ", u.size(1), " channels, model has ", channels);
  TORCH_CHECK(temperature > 0, op, ": temperature must be > 0, got ", temperature);
  TORCH_CHECK(weights.size() >= 6 && (weights.size() - 2) % 4 == 0 && biases.size() == weights.size(), op,
              ": expected 4 weights per layer (v_conv, h_conv, link, proj) + 2 (head) and as many biases, got ",
              weights.size(), " and ", biases.size());
  GatedShape s;
  s.layers = static_cast<int64_t>(weights.size() - 2) / 4;
  s.hidden = weights[3].size(0);
  s.head_hidden = weights[weights.size() - 2].size(0);
  s.k0 = weights[0].size(2);
  s.k = s.layers > 1 ? weights[4].size(2) : s.k0;
  s.conditional = !conds.empty();
  const int64_t h = s.hidden, h2 = 2 * s.hidden;
  for (size_t l = 0; l < weights.size(); ++l) {
    const auto& w = weights[l];
    TORCH_CHECK(w.dim() == 4 && w.size(2) == w.size(3) && w.size(2) % 2 == 1, op, ": weight ", l,
                " must be [Cout, Cin, k, k] with odd k, got ", w.sizes());
    TORCH_CHECK(w.scalar_type() == weights[0].scalar_type() && w.device() == u.device(), op,
                ": all weights must share dtype and the uniforms' device");
    TORCH_CHECK(biases[l].dim() == 1 && biases[l].size(0) == w.size(0) &&
                    biases[l].scalar_type() == weights[0].scalar_type() && biases[l].device() == u.device(),
                op, ": bias ", l, " must be [", w.size(0), "] of the weights' dtype and device, got ",
                biases[l].scalar_type(), " ", biases[l].sizes(), " on ", biases[l].device());
  }
  for (int64_t l = 0; l < s.layers; ++l) {
    const int64_t cin = l == 0 ? channels : h, k = l == 0 ? s.k0 : s.k, p = k / 2;
    const std::vector<int64_t> v{h2, cin, k, k}, link{h2, h2, 1, 1}, proj{h, h, 1, 1};
    const auto& wv = weights[4 * l];
    const auto& wh = weights[4 * l + 1];
    TORCH_CHECK(wv.sizes() == at::IntArrayRef(v) && wh.sizes() == at::IntArrayRef(v), op, ": layer ", l,
                " v_conv and h_conv must be ", at::IntArrayRef(v), ", got ", wv.sizes(), " and ", wh.sizes());
    TORCH_CHECK(weights[4 * l + 2].sizes() == at::IntArrayRef(link), op, ": layer ", l, " link must be ",
                at::IntArrayRef(link), ", got ", weights[4 * l + 2].sizes());
    TORCH_CHECK(weights[4 * l + 3].sizes() == at::IntArrayRef(proj), op, ": layer ", l, " proj must be ",
                at::IntArrayRef(proj), ", got ", weights[4 * l + 3].sizes());
    // the vertical conv reads rows above (and, after layer 0, the centre row: the input there is the layer below's
    // vertical output, which carries only rows above); the horizontal conv the centre row up to the centre
    TORCH_CHECK(zero_outside(wv, 0, l == 0 ? p - 1 : p, 0, k - 1), op, ": layer ", l, " v_conv must be masked (mask ",
                l == 0 ? "vA" : "vB", "): it has taps below its live rows");
    TORCH_CHECK(zero_outside(wh, p, p, 0, p), op, ": layer ", l, " h_conv must be masked (mask ", l == 0 ? "hA" : "hB",
                "): it has taps outside the centre row's left half");
  }
  const auto& head_hidden = weights[weights.size() - 2];
  const auto& head_out = weights.back();
  TORCH_CHECK(head_hidden.size(1) == h && head_hidden.size(2) == 1, op, ": head_hidden must be [hh, ", h,
              ", 1, 1], got ", head_hidden.sizes());
  TORCH_CHECK(head_out.size(0) == 256 * channels && head_out.size(1) == s.head_hidden && head_out.size(2) == 1, op,
              ": head_out must be [", 256 * channels, ", ", s.head_hidden, ", 1, 1], got ", head_out.sizes());
  TORCH_CHECK(conds.empty() || conds.size() == static_cast<size_t>(2 * s.layers), op, ": expected 0 or ", 2 * s.layers,
              " class-vector tensors (embed_v, embed_h per layer), got ", conds.size());
  for (size_t i = 0; i < conds.size(); ++i) {
    TORCH_CHECK(conds[i].dim() == 2 && conds[i].size(0) == u.size(0) && conds[i].size(1) == h2 &&
                    conds[i].scalar_type() == weights[0].scalar_type() && conds[i].device() == u.device(),
                op, ": class vector ", i, " must be [", u.size(0), ", ", h2, "] of the weights' dtype and device, got ",
                conds[i].scalar_type(), " ", conds[i].sizes());
  }
  return s;
}

namespace {

using cpu_sampler::Buffer;
using cpu_sampler::Layer;
using cpu_sampler::Share;

// Weight [Cout, Cin, k, k] restricted to kernel rows [r0, r1) and columns [0, c1) as the [K][Cout] matrix of its
// taps, K = (r1 - r0) * c1 * Cin, each tap's Cin inputs in order: a ring row laid out [W + 2p][Cin] gives the matching
// input vector of one kernel row by one contiguous copy (and the horizontal conv's whole input in place).
at::Tensor tap_matrix(const at::Tensor& weight, int64_t r0, int64_t r1, int64_t c1) {
  return weight.permute({2, 3, 1, 0}).slice(0, r0, r1).slice(1, 0, c1).reshape({-1, weight.size(0)}).contiguous();
}

// tanh(a) * sigmoid(b) of a gate's pre-activation halves, in double from exp_rn (draw.h) of arguments <= 0 only (no
// overflow, no libm call): with ea = exp(-2|a|) and eb = exp(-|b|), tanh|a| = (1 - ea) / (1 + ea) and sigmoid(b) =
// 1 / (1 + eb) for b >= 0, eb / (1 + eb) below, one division for both. Within a few ulp of torch's, like another
// summation order; -ffp-contract=off keeps every ISA's build on the same bits. Written as loops without branches
// (the choices as selects and an exact 0/1 blend) so that GCC vectorises all of them: 3 ns a gate on AVX-512
// against 25 for the form with branches.
// out[r][q] = gate(z[r][q], z[r][h + q]) for `count` rows (row strides ldz, ldo); e: 3h doubles of scratch.
template <typename T>
inline void gate_rows_any(const T* z, int64_t ldz, int64_t count, int64_t h, T* out, int64_t ldo, double* e) {
  for (int64_t r = 0; r < count; ++r, z += ldz, out += ldo) {
    for (int64_t q = 0; q < h; ++q) {
      const double x = -2.0 * std::fabs(static_cast<double>(z[q]));
      e[q] = x > draw::kExpMin ? x : draw::kExpMin;
    }
    for (int64_t q = 0; q < h; ++q) {
      const double y = static_cast<double>(z[h + q]);
      const double x = -std::fabs(y);
      e[h + q] = x > draw::kExpMin ? x : draw::kExpMin;
      e[2 * h + q] = y < 0 ? 1.0 : 0.0;  // the numerator below blends to exactly eb here, 1 elsewhere
    }
    for (int64_t q = 0; q < 2 * h; ++q) e[q] = draw::exp_rn_unchecked(e[q]);
    for (int64_t q = 0; q < h; ++q) {
      const double ea = e[q], eb = e[h + q];
      const double below = e[2 * h + q];
      const double g = ((1.0 - ea) * (below * eb + (1.0 - below))) / ((1.0 + ea) * (1.0 + eb));
      out[q] = static_cast<T>(std::copysign(g, static_cast<double>(z[q])));
    }
  }
}
#if PIXELCNN_X86
template <typename T>
__attribute__((target("avx2"), flatten)) void gate_rows_avx2(const T* z, int64_t ldz, int64_t count, int64_t h, T* out,
                                                             int64_t ldo, double* e) {
  gate_rows_any(z, ldz, count, h, out, ldo, e);
}
template <typename T>
__attribute__((target("avx512f"), flatten)) void gate_rows_avx512(const T* z, int64_t ldz, int64_t count, int64_t h,
                                                                  T* out, int64_t ldo, double* e) {
  gate_rows_any(z, ldz, count, h, out, ldo, e);
}
#endif

template <typename T>
void gate_rows(cpu::Isa isa, const T* z, int64_t ldz, int64_t count, int64_t h, T* out, int64_t ldo) {
  thread_local std::vector<double> e;
  if (static_cast<int64_t>(e.size()) < 3 * h) e.resize(3 * h);
#if PIXELCNN_X86
  if (isa == cpu::Isa::kAvx512) return gate_rows_avx512(z, ldz, count, h, out, ldo, e.data());
  if (isa == cpu::Isa::kAvx2) return gate_rows_avx2(z, ldz, count, h, out, ldo, e.data());
#else
  (void)isa;
#endif
  gate_rows_any(z, ldz, count, h, out, ldo, e.data());
}

// A gated layer's four products. Rings: v (layers b >= 1) holds the rows of layer b-1's gated vertical output,
// [N][p+1][W+2p][h]; layer 0's v ring is the image ring [N][p0+1][W+2p0][C], which its h conv reads too. h (b >= 1)
// holds row i of layer b-1's horizontal output, [N][1][W+2p][h].
template <typename T>
struct GatedLayer {
  Layer<T> v, h, link, proj;
  int64_t v_rows = 0;  // kernel rows the vertical conv reads: p (layer 0, rows above) or p + 1 (and the centre row)
};

// Scratch of one thread: the row phase's patches and products for up to rows = images x W positions, the sub-pixel
// phase's activations for up to `images` images.
template <typename T>
struct Scratch {
  Buffer<T> patch, pre, link;                  // [rows][Kv], [rows][2h padded], [rows][2h padded]
  Buffer<T> hpre, g, x, y, r, hidden, logits;  // [images][...], row strides ld2 (2h), ld (h), ldhh, 256
};

template <typename T>
class GatedSampler {
 public:
  GatedSampler(const at::Tensor& u, const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
               const std::vector<at::Tensor>& conds, int64_t channels, double temperature, const GatedShape& shape,
               const c10::optional<at::Tensor>& known, const c10::optional<at::Tensor>& known_mask, cpu::Isa isa)
      : isa_(isa),
        N_(u.size(0)),
        C_(channels),
        H_(u.size(2)),
        W_(u.size(3)),
        L_(shape.layers),
        h_(shape.hidden),
        temperature_(temperature),
        uniforms_(u.data_ptr<float>()),
        known_(known ? known->data_ptr<uint8_t>() : nullptr),
        known_mask_(known ? known_mask->data_ptr<bool>() : nullptr) {
    const int64_t panel = gemm::panel_width(isa, sizeof(T));
    for (int64_t b = 0; b < L_; ++b) {
      auto wv = weights[4 * b].contiguous(), wh = weights[4 * b + 1].contiguous();
      const int64_t k = wv.size(2), p = k / 2;
      GatedLayer<T> G;
      G.v_rows = b == 0 ? p : p + 1;
      // layer 0's vertical ring is the image ring, one row taller than it reads (row i is being drawn)
      G.v = cpu_sampler::make_layer<T>(wv, biases[4 * b].contiguous(), tap_matrix(wv, 0, G.v_rows, k), N_, W_, panel,
                                       p + 1);
      G.h = cpu_sampler::make_layer<T>(wh, biases[4 * b + 1].contiguous(), tap_matrix(wh, p, p + 1, p + 1), N_, W_,
                                       panel, b == 0 ? 0 : 1);
      for (int64_t d = 2; d < 4; ++d) {
        auto w = weights[4 * b + d].contiguous();
        auto& dense = d == 2 ? G.link : G.proj;
        dense = cpu_sampler::make_layer<T>(w, biases[4 * b + d].contiguous(), tap_matrix(w, 0, 1, 1), N_, W_, panel, 0);
      }
      layers_.push_back(std::move(G));
    }
    auto whh = weights[weights.size() - 2].contiguous();
    head_hidden_ = cpu_sampler::make_layer<T>(whh, biases[biases.size() - 2].contiguous(), tap_matrix(whh, 0, 1, 1), N_,
                                              W_, panel, 0);
    // head_out per colour: its outputs v*C + c for colour c, so that one product gives that colour's 256 logits
    auto wo = weights.back().contiguous();
    auto head = tap_matrix(wo, 0, 1, 1);
    auto head_bias = biases.back().contiguous().view({256, C_}).t().contiguous();  // [C][256]
    for (int64_t c = 0; c < C_; ++c) {
      head_out_.push_back(cpu_sampler::make_layer<T>(wo, head_bias[c], head.slice(1, c, head.size(1), C_).contiguous(),
                                                     N_, W_, panel, 0));
    }
    for (const auto& x : conds) conds_.push_back(x.contiguous());
    ld2_ = layers_[0].link.cols();
    ld_ = layers_[0].proj.cols();
    link_state_ = Buffer<T>(N_ * L_ * W_ * ld2_);
    image_ = at::zeros({N_, C_, H_, W_}, u.options().dtype(at::kByte));
    pixels_ = image_.data_ptr<uint8_t>();
  }

  at::Tensor run() {
    const int threads = at::in_parallel_region() ? 1 : std::max(1, at::get_num_threads());
    // two images or more: min(threads, N) threads, each with its own images (a pipeline takes two threads, so
    // below one image per thread it would win only at batch 1)
    const bool by_images = N_ >= std::min(threads, 2);
    const bool pipeline = !by_images && N_ * W_ * row_multiply_adds() >= kPipelineRowMacs;
    const int team = static_cast<int>(by_images ? std::min<int64_t>(threads, N_) : pipeline ? 2 : 1);
    // all allocation before the threads start: a scratch per thread, sized for its images (split by images) or for
    // all of them (a pipeline)
    const int64_t images = by_images ? (N_ + team - 1) / team : N_;
    std::vector<Scratch<T>> scratch;
    for (int t = 0; t < team; ++t) scratch.push_back(make_scratch(images));
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (team > 1)
#endif
    {
#ifdef _OPENMP
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
      const int t = 0, nt = 1;
#endif
      if (by_images) {  // shares as allocated, even if the runtime gave fewer threads than asked for
        for (int share = t; share < team; share += nt) {
          sample({N_ * share / team, N_ * (share + 1) / team, 0, 1}, scratch[share]);
        }
      } else if (nt == 1) {
        sample({0, N_, 0, 1}, scratch[0]);
      } else if (t == 0) {
        sample_pixels({0, N_, 0, 2}, scratch[0]);
      } else if (t == 1) {
        sample_stacks({0, N_, 1, 2}, scratch[1]);
      }
    }
    return image_;
  }

 private:
  // One image: thread 1 runs the vertical stacks a few columns behind thread 0's sub-pixels (a pipeline) once a
  // row of them is worth it, 2^18 multiply-adds (some 20 us on one core) against a hand-over per pixel. Splitting each
  // row's stack by columns with a barrier per layer instead ran 3x slower than one thread on this shared 2-core machine
  // (a barrier waits for a descheduled thread; measured at h = 40, 6 blocks, batch 1).
  static constexpr int64_t kPipelineRowMacs = int64_t(1) << 18;
  // Columns a pipelined layer waits for before its product (M = images x columns rows), unless the row is complete.
  static constexpr int64_t kPipelineColumns = 4;

  // Multiply-adds of the row phase per image position (every layer's vertical conv and link).
  int64_t row_multiply_adds() const {
    int64_t total = 0;
    for (const auto& G : layers_) total += G.v.K() * G.v.cout + G.link.K() * G.link.cout;
    return total;
  }

  Scratch<T> make_scratch(int64_t images) const {
    int64_t kv = 0;
    for (const auto& G : layers_) kv = std::max(kv, G.v.K());
    const int64_t rows = images * W_;
    Scratch<T> s;
    s.patch = Buffer<T>(rows * kv);
    s.pre = Buffer<T>(rows * ld2_);
    s.link = Buffer<T>(rows * ld2_);
    s.hpre = Buffer<T>(images * ld2_);
    s.g = Buffer<T>(images * ld_);
    s.x = Buffer<T>(images * ld_);
    s.y = Buffer<T>(images * ld_);
    s.r = Buffer<T>(images * ld_);
    s.hidden = Buffer<T>(images * head_hidden_.cols());
    s.logits = Buffer<T>(images * 256);
    return s;
  }

  // Every row in order: its vertical stack, then its sub-pixels.
  void sample(const Share& s, Scratch<T>& a) {
    for (int64_t i = 0; i < H_; ++i) {
      for (int64_t b = 0; b < L_; ++b) vertical(s, a, b, i, 0, W_);
      for (int64_t j = 0; j < W_; ++j) pixel(s, a, i, j);
    }
  }

  void pixel(const Share& s, Scratch<T>& a, int64_t i, int64_t j) {
    for (int64_t c = 0; c < C_; ++c) subpixel(s, a, i, j, c);
  }

  // Wait until x >= at_least (acquire: what the other thread wrote before it published x is visible).
  static int64_t wait_for(const std::atomic<int64_t>& x, int64_t at_least) {
    int64_t v;
    for (int spins = 0; (v = x.load(std::memory_order_acquire)) < at_least; ++spins) {
      if (spins > 100) std::this_thread::yield();  // the machine may have fewer free cores than threads
    }
    return v;
  }

  // The pipeline's thread 0: the sub-pixels in raster order, each pixel once thread 1 has stacked its position;
  // publishes the pixels drawn (drawn_ = i * W + j + 1 after pixel (i, j)).
  void sample_pixels(const Share& s, Scratch<T>& a) {
    for (int64_t i = 0; i < H_; ++i) {
      for (int64_t j = 0; j < W_; ++j) {
        wait_for(stacked_, i * W_ + j + 1);
        pixel(s, a, i, j);
        drawn_.store(i * W_ + j + 1, std::memory_order_release);
      }
    }
  }

  // The pipeline's thread 1: row by row, each layer's vertical stack as far as its inputs are final (layer 0 at
  // column w reads image row i-1 up to column w + p0, layer b the output of layer b-1 up to w + p), kPipelineColumns
  // at a time; publishes the positions stacked in every layer (stacked_ = i * W + columns). Thread 0 is then
  // past every column this writes of the link state (the single-row state of the row before) and image ring rows
  // are final before they are read. Thread 0 stays on row i until thread 1 has all of it, so neither laps the other.
  void sample_stacks(const Share& s, Scratch<T>& a) {
    std::vector<int64_t> done(L_);
    for (int64_t i = 0; i < H_; ++i) {
      std::fill(done.begin(), done.end(), 0);
      int64_t seen = 0;  // drawn_ as last read
      while (done[L_ - 1] < W_) {
        const int64_t above = i == 0 ? W_ : std::clamp<int64_t>(seen - (i - 1) * W_, 0, W_);
        bool progressed = false;
        for (int64_t b = 0; b < L_; ++b) {
          const int64_t below = b == 0 ? above : done[b - 1], reach = b == 0 ? layers_[0].v.p : layers_[b].v.p;
          const int64_t ready = below == W_ ? W_ : std::max<int64_t>(0, below - reach);
          if (ready == W_ ? ready > done[b] : ready - done[b] >= kPipelineColumns) {
            vertical(s, a, b, i, done[b], ready);
            done[b] = ready;
            progressed = true;
          }
        }
        if (progressed) {
          stacked_.store(i * W_ + done[L_ - 1], std::memory_order_release);
        } else {
          seen = wait_for(drawn_, seen + 1);
        }
      }
    }
  }

  // Layer b's vertical stack at row i, columns [w0, w1), of every image of the share, as one product with
  // M = images * columns rows: v_pre = v_conv + bias + embed_v; keeps link(v_pre) + link bias + embed_h + h_conv
  // bias in the link state (the sub-pixels' start) and stores gate(v_pre) into layer b + 1's vertical ring.
  void vertical(const Share& s, Scratch<T>& a, int64_t b, int64_t i, int64_t w0, int64_t w1) {
    GatedLayer<T>& G = layers_[b];
    Layer<T>& v = G.v;
    const int64_t cols = w1 - w0, M = s.images() * cols, kv = v.K(), row_len = v.k * v.cin;
    if (M == 0) return;
    const int64_t top = i - v.p;  // first input row the conv reads (layer 0: p rows above; later: p above and row i)
    const T* ev = conds_.empty() ? nullptr : conds_[2 * b].template data_ptr<T>();
    const T* eh = conds_.empty() ? nullptr : conds_[2 * b + 1].template data_ptr<T>();
    for (int64_t n = s.n0; n < s.n1; ++n) {
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t m = (n - s.n0) * cols + (w - w0);
        T* dst = a.patch.data() + m * kv;
        for (int64_t r = 0; r < G.v_rows; ++r) {
          const int64_t row = top + r;
          if (row < 0) {
            std::fill(dst + r * row_len, dst + (r + 1) * row_len, T(0));
          } else {
            std::memcpy(dst + r * row_len, v.at(n, row, w - v.p), row_len * sizeof(T));
          }
        }
        T* pre = a.pre.data() + m * ld2_;
        T* link = a.link.data() + m * ld2_;
        for (int64_t q = 0; q < ld2_; ++q) {
          pre[q] = v.bias.data()[q];
          link[q] = G.link.bias.data()[q] + G.h.bias.data()[q];
        }
        if (ev) {
          for (int64_t q = 0; q < 2 * h_; ++q) {
            pre[q] = pre[q] + ev[n * 2 * h_ + q];
            link[q] = link[q] + eh[n * 2 * h_ + q];
          }
        }
      }
    }
    gemm::multiply_add(isa_, a.patch.data(), kv, M, v.w, 0, v.w.count, a.pre.data(), ld2_);
    gemm::multiply_add(isa_, a.pre.data(), ld2_, M, G.link.w, 0, G.link.w.count, a.link.data(), ld2_);
    for (int64_t n = s.n0; n < s.n1; ++n) {
      const int64_t m0 = (n - s.n0) * cols;
      std::memcpy(link_state(n, b, w0), a.link.data() + m0 * ld2_, cols * ld2_ * sizeof(T));
      if (b + 1 < L_) {
        Layer<T>& next = layers_[b + 1].v;
        gate_rows(isa_, a.pre.data() + m0 * ld2_, ld2_, cols, h_, next.at(n, i, w0), h_);
      }
    }
  }

  T* link_state(int64_t n, int64_t b, int64_t w) { return link_state_.data() + ((n * L_ + b) * W_ + w) * ld2_; }

  // Sub-pixel (i, j, c) of every image of the share: the horizontal stack at (i, j), the head, the draw.
  void subpixel(const Share& s, Scratch<T>& a, int64_t i, int64_t j, int64_t c) {
    const int64_t images = s.images();
    T* x = a.x.data();
    for (int64_t b = 0; b < L_; ++b) {
      GatedLayer<T>& G = layers_[b];
      // the horizontal conv's input: the image ring (layer 0) or layer b's row of the previous layer's output,
      // in which x at (i, j) is stored first; columns j-p..j are contiguous, images a ring apart
      Layer<T>& in = b == 0 ? G.v : G.h;
      if (b > 0) {
        for (int64_t n = s.n0; n < s.n1; ++n) std::memcpy(in.at(n, i, j), x + (n - s.n0) * ld_, h_ * sizeof(T));
      }
      for (int64_t n = s.n0; n < s.n1; ++n) {
        std::memcpy(a.hpre.data() + (n - s.n0) * ld2_, link_state(n, b, j), ld2_ * sizeof(T));
      }
      gemm::multiply_add(isa_, in.at(s.n0, i, j - G.h.p), in.image_stride(), images, G.h.w, 0, G.h.w.count,
                         a.hpre.data(), ld2_);
      gate_rows(isa_, a.hpre.data(), ld2_, images, h_, a.g.data(), ld_);
      T* out = b == 0 ? x : a.y.data();
      for (int64_t r = 0; r < images; ++r) std::copy(G.proj.bias.data(), G.proj.bias.data() + ld_, out + r * ld_);
      gemm::multiply_add(isa_, a.g.data(), ld_, images, G.proj.w, 0, G.proj.w.count, out, ld_);
      if (b > 0) {
        for (int64_t q = 0; q < images * ld_; ++q) x[q] = out[q] + x[q];
      }
    }
    head(a, images, c);
    draw(s, a, i, j, c);
  }

  // logits of colour c = head_out(relu(head_hidden(relu(x)))), outputs v*C + c.
  void head(Scratch<T>& a, int64_t images, int64_t c) {
    const int64_t ldhh = head_hidden_.cols();
    for (int64_t q = 0; q < images * ld_; ++q) a.r.data()[q] = std::max(a.x.data()[q], T(0));
    for (int64_t r = 0; r < images; ++r) {
      std::copy(head_hidden_.bias.data(), head_hidden_.bias.data() + ldhh, a.hidden.data() + r * ldhh);
    }
    gemm::multiply_add(isa_, a.r.data(), ld_, images, head_hidden_.w, 0, head_hidden_.w.count, a.hidden.data(), ldhh);
    for (int64_t q = 0; q < images * ldhh; ++q) a.hidden.data()[q] = std::max(a.hidden.data()[q], T(0));
    Layer<T>& out = head_out_[c];
    for (int64_t r = 0; r < images; ++r) std::copy(out.bias.data(), out.bias.data() + 256, a.logits.data() + r * 256);
    gemm::multiply_add(isa_, a.hidden.data(), ldhh, images, out.w, 0, out.w.count, a.logits.data(), 256);
  }

  // The value of sub-pixel (i, j, c) of every image of the share: copied where known, else drawn (draw.h); then
  // written, normalised, into the image ring, where later sub-pixels read it.
  void draw(const Share& s, const Scratch<T>& a, int64_t i, int64_t j, int64_t c) {
    for (int64_t n = s.n0; n < s.n1; ++n) {
      const int64_t at = ((n * C_ + c) * H_ + i) * W_ + j;
      const T* logits = a.logits.data() + (n - s.n0) * 256;
      pixels_[at] = cpu_sampler::value_of(isa_, logits, temperature_, uniforms_, known_, known_mask_, at);
      layers_[0].v.at(n, i, j)[c] = to_unit<T>(pixels_[at]);
    }
  }

  const cpu::Isa isa_;
  const int64_t N_, C_, H_, W_, L_, h_;
  const double temperature_;
  const float* uniforms_;
  const uint8_t* known_;
  const bool* known_mask_;
  std::vector<GatedLayer<T>> layers_;
  Layer<T> head_hidden_;
  std::vector<Layer<T>> head_out_;  // one per colour
  std::vector<at::Tensor> conds_;
  int64_t ld2_ = 0, ld_ = 0;  // row strides of the 2h pre-activations and the h-wide activations (whole panels)
  Buffer<T> link_state_;      // [N][L][W][ld2]: link(v_pre) + link bias + embed_h + h_conv bias of row i
  std::atomic<int64_t> drawn_{0}, stacked_{0};  // a pipeline's progress (pixels drawn, positions stacked)
  at::Tensor image_;
  uint8_t* pixels_ = nullptr;
};

at::Tensor gated_cached_sample_cpu(const at::Tensor& u, at::TensorList weights_, at::TensorList biases_,
                                   at::TensorList conds_, int64_t channels, double temperature,
                                   const c10::optional<at::Tensor>& known_, const c10::optional<at::Tensor>& mask_) {
  std::vector<at::Tensor> weights(weights_.begin(), weights_.end()), biases(biases_.begin(), biases_.end()),
      conds(conds_.begin(), conds_.end());
  const GatedShape shape = check_gated_sampler_args(u, weights, biases, conds, channels, temperature);
  auto dtype = weights[0].scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "gated_cached_sample (CPU): weights must be float32 or float64, got ", dtype);
  check_known(u, known_, mask_);
  cpu::Isa isa;
  std::string error;
  TORCH_CHECK(cpu::selected_isa(&isa, &error), "gated_cached_sample (CPU): ", error);
  auto uc = u.contiguous();
  c10::optional<at::Tensor> known, known_mask;
  if (known_.has_value()) {
    known = known_->contiguous();
    known_mask = mask_->contiguous();
  }
  if (dtype == at::kFloat) {
    return GatedSampler<float>(uc, weights, biases, conds, channels, temperature, shape, known, known_mask, isa).run();
  }
  return GatedSampler<double>(uc, weights, biases, conds, channels, temperature, shape, known, known_mask, isa).run();
}

}  // namespace

TORCH_LIBRARY_IMPL(pixelcnn, CPU, m) { m.impl("gated_cached_sample", &gated_cached_sample_cpu); }

}  // namespace pixelcnn
