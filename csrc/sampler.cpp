// Cached incremental PixelCNN sampler (docs/DESIGN.md §5), the CPU implementation of pixelcnn::cached_sample.
//
// Layer order in `weights`/`biases` (masked weights [Cout, Cin, k, k]): first conv (mask A, k0 x k0), then per
// residual block (1x1 in, k x k mask B, 1x1 out), then head_hidden (1x1), head_out (1x1, 256*C outputs).
// `conds` is empty (unconditional) or [first [N, 2h], block_0 [N, h], ...].
// Each spatial layer keeps, per image, a ring buffer [rows = k/2+1][W + 2p][Cin] of its input rows; sub-pixel
// (i, j, c) evaluates every layer at (i, j) only, each layer as one product over the batch (gemm.h) on the vector
// ISA cpu_isa.h selects. A ring slot reused by a new row is not cleared: the live taps never read its stale columns
// (right of the centre), and the padding columns are never written.
//
// Threads: with at least as many images as threads, each thread samples its own images from start to end with no
// synchronisation at all. With fewer (batch 1), a team shares every layer's output panels and meets at a barrier
// after each layer (3 per block + 4 per sub-pixel); the team has one thread per kTeamMacsPerThread multiply-adds
// of one sub-pixel step, since a smaller share saves less than its barriers cost (h = 64, 5 blocks: 0.24 M, one
// thread). The sums do not depend on the split, so neither do the images.
#include <ATen/Parallel.h>
#include <torch/library.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "cpu_isa.h"
#include "cpu_sampler.h"
#include "draw.h"
#include "gemm.h"
#include "pixels.h"
#include "sampler.h"

