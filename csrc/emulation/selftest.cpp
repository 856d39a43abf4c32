// Self-test of the CUDA emulation and of the fused sampler kernel's launch logic, without torch, so that it can run
// under AddressSanitizer + UndefinedBehaviorSanitizer (`make sanitize`; tests/test_cuda_emulation_selftest.py).
// Exactness against the CPU op is tested from Python (tests/test_cuda_emulated.py); this checks what Python cannot
// reach: the emulator's thread/block indices and barrier semantics, its GPU-like launch errors, and that the
// kernel gives every image the same result whatever the launch plan (whole loop or one step per launch, 1 or 4
// images per block, images alone or in a batch); likewise the gated kernels (rows of sub-pixels in one launch or
// several, 1 or 4 images per block, row tiles holding one image or several).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../cuda/gated_kernels.cuh"
#include "../cuda/sampler_kernels.cuh"

namespace {

int failures = 0;

#define EXPECT(cond)                                                           \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

__global__ void write_ids(int* out) {
  const int t = threadIdx.x + blockDim.x * threadIdx.y;
  const int b = blockIdx.x + gridDim.x * blockIdx.y;
  out[b * blockDim.x * blockDim.y + t] = b * 1000 + t;
}

// Each thread writes its id to shared memory, then (after the barrier) reads its neighbour's.
__global__ void rotate(int* out) {
  __shared__ int ring[64];
  ring[threadIdx.x] = static_cast<int>(threadIdx.x) + 100 * static_cast<int>(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = ring[(threadIdx.x + 1) % blockDim.x];
}

// A data race: thread 0 reads what thread 31 writes in the same barrier interval; the emulation's alternating
// thread order makes the result differ between even and odd blocks.
__global__ void racy(int* out) {
  __shared__ int cell;
  if (threadIdx.x == 0) cell = 0;
  __syncthreads();
  if (threadIdx.x == 31) cell = 1;
  if (threadIdx.x == 0) out[blockIdx.x] = cell;
}

__global__ void divergent_barrier(int* out) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void big_shared(int* out) {
  PIXELCNN_DYNAMIC_SHARED(shared);
  shared[threadIdx.x] = 1;
  __syncthreads();
  out[threadIdx.x] = shared[(threadIdx.x + 1) % blockDim.x];
}

void test_emulator() {
  std::vector<int> ids(6 * 8, -1);
  auto k1 = write_ids;
  PIXELCNN_LAUNCH(k1, dim3(3, 2), dim3(4, 2), 0, nullptr, ids.data());
  for (int b = 0; b < 6; ++b)
    for (int t = 0; t < 8; ++t) EXPECT(ids[b * 8 + t] == b * 1000 + t);

  std::vector<int> rot(2 * 64, -1);
  auto k2 = rotate;
  PIXELCNN_LAUNCH(k2, dim3(2), dim3(64), 0, nullptr, rot.data());
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 64; ++t) EXPECT(rot[b * 64 + t] == (t + 1) % 64 + 100 * b);

  std::vector<int> race(2, -1);
  auto k5 = racy;
  PIXELCNN_LAUNCH(k5, dim3(2), dim3(32), 0, nullptr, race.data());
  EXPECT(race[0] != race[1]);

  std::vector<int> out(64, 0);
  bool thrown = false;
  try {
    auto k3 = divergent_barrier;
    PIXELCNN_LAUNCH(k3, dim3(1), dim3(32), 0, nullptr, out.data());
  } catch (const std::runtime_error&) {
    thrown = true;
  }
  EXPECT(thrown);

  auto k4 = big_shared;
  thrown = false;
  try {
    PIXELCNN_LAUNCH(k4, dim3(1), dim3(64), 64 * 1024, nullptr, out.data());
  } catch (const std::runtime_error&) {
    thrown = true;  // above 48 KB without the attribute: refused, as on a GPU
  }
  EXPECT(thrown);
  pixelcnn_cuda::allow_shared(k4, 64 * 1024);
  PIXELCNN_LAUNCH(k4, dim3(1), dim3(64), 64 * 1024, nullptr, out.data());
  EXPECT(out[0] == 1);

  thrown = false;
  try {
    PIXELCNN_LAUNCH(k4, dim3(1), dim3(2048), 0, nullptr, out.data());
  } catch (const std::runtime_error&) {
    thrown = true;
  }
  EXPECT(thrown);
}

uint64_t state = 12345;
double uniform() {  // deterministic, in [0, 1)
  state = state * 6364136223846793005ULL + 1442695040888963407ULL;
  return static_cast<double>(state >> 11) * (1.0 / 9007199254740992.0);
}

// A random model of the sampler's layout: C colours, first conv k0, `blocks` blocks (1x1, k x k, 1x1), head.
struct Model {
  int C = 3, H = 5, W = 4, h = 6, blocks = 2, k0 = 5, k = 3;
  std::vector<std::vector<double>> w, b;
  std::vector<int> cin, cout, ks;
  std::vector<std::vector<double>> conds;  // [first [N][2h], block b [N][h]]

