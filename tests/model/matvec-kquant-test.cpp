// Mat-vec on K-quant rows (Q4_K, Q5_K, Q6_K: super-blocks of 256), Q5_0 and BF16 rows (matvec-quant.cpp) against
// the float64 dot of the dequantized weights (gguf::dequantize_row, itself checked against the gguf
// package's goldens in tests/gguf) with the quantized activation, on every SIMD target; and against
// the exact float activation within the activation's rounding bound. Random blocks: any scale byte,
// any quant byte, d and dmin of both signs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/quant-rows.h"
#include "common/test-util.h"
#include "core/half.h"
#include "cpu/kquant-scales.h"
#include "cpu/matvec.h"
#include "hashattn/gguf.h"

namespace hashattn::cpu {
namespace {

constexpr double kU = test::eps_fp32;

using test::random_rows;

// |additive constant| of each weight, which the kernel applies through the activation's block sums:
// 16 d (Q5_0), dmin * min (Q4_K, Q5_K), none (Q6_K: q - 32 in integers; BF16).
std::vector<double> offsets(gguf::type t, const uint8_t* row, int64_t cols) {
  std::vector<double> off(cols, 0.0);
  const size_t bb = gguf::type_block_bytes(t);
  const int64_t be = gguf::type_block_elems(t);
  for (int64_t b = 0; b < cols / be; ++b) {
    const uint8_t* blk = row + b * bb;
    uint16_t h;
    if (t == gguf::type::Q5_0) {
      std::memcpy(&h, blk, 2);
      for (int64_t j = 0; j < 32; ++j) off[b * 32 + j] = 16.0 * std::fabs(fp16_to_fp32(h));
    } else if (t == gguf::type::Q4_K || t == gguf::type::Q5_K) {
      std::memcpy(&h, blk + 2, 2);
      for (int sb = 0; sb < 8; ++sb) {
        int sc, mn;
        gguf::k4_scale_min(sb, blk + 4, &sc, &mn);
        for (int64_t j = 0; j < 32; ++j) off[b * 256 + sb * 32 + j] = std::fabs(fp16_to_fp32(h)) * mn;
      }
    }
  }
  return off;
}

void run_kquant_cases() {
  struct kcase { gguf::type t; int64_t rows, cols; };
  const kcase cases[] = {{gguf::type::Q4_K, 1, 256}, {gguf::type::Q4_K, 37, 1536}, {gguf::type::Q5_K, 5, 256},
                         {gguf::type::Q5_K, 33, 768}, {gguf::type::Q6_K, 3, 256}, {gguf::type::Q6_K, 40, 1280},
                         {gguf::type::Q5_0, 1, 32},   {gguf::type::Q5_0, 29, 576}, {gguf::type::BF16, 7, 96},
                         {gguf::type::BF16, 3, 1536}};
  uint64_t seed = 3300;
  for (const auto& c : cases)
    for (int dist = 0; dist < 3; ++dist)  // normal, spiky (outliers), zero blocks
      for (int nt : {1, 2}) {
        ++seed;
        SCOPED_TRACE(std::string("type=") + gguf::type_name(c.t) + " rows=" + std::to_string(c.rows) +
                     " cols=" + std::to_string(c.cols) + " dist=" + std::to_string(dist) + " seed=" + std::to_string(seed));
        std::mt19937_64 rng(seed);
        const auto w = random_rows(c.t, c.rows, c.cols, rng);
        std::vector<float> x = test::random_vec(rng, test::dist::normal, c.cols);
        if (dist == 1)
          for (int64_t b = 0; b < c.cols / 32; ++b) x[b * 32 + rng() % 32] = 400.f * (rng() % 2 ? 1 : -1);
        if (dist == 2)
          for (int64_t b = 0; b < c.cols / 32; b += 2) std::fill(x.begin() + b * 32, x.begin() + b * 32 + 32, 0.f);
        act_i16 xq;
        quantize_act_i16(x.data(), c.cols, xq);
        const bool int_path = matvec_uses_int(c.t);
        ASSERT_EQ(int_path, c.t != gguf::type::BF16);
        std::vector<float> y(c.rows, NAN);
        matvec_params p;
        p.type = c.t;
        p.w = w.data();
        p.row_bytes = gguf::row_bytes(c.t, c.cols);
        p.n_rows = c.rows;
        p.n_cols = c.cols;
        p.x = x.data();
        p.xq = &xq;
        p.y = y.data();
        matvec(p, nt);
        std::vector<float> wd(c.cols);
        for (int64_t r = 0; r < c.rows; ++r) {
          gguf::dequantize_row(c.t, w.data() + r * p.row_bytes, wd.data(), c.cols);
          // (1) the dequantized weights times the quantized activation, in double: the kernel's sum up
          //     to fp32 rounding of its scales and partial sums; (2) the exact activation: within half
          //     an activation step per element (plus that rounding).
          double ref = 0, mag = 0, exact = 0, bound = 0;
          const std::vector<double> off = offsets(c.t, w.data() + r * p.row_bytes, c.cols);
          for (int64_t j = 0; j < c.cols; ++j) {
            const double xd = int_path ? (double)xq.q[j] * xq.d[j / 32] : (double)x[j];  // BF16: the float x
            ref += wd[j] * xd;
            mag += (std::fabs(wd[j]) + off[j]) * std::fabs(xd);  // the kernel sums q*d*x and offset*x apart
            exact += (double)wd[j] * x[j];
            bound += std::fabs(wd[j]) * xq.d[j / 32] * (0.5 + kActQMax * 2 * kU);
          }
          const double tol = 4.0 * (c.cols / 8 + 8) * kU * mag + 1e-30;
          ASSERT_NEAR(y[r], ref, tol) << "row " << r;
          ASSERT_NEAR(y[r], exact, bound * 1.001 + tol) << "row " << r;
        }
      }
}

// The 8-at-once scale unpacking of the mat-vec and mat-mat kernels against the reader's one-pair
// k4_scale_min, on random 12-byte scale fields and on every value of each single byte.
TEST(matvec_kquant, scales_mins_unpacked_at_once) {
  const uint64_t seed = 3400;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int it = 0; it < 20000 + 12 * 256; ++it) {
    uint8_t s[12];
    if (it < 20000) {
      for (auto& b : s) b = (uint8_t)rng();
    } else {
      std::memset(s, 0, 12);
      s[(it - 20000) / 256] = (uint8_t)((it - 20000) % 256);
    }
    uint8_t sc[8], mn[8];
    k4_scales_mins(s, sc, mn);
    for (int j = 0; j < 8; ++j) {
      int want_sc, want_mn;
      gguf::k4_scale_min(j, s, &want_sc, &want_mn);
      ASSERT_EQ(sc[j], want_sc) << "case " << it << " j " << j;
      ASSERT_EQ(mn[j], want_mn) << "case " << it << " j " << j;
    }
  }
}

TEST(matvec_kquant, against_float64_dequantization) {
  test::for_each_simd_target([](const char*) { run_kquant_cases(); });
}

}  // namespace
}  // namespace hashattn::cpu