namespace pixelcnn {

int64_t check_sampler_args(const at::Tensor& u, const std::vector<at::Tensor>& weights,
                           const std::vector<at::Tensor>& biases, const std::vector<at::Tensor>& conds,
                           int64_t channels, double temperature) {
  TORCH_CHECK(u.dim() == 4 && u.scalar_type() == at::kFloat,
              "cached_sample: uniforms must be float32 [N, C, H, W], got ", u.scalar_type(), " ", u.sizes());
  TORCH_CHECK(channels == 1 || channels == 3, "cached_sample: channels must be 1 or 3, got ", channels);
  TORCH_CHECK(u.size(1) == channels, "cached_sample: uniforms have ", u.size(1), " channels, model has ", channels);
  TORCH_CHECK(temperature > 0, "cached_sample: temperature must be > 0, got ", temperature);
  TORCH_CHECK(weights.size() >= 3 && (weights.size() - 3) % 3 == 0 && biases.size() == weights.size(),
              "cached_sample: expected 3 + 3*blocks weights and as many biases, got ", weights.size(), " and ",
              biases.size());
  const int64_t blocks = (weights.size() - 3) / 3;
  TORCH_CHECK(conds.empty() || conds.size() == static_cast<size_t>(blocks + 1), "cached_sample: expected 0 or ",
              blocks + 1, " class-vector tensors, got ", conds.size());
  for (size_t l = 0; l < weights.size(); ++l) {
    TORCH_CHECK(weights[l].dim() == 4 && weights[l].size(2) == weights[l].size(3) && weights[l].size(2) % 2 == 1,
                "cached_sample: weight ", l, " must be [Cout, Cin, k, k] with odd k, got ", weights[l].sizes());
    TORCH_CHECK(weights[l].scalar_type() == weights[0].scalar_type() && weights[l].device() == u.device(),
                "cached_sample: all weights must share dtype and the uniforms' device");
    TORCH_CHECK(biases[l].dim() == 1 && biases[l].size(0) == weights[l].size(0) &&
                    biases[l].scalar_type() == weights[0].scalar_type() && biases[l].device() == u.device(),
                "cached_sample: bias ", l, " must be [", weights[l].size(0), "] of the weights' dtype and device, got ",
                biases[l].scalar_type(), " ", biases[l].sizes(), " on ", biases[l].device());
    TORCH_CHECK(weights[l].size(2) == 1 || l == 0 || (l % 3 == 2 && l < weights.size() - 2), "cached_sample: weight ",
                l,
                " must be 1x1 (only the first conv and each block's middle are spatial), "
                "got ",
                weights[l].sizes());
  }
  // each layer reads the one before it, except a block's 1x1 in and head_hidden, which read the residual stream
  const int64_t stream = weights[0].size(0);
  for (size_t l = 0; l < weights.size(); ++l) {
    const bool reads_stream = l % 3 == 1;
    const int64_t inputs = l == 0 ? channels : reads_stream ? stream : weights[l - 1].size(0);
    TORCH_CHECK(weights[l].size(1) == inputs, "cached_sample: weight ", l, " has ", weights[l].size(1),
                " input channels, the layer it reads gives ", inputs);
  }
  for (int64_t b = 0; b < blocks; ++b) {
    TORCH_CHECK(weights[3 + 3 * b].size(0) == stream, "cached_sample: block ", b, " must output ", stream,
                " channels (the residual stream), got ", weights[3 + 3 * b].size(0));
  }
  TORCH_CHECK(weights.back().size(0) == 256 * channels, "cached_sample: last layer must have 256*C outputs");
  for (size_t i = 0; i < conds.size(); ++i) {
    const int64_t width = i == 0 ? stream : weights[2 + 3 * (i - 1)].size(0);
    TORCH_CHECK(conds[i].dim() == 2 && conds[i].size(0) == u.size(0) && conds[i].size(1) == width &&
                    conds[i].scalar_type() == weights[0].scalar_type() && conds[i].device() == u.device(),
                "cached_sample: class vector ", i, " must be [", u.size(0), ", ", width,
                "] of the weights' dtype and device, got ", conds[i].scalar_type(), " ", conds[i].sizes());
  }
  return blocks;
}

void check_known(const at::Tensor& u, const c10::optional<at::Tensor>& known,
                 const c10::optional<at::Tensor>& known_mask) {
  TORCH_CHECK(known.has_value() == known_mask.has_value(), "cached_sample: pass both known and known_mask, or neither");
  if (!known.has_value()) return;
  TORCH_CHECK(known->scalar_type() == at::kByte && known->sizes() == u.sizes(), "cached_sample: known must be uint8 ",
              u.sizes(), " (the uniforms' shape), got ", known->scalar_type(), " ", known->sizes());
  TORCH_CHECK(known_mask->scalar_type() == at::kBool && known_mask->sizes() == u.sizes(),
              "cached_sample: known_mask must be bool ", u.sizes(), ", got ", known_mask->scalar_type(), " ",
              known_mask->sizes());
  TORCH_CHECK(known->device() == u.device() && known_mask->device() == u.device(),
              "cached_sample: known and known_mask must be on the uniforms' device");
}

at::Tensor live_tap_matrix(const at::Tensor& weight) {
  const int64_t cout = weight.size(0), p = weight.size(2) / 2;
  auto wt = weight.permute({2, 3, 1, 0});  // [ky, kx, cin, cout]
  auto above = wt.slice(0, 0, p).reshape({-1, cout});
  auto centre = wt.select(0, p).slice(0, 0, p + 1).reshape({-1, cout});
  return at::cat({above, centre}, 0).contiguous();
}

namespace {

using cpu_sampler::Buffer;
using cpu_sampler::Layer;
using cpu_sampler::Share;
using cpu_sampler::sync;

// Activations of `images` rows at one position (row stride = the layer's padded width): the residual stream x,
// each block's 1x1-in and middle outputs, the update a block adds to x, the head's hidden layer and the logits.
template <typename T>
struct Activations {
  int64_t ldx = 0, ldh = 0;
  Buffer<T> x, in, mid, update, hidden, logits;
};

template <typename T>
class Sampler {
 public:
  Sampler(const at::Tensor& u, const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
          const std::vector<at::Tensor>& conds, int64_t channels, double temperature, int64_t blocks,
          const c10::optional<at::Tensor>& known, const c10::optional<at::Tensor>& known_mask, cpu::Isa isa)
      : isa_(isa),
        N_(u.size(0)),
        C_(channels),
        H_(u.size(2)),
        W_(u.size(3)),
        blocks_(blocks),
        temperature_(temperature),
        uniforms_(u.data_ptr<float>()),
        known_(known ? known->data_ptr<uint8_t>() : nullptr),
        known_mask_(known ? known_mask->data_ptr<bool>() : nullptr) {
    const int64_t panel = gemm::panel_width(isa, sizeof(T));
    for (size_t l = 0; l + 1 < weights.size(); ++l) {
      auto w = weights[l].contiguous();
      const int64_t rows = w.size(2) > 1 ? w.size(2) / 2 + 1 : 0;
      layers_.push_back(cpu_sampler::make_layer<T>(w, biases[l].contiguous(), live_tap_matrix(w), N_, W_, panel, rows));
    }
    // head_out per colour: its outputs v*C + c for colour c, so that one product gives that colour's 256 logits
    auto head = live_tap_matrix(weights.back().contiguous());
    auto head_bias = biases.back().contiguous().view({256, C_}).t().contiguous();  // [C][256]
    for (int64_t c = 0; c < C_; ++c) {
      head_.push_back(cpu_sampler::make_layer<T>(weights.back(), head_bias[c],
                                                 head.slice(1, c, head.size(1), C_).contiguous(), N_, W_, panel, 0));
    }
    for (const auto& x : conds) conds_.push_back(x.contiguous());
    image_ = at::zeros({N_, C_, H_, W_}, u.options().dtype(at::kByte));
    pixels_ = image_.data_ptr<uint8_t>();
    for (const auto& L : layers_) widest_input_ = std::max(widest_input_, std::max(L.K(), L.cols()));
  }

