// RMSNorm, RoPE (adjacent and NEOX pairs), SwiGLU and masked softmax rows against float64
// references on random inputs (fixed seeds, printed), every SIMD target.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/test-util.h"
#include "cpu/model-ops.h"

namespace hashattn::cpu {
namespace {

constexpr double kU = test::eps_fp32;

TEST(rms_norm, against_float64) {
  for (uint64_t seed : {11u, 12u, 13u}) {
    for (auto d : test::all_dists) {
      for (int64_t n : {1, 7, 64, 576, 2049}) {
        HASHATTN_SEED(seed);
        SCOPED_TRACE(std::string("dist=") + test::dist_name(d) + " n=" + std::to_string(n));
        std::mt19937_64 rng(seed + n);
        auto x = test::random_vec(rng, d, n, 1.f, 300.f);
        auto w = test::random_vec(rng, test::dist::normal, n);
        std::vector<float> y(n);
        const float eps = 1e-5f;
        rms_norm(x.data(), w.data(), y.data(), n, eps);
        double ss = 0;
        for (float v : x) ss += (double)v * v;
        const double sc = 1.0 / std::sqrt(ss / n + eps);
        std::vector<double> ref(n);
        for (int64_t i = 0; i < n; ++i) ref[i] = x[i] * sc * w[i];
        // Three fp32 roundings per element (scale, two products).
        EXPECT_TRUE(test::all_close(y.data(), ref.data(), n, 1e-30, 4 * kU));
      }
    }
  }
}

TEST(rope, angles_against_float64) {
  for (int n_dims : {64, 128, 32}) {
    for (float base : {10000.0f, 100000.0f, 1000000.0f}) {
      for (int64_t pos : {0, 1, 17, 511, 8191, 32767}) {
        SCOPED_TRACE("n_dims=" + std::to_string(n_dims) + " base=" + std::to_string(base) +
                     " pos=" + std::to_string(pos));
        std::vector<float> c(n_dims / 2), s(n_dims / 2);
        rope_angles(pos, n_dims, base, nullptr, c.data(), s.data());
        for (int i = 0; i < n_dims / 2; ++i) {
          const double theta = pos * std::pow((double)base, -2.0 * i / n_dims);
          // The angle is an iterated fp32 product: relative error <= (i + 3) u, plus the
          // rounding of base^(-2/n_dims) raised to the i-th power (i u).
          const double tol = theta * (2 * i + 4) * kU + 4 * kU;
          ASSERT_NEAR(c[i], std::cos(theta), tol) << "i=" << i;
          ASSERT_NEAR(s[i], std::sin(theta), tol) << "i=" << i;
        }
      }
    }
  }
  // Frequency factors divide the angle.
  std::vector<float> ff = {1.f, 2.f, 4.f, 8.f}, c(4), s(4), c1(4), s1(4);
  rope_angles(100, 8, 10000.f, ff.data(), c.data(), s.data());
  rope_angles(100, 8, 10000.f, nullptr, c1.data(), s1.data());
  for (int i = 0; i < 4; ++i) {
    const double theta = 100 * std::pow(10000.0, -2.0 * i / 8) / ff[i];
    EXPECT_NEAR(c[i], std::cos(theta), 1e-4);
    EXPECT_NEAR(s[i], std::sin(theta), 1e-4);
  }
  EXPECT_NEAR(c[0], c1[0], 0);
}

TEST(rope, apply_both_layouts_against_float64) {
  uint64_t seed = 40;
  for (bool neox : {false, true}) {
    for (int head_dim : {64, 128}) {
      for (int n_dims : {head_dim, head_dim / 2}) {
        ++seed;
        HASHATTN_SEED(seed);
        SCOPED_TRACE(std::string(neox ? "neox" : "adjacent") + " head_dim=" +
                     std::to_string(head_dim) + " n_dims=" + std::to_string(n_dims));
        std::mt19937_64 rng(seed);
        const int n_heads = 3;
        auto x = test::random_vec(rng, test::dist::normal, n_heads * head_dim);
        std::vector<float> c(n_dims / 2), s(n_dims / 2);
        rope_angles(1234, n_dims, 10000.f, nullptr, c.data(), s.data());
        auto y = x;
        rope_apply(y.data(), n_heads, head_dim, n_dims, neox, c.data(), s.data());
        std::vector<double> ref(x.begin(), x.end());
        for (int h = 0; h < n_heads; ++h) {
          for (int i = 0; i < n_dims / 2; ++i) {
            const int a = h * head_dim + (neox ? i : 2 * i);
            const int b = h * head_dim + (neox ? i + n_dims / 2 : 2 * i + 1);
            ref[a] = (double)x[a] * c[i] - (double)x[b] * s[i];
            ref[b] = (double)x[a] * s[i] + (double)x[b] * c[i];
          }
        }
        // Dims past n_dims are untouched (ref keeps them), two products and one sum each.
        EXPECT_TRUE(test::all_close(y.data(), ref.data(), (int64_t)y.size(), 4 * kU * 4, 4 * kU));
        // A rotation keeps the norm of each head.
        for (int h = 0; h < n_heads; ++h) {
          double n0 = 0, n1 = 0;
          for (int j = 0; j < head_dim; ++j)
            n0 += (double)x[h * head_dim + j] * x[h * head_dim + j],
                n1 += (double)y[h * head_dim + j] * y[h * head_dim + j];
          EXPECT_NEAR(n1, n0, n0 * 1e-5);
        }
      }
    }
  }
  // Position 0 is the identity.
  std::vector<float> c(32), s(32), x(64, 0.5f), y = x;
  rope_angles(0, 64, 10000.f, nullptr, c.data(), s.data());
  rope_apply(y.data(), 1, 64, 64, false, c.data(), s.data());
  EXPECT_EQ(x, y);
}

TEST(swiglu, against_float64) {
  test::for_each_simd_target([](const char*) {
    for (uint64_t seed : {21u, 22u}) {
      for (auto d : test::all_dists) {
        for (int64_t n : {1, 15, 16, 17, 1536}) {
          HASHATTN_SEED(seed);
          SCOPED_TRACE(std::string("dist=") + test::dist_name(d) + " n=" + std::to_string(n));
          std::mt19937_64 rng(seed * 100 + n);
          auto g = test::random_vec(rng, d, n, 2.f, 20.f);
          auto u = test::random_vec(rng, test::dist::normal, n);
          std::vector<float> h(n);
          swiglu(g.data(), u.data(), h.data(), n);
          std::vector<double> ref(n);
          for (int64_t i = 0; i < n; ++i) ref[i] = g[i] / (1.0 + std::exp(-(double)g[i])) * u[i];
          // exp within a few ulp, one division, one product.
          EXPECT_TRUE(test::all_close(h.data(), ref.data(), n, 1e-30, 16 * kU));
        }
      }
    }
  });
}

TEST(softmax_row, against_float64) {
  test::for_each_simd_target([](const char*) {
    for (uint64_t seed : {31u, 32u}) {
      for (auto d : test::all_dists) {
        for (int64_t n : {1, 5, 16, 33, 700}) {
          for (int64_t n_valid : {int64_t(1), n / 2 + 1, n}) {
            HASHATTN_SEED(seed);
            SCOPED_TRACE(std::string("dist=") + test::dist_name(d) + " n=" + std::to_string(n) +
                         " valid=" + std::to_string(n_valid));
            std::mt19937_64 rng(seed * 1000 + n * 7 + n_valid);
            auto s = test::random_vec(rng, d, n, 3.f, 10.f);
            const float scale = 0.125f;
            std::vector<double> ref(n, 0.0);
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < n_valid; ++j) mx = std::max(mx, (double)s[j] * scale);
            for (int64_t j = 0; j < n_valid; ++j) sum += ref[j] = std::exp(s[j] * scale - mx);
            for (int64_t j = 0; j < n_valid; ++j) ref[j] /= sum;
            softmax_row(s.data(), n_valid, n, scale);
            EXPECT_TRUE(test::all_close(s.data(), ref.data(), n, 8 * kU, 32 * kU));
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace hashattn::cpu