  void add(int ci, int co, int kk) {
    const int p = kk / 2, K = (p * kk + p + 1) * ci;
    std::vector<double> wl(static_cast<size_t>(K) * co), bl(co);
    for (auto& x : wl) x = (uniform() - 0.5) * 0.6;
    for (auto& x : bl) x = (uniform() - 0.5) * 0.6;
    w.push_back(wl);
    b.push_back(bl);
    cin.push_back(ci);
    cout.push_back(co);
    ks.push_back(kk);
  }

  explicit Model(int n) {
    add(C, 2 * h, k0);
    for (int i = 0; i < blocks; ++i) {
      add(2 * h, h, 1);
      add(h, h, k);
      add(h, 2 * h, 1);
    }
    add(2 * h, 2 * h, 1);
    add(2 * h, 256 * C, 1);
    conds.emplace_back(static_cast<size_t>(n) * 2 * h);
    for (int i = 0; i < blocks; ++i) conds.emplace_back(static_cast<size_t>(n) * h);
    for (auto& c : conds)
      for (auto& x : c) x = (uniform() - 0.5) * 0.6;
  }
};

// Samples images [first, first + n) of `model` (whose class vectors and uniforms cover `total` images).
std::vector<uint8_t> sample(const Model& m, const std::vector<float>& u, int total, int first, int n,
                            long long steps_per_launch, long long* launches) {
  using pixelcnn_cuda::Layer;
  std::vector<Layer<double>> layers;
  std::vector<std::vector<double>> bufs, conds;
  for (size_t l = 0; l < m.w.size(); ++l) {
    Layer<double> L{};
    L.cin = m.cin[l];
    L.cout = m.cout[l];
    L.k = m.ks[l];
    L.p = L.k / 2;
    L.rows = L.p + 1;
    L.wp = m.W + 2 * L.p;
    L.K = (L.p * L.k + L.p + 1) * L.cin;
    L.w = m.w[l].data();
    L.bias = m.b[l].data();
    layers.push_back(L);
  }
  bufs.reserve(layers.size());
  conds.reserve(m.conds.size());
  for (auto& L : layers) {
    if (L.k == 1) continue;
    bufs.emplace_back(static_cast<size_t>(n) * L.rows * L.wp * L.cin, 0.0);
    L.buf = bufs.back().data();
  }
  const int cond_layer[] = {0, 2, 5};
  for (size_t c = 0; c < m.conds.size(); ++c) {
    const size_t width = m.conds[c].size() / total;
    conds.emplace_back(m.conds[c].begin() + first * width, m.conds[c].begin() + (first + n) * width);
    layers[cond_layer[c]].cond = conds.back().data();
  }
  const size_t plane = static_cast<size_t>(m.C) * m.H * m.W;
  std::vector<float> uu(u.begin() + first * plane, u.begin() + (first + n) * plane);
  std::vector<uint8_t> image(n * plane, 0);
  pixelcnn_cuda::Net<double> net{};
  net.layers = layers.data();
  net.blocks = m.blocks;
  net.N = n;
  net.C = m.C;
  net.H = m.H;
  net.W = m.W;
  net.u = uu.data();
  net.image = image.data();
  net.temperature = 0.8;
  net.xs = 2 * m.h;
  net.ys = 2 * m.h;
  net.zs = m.h;
  net.ps = std::max((m.k0 / 2 * m.k0 + m.k0 / 2 + 1) * m.C, (m.k / 2 * m.k + m.k / 2 + 1) * m.h);
  pixelcnn_cuda::Sampling<double> run{net, {}};
  run.options.steps_per_launch = steps_per_launch;
  const long long before = pixelcnn_emu::launch_count();
  pixelcnn_cuda::run_sampling(run, nullptr);
  if (launches) *launches = pixelcnn_emu::launch_count() - before;
  return image;
}

void test_sampler_plans() {
  const int n = 17;  // 4 images per block, the last group partial; more groups than the emulated resident blocks
  Model m(n);
  std::vector<float> u(static_cast<size_t>(n) * m.C * m.H * m.W);
  for (auto& x : u) x = static_cast<float>(uniform());
  long long launches = 0;
  const auto whole = sample(m, u, n, 0, n, 0, &launches);
  EXPECT(launches == 1);
  const auto stepwise = sample(m, u, n, 0, n, 1, &launches);
  EXPECT(launches == m.C * m.H * m.W);
  EXPECT(whole == stepwise);
  int spread = 0;
  for (uint8_t v : whole) spread += v != whole[0];
  EXPECT(spread > 100);  // not a constant image
  const size_t plane = static_cast<size_t>(m.C) * m.H * m.W;
  for (int first : {0, 5, 16}) {  // one image alone (1 image per block) equals its row of the batch
    const auto alone = sample(m, u, n, first, 1, 0, nullptr);
    EXPECT(std::equal(alone.begin(), alone.end(), whole.begin() + first * plane));
  }
}

// A random gated model of the gated sampler's layout (packed live rectangles): C colours, layer 0 with kernel k0,
// L - 1 later layers with kernel k, each stack h wide, head h -> 2h -> 256*C, class vectors for every layer.
struct GatedModel {
  int C = 3, H = 4, W = 5, h = 6, L = 3, k0 = 5, k = 3;
  struct Dense {
    std::vector<double> w, b;
    int K, cout;
  };
  std::vector<Dense> v, hc, link, proj;
  Dense head_hidden, head_out;
  std::vector<std::vector<double>> embed_v, embed_h;  // [N][2h] per layer

