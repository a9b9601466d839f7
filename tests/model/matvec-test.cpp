// Quantized mat-vec, activation quantization, tile dequantization and the prefill GEMM against
// float64 references on fresh random inputs (fixed seeds, printed through SCOPED_TRACE).
// Block formats (DATA.md): Q4_0 {fp16 d; u8 qs[16]} w = (q - 8) d; Q4_1 {fp16 d, m; u8 qs[16]}
// w = q d + m (low nibbles elements 0..15, high 16..31); Q8_0 {fp16 d; i8 qs[32]} w = q d.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "cpu/matvec.h"
#include "hashattn/error.h"
#include "common/test-util.h"

namespace hashattn::cpu {
namespace {

constexpr double kU = 5.96e-8;  // unit roundoff of fp32

enum class dist { normal, large, spiky, zero_blocks };
const char* dist_name(dist d) {
  switch (d) {
    case dist::normal: return "normal";
    case dist::large: return "large";
    case dist::spiky: return "spiky";
    default: return "zero_blocks";
  }
}

std::vector<float> random_vec(int64_t n, dist d, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = nd(rng);
  if (d == dist::large)
    for (auto& v : x) v *= 3e3f;
  if (d == dist::spiky)
    for (int64_t b = 0; b < n / 32; ++b) x[b * 32 + rng() % 32] = 400.0f * (rng() % 2 ? 1 : -1);
  if (d == dist::zero_blocks)
    for (int64_t b = 0; b < n / 32; b += 2) std::fill(x.begin() + b * 32, x.begin() + b * 32 + 32, 0.0f);
  return x;
}

uint16_t h16(float f) { return fp32_to_fp16(f); }
double f16(uint16_t h) { return fp16_to_fp32(h); }

size_t block_bytes(gguf::type t) {
  switch (t) {
    case gguf::type::Q4_0: return 18;
    case gguf::type::Q4_1: return 20;
    case gguf::type::Q8_0: return 34;
    case gguf::type::F16: return 64;
    default: return 128;  // F32
  }
}

// Random weight rows in the given format.
std::vector<uint8_t> random_weight(gguf::type t, int64_t rows, int64_t cols, std::mt19937_64& rng) {
  const size_t rb = block_bytes(t) * (cols / 32);
  std::vector<uint8_t> w(rb * rows);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(0.001f, 0.05f);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = w.data() + r * rb;
    for (int64_t b = 0; b < cols / 32; ++b) {
      uint8_t* blk = row + b * block_bytes(t);
      uint16_t d = h16(ud(rng) * (rng() % 2 ? 1 : -1)), m = h16(nd(rng) * 0.05f);
      switch (t) {
        case gguf::type::Q4_0:
          std::memcpy(blk, &d, 2);
          for (int j = 0; j < 16; ++j) blk[2 + j] = (uint8_t)(rng() & 0xFF);
          break;
        case gguf::type::Q4_1:
          std::memcpy(blk, &d, 2);
          std::memcpy(blk + 2, &m, 2);
          for (int j = 0; j < 16; ++j) blk[4 + j] = (uint8_t)(rng() & 0xFF);
          break;
        case gguf::type::Q8_0:
          std::memcpy(blk, &d, 2);
          for (int j = 0; j < 32; ++j) blk[2 + j] = (uint8_t)(int8_t)((int)(rng() % 255) - 127);
          break;
        case gguf::type::F16:
          for (int j = 0; j < 32; ++j) {
            uint16_t v = h16(nd(rng) * 0.1f);
            std::memcpy(blk + 2 * j, &v, 2);
          }
          break;
        default:
          for (int j = 0; j < 32; ++j) {
            float v = nd(rng) * 0.1f;
            std::memcpy(blk + 4 * j, &v, 4);
          }
      }
    }
  }
  return w;
}

// Reference dequantization in double, written from the format description.
std::vector<double> ref_dequant(gguf::type t, const uint8_t* row, int64_t cols) {
  std::vector<double> y(cols);
  for (int64_t b = 0; b < cols / 32; ++b) {
    const uint8_t* blk = row + b * block_bytes(t);
    uint16_t d, m;
    std::memcpy(&d, blk, 2);
    std::memcpy(&m, blk + 2, 2);
    for (int j = 0; j < 32; ++j) {
      double v = 0;
      switch (t) {
        case gguf::type::Q4_0: {
          const int q = j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4);
          v = (q - 8) * f16(d);
          break;
        }
        case gguf::type::Q4_1: {
          const int q = j < 16 ? (blk[4 + j] & 15) : (blk[4 + j - 16] >> 4);
          v = q * f16(d) + f16(m);
          break;
        }
        case gguf::type::Q8_0:
          v = (int8_t)blk[2 + j] * f16(d);
          break;
        case gguf::type::F16: {
          uint16_t h;
          std::memcpy(&h, blk + 2 * j, 2);
          v = f16(h);
          break;
        }
        default: {
          float f;
          std::memcpy(&f, blk + 4 * j, 4);
          v = f;
        }
      }
      y[b * 32 + j] = v;
    }
  }
  return y;
}