  at::Tensor run() {
    const int threads = at::in_parallel_region() ? 1 : std::max(1, at::get_num_threads());
    const bool by_images = N_ >= threads;
    const int64_t worth = std::max<int64_t>(1, N_ * multiply_adds_per_step() / kTeamMacsPerThread);
    const int team = static_cast<int>(by_images ? std::min<int64_t>(threads, N_) : std::min<int64_t>(threads, worth));
    // all allocation before the threads start: per thread for split images, one shared set for a team
    std::vector<Activations<T>> acts(by_images ? team : 1);
    for (auto& a : acts) a = activations(by_images ? (N_ + team - 1) / team : N_);
    std::vector<Buffer<T>> patches;
    for (int t = 0; t < team; ++t) patches.emplace_back((by_images ? (N_ + team - 1) / team : N_) * widest_input_);
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
          sample({N_ * share / team, N_ * (share + 1) / team, 0, 1}, acts[share], patches[share].data());
        }
      } else {
        sample({0, N_, t, nt}, acts[0], patches[t].data());
      }
    }
    return image_;
  }

 private:
  static constexpr int64_t kTeamMacsPerThread = int64_t(1) << 19;

  // Multiply-adds of one image's sub-pixel step (every layer at one position, one colour's head).
  int64_t multiply_adds_per_step() const {
    int64_t total = head_[0].K() * head_[0].cout;
    for (const auto& L : layers_) total += L.K() * L.cout;
    return total;
  }

  Activations<T> activations(int64_t rows) const {
    Activations<T> a;
    a.ldx = layers_[0].cols();
    a.ldh = a.ldx;
    for (const auto& L : layers_) a.ldh = std::max(a.ldh, L.cols());
    a.x = Buffer<T>(rows * a.ldx);
    a.in = Buffer<T>(rows * a.ldh);
    a.mid = Buffer<T>(rows * a.ldh);
    a.update = Buffer<T>(rows * a.ldh);
    a.hidden = Buffer<T>(rows * a.ldh);
    a.logits = Buffer<T>(rows * 256);
    return a;
  }

  // Every sub-pixel in raster order, for the images and panels of share `s`.
  void sample(const Share& s, Activations<T>& a, T* patch) {
    for (int64_t i = 0; i < H_; ++i) {
      for (int64_t j = 0; j < W_; ++j) {
        for (int64_t c = 0; c < C_; ++c) {
          if (s.t == 0) reveal_pixel(s, i, j);  // the channels drawn so far; later ones are masked out
          sync(s);
          first_layer(s, a, patch, i, j);
          for (int64_t b = 0; b < blocks_; ++b) residual_block(s, a, patch, b, i, j);
          head(s, a, patch, c);
          if (s.t == 0) draw(s, a, i, j, c);
        }
        if (s.t == 0) reveal_pixel(s, i, j);  // later pixels read this one's final value
      }
    }
  }

  // This share's output panels [q0, q1) of a layer.
  static std::pair<int64_t, int64_t> panels(const Layer<T>& L, const Share& s) {
    return {L.w.count * s.t / s.nt, L.w.count * (s.t + 1) / s.nt};
  }

  // out[r][q0*w .. q1*w) = bias (+ class vector of image n0 + r) for this share's panels, the products' start.
  void start_rows(const Share& s, const Layer<T>& L, const at::Tensor* cond, T* out, int64_t ld) const {
    const auto [q0, q1] = panels(L, s);
    const int64_t c0 = q0 * L.w.width, c1 = q1 * L.w.width, real = std::min(c1, L.cout);
    for (int64_t r = 0; r < s.images(); ++r) {
      T* o = out + r * ld;
      std::copy(L.bias.data() + c0, L.bias.data() + c1, o + c0);
      if (cond) {
        const T* v = cond->data_ptr<T>() + (s.n0 + r) * L.cout;
        for (int64_t co = c0; co < real; ++co) o[co] = o[co] + v[co];
      }
    }
  }

  // out += a · W over this share's panels (rows r of a and out are image n0 + r)
  void multiply(const Share& s, const Layer<T>& L, const T* a, int64_t lda, T* out, int64_t ld) const {
    const auto [q0, q1] = panels(L, s);
    gemm::multiply_add(isa_, a, lda, s.images(), L.w, q0, q1, out, ld);
  }

  // Apply f to this share's real (not padding) outputs of L.
  template <typename F>
  void for_own_outputs(const Share& s, const Layer<T>& L, F f) const {
    const auto [q0, q1] = panels(L, s);
    const int64_t c0 = q0 * L.w.width, c1 = std::min(q1 * L.w.width, L.cout);
    for (int64_t r = 0; r < s.images(); ++r) {
      for (int64_t co = c0; co < c1; ++co) f(r, co);
    }
  }

  // Live-tap input vectors of every image of the share at (i, j) into patch [images][K]: rows i-p..i-1 over
  // columns j-p..j+p, then row i over columns j-p..j. Rows above the image are zero.
  void gather(const Share& s, Layer<T>& L, int64_t i, int64_t j, T* patch) const {
    for (int64_t n = s.n0; n < s.n1; ++n) {
      T* dst = patch + (n - s.n0) * L.K();
      for (int64_t r = 0; r <= L.p; ++r) {
        const int64_t row = i - L.p + r;
        const int64_t len = (r < L.p ? L.k : L.p + 1) * L.cin;
        if (row < 0) {
          std::fill(dst, dst + len, T(0));
        } else {
          std::memcpy(dst, L.at(n, row, j - L.p), len * sizeof(T));
        }
        dst += len;
      }
    }
  }

  // relu(x) of every image of the share into patch [images][2h]: the input of a block's 1x1 in and of the head.
  void relu_stream(const Share& s, const Activations<T>& a, T* patch) const {
    const int64_t width = layers_[0].cout;
    for (int64_t r = 0; r < s.images(); ++r) {
      const T* x = a.x.data() + r * a.ldx;
      for (int64_t q = 0; q < width; ++q) patch[r * width + q] = std::max(x[q], T(0));
    }
  }

  // The image pixel (i, j), normalised, as the first layer's input (by thread 0 of a team, for all its images).
  void reveal_pixel(const Share& s, int64_t i, int64_t j) {
    Layer<T>& first = layers_[0];
    for (int64_t n = s.n0; n < s.n1; ++n) {
      T* dst = first.at(n, i, j);
      for (int64_t c = 0; c < C_; ++c) dst[c] = to_unit<T>(pixels_[((n * C_ + c) * H_ + i) * W_ + j]);
    }
  }

  // x = first conv (mask A) at (i, j) + bias + class vector.
  void first_layer(const Share& s, Activations<T>& a, T* patch, int64_t i, int64_t j) {
    Layer<T>& L = layers_[0];
    gather(s, L, i, j, patch);
    start_rows(s, L, conds_.empty() ? nullptr : &conds_[0], a.x.data(), a.ldx);
    multiply(s, L, patch, L.K(), a.x.data(), a.ldx);
    sync(s);
  }

  // x += conv_out(relu(conv_mid(relu(conv_in(relu(x)))) + class vector)), the middle layer reading its ring buffer.
  void residual_block(const Share& s, Activations<T>& a, T* patch, int64_t b, int64_t i, int64_t j) {
    Layer<T>& in = layers_[1 + 3 * b];
    Layer<T>& mid = layers_[2 + 3 * b];
    Layer<T>& out = layers_[3 + 3 * b];
    relu_stream(s, a, patch);
    start_rows(s, in, nullptr, a.in.data(), a.ldh);
    multiply(s, in, patch, in.K(), a.in.data(), a.ldh);
    for_own_outputs(s, in, [&](int64_t r, int64_t co) {
      T& v = a.in.data()[r * a.ldh + co];
      v = std::max(v, T(0));
      mid.at(s.n0 + r, i, j)[co] = v;
    });
    sync(s);

    gather(s, mid, i, j, patch);
    start_rows(s, mid, conds_.empty() ? nullptr : &conds_[1 + b], a.mid.data(), a.ldh);
    multiply(s, mid, patch, mid.K(), a.mid.data(), a.ldh);
    for_own_outputs(s, mid, [&](int64_t r, int64_t co) {
      T& v = a.mid.data()[r * a.ldh + co];
      v = std::max(v, T(0));
    });
    sync(s);

    start_rows(s, out, nullptr, a.update.data(), a.ldh);
    multiply(s, out, a.mid.data(), a.ldh, a.update.data(), a.ldh);
    for_own_outputs(s, out,
                    [&](int64_t r, int64_t co) { a.x.data()[r * a.ldx + co] += a.update.data()[r * a.ldh + co]; });
    sync(s);
  }

  // logits of colour c = head_out(relu(head_hidden(relu(x)))), outputs v*C + c.
  void head(const Share& s, Activations<T>& a, T* patch, int64_t c) {
    Layer<T>& hidden = layers_.back();
    Layer<T>& out = head_[c];
    relu_stream(s, a, patch);
    start_rows(s, hidden, nullptr, a.hidden.data(), a.ldh);
    multiply(s, hidden, patch, hidden.K(), a.hidden.data(), a.ldh);
    for_own_outputs(s, hidden, [&](int64_t r, int64_t co) {
      T& v = a.hidden.data()[r * a.ldh + co];
      v = std::max(v, T(0));
    });
    sync(s);

    start_rows(s, out, nullptr, a.logits.data(), 256);
    multiply(s, out, a.hidden.data(), a.ldh, a.logits.data(), 256);
    sync(s);
  }

  // The value of sub-pixel (i, j, c) of every image of the share: copied where known, else drawn (draw.h).
  void draw(const Share& s, const Activations<T>& a, int64_t i, int64_t j, int64_t c) {
    for (int64_t n = s.n0; n < s.n1; ++n) {
      const int64_t at = ((n * C_ + c) * H_ + i) * W_ + j;
      const T* logits = a.logits.data() + (n - s.n0) * 256;
      pixels_[at] = cpu_sampler::value_of(isa_, logits, temperature_, uniforms_, known_, known_mask_, at);
    }
  }

  const cpu::Isa isa_;
  const int64_t N_, C_, H_, W_, blocks_;
  const double temperature_;
  const float* uniforms_;
  const uint8_t* known_;
  const bool* known_mask_;
  std::vector<Layer<T>> layers_;  // all but head_out
  std::vector<Layer<T>> head_;    // head_out, one per colour
  std::vector<at::Tensor> conds_;
  int64_t widest_input_ = 0;
  at::Tensor image_;
  uint8_t* pixels_ = nullptr;
};

