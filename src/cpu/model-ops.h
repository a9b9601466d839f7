// Element-wise and row kernels of the llama-family forward pass (CPU, Highway runtime dispatch):
//   rms_norm:  y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]          (sum of squares in double)
//   rope:      rotates the first n_dims dims of each head by angle pos * base^(-2i/n_dims)
//              (/ freq_factors[i] when given); adjacent pairs (x[2i], x[2i+1]) for llama files,
//              NEOX pairs (x[i], x[i + n_dims/2]) for qwen2-style files.  x: [n_heads, head_dim]
//   swiglu:    h[i] = silu(g[i]) * u[i],  silu(g) = g / (1 + exp(-g))
//   geglu:     h[i] = gelu(g[i]) * u[i],  gelu(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))
//   softmax_row: p[j] = exp(scale * s[j] - max) / sum for j < n_valid, 0 for n_valid <= j < n.
#pragma once
#include <cstdint>

namespace hashattn::cpu {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

// cos/sin of the n_dims/2 angles of one position. The angles follow the usual float recipe
// theta_i = pos * base^(-2/n_dims)^i (an iterated float product), so results agree with other
// runtimes at long positions. freq_factors may be null.
void rope_angles(int64_t pos, int n_dims, float base, const float* freq_factors, float* cos_out,
                 float* sin_out);
// Scaled RoPE angles (ggml's rope_yarn): theta_e = the angle of rope_angles; theta_i = freq_scale *
// theta_e; with ext_factor != 0 (YaRN) theta = theta_i (1 - r) + theta_e r, r = ext_factor *
// (1 - clamp((i - corr_lo) / max(0.001, corr_hi - corr_lo), 0, 1)), and cos, sin are multiplied by
// mscale * (1 + 0.1 ln(1 / freq_scale)); without it theta = theta_i and the factor is mscale.
struct rope_scaling_params {
  float freq_scale = 1.f, ext_factor = 0.f, mscale = 1.f, corr_lo = 0.f, corr_hi = 0.f;
};
void rope_angles_scaled(int64_t pos, int n_dims, float base, const float* freq_factors,
                        const rope_scaling_params& sc, float* cos_out, float* sin_out);
void rope_apply(float* x, int n_heads, int head_dim, int n_dims, bool neox, const float* cos_t,
                const float* sin_t);

void swiglu(const float* g, const float* u, float* h, int64_t n);
void geglu(const float* g, const float* u, float* h, int64_t n);
// x[i] = cap * tanh(x[i] / cap) (final logit soft-capping)
void softcap(float* x, int64_t n, float cap);

void softmax_row(float* s, int64_t n_valid, int64_t n, float scale);

// fp32 <-> fp16 (IEEE binary16 bits, round to nearest even) for the KV cache.
void f32_to_f16_row(const float* x, uint16_t* y, int64_t n);
void f16_to_f32_row(const uint16_t* x, float* y, int64_t n);

// y += x (n elements)
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace hashattn::cpu