TEST(quantize_act_i16, matches_definition) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    for (dist d : {dist::normal, dist::large, dist::spiky, dist::zero_blocks}) {
      SCOPED_TRACE("seed=" + std::to_string(seed) + " dist=" + dist_name(d));
      std::mt19937_64 rng(seed);
      const int64_t n = 32 * 37;
      auto x = random_vec(n, d, rng);
      act_i16 a;
      quantize_act_i16(x.data(), n, a);
      ASSERT_EQ(a.n, n);
      for (int64_t b = 0; b < n / 32; ++b) {
        double amax = 0;
        long sum = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, (double)std::fabs(x[b * 32 + j]));
        const double dd = amax / kActQMax;
        EXPECT_NEAR(a.d[b], dd, dd * 2e-7);
        for (int j = 0; j < 32; ++j) {
          const int q = a.q[b * 32 + j];
          sum += q;
          ASSERT_LE(std::abs(q), kActQMax);
          if (dd > 0) {
            // x * (1 / d) in fp32: a few roundings of relative size u on values up to kActQMax.
            EXPECT_LE(std::fabs(q - x[b * 32 + j] / dd), 0.5 + kActQMax * 4 * kU);
          } else {
            EXPECT_EQ(q, 0);
          }
        }
        EXPECT_NEAR(a.s[b], dd * sum, std::fabs(dd * sum) * 3e-7);
      }
    }
  }
}

TEST(quantize_act_i16, rejects_bad_length) {
  act_i16 a;
  std::vector<float> x(33);
  EXPECT_THROW(quantize_act_i16(x.data(), 33, a), hashattn::error);
}

struct mv_case {
  gguf::type t;
  int64_t rows, cols;
};

void matvec_all_types();
TEST(matvec, all_types_against_float64) {
  test::for_each_simd_target([](const char*) { matvec_all_types(); });
}

void matvec_all_types() {
  const mv_case cases[] = {
      {gguf::type::Q4_0, 17, 32},   {gguf::type::Q4_0, 100, 576}, {gguf::type::Q4_1, 1, 32},
      {gguf::type::Q4_1, 33, 96},   {gguf::type::Q4_1, 64, 1536}, {gguf::type::Q8_0, 19, 64},
      {gguf::type::Q8_0, 48, 576},  {gguf::type::F16, 21, 96},    {gguf::type::F32, 35, 160},
      {gguf::type::F16, 3, 1536},
  };
  uint64_t seed = 100;
  for (const auto& c : cases) {
    for (dist d : {dist::normal, dist::large, dist::spiky, dist::zero_blocks}) {
      for (int nt : {1, 2}) {
        ++seed;
        SCOPED_TRACE(std::string("type=") + gguf::type_name(c.t) + " rows=" + std::to_string(c.rows) +
                     " cols=" + std::to_string(c.cols) + " dist=" + dist_name(d) +
                     " threads=" + std::to_string(nt) + " seed=" + std::to_string(seed));
        std::mt19937_64 rng(seed);
        auto w = random_weight(c.t, c.rows, c.cols, rng);
        auto x = random_vec(c.cols, d, rng);
        const size_t rb = block_bytes(c.t) * (c.cols / 32);
        act_i16 xq;
        quantize_act_i16(x.data(), c.cols, xq);
        std::vector<float> y(c.rows, NAN);
        matvec_params p;
        p.type = c.t;
        p.w = w.data();
        p.row_bytes = rb;
        p.n_rows = c.rows;
        p.n_cols = c.cols;
        p.x = x.data();
        p.xq = &xq;
        p.y = y.data();
        matvec(p, nt);
        const bool int_path = matvec_uses_int(c.t);
        for (int64_t r = 0; r < c.rows; ++r) {
          const auto wd = ref_dequant(c.t, w.data() + r * rb, c.cols);
          // (1) the kernel's algorithm in double: sum_b [dw dx sum(qw qx) + c_b s_b] with
          //     c_b = m (Q4_1), -8 dw (Q4_0), 0 (Q8_0): only fp32 rounding may differ.
          // (2) against the exact float activation: bounded by the activation rounding (half a
          //     step d): sum |qw d| d/2 + |c| 16 d, plus fp32 rounding of d and s.
          double ref = 0, mag = 0, exact = 0, bound = 0;
          if (int_path) {
            for (int64_t b = 0; b < c.cols / 32; ++b) {
              const uint8_t* blk = w.data() + r * rb + b * block_bytes(c.t);
              uint16_t dh, mh;
              std::memcpy(&dh, blk, 2);
              std::memcpy(&mh, blk + 2, 2);
              const double cb = c.t == gguf::type::Q4_1   ? f16(mh)
                                : c.t == gguf::type::Q4_0 ? -8 * f16(dh)
                                                          : 0.0;
              double amax = 0;
              for (int j = 0; j < 32; ++j) amax = std::max(amax, (double)std::fabs(x[b * 32 + j]));
              const double dtrue = amax / kActQMax;
              const double e = dtrue * (0.5 + kActQMax * 2 * kU);
              for (int j = 0; j < 32; ++j) {
                const double qw = wd[b * 32 + j] - cb;  // the q * d part of the weight
                const double t = qw * xq.q[b * 32 + j] * xq.d[b];
                ref += t;
                mag += std::fabs(t);
                exact += wd[b * 32 + j] * x[b * 32 + j];
                bound += std::fabs(qw) * e;
              }
              ref += cb * xq.s[b];
              mag += std::fabs(cb * xq.s[b]);
              bound += std::fabs(cb) * (std::fabs(xq.s[b]) * 2 * kU + 16 * dtrue);
            }
          } else {
            for (int64_t j = 0; j < c.cols; ++j) ref += wd[j] * x[j], mag += std::fabs(wd[j] * x[j]);
          }
          const double tol = 4.0 * (c.cols / 8 + 8) * kU * mag + 1e-30;
          ASSERT_NEAR(y[r], ref, tol) << "row " << r;
          if (int_path) {
            ASSERT_NEAR(y[r], exact, bound * 1.001 + tol) << "row " << r;
          }
        }
      }
    }
  }
}

