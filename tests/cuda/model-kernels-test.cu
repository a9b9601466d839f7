// The model-layer kernels of the GPU runtime (src/cuda/model-kernels.h) against float64 references written
// here the naive way, on random inputs from printed seeds: RMSNorm, SwiGLU, the bf16 GEMM, bias + RoPE
// (adjacent and NEOX pairs, frequency factors, positions up to 10^6) + the paged K/V store, embedding rows,
// sampling (argmax ties, NaN rows, seeded draws), streaming lists.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cuda/cuda-test-util.h"
#include "cuda/model-kernels.h"

namespace hashattn::cudatest {
namespace {

bool gpu_ok() {
  static const bool ok = device_available();
  return ok;
}
#define NEED_GPU_M() \
  if (!gpu_ok()) GTEST_SKIP() << "no CUDA device"

std::vector<float> randv(std::mt19937_64& rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}
double bf(float f) { return bf16_to_fp32(fp32_to_bf16(f)); }

TEST(CudaModelKernels, RmsNormMatchesFloat64) {
  NEED_GPU_M();
  const uint64_t seed = 101;
  std::printf("seed %llu\n", (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  for (int dim : {64, 576, 4096}) {
    const int n = 5;
    auto x = randv(rng, (size_t)n * dim, -3, 3), w = randv(rng, dim, 0.5f, 1.5f);
    x[3] = 2.5e4f;  // an outlier activation as the default model has
    dbuf<float> dx, dw;
    dx.upload(x);
    dw.upload(w);
    dbuf<uint16_t> dy((size_t)n * dim);
    rms_norm(dx.p, dw.p, n, dim, 1e-5f, dy.p, nullptr);
    const auto y = dy.download();
    for (int r = 0; r < n; ++r) {
      double ss = 0;
      for (int j = 0; j < dim; ++j) ss += (double)x[r * dim + j] * x[r * dim + j];
      const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
      for (int j = 0; j < dim; ++j) {
        const double ref = x[r * dim + j] * inv * w[j];
        ASSERT_NEAR(bf16_to_fp32(y[r * dim + j]), ref, 1e-2 * std::fabs(ref) + 1e-6) << "dim " << dim << " row " << r;
      }
    }
  }
}

TEST(CudaModelKernels, SwigluMatchesFloat64) {
  NEED_GPU_M();
  const uint64_t seed = 102;
  std::printf("seed %llu\n", (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  const int n = 3, F = 1536;
  auto gu = randv(rng, (size_t)n * 2 * F, -8, 8);
  dbuf<float> dgu;
  dgu.upload(gu);
  dbuf<uint16_t> dh((size_t)n * F);
  swiglu(dgu.p, n, F, dh.p, nullptr);
  const auto h = dh.download();
  for (int r = 0; r < n; ++r)
    for (int j = 0; j < F; ++j) {
      const double g = gu[(size_t)r * 2 * F + j], u = gu[(size_t)r * 2 * F + F + j];
      const double ref = g / (1 + std::exp(-g)) * u;
      ASSERT_NEAR(bf16_to_fp32(h[(size_t)r * F + j]), ref, 1e-2 * std::fabs(ref) + 1e-5);
    }
}

TEST(CudaModelKernels, GemmBf16MatchesFloat64WithAndWithoutAccumulation) {
  NEED_GPU_M();
  const uint64_t seed = 103;
  std::printf("seed %llu\n", (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  void* blas = blas_create(nullptr);
  for (int n : {1, 3, 17}) {
    const int out = 70, in = 96;
    std::vector<uint16_t> w((size_t)out * in), x((size_t)n * in);
    for (auto& v : w) v = fp32_to_bf16(randv(rng, 1, -1, 1)[0]);
    for (auto& v : x) v = fp32_to_bf16(randv(rng, 1, -1, 1)[0]);
    auto y0 = randv(rng, (size_t)n * out, -1, 1);
    for (float beta : {0.f, 1.f}) {
      dbuf<uint16_t> dw, dx;
      dw.upload(w);
      dx.upload(x);
      dbuf<float> dy;
      dy.upload(y0);
      gemm_bf16(blas, n, out, in, dw.p, dx.p, dy.p, out, beta);
      const auto y = dy.download();
      for (int r = 0; r < n; ++r)
        for (int o = 0; o < out; ++o) {
          double ref = beta * y0[(size_t)r * out + o];
          for (int i = 0; i < in; ++i) ref += (double)bf16_to_fp32(x[(size_t)r * in + i]) * bf16_to_fp32(w[(size_t)o * in + i]);
          ASSERT_NEAR(y[(size_t)r * out + o], ref, 1e-4) << "n " << n << " beta " << beta;
        }
    }
  }
  blas_destroy(blas);
}

TEST(CudaModelKernels, GemvMatchesFloat64ForOneToEightRows) {
  NEED_GPU_M();
  const uint64_t seed = 104;
  std::printf("seed %llu\n", (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  for (int n : {1, 2, 3, 5, 8})
    for (int in : {64, 576, 1544}) {
      const int out = 300;  // not a multiple of the 8 rows of a block
      std::vector<uint16_t> w((size_t)out * in), x((size_t)n * in);
      for (auto& v : w) v = fp32_to_bf16(randv(rng, 1, -1, 1)[0]);
      for (auto& v : x) v = fp32_to_bf16(randv(rng, 1, -2, 2)[0]);
      const int64_t ldy = out + 3;  // a row stride wider than the row
      auto y0 = randv(rng, (size_t)n * ldy, -1, 1);
      for (float beta : {0.f, 1.f}) {
        dbuf<uint16_t> dw, dx;
        dw.upload(w);
        dx.upload(x);
        dbuf<float> dy;
        dy.upload(y0);
        ASSERT_TRUE(gemv_bf16(n, out, in, dw.p, dx.p, dy.p, ldy, beta, nullptr));
        const auto y = dy.download();
        for (int r = 0; r < n; ++r) {
          for (int o = 0; o < out; ++o) {
            double ref = beta * y0[(size_t)r * ldy + o];
            for (int i = 0; i < in; ++i)
              ref += (double)bf16_to_fp32(x[(size_t)r * in + i]) * bf16_to_fp32(w[(size_t)o * in + i]);
            ASSERT_NEAR(y[(size_t)r * ldy + o], ref, 1e-4 * std::sqrt((double)in)) << "n " << n << " in " << in;
          }
          for (int o = out; o < ldy; ++o) ASSERT_EQ(y[(size_t)r * ldy + o], y0[(size_t)r * ldy + o]) << "past the row";
        }
      }
    }
  // Shapes it does not take are declined (the caller falls back to cuBLAS), nothing launched.
  dbuf<uint16_t> dw(64), dx(64);
  dbuf<float> dy(64);
  EXPECT_FALSE(gemv_bf16(9, 4, 8, dw.p, dx.p, dy.p, 4, 0.f, nullptr));
  EXPECT_FALSE(gemv_bf16(1, 4, 12, dw.p, dx.p, dy.p, 4, 0.f, nullptr));
}

// Bias + RoPE + K/V store for decode rows (positions from seq_len) and prefill rows (pos0 + t).
void rope_case(bool neox, bool factors, bool decode, uint64_t seed) {
  std::printf("rope case neox %d factors %d decode %d seed %llu\n", neox, factors, decode, (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  const int H = 4, G = 2, d = 64, rd = 64, n = 3, page = 4, pages_per_seq = 4;
  const int W = (H + 2 * G) * d;
  const int B = decode ? n : 1;
  auto qkv = randv(rng, (size_t)n * W, -2, 2), bias = randv(rng, W, -0.5f, 0.5f), ff = randv(rng, rd / 2, 1, 8);
  std::vector<int32_t> len = {3, 16, 9};  // decode: row t at position len[t] - 1
  const int64_t pos0 = 5;                 // prefill: rows at 5, 6, 7 of sequence 0
  const float base = 500000.f;
  // Pages: a shuffled table per sequence.
  std::vector<int32_t> table((size_t)B * pages_per_seq);
  for (size_t i = 0; i < table.size(); ++i) table[i] = (int32_t)i;
  std::shuffle(table.begin(), table.end(), rng);
  const int64_t stride_tok = d, stride_head = (int64_t)page * d, stride_page = stride_head * G;
  const size_t kv_elems = (size_t)B * pages_per_seq * stride_page;
  dbuf<float> dqkv, dbias, dff, dq((size_t)n * H * d), dk((size_t)n * G * d);
  dqkv.upload(qkv);
  dbias.upload(bias);
  dff.upload(ff);
  dbuf<int32_t> dlen, dtab;
  dlen.upload(len);
  dtab.upload(table);
  dbuf<uint16_t> K(kv_elems), V(kv_elems);
  K.poison(0);
  V.poison(0);
  qkv_params p;
  p.n = n;
  p.n_head = H;
  p.n_head_kv = G;
  p.head_dim = d;
  p.qkv = dqkv.p;
  p.bias = dbias.p;
  p.seq_len = decode ? dlen.p : nullptr;
  p.seq = 0;
  p.pos0 = pos0;
  p.rope_dims = rd;
  p.neox = neox;
  p.rope_base = base;
  p.freq_factors = factors ? dff.p : nullptr;
  p.q_out = dq.p;
  p.k_out = dk.p;
  p.kv.k = K.p;
  p.kv.v = V.p;
  p.kv.type = dtype::bf16;
  p.kv.n_head_kv = G;
  p.kv.head_dim = d;
  p.kv.page_size = page;
  p.kv.stride_page = stride_page;
  p.kv.stride_tok = stride_tok;
  p.kv.stride_head = stride_head;
  p.kv.page_table = dtab.p;
  p.kv.page_table_stride = pages_per_seq;
  qkv_rope_store(p, nullptr);
  const auto q = dq.download(), k = dk.download();
  const auto Kh = K.download(), Vh = V.download();
  for (int t = 0; t < n; ++t) {
    const int seq = decode ? t : 0;
    const int64_t pos = decode ? len[t] - 1 : pos0 + t;
    std::vector<double> row(W);
    for (int j = 0; j < W; ++j) row[j] = (double)qkv[(size_t)t * W + j] + bias[j];
    for (int h = 0; h < H + G; ++h)
      for (int i = 0; i < rd / 2; ++i) {
        double th = (double)pos * std::pow((double)base, -2.0 * i / rd);
        if (factors) th /= ff[i];
        const int a = neox ? i : 2 * i, b = neox ? i + rd / 2 : 2 * i + 1;
        const double x0 = row[h * d + a], x1 = row[h * d + b];
        row[h * d + a] = x0 * std::cos(th) - x1 * std::sin(th);
        row[h * d + b] = x0 * std::sin(th) + x1 * std::cos(th);
      }
    for (int j = 0; j < H * d; ++j) ASSERT_NEAR(q[(size_t)t * H * d + j], row[j], 1e-4) << "q row " << t << " j " << j;
    const int64_t pg = table[(size_t)seq * pages_per_seq + pos / page];
    for (int g = 0; g < G; ++g)
      for (int e = 0; e < d; ++e) {
        const double kr = row[(H + g) * d + e], vr = row[(H + G + g) * d + e];
        const size_t off = (size_t)(pg * stride_page + (pos % page) * stride_tok + g * stride_head + e);
        // The encoders get the keys as stored (rounded to the cache's type), as on the CPU; the stored
        // key is the float64 one rounded to bf16 (half a unit: 2^-8 relative), from fp32 math (1e-4).
        const float stored = bf16_to_fp32(Kh[off]);
        ASSERT_EQ(k[((size_t)t * G + g) * d + e], stored) << "encoder key row " << t << " is not the stored key";
        ASSERT_NEAR(stored, kr, std::ldexp(std::fabs(kr), -8) + 1e-4) << "K row " << t;
        ASSERT_NEAR(stored, bf(kr), 2e-2 * std::fabs(kr) + 1e-6) << "K row " << t;
        ASSERT_NEAR(bf16_to_fp32(Vh[off]), vr, 1e-2 * std::fabs(vr) + 1e-6) << "V row " << t;
      }
  }
}

TEST(CudaModelKernels, QkvRopeStoreMatchesFloat64) {
  NEED_GPU_M();
  uint64_t seed = 200;
  for (bool neox : {false, true})
    for (bool factors : {false, true})
      for (bool decode : {false, true}) rope_case(neox, factors, decode, seed++);
}

TEST(CudaModelKernels, EmbedRowsAndAdvance) {
  NEED_GPU_M();
  const int V = 10, D = 40;
  std::vector<uint16_t> table((size_t)V * D);
  for (size_t i = 0; i < table.size(); ++i) table[i] = fp32_to_bf16((float)i * 0.25f);
  dbuf<uint16_t> dt;
  dt.upload(table);
  dbuf<int32_t> ids, adv;
  ids.upload({7, 0, 9});
  adv.upload({5, 6, 7});
  dbuf<float> x(3 * D);
  embed_rows(dt.p, V, D, ids.p, 3, x.p, adv.p, nullptr);
  const auto xh = x.download();
  const int want[] = {7, 0, 9};
  for (int r = 0; r < 3; ++r)
    for (int j = 0; j < D; ++j) ASSERT_EQ(xh[r * D + j], bf16_to_fp32(table[(size_t)want[r] * D + j]));
  EXPECT_EQ(adv.download(), (std::vector<int32_t>{6, 7, 8}));
}

TEST(CudaModelKernels, SamplingArgmaxTiesNanAndSeededDraws) {
  NEED_GPU_M();
  const int64_t V = 5000;
  std::vector<float> l(3 * V, -1.f);
  l[0 * V + 4000] = 3.f;  // row 0: one maximum
  l[1 * V + 10] = 2.f;    // row 1: a tie at 10 and 4999 -> 10
  l[1 * V + 4999] = 2.f;
  for (int64_t v = 0; v < V; ++v) l[2 * V + v] = std::nanf("");  // row 2: NaN everywhere -> 0
  l[2 * V + 77] = 0.f;                                            // ... but one real value wins
  dbuf<float> dl;
  dl.upload(l);
  dbuf<int32_t> out(3), feed(3), len;
  len.upload({1, 2, 3});
  sample_tokens(dl.p, 3, V, 0.f, 0, len.p, out.p, feed.p, nullptr);
  EXPECT_EQ(out.download(), (std::vector<int32_t>{4000, 10, 77}));
  EXPECT_EQ(feed.download(), (std::vector<int32_t>{4000, 10, 77}));
  // Temperature: two equal best logits far above the rest; draws over many lengths pick each about
  // half the time; the same (seed, length) gives the same token.
  std::vector<float> two(V, -30.f);
  two[100] = 5.f;
  two[200] = 5.f;
  dbuf<float> dtwo;
  dtwo.upload(two);
  int hits100 = 0;
  const int trials = 400;
  for (int i = 0; i < trials; ++i) {
    len.upload({i});
    sample_tokens(dtwo.p, 1, V, 1.f, 42, len.p, out.p, nullptr, nullptr);
    const int32_t a = out.download()[0];
    sample_tokens(dtwo.p, 1, V, 1.f, 42, len.p, out.p, nullptr, nullptr);
    ASSERT_EQ(out.download()[0], a) << "same seed and length, another token";
    ASSERT_TRUE(a == 100 || a == 200) << a;
    hits100 += a == 100;
  }
  std::printf("temperature draws: %d of %d picked token 100\n", hits100, trials);
  EXPECT_GT(hits100, trials * 0.38);
  EXPECT_LT(hits100, trials * 0.62);
}

TEST(CudaModelKernels, WindowListsKeepSinksAndWindow) {
  NEED_GPU_M();
  dbuf<int32_t> len, idx(2 * 2 * 8), cnt(4);
  len.upload({5, 20});
  window_lists(len.p, 2, 2, 2, 4, idx.p, cnt.p, 8, nullptr);
  const auto I = idx.download(), C = cnt.download();
  EXPECT_EQ(C, (std::vector<int32_t>{5, 5, 6, 6}));
  for (int r = 0; r < 2; ++r) {
    for (int i = 0; i < 5; ++i) EXPECT_EQ(I[(0 * 2 + r) * 8 + i], i);
    const int want[] = {0, 1, 16, 17, 18, 19};
    for (int i = 0; i < 6; ++i) EXPECT_EQ(I[(1 * 2 + r) * 8 + i], want[i]);
  }
}

}  // namespace
}  // namespace hashattn::cudatest