  static Dense random(int K, int cout) {
    Dense d{std::vector<double>(static_cast<size_t>(K) * cout), std::vector<double>(cout), K, cout};
    for (auto& x : d.w) x = (uniform() - 0.5) * 0.6;
    for (auto& x : d.b) x = (uniform() - 0.5) * 0.6;
    return d;
  }

  explicit GatedModel(int n) {
    for (int l = 0; l < L; ++l) {
      const int kk = l == 0 ? k0 : k, p = kk / 2, cin = l == 0 ? C : h, vrows = l == 0 ? p : p + 1;
      v.push_back(random(vrows * kk * cin, 2 * h));
      hc.push_back(random((p + 1) * cin, 2 * h));
      link.push_back(random(2 * h, 2 * h));
      proj.push_back(random(h, h));
      for (auto* e : {&embed_v, &embed_h}) {
        e->emplace_back(static_cast<size_t>(n) * 2 * h);
        for (auto& x : e->back()) x = (uniform() - 0.5) * 0.6;
      }
    }
    head_hidden = random(h, 2 * h);
    head_out = random(2 * h, 256 * C);
  }
};

// Samples images [first, first + n) of the gated `model` (whose class vectors and uniforms cover `total` images).
std::vector<uint8_t> sample_gated(const GatedModel& m, const std::vector<float>& u, int total, int first, int n,
                                  long long steps_per_launch, long long* launches) {
  using pixelcnn_cuda::Layer;
  auto layer = [](const GatedModel::Dense& d, int cin, int k) {
    Layer<double> L{};
    L.w = d.w.data();
    L.bias = d.b.data();
    L.K = d.K;
    L.cout = d.cout;
    L.cin = cin;
    L.k = k;
    L.p = k / 2;
    L.rows = 1;
    return L;
  };
  std::vector<std::vector<double>> bufs, conds;
  bufs.reserve(2 * m.L + 2);
  conds.reserve(2 * m.L);
  const int p0 = m.k0 / 2;
  bufs.emplace_back(static_cast<size_t>(n) * (p0 + 1) * (m.W + 2 * p0) * m.C, 0.0);
  double* image_ring = bufs.back().data();
  std::vector<pixelcnn_cuda::GatedLayer<double>> layers;
  int patch = 0, row_patch = 0;
  for (int l = 0; l < m.L; ++l) {
    const int kk = l == 0 ? m.k0 : m.k, p = kk / 2, cin = l == 0 ? m.C : m.h;
    pixelcnn_cuda::GatedLayer<double> G{};
    G.vrows = l == 0 ? p : p + 1;
    G.v = layer(m.v[l], cin, kk);
    G.h = layer(m.hc[l], cin, kk);
    G.v.wp = G.h.wp = m.W + 2 * p;
    if (l == 0) {
      G.v.buf = G.h.buf = image_ring;
      G.v.rows = G.h.rows = p0 + 1;
    } else {
      bufs.emplace_back(static_cast<size_t>(n) * (p + 1) * (m.W + 2 * p) * m.h, 0.0);
      G.v.buf = bufs.back().data();
      G.v.rows = p + 1;
      bufs.emplace_back(static_cast<size_t>(n) * (m.W + 2 * p) * m.h, 0.0);
      G.h.buf = bufs.back().data();
    }
    G.link = layer(m.link[l], 2 * m.h, 1);
    G.proj = layer(m.proj[l], m.h, 1);
    for (const auto* e : {&m.embed_v[l], &m.embed_h[l]}) {
      const size_t width = e->size() / total;
      conds.emplace_back(e->begin() + first * width, e->begin() + (first + n) * width);
    }
    G.embed_v = conds[conds.size() - 2].data();
    G.embed_h = conds.back().data();
    patch = std::max(patch, G.h.K);
    row_patch = std::max(row_patch, G.v.K);
    layers.push_back(G);
  }
  bufs.emplace_back(static_cast<size_t>(m.L) * m.W * n * 2 * m.h, 0.0);
  const size_t plane = static_cast<size_t>(m.C) * m.H * m.W;
  std::vector<float> uu(u.begin() + first * plane, u.begin() + (first + n) * plane);
  std::vector<uint8_t> image(n * plane, 0);
  pixelcnn_cuda::GatedNet<double> net{};
  net.layers = layers.data();
  net.L = m.L;
  net.head_hidden = layer(m.head_hidden, m.h, 1);
  net.head_out = layer(m.head_out, 2 * m.h, 1);
  net.N = n;
  net.C = m.C;
  net.H = m.H;
  net.W = m.W;
  net.hidden = m.h;
  net.u = uu.data();
  net.image = image.data();
  net.temperature = 0.8;
  net.link = bufs.back().data();
  net.patch = patch;
  net.row_patch = row_patch;
  pixelcnn_cuda::GatedSampling<double> run{net, {}};
  run.options.steps_per_launch = steps_per_launch;
  const long long before = pixelcnn_emu::launch_count();
  const auto plan = pixelcnn_cuda::run_gated_sampling(run, nullptr);
  if (launches) *launches = pixelcnn_emu::launch_count() - before;
  EXPECT(pixelcnn_emu::launch_count() - before == plan.launches);
  return image;
}

void test_gated_sampler_plans() {
  const int n = 17;  // 4 images per block, the last group partial; row tiles of 8 positions cross images
  GatedModel m(n);
  std::vector<float> u(static_cast<size_t>(n) * m.C * m.H * m.W);
  for (auto& x : u) x = static_cast<float>(uniform());
  long long launches = 0;
  const auto whole = sample_gated(m, u, n, 0, n, 0, &launches);
  EXPECT(launches == m.H * (m.L + 1));
  const auto stepwise = sample_gated(m, u, n, 0, n, 1, &launches);
  EXPECT(launches == m.H * (m.L + m.W * m.C));
  EXPECT(whole == stepwise);
  EXPECT(sample_gated(m, u, n, 0, n, 4, nullptr) == whole);
  int spread = 0;
  for (uint8_t v : whole) spread += v != whole[0];
  EXPECT(spread > 100);  // not a constant image
  const size_t plane = static_cast<size_t>(m.C) * m.H * m.W;
  for (int first : {0, 6, 16}) {  // one image alone (1 image per block, its own row tiles) equals its batch row
    const auto alone = sample_gated(m, u, n, first, 1, 0, nullptr);
    EXPECT(std::equal(alone.begin(), alone.end(), whole.begin() + first * plane));
  }
}

}  // namespace

int main() {
  test_emulator();
  test_sampler_plans();
  test_gated_sampler_plans();
  if (failures) {
    std::fprintf(stderr, "emulation self-test: %d failure(s)\n", failures);
    return 1;
  }
  std::printf("emulation self-test: ok\n");
  return 0;
}
