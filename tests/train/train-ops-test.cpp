// Element-wise training kernels (SiLU forward/backward, tanh and its backward) against float64 on every
// SIMD target, with inputs of several distributions and magnitudes (up to +-1e4: exp arguments clamp),
// sizes that are not a multiple of the vector width. Seeds are fixed and printed.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/test-util.h"
#include "train/train-ops.h"

namespace hashattn::train_detail {
namespace {

TEST(TrainOps, AgainstFloat64) {
  test::for_each_simd_target([](const char* target) {
    SCOPED_TRACE(target);
    for (int64_t n : {1, 7, 16, 33, 1000})
      for (test::dist dd : test::all_dists)
        for (float scale : {1.f, 30.f, 1e4f}) {
          const uint64_t seed = 7000 + n * 31 + (int)dd * 7 + (int)scale;
          SCOPED_TRACE(::testing::Message() << "seed " << seed << " n " << n << " dist " << test::dist_name(dd)
                                            << " scale " << scale);
          std::mt19937_64 rng(seed);
          const std::vector<float> h = test::random_vec(rng, dd, n, scale);
          const std::vector<float> g = test::random_vec(rng, test::dist::normal, n);
          std::vector<float> act(n), sig(n), d(g), t(n), dt(n);
          silu_forward(h.data(), act.data(), sig.data(), n);
          silu_backward(d.data(), h.data(), sig.data(), n);
          tanh_rows(h.data(), t.data(), n);
          tanh_backward(g.data(), t.data(), dt.data(), n);
          for (int64_t i = 0; i < n; i++) {
            const double x = h[i], s = 1.0 / (1.0 + std::exp(-x));
            const double a = x * s, dv = g[i] * s * (1.0 + x * (1.0 - s)), th = std::tanh(x);
            const double dth = g[i] * (1.0 - (double)t[i] * t[i]);
            ASSERT_NEAR(sig[i], s, 4e-7) << i;
            ASSERT_NEAR(act[i], a, 4e-7 * (1 + std::fabs(a))) << i;
            ASSERT_NEAR(d[i], dv, 1e-6 * (1 + std::fabs(dv) + std::fabs(g[i] * x))) << i;
            ASSERT_NEAR(t[i], th, 4e-7) << i;
            ASSERT_NEAR(dt[i], dth, 1e-6 * (1 + std::fabs(dth))) << i;
          }
        }
  });
}

}  // namespace
}  // namespace hashattn::train_detail
