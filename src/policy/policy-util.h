// Helpers shared by the policies in src/policy: list allocation, shape checks, K element access.
// Policies only produce index lists; attention itself is attn_decode_* (attention.h).
#pragma once
#include <cstdint>
#include <string>

#include "core/half.h"
#include "hashattn/error.h"
#include "hashattn/policy.h"

namespace hashattn::policy_detail {

inline void lists_reset(index_lists& out, int n_lists, int64_t stride, bool per_group) {
  out.per_group = per_group;
  out.stride = stride;
  out.count.assign(n_lists, 0);
  if ((int64_t)out.idx.size() < n_lists * stride) out.idx.resize((size_t)n_lists * stride);
}

inline void check_begin(const char* who, int n_layer, const layer_shape& s, int64_t max_ctx) {
  const std::string w = who;
  if (n_layer <= 0) fail(w + ": n_layer", std::to_string(n_layer), "> 0");
  if (s.n_head <= 0 || s.n_head_kv <= 0 || s.n_head % s.n_head_kv != 0)
    fail(w + ": heads", std::to_string(s.n_head) + "/" + std::to_string(s.n_head_kv),
         "n_head a positive multiple of n_head_kv");
  if (s.head_dim <= 0) fail(w + ": head_dim", std::to_string(s.head_dim), "> 0");
  if (max_ctx < 0 || max_ctx > INT32_MAX) fail(w + ": max_ctx", std::to_string(max_ctx), "in [0, 2^31)");
}

inline void check_layer(const char* who, int layer, int n_layer) {
  if (layer < 0 || layer >= n_layer)
    fail(std::string(who) + ": layer", std::to_string(layer), "in [0, " + std::to_string(n_layer) + ")",
         "call begin() first");
}

inline void check_kv(const char* who, const kv_view& kv, const layer_shape& s) {
  if (kv.n_head_kv != s.n_head_kv || kv.head_dim != s.head_dim)
    fail(std::string(who) + ": kv shape", std::to_string(kv.n_head_kv) + " heads x " + std::to_string(kv.head_dim),
         std::to_string(s.n_head_kv) + " x " + std::to_string(s.head_dim) + " (as given to begin)");
}

// K element (t, h, j) of a kv_view as float.
inline float kv_k(const kv_view& kv, int64_t t, int h, int j) {
  const int64_t off = t * kv.stride_tok + (int64_t)h * kv.stride_head + j;
  switch (kv.type) {
    case dtype::f32: return ((const float*)kv.k)[off];
    case dtype::f16: return fp16_to_fp32(((const uint16_t*)kv.k)[off]);
    case dtype::bf16: return bf16_to_fp32(((const uint16_t*)kv.k)[off]);
  }
  return 0;
}

}  // namespace hashattn::policy_detail
