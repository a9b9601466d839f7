// Row kernels of the llama-family forward pass: RMSNorm, RoPE (adjacent and NEOX pairs), SwiGLU,
// masked softmax rows for batched prefill attention, residual add. Layouts in cpu/model-ops.h.
// SwiGLU and softmax use Highway's vector exp (runtime dispatch); the rest is scalar or
// compiler-vectorized, being a negligible part of a token's time.
#include <algorithm>
#include <cmath>

#include "core/half.h"
#include "cpu/model-ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/model-ops.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace hashattn::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void swiglu_impl(const float* g, const float* u, float* h, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t N = (int64_t)hn::Lanes(df);
  const auto one = hn::Set(df, 1.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto gv = hn::LoadU(df, g + i);
    const auto e = hn::Exp(df, hn::Neg(gv));
    hn::StoreU(hn::Mul(hn::Div(gv, hn::Add(one, e)), hn::LoadU(df, u + i)), df, h + i);
  }
  for (; i < n; ++i) h[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void softmax_row_impl(float* s, int64_t n_valid, int64_t n, float scale) {
  const hn::ScalableTag<float> df;
  const int64_t N = (int64_t)hn::Lanes(df);
  float mx = -INFINITY;
  for (int64_t j = 0; j < n_valid; ++j) mx = std::max(mx, s[j]);
  const float shift = mx * scale;
  const auto vs = hn::Set(df, scale);
  const auto vshift = hn::Set(df, shift);
  auto vsum = hn::Zero(df);
  int64_t j = 0;
  for (; j + N <= n_valid; j += N) {
    const auto e = hn::Exp(df, hn::MulSub(hn::LoadU(df, s + j), vs, vshift));
    vsum = hn::Add(vsum, e);
    hn::StoreU(e, df, s + j);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
  for (; j < n_valid; ++j) {
    s[j] = std::exp(s[j] * scale - shift);
    sum += s[j];
  }
  const float inv = n_valid > 0 ? 1.0f / sum : 0.0f;
  const auto vinv = hn::Set(df, inv);
  j = 0;
  for (; j + N <= n_valid; j += N) hn::StoreU(hn::Mul(hn::LoadU(df, s + j), vinv), df, s + j);
  for (; j < n_valid; ++j) s[j] *= inv;
  for (j = n_valid; j < n; ++j) s[j] = 0.0f;
}

void f32_to_f16_impl(const float* x, uint16_t* y, int64_t n) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const int64_t N = (int64_t)hn::Lanes(df);
  auto* yh = reinterpret_cast<hwy::float16_t*>(y);
  int64_t i = 0;
  // Only F16C rounds to nearest even; Highway's emulation on older targets truncates.
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  for (; i + N <= n; i += N) hn::StoreU(hn::DemoteTo(dh, hn::LoadU(df, x + i)), dh, yh + i);
#else
  (void)yh;
  (void)dh;
  (void)N;
#endif
  for (; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

void f16_to_f32_impl(const uint16_t* x, float* y, int64_t n) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const int64_t N = (int64_t)hn::Lanes(df);
  const auto* xh = reinterpret_cast<const hwy::float16_t*>(x);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, xh + i)), df, y + i);
  for (; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

}  // namespace HWY_NAMESPACE
}  // namespace hashattn::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hashattn::cpu {
HWY_EXPORT(swiglu_impl);
HWY_EXPORT(softmax_row_impl);
HWY_EXPORT(f32_to_f16_impl);
HWY_EXPORT(f16_to_f32_impl);

void f32_to_f16_row(const float* x, uint16_t* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(f32_to_f16_impl)(x, y, n);
}

void f16_to_f32_row(const uint16_t* x, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(f16_to_f32_impl)(x, y, n);
}

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += (double)x[i] * (double)x[i];
  const float scale = (float)(1.0 / std::sqrt(ss / (double)n + (double)eps));
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void rope_angles(int64_t pos, int n_dims, float base, const float* freq_factors, float* cos_out,
                 float* sin_out) {
  const float theta_scale = std::pow(base, -2.0f / (float)n_dims);
  float theta = (float)pos;
  for (int i = 0; i < n_dims / 2; ++i) {
    const float t = freq_factors ? theta / freq_factors[i] : theta;
    cos_out[i] = std::cos(t);
    sin_out[i] = std::sin(t);
    theta *= theta_scale;
  }
}

void rope_angles_scaled(int64_t pos, int n_dims, float base, const float* freq_factors,
                        const rope_scaling_params& sc, float* cos_out, float* sin_out) {
  const float theta_scale = std::pow(base, -2.0f / (float)n_dims);
  float theta = (float)pos;
  for (int i = 0; i < n_dims / 2; ++i) {
    const float te = freq_factors ? theta / freq_factors[i] : theta;
    const float ti = sc.freq_scale * te;
    float t = ti, ms = sc.mscale;
    if (sc.ext_factor != 0.0f) {
      const float y = ((float)i - sc.corr_lo) / std::max(0.001f, sc.corr_hi - sc.corr_lo);
      const float mix = (1 - std::min(1.0f, std::max(0.0f, y))) * sc.ext_factor;
      t = ti * (1 - mix) + te * mix;
      ms *= 1.0f + 0.1f * std::log(1.0f / sc.freq_scale);
    }
    cos_out[i] = std::cos(t) * ms;
    sin_out[i] = std::sin(t) * ms;
    theta *= theta_scale;
  }
}

void geglu(const float* g, const float* u, float* h, int64_t n) {
  constexpr float kA = 0.044715f, kS = 0.79788456080286535588f;  // sqrt(2/pi)
  for (int64_t i = 0; i < n; ++i) {
    const float x = g[i];
    h[i] = 0.5f * x * (1.0f + std::tanh(kS * x * (1.0f + kA * x * x))) * u[i];
  }
}

void softcap(float* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

void rope_apply(float* x, int n_heads, int head_dim, int n_dims, bool neox, const float* cos_t,
                const float* sin_t) {
  const int half = n_dims / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + (int64_t)h * head_dim;
    if (neox) {
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos_t[i] - b * sin_t[i];
        v[i + half] = a * sin_t[i] + b * cos_t[i];
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos_t[i] - b * sin_t[i];
        v[2 * i + 1] = a * sin_t[i] + b * cos_t[i];
      }
    }
  }
}

void swiglu(const float* g, const float* u, float* h, int64_t n) {
  HWY_DYNAMIC_DISPATCH(swiglu_impl)(g, u, h, n);
}

void softmax_row(float* s, int64_t n_valid, int64_t n, float scale) {
  HWY_DYNAMIC_DISPATCH(softmax_row_impl)(s, n_valid, n, scale);
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace hashattn::cpu
#endif  // HWY_ONCE
