// Helpers shared by the policies in src/policy: shape checks, K access, list queries.
// Policies only produce index lists; kernels are reached through the backend table (backend.h).
#pragma once
#include <cstdint>
#include <string>

#include "core/half.h"
#include "cpu/model-ops.h"
#include "hashattn/backend.h"
#include "hashattn/error.h"
#include "hashattn/policy.h"

namespace hashattn::policy_detail {

// The backend a policy runs its ops on (policy_config.be, else the default).
inline const backend& policy_backend(const policy_config& c) { return c.be ? *c.be : backend_default(); }

// Selects lists r0 .. r0+n_lists-1 of `out` from float scores [n_lists, n] through the backend's
// select_scores (n_threads 1 inside a caller's parallel loop).
inline void select_from_scores(const backend& be, const float* score, int64_t n, int r0, int n_lists,
                               const budget_params& b, int n_threads, index_lists& out) {
  score_select_params p;
  p.score = score;
  p.n_tok = n;
  p.n_lists = n_lists;
  p.score_stride = n;
  p.budget = b;
  p.idx = out.idx.data() + (int64_t)r0 * out.stride;
  p.count = out.count.data() + r0;
  p.idx_stride = out.stride;
  p.n_threads = n_threads;
  be.call_select_scores(p);
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

// K element at element offset `off` of a kv_view as float.
inline float kv_k_at(const kv_view& kv, int64_t off) {
  switch (kv.type) {
    case dtype::f32: return ((const float*)kv.k)[off];
    case dtype::f16: return fp16_to_fp32(((const uint16_t*)kv.k)[off]);
    case dtype::bf16: return bf16_to_fp32(((const uint16_t*)kv.k)[off]);
  }
  return 0;
}

// Dot product with 8 independent partial sums: vectorizable without reassociation flags (a plain
// `a += x[j] * y[j]` loop is one serial chain of d dependent adds).
inline float dot_f32(const float* a, const float* b, int d) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int j = 0;
  for (; j + 8 <= d; j += 8)
    for (int u = 0; u < 8; u++) acc[u] += a[j + u] * b[j + u];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; j < d; j++) s += a[j] * b[j];
  return s;
}

// Key row t of KV head hk as fp32 [head_dim] (fp16 rows through the vector converter); rw = kv_rows(kv),
// set up once by the caller's loop.
inline void kv_key_row_f32(const kv_view& kv, const kv_rows& rw, int64_t t, int hk, float* out) {
  const int64_t off = rw.at(t) + (int64_t)hk * kv.stride_head;
  if (kv.type == dtype::f16) {
    cpu::f16_to_f32_row((const uint16_t*)kv.k + off, out, kv.head_dim);
    return;
  }
  for (int j = 0; j < kv.head_dim; j++) out[j] = kv_k_at(kv, off + j);
}

// The query of each list of KV head hk, out [per_group ? 1 : G, d]: per head the G query heads of the
// group (q_h), per group their sum (the sum of the group's scores is the score of the summed query).
inline void kv_head_list_queries(const float* q, int hk, int G, int d, bool per_group, float* out) {
  const int n_lists = per_group ? 1 : G;
  for (int r = 0; r < n_lists; r++) {
    float* o = out + (size_t)r * d;
    for (int j = 0; j < d; j++) o[j] = 0.f;
    for (int h = per_group ? hk * G : hk * G + r; h < (per_group ? (hk + 1) * G : hk * G + r + 1); h++)
      for (int j = 0; j < d; j++) o[j] += q[(int64_t)h * d + j];
  }
}

}  // namespace hashattn::policy_detail
