// Small-batch mat-mat (matmul_small_multi, cpu/matvec.h) against the float64 dot of the dequantized
// rows (gguf::dequantize_row, checked against the gguf package's goldens in tests/gguf) with the
// quantized activation (integer types) or the float activation, on fresh random inputs with fixed,
// printed seeds; n_vec in {1, 2, 3, 7, 16}, odd row counts, every SIMD target (AVX3_DL, the kernel's
// VNNI path, among them on a CPU that has it). Also: a vector's
// result does not depend on the rest of the batch (bit for bit), n_vec = 1 and the float types are
// mat-vec bit for bit, the integer batch is within the two kernels' rounding of mat-vec, rows and
// columns past the output are left alone, and bad input is refused with hashattn::error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/quant-rows.h"
#include "common/test-util.h"
#include "core/half.h"
#include "cpu/matvec.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hwy/targets.h"

namespace hashattn::cpu {
namespace {

constexpr double kU = test::eps_fp32;
using test::random_rows;


// |additive constant| of each weight that the integer kernel applies through the activation's block
// sums (8 d, |m|, 16 d, dmin m_j), for the magnitude of the terms the kernel sums.
std::vector<double> offsets(gguf::type t, const uint8_t* row, int64_t cols) {
  std::vector<double> off(cols, 0.0);
  const size_t bb = gguf::type_block_bytes(t);
  const int64_t be = gguf::type_block_elems(t);
  for (int64_t b = 0; b < cols / be; ++b) {
    const uint8_t* blk = row + b * bb;
    uint16_t h0, h1;
    std::memcpy(&h0, blk, 2);
    std::memcpy(&h1, blk + 2, 2);
    for (int64_t j = 0; j < be; ++j) {
      double o = 0;
      if (t == gguf::type::Q4_0) o = 8 * std::fabs(fp16_to_fp32(h0));
      if (t == gguf::type::Q5_0) o = 16 * std::fabs(fp16_to_fp32(h0));
      if (t == gguf::type::Q4_1) o = std::fabs(fp16_to_fp32(h1));
      if (t == gguf::type::Q4_K || t == gguf::type::Q5_K) {
        int sc, mn;
        gguf::k4_scale_min((int)(j / 32), blk + 4, &sc, &mn);
        o = std::fabs(fp16_to_fp32(h1)) * mn;
      }
      off[b * be + j] = o;
    }
  }
  return off;
}

// One job's inputs and the call.
struct job {
  gguf::type t;
  int64_t rows, cols, ldx, ldy;
  int n_vec;
  std::vector<uint8_t> w;
  std::vector<float> x;
  std::vector<act_i16> xq;
  std::vector<float> y;
  matmul_small_params params() {
    matmul_small_params p;
    p.type = t;
    p.w = w.data();
    p.row_bytes = gguf::row_bytes(t, cols);
    p.n_rows = rows;
    p.n_cols = cols;
    p.n_vec = n_vec;
    p.x = x.data();
    p.ldx = ldx;
    p.xq = xq.data();
    p.y = y.data();
    p.ldy = ldy;
    return p;
  }
};

constexpr float kPad = -7.25f;

job make_job(gguf::type t, int64_t rows, int64_t cols, int n_vec, int dist, std::mt19937_64& rng) {
  job j{t, rows, cols, cols + 5, rows + 3, n_vec, {}, {}, {}, {}};
  j.w = random_rows(t, rows, cols, rng);
  j.x.assign((size_t)n_vec * j.ldx, 1e30f);  // the gap past n_cols must not be read
  j.xq.resize(n_vec);
  for (int v = 0; v < n_vec; ++v) {
    std::vector<float> xv = test::random_vec(rng, test::dist::normal, cols);
    if (dist == 1)  // outliers
      for (int64_t b = 0; b < cols / 32; ++b) xv[b * 32 + rng() % 32] = 400.f * (rng() % 2 ? 1 : -1);
    if (dist == 2)  // zero blocks
      for (int64_t b = 0; b < cols / 32; b += 2) std::fill(xv.begin() + b * 32, xv.begin() + b * 32 + 32, 0.f);
    std::copy(xv.begin(), xv.end(), j.x.begin() + v * j.ldx);
    quantize_act_i16(xv.data(), cols, j.xq[v]);
  }
  j.y.assign((size_t)n_vec * j.ldy, kPad);
  return j;
}

// y of vector v, row r, against the float64 dot (same activation as the kernel) and, for the integer
// types, the exact float activation within its rounding bound. Returns the tolerance of each result
// ([n_vec][rows]).
std::vector<double> check_against_float64(const job& j) {
  std::vector<double> tols((size_t)j.n_vec * j.rows);
  const bool int_path = matvec_uses_int(j.t);
  const size_t rb = gguf::row_bytes(j.t, j.cols);
  std::vector<float> wd(j.cols);
  for (int64_t r = 0; r < j.rows; ++r) {
    gguf::dequantize_row(j.t, j.w.data() + r * rb, wd.data(), j.cols);
    const std::vector<double> off = int_path ? offsets(j.t, j.w.data() + r * rb, j.cols) : std::vector<double>(j.cols, 0.0);
    for (int v = 0; v < j.n_vec; ++v) {
      const float* x = j.x.data() + v * j.ldx;
      const act_i16& q = j.xq[v];
      double ref = 0, mag = 0, exact = 0, bound = 0;
      for (int64_t e = 0; e < j.cols; ++e) {
        const double xd = int_path ? (double)q.q[e] * q.d[e / 32] : (double)x[e];
        ref += wd[e] * xd;
        mag += (std::fabs(wd[e]) + off[e]) * std::fabs(xd);
        exact += (double)wd[e] * x[e];
        bound += std::fabs(wd[e]) * q.d[e / 32] * (0.5 + kActQMax * 2 * kU);
      }
      const double tol = 4.0 * (j.cols / 8 + 8) * kU * mag + 1e-30;
      tols[v * j.rows + r] = tol;
      const float got = j.y[v * j.ldy + r];
      EXPECT_NEAR(got, ref, tol) << "vector " << v << " row " << r;
      if (int_path) {
        EXPECT_NEAR(got, exact, bound * 1.001 + tol) << "vector " << v << " row " << r;
      }
      if (::testing::Test::HasFailure()) return tols;
    }
  }
  for (int v = 0; v < j.n_vec; ++v)
    for (int64_t r = j.rows; r < j.ldy; ++r) EXPECT_EQ(j.y[v * j.ldy + r], kPad) << "padding of vector " << v;
  return tols;
}

// The same vectors through mat-vec one at a time.
std::vector<float> matvec_each(job& j) {
  std::vector<float> out((size_t)j.n_vec * j.rows);
  for (int v = 0; v < j.n_vec; ++v) {
    matvec_params m;
    m.type = j.t;
    m.w = j.w.data();
    m.row_bytes = gguf::row_bytes(j.t, j.cols);
    m.n_rows = j.rows;
    m.n_cols = j.cols;
    m.x = j.x.data() + v * j.ldx;
    m.xq = &j.xq[v];
    m.y = out.data() + v * j.rows;
    matvec(m, 1);
  }
  return out;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

void run_cases() {
  // Widths past 1024 (32 blocks) use several column ranges of the kernel; more than 32 rows, several
  // work units.
  struct mcase { gguf::type t; int64_t rows, cols; };
  const mcase cases[] = {
      {gguf::type::Q4_0, 37, 160}, {gguf::type::Q4_1, 33, 96},   {gguf::type::Q4_1, 19, 1088},
      {gguf::type::Q8_0, 21, 64},  {gguf::type::Q8_0, 71, 2080}, {gguf::type::Q5_0, 23, 288},
      {gguf::type::Q4_K, 17, 512}, {gguf::type::Q5_K, 13, 256},  {gguf::type::Q6_K, 11, 1280},
      {gguf::type::F32, 9, 160},   {gguf::type::F16, 27, 96},    {gguf::type::BF16, 7, 320},
      {gguf::type::Q3_K, 5, 256},  // no fast path: dequantize a row, then the float dot
  };
  uint64_t seed = 7100;
  for (const auto& c : cases)
    for (int n_vec : {1, 2, 3, 7, 16})
      for (int dist = 0; dist < 3; ++dist)
        for (int nt : {1, 2}) {
          if (dist > 0 && n_vec != 7 && n_vec != 16) continue;  // outliers and zero blocks at the larger batches
          ++seed;
          SCOPED_TRACE(std::string("type=") + gguf::type_name(c.t) + " rows=" + std::to_string(c.rows) +
                       " cols=" + std::to_string(c.cols) + " n_vec=" + std::to_string(n_vec) + " dist=" +
                       std::to_string(dist) + " threads=" + std::to_string(nt) + " seed=" + std::to_string(seed));
          std::mt19937_64 rng(seed);
          job j = make_job(c.t, c.rows, c.cols, n_vec, dist, rng);
          const matmul_small_params p = j.params();
          matmul_small_multi(&p, 1, nt);
          const std::vector<double> tols = check_against_float64(j);
          if (::testing::Test::HasFailure()) return;
          // Against mat-vec: bit for bit for one vector and for the float types; otherwise within the
          // rounding of both kernels (each within tol of the float64 value: this test and matvec's).
          const std::vector<float> mv = matvec_each(j);
          const bool exact = n_vec == 1 || !matvec_uses_int(c.t);
          for (int v = 0; v < n_vec; ++v)
            for (int64_t r = 0; r < c.rows; ++r) {
              const float a = j.y[v * j.ldy + r], b = mv[v * c.rows + r];
              if (exact) {
                ASSERT_TRUE(same_bits(a, b)) << "vector " << v << " row " << r << ": " << a << " vs mat-vec " << b;
              } else {
                ASSERT_NEAR(a, b, 2 * tols[v * c.rows + r]) << "vector " << v << " row " << r;  // both within tol
              }
            }
          // A vector's result does not depend on the rest of the batch: the same vectors in reverse
          // order give the same bits, and so do the first 3 alone (another grouping of the kernel).
          if (n_vec > 1) {
            job rev = j;
            std::reverse(rev.xq.begin(), rev.xq.end());
            for (int v = 0; v < n_vec; ++v)
              std::copy(j.x.begin() + (n_vec - 1 - v) * j.ldx, j.x.begin() + (n_vec - v) * j.ldx, rev.x.begin() + v * j.ldx);
            std::fill(rev.y.begin(), rev.y.end(), kPad);
            const matmul_small_params pr = rev.params();
            matmul_small_multi(&pr, 1, nt);
            for (int v = 0; v < n_vec; ++v)
              for (int64_t r = 0; r < c.rows; ++r)
                ASSERT_TRUE(same_bits(rev.y[(n_vec - 1 - v) * j.ldy + r], j.y[v * j.ldy + r])) << "vector " << v << " row " << r;
          }
          if (n_vec > 3) {
            job few = j;
            few.n_vec = 3;
            few.xq.resize(3);
            std::fill(few.y.begin(), few.y.end(), kPad);
            const matmul_small_params pf = few.params();
            matmul_small_multi(&pf, 1, nt);
            for (int v = 0; v < 3; ++v)
              for (int64_t r = 0; r < c.rows; ++r)
                ASSERT_TRUE(same_bits(few.y[v * j.ldy + r], j.y[v * j.ldy + r])) << "3 of " << n_vec << ": vector " << v << " row " << r;
          }
        }
}

TEST(matmul_small, against_float64_and_matvec) {
  test::for_each_simd_target([](const char*) { run_cases(); });
}

// Several jobs of one call (different types, widths, batch sizes) in one parallel region.
TEST(matmul_small, several_jobs) {
  const uint64_t seed = 7900;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<job> js;
  js.push_back(make_job(gguf::type::Q4_1, 41, 256, 5, 0, rng));
  js.push_back(make_job(gguf::type::Q6_K, 3, 256, 16, 1, rng));
  js.push_back(make_job(gguf::type::F16, 50, 64, 2, 0, rng));
  js.push_back(make_job(gguf::type::Q8_0, 1, 32, 9, 2, rng));
  std::vector<matmul_small_params> ps;
  for (auto& j : js) ps.push_back(j.params());
  matmul_small_multi(ps.data(), (int)ps.size(), 2);
  for (const auto& j : js) {
    SCOPED_TRACE(std::string("type=") + gguf::type_name(j.t));
    check_against_float64(j);
  }
}

void expect_refused(const matmul_small_params& p, const std::string& needle) {
  try {
    matmul_small_multi(&p, 1, 1);
    ADD_FAILURE() << "accepted; expected an error naming " << needle;
  } catch (const hashattn::error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(matmul_small, refuses_bad_input) {
  std::mt19937_64 rng(7950);
  job j = make_job(gguf::type::Q4_1, 4, 64, 16, 0, rng);
  job jf = make_job(gguf::type::F32, 4, 64, 2, 0, rng);
  for (int n_vec : {0, 17, -1, 1000}) {
    SCOPED_TRACE("n_vec=" + std::to_string(n_vec));
    matmul_small_params p = j.params();
    p.n_vec = n_vec;
    expect_refused(p, "n_vec");
    expect_refused(p, "expected 1 .. 16");
  }
  matmul_small_params p = j.params();
  p.xq = nullptr;
  expect_refused(p, "quantized activations");
  act_i16 short_act;
  const std::vector<float> z(32, 1.f);
  quantize_act_i16(z.data(), 32, short_act);
  std::vector<act_i16> bad = j.xq;
  bad[15] = short_act;
  p = j.params();
  p.xq = bad.data();
  expect_refused(p, "quantized activation 15 length");
  p = jf.params();
  p.x = nullptr;
  expect_refused(p, "float activations");
  p = jf.params();
  p.ldx = 10;
  expect_refused(p, "ldx");
  p = j.params();
  p.ldy = 3;
  expect_refused(p, "ldy");
  p = j.params();
  p.w = nullptr;
  expect_refused(p, "null operand");
  job jk = make_job(gguf::type::Q4_K, 2, 256, 2, 0, rng);
  p = jk.params();
  p.n_cols = 288;  // not a multiple of a K-quant super-block
  expect_refused(p, "multiple of the block size");
  p = j.params();
  EXPECT_THROW(matmul_small_multi(&p, 0, 1), hashattn::error);
  EXPECT_THROW(matmul_small_multi(&p, 9, 1), hashattn::error);
  // Nothing written by a refused call.
  for (float v : j.y) ASSERT_EQ(v, kPad);
}

}  // namespace
}  // namespace hashattn::cpu