at::Tensor cached_sample_cpu(const at::Tensor& u, at::TensorList weights_, at::TensorList biases_,
                             at::TensorList conds_, int64_t channels, double temperature,
                             const c10::optional<at::Tensor>& known_, const c10::optional<at::Tensor>& mask_) {
  std::vector<at::Tensor> weights(weights_.begin(), weights_.end()), biases(biases_.begin(), biases_.end()),
      conds(conds_.begin(), conds_.end());
  const int64_t blocks = check_sampler_args(u, weights, biases, conds, channels, temperature);
  auto dtype = weights[0].scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "cached_sample (CPU): weights must be float32 or float64, got ", dtype);
  check_known(u, known_, mask_);
  cpu::Isa isa;
  std::string error;
  TORCH_CHECK(cpu::selected_isa(&isa, &error), "cached_sample (CPU): ", error);
  auto uc = u.contiguous();
  c10::optional<at::Tensor> known, known_mask;
  if (known_.has_value()) {
    known = known_->contiguous();
    known_mask = mask_->contiguous();
  }
  if (dtype == at::kFloat) {
    return Sampler<float>(uc, weights, biases, conds, channels, temperature, blocks, known, known_mask, isa).run();
  }
  return Sampler<double>(uc, weights, biases, conds, channels, temperature, blocks, known, known_mask, isa).run();
}

}  // namespace

TORCH_LIBRARY_IMPL(pixelcnn, CPU, m) { m.impl("cached_sample", &cached_sample_cpu); }

}  // namespace pixelcnn
