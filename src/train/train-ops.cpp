// Element-wise training kernels (see train-ops.h): SiLU forward/backward and tanh with Highway's vector
// Exp / Tanh (runtime dispatch); scalar tails. Tested against float64 in tests/train/train-ops-test.cpp.
#include "train/train-ops.h"

#include <algorithm>
#include <cmath>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/train-ops.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace hashattn::train_detail {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

inline float sig_scalar(float h) { return 1.0f / (1.0f + std::exp(std::min(-h, 88.0f))); }

void silu_forward_impl(const float* h, float* act, float* sig, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t N = (int64_t)hn::Lanes(df);
  const auto one = hn::Set(df, 1.0f), lim = hn::Set(df, 88.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto x = hn::LoadU(df, h + i);
    const auto s = hn::Div(one, hn::Add(one, hn::Exp(df, hn::Min(hn::Neg(x), lim))));
    hn::StoreU(s, df, sig + i);
    hn::StoreU(hn::Mul(x, s), df, act + i);
  }
  for (; i < n; ++i) {
    sig[i] = sig_scalar(h[i]);
    act[i] = h[i] * sig[i];
  }
}

void silu_backward_impl(float* d, const float* h, const float* sig, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t N = (int64_t)hn::Lanes(df);
  const auto one = hn::Set(df, 1.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto s = hn::LoadU(df, sig + i);
    const auto g = hn::Mul(s, hn::MulAdd(hn::LoadU(df, h + i), hn::Sub(one, s), one));
    hn::StoreU(hn::Mul(hn::LoadU(df, d + i), g), df, d + i);
  }
  for (; i < n; ++i) d[i] *= sig[i] * (1.0f + h[i] * (1.0f - sig[i]));
}

void tanh_rows_impl(const float* y, float* t, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t N = (int64_t)hn::Lanes(df);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Tanh(df, hn::LoadU(df, y + i)), df, t + i);
  for (; i < n; ++i) t[i] = std::tanh(y[i]);
}

void tanh_backward_impl(const float* g, const float* t, float* d, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t N = (int64_t)hn::Lanes(df);
  const auto one = hn::Set(df, 1.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto tv = hn::LoadU(df, t + i);
    hn::StoreU(hn::Mul(hn::LoadU(df, g + i), hn::NegMulAdd(tv, tv, one)), df, d + i);
  }
  for (; i < n; ++i) d[i] = g[i] * (1.0f - t[i] * t[i]);
}

}  // namespace HWY_NAMESPACE
}  // namespace hashattn::train_detail
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hashattn::train_detail {
HWY_EXPORT(silu_forward_impl);
HWY_EXPORT(silu_backward_impl);
HWY_EXPORT(tanh_rows_impl);
HWY_EXPORT(tanh_backward_impl);

void silu_forward(const float* h, float* act, float* sig, int64_t n) {
  HWY_DYNAMIC_DISPATCH(silu_forward_impl)(h, act, sig, n);
}
void silu_backward(float* d, const float* h, const float* sig, int64_t n) {
  HWY_DYNAMIC_DISPATCH(silu_backward_impl)(d, h, sig, n);
}
void tanh_rows(const float* y, float* t, int64_t n) { HWY_DYNAMIC_DISPATCH(tanh_rows_impl)(y, t, n); }
void tanh_backward(const float* g, const float* t, float* d, int64_t n) {
  HWY_DYNAMIC_DISPATCH(tanh_backward_impl)(g, t, d, n);
}
}  // namespace hashattn::train_detail
#endif
