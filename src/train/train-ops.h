// Element-wise kernels of hash-encoder training (CPU, Highway runtime dispatch), fp32:
//   silu_forward:  sig[i] = 1 / (1 + exp(-h[i])), act[i] = h[i] * sig[i]
//   silu_backward: d[i] *= sig[i] * (1 + h[i] * (1 - sig[i]))      (the SiLU derivative)
//   tanh_rows:     t[i] = tanh(y[i])
//   tanh_backward: d[i] = g[i] * (1 - t[i]^2)
// Inputs of any magnitude are valid (exp arguments are clamped to the kernel's range).
#pragma once
#include <cstdint>

namespace hashattn::train_detail {

void silu_forward(const float* h, float* act, float* sig, int64_t n);
void silu_backward(float* d, const float* h, const float* sig, int64_t n);
void tanh_rows(const float* y, float* t, int64_t n);
void tanh_backward(const float* g, const float* t, float* d, int64_t n);

}  // namespace hashattn::train_detail
