// Integer mat-vec on K-quant rows (Q4_K, Q5_K, Q6_K: super-blocks of 256, matvec-quant.cpp) against
// the float64 dot of the dequantized weights (gguf::dequantize_row, itself checked against the gguf
// package's goldens in tests/gguf) with the quantized activation, on every SIMD target; and against
// the exact float activation within the activation's rounding bound. Random blocks: any scale byte,
// any quant byte, d and dmin of both signs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/test-util.h"
#include "core/half.h"
#include "cpu/matvec.h"
#include "hashattn/gguf.h"

namespace hashattn::cpu {
namespace {

constexpr double kU = 5.960464477539063e-08;  // fp32 unit roundoff

std::vector<uint8_t> random_rows(gguf::type t, int64_t rows, int64_t cols, std::mt19937_64& rng) {
  const size_t bb = gguf::type_block_bytes(t), rb = gguf::row_bytes(t, cols);
  std::vector<uint8_t> w(rb * rows);
  for (auto& b : w) b = (uint8_t)rng();
  std::uniform_real_distribution<float> ud(0.0005f, 0.01f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / 256; ++b) {
      uint8_t* blk = w.data() + r * rb + b * bb;
      const uint16_t d = fp32_to_fp16(ud(rng) * (rng() % 2 ? 1 : -1)), m = fp32_to_fp16(ud(rng) * (rng() % 2 ? 1 : -1));
      if (t == gguf::type::Q6_K) {
        std::memcpy(blk + 208, &d, 2);
      } else {
        std::memcpy(blk, &d, 2);
        std::memcpy(blk + 2, &m, 2);
      }
    }
  return w;
}

void run_kquant_cases() {
  struct kcase { gguf::type t; int64_t rows, cols; };
  const kcase cases[] = {{gguf::type::Q4_K, 1, 256}, {gguf::type::Q4_K, 37, 1536}, {gguf::type::Q5_K, 5, 256},
                         {gguf::type::Q5_K, 33, 768}, {gguf::type::Q6_K, 3, 256}, {gguf::type::Q6_K, 40, 1280}};
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
        ASSERT_TRUE(matvec_uses_int(c.t));
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
          for (int64_t j = 0; j < c.cols; ++j) {
            const double xd = (double)xq.q[j] * xq.d[j / 32];
            ref += wd[j] * xd;
            mag += std::fabs(wd[j] * xd);
            exact += (double)wd[j] * x[j];
            bound += std::fabs(wd[j]) * xq.d[j / 32] * (0.5 + kActQMax * 2 * kU);
          }
          const double tol = 4.0 * (c.cols / 8 + 8) * kU * mag + 1e-30;
          ASSERT_NEAR(y[r], ref, tol) << "row " << r;
          ASSERT_NEAR(y[r], exact, bound * 1.001 + tol) << "row " << r;
        }
      }
}

TEST(matvec_kquant, against_float64_dequantization) {
  test::for_each_simd_target([](const char*) { run_kquant_cases(); });
}

}  // namespace
}  // namespace hashattn::cpu
