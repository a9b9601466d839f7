// The decode-attention ops of the backend table (backend.h): one params struct per op and its
// validator (src/core, host-only), consumed by src/ref (float64), src/cpu and, for the device, src/cuda.
// Params hold raw pointers, strides and sizes only; every backend refuses the same bad input.
//   attend:        q [n_head, d] fp32 over a kv_view (core.h), dense or over index lists -> out [n_head, d]
//   encode:        rows of x -> packed codes, all encoders (heads) of one MLP role
//   select_codes:  XOR + popcount scores of key codes against query codes, then the selection rule
//   score_codes:   the same scores, written out (tests, diagnostics)
//   select_scores: the selection rule over float scores (oracle, Quest pages, Double Sparsity)
// Index lists: list r holds idx[r * idx_stride + 0 .. count[r]), positions ascending and unique; per
// query head (n_head lists) or per KV group (n_head_kv lists, shared by the group's query heads).
#pragma once
#include <cstdint>

#include "hashattn/core.h"

namespace hashattn {

// ---- attend ----
struct attn_decode_params {
  const float* q = nullptr;  // [n_head, head_dim]
  kv_view kv;
  int n_head = 0;
  float scale = 0;           // usually 1/sqrt(head_dim)
  // Sparse selection; idx == nullptr means dense over all n_tok tokens.
  const int32_t* idx = nullptr;
  const int32_t* idx_count = nullptr;
  int64_t idx_stride = 0;
  bool per_group = false;
  float* out = nullptr;      // [n_head, head_dim]
  int n_threads = 0;         // 0 = all
};
// Sizes, strides, pointers in O(1) and every index list in O(total indices). An empty list (count 0)
// is valid and gives a zero output row; so does n_tok == 0 (dense).
void attn_decode_validate(const attn_decode_params& p);
// Points the sparse fields at the lists (they must outlive the call).
inline void attn_params_set_lists(attn_decode_params& p, const index_lists& l) {
  p.idx = l.idx.data();
  p.idx_count = l.count.data();
  p.idx_stride = l.stride;
  p.per_group = l.per_group;
}

// ---- encode: x -> codes ----
// Input of encoder e for row r: x + r * x_stride_row + (e / in_group) * x_stride_head (in_dim floats).
// in_group = G for per-query-head key encoders over KV-head keys, 1 otherwise.
// Code of (r, e) written at word r * code_stride_row + e * code_stride_enc (words of mlp.bits).
struct hash_encode_params {
  hash_mlp_view mlp;
  const float* x = nullptr;
  int64_t n_rows = 0;
  int64_t x_stride_row = 0;
  int64_t x_stride_head = 0;
  int in_group = 1;
  void* codes = nullptr;
  int64_t code_stride_row = 1;  // words between rows
  int64_t code_stride_enc = 0;  // words between encoders
  int n_threads = 0;            // 0 = all
};
void hash_encode_validate(const hash_encode_params& p);

// ---- score + select over codes ----
// mode per_head -> n_head lists; list h scores b - popcount(q_h xor k_t[e(h)]), e(h) = h for
// per-query-head codes, h / G for per-group codes. mode per_group -> n_head_kv lists; list hk scores
// sum_g (b - popcount(q_{hk*G+g} xor k_t[e])), e = hk*G+g (per-head codes) or hk (per-group codes).
// q_codes: [n_head] words. count[r] = budget_tokens(budget, n_tok); idx_stride >= that count.
struct hash_select_params {
  code_view keys;
  const void* q_codes = nullptr;
  int n_head = 0;
  int n_head_kv = 0;
  gqa_mode mode = gqa_mode::per_head;
  budget_params budget;
  int32_t* idx = nullptr;
  int32_t* count = nullptr;
  int64_t idx_stride = 0;
  int n_threads = 0;  // 0 = all
};
void hash_select_validate(const hash_select_params& p);
inline int hash_select_n_lists(const hash_select_params& p) {
  return p.mode == gqa_mode::per_head ? p.n_head : p.n_head_kv;
}
// Highest score level: bits for per-head lists, G * bits for per-group lists.
int hash_select_max_level(const hash_select_params& p);

// ---- select over float scores ----
// List r selects from score[r * score_stride + t], t in [0, n_tok); NaN ranks lowest.
struct score_select_params {
  const float* score = nullptr;
  int64_t n_tok = 0;
  int n_lists = 1;
  int64_t score_stride = 0;
  budget_params budget;
  int32_t* idx = nullptr;
  int32_t* count = nullptr;
  int64_t idx_stride = 0;
  int n_threads = 1;  // 0 = all (callers that select inside their own parallel loop pass 1)
};
void score_select_validate(const score_select_params& p);

// ---- the backend table: one entry per op over the params above ----
// A backend fills the ops it can run; a null entry is an op it lacks, and `missing` says why. Callers
// go through call_* (or require()), which refuses a missing op with that reason instead of falling back.
enum class backend_op : uint8_t { attend = 0, encode, select_codes, score_codes, select_scores };
constexpr int backend_op_count = 5;
const char* backend_op_name(backend_op op);

struct backend {
  const char* name = "";
  void (*attend)(const attn_decode_params&) = nullptr;
  void (*encode)(const hash_encode_params&) = nullptr;
  void (*select_codes)(const hash_select_params&) = nullptr;
  void (*score_codes)(const hash_select_params&, uint16_t* scores) = nullptr;  // scores [n_lists, n_tok]
  void (*select_scores)(const score_select_params&) = nullptr;
  const char* missing = "";  // why the null ops are missing
  const char* (*target)() = nullptr;  // what it runs on (the CPU's SIMD target, the device name)

  bool has(backend_op op) const;
  // Throws hashattn::error "backend 'NAME' cannot run OP: WHY" when the op is missing.
  void require(backend_op op) const;
  void call_attend(const attn_decode_params& p) const { require(backend_op::attend), attend(p); }
  void call_encode(const hash_encode_params& p) const { require(backend_op::encode), encode(p); }
  void call_select_codes(const hash_select_params& p) const { require(backend_op::select_codes), select_codes(p); }
  void call_score_codes(const hash_select_params& p, uint16_t* s) const {
    require(backend_op::score_codes), score_codes(p, s);
  }
  void call_select_scores(const score_select_params& p) const {
    require(backend_op::select_scores), select_scores(p);
  }
};

}  // namespace hashattn