TEST(dequantize_rows, exact_against_definition) {
  uint64_t seed = 500;
  for (gguf::type t : {gguf::type::Q4_0, gguf::type::Q4_1, gguf::type::Q8_0, gguf::type::F16,
                       gguf::type::F32}) {
    ++seed;
    SCOPED_TRACE(std::string("type=") + gguf::type_name(t) + " seed=" + std::to_string(seed));
    std::mt19937_64 rng(seed);
    const int64_t rows = 7, cols = 96;
    auto w = random_weight(t, rows, cols, rng);
    const size_t rb = block_bytes(t) * (cols / 32);
    std::vector<float> out((rows - 2) * cols);
    dequantize_rows(t, w.data(), rb, cols, 2, rows, out.data());
    for (int64_t r = 2; r < rows; ++r) {
      const auto ref = ref_dequant(t, w.data() + r * rb, cols);
      for (int64_t j = 0; j < cols; ++j) ASSERT_EQ(out[(r - 2) * cols + j], (float)ref[j]);
    }
  }
}

TEST(gemm_wt, against_float64) {
  uint64_t seed = 900;
  for (gguf::type t : {gguf::type::Q4_1, gguf::type::Q8_0, gguf::type::Q4_0, gguf::type::F32}) {
    for (int64_t n_tok : {1, 5, 37, 100}) {
      for (int nt : {1, 2}) {
        ++seed;
        SCOPED_TRACE(std::string("type=") + gguf::type_name(t) + " n_tok=" + std::to_string(n_tok) +
                     " threads=" + std::to_string(nt) + " seed=" + std::to_string(seed));
        std::mt19937_64 rng(seed);
        const int64_t rows = 45, cols = 160, ldx = cols + 3, ldy = rows + 5;
        auto w = random_weight(t, rows, cols, rng);
        const size_t rb = block_bytes(t) * (cols / 32);
        auto x = random_vec(n_tok * ldx, dist::normal, rng);
        std::vector<float> y(n_tok * ldy, -7.0f);
        std::vector<float> scratch;
        gemm_params p;
        p.type = t;
        p.w = w.data();
        p.row_bytes = rb;
        p.n_rows = rows;
        p.n_cols = cols;
        p.x = x.data();
        p.ldx = ldx;
        p.n_tok = n_tok;
        p.y = y.data();
        p.ldy = ldy;
        // Small tiles so that several tiles are used.
        gemm_wt(p, scratch, nt, 16 * cols);
        for (int64_t r = 0; r < rows; ++r) {
          const auto wd = ref_dequant(t, w.data() + r * rb, cols);
          for (int64_t i = 0; i < n_tok; ++i) {
            double ref = 0, mag = 0;
            for (int64_t j = 0; j < cols; ++j)
              ref += wd[j] * x[i * ldx + j], mag += std::fabs(wd[j] * x[i * ldx + j]);
            ASSERT_NEAR(y[i * ldy + r], ref, 2.0 * cols * kU * mag) << "tok " << i << " row " << r;
          }
        }
        for (int64_t i = 0; i < n_tok; ++i)
          for (int64_t r = rows; r < ldy; ++r) ASSERT_EQ(y[i * ldy + r], -7.0f);  // padding untouched
      }
    }
  }
}

}  // namespace
}  // namespace hashattn::cpu
