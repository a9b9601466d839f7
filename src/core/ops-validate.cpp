// Validators of the backend ops (ops.h), shared by every backend and the reference so that all of them
// refuse the same bad input with the same message.
#include <cmath>
#include <string>

#include "hashattn/error.h"
#include "hashattn/ops.h"

namespace hashattn {

namespace {
std::string s(int64_t v) { return std::to_string(v); }

// Counts in [0, stride]; each list ascending, unique, inside [0, n_tok).
void lists_validate(const char* who, const int32_t* idx, const int32_t* count, int n_lists, int64_t stride,
                    int64_t n_tok) {
  const std::string w = who;
  for (int r = 0; r < n_lists; r++) {
    const int64_t c = count[r];
    if (c < 0 || c > stride) fail(w + ": idx_count[" + s(r) + "]", s(c), "in [0, idx_stride = " + s(stride) + "]");
    const int32_t* l = idx + (int64_t)r * stride;
    int64_t prev = -1;
    for (int64_t i = 0; i < c; i++) {
      const int64_t t = l[i];
      if (t < 0 || t >= n_tok)
        fail(w + ": index list " + s(r) + " entry " + s(i), s(t), "a token position in [0, n_tok = " + s(n_tok) + ")");
      if (t <= prev)
        fail(w + ": index list " + s(r) + " entry " + s(i), s(t) + " after " + s(prev), "ascending, unique positions",
             "sort and deduplicate the selection");
      prev = t;
    }
  }
}

void out_lists_validate(const char* who, const budget_params& b, int64_t n_tok, const int32_t* idx,
                        const int32_t* count, int64_t stride) {
  const std::string w = who;
  budget_validate(b);
  if (idx == nullptr || count == nullptr) fail(w + ": idx / count", "null pointer", "output lists");
  const int64_t need = budget_tokens(b, n_tok);
  if (stride < need) fail(w + ": idx_stride", s(stride), ">= " + s(need) + " (the budget at n_tok = " + s(n_tok) + ")");
}
}  // namespace

void attn_decode_validate(const attn_decode_params& p) {
  const kv_view& kv = p.kv;
  kv_view_validate(kv, "attn_decode");
  if (p.n_head <= 0) fail("attn_decode: n_head", s(p.n_head), "> 0");
  if (p.n_head % kv.n_head_kv != 0)
    fail("attn_decode: n_head / n_head_kv", s(p.n_head) + " / " + s(kv.n_head_kv), "n_head a multiple of n_head_kv",
         "GQA groups must be equal in size");
  if (p.q == nullptr) fail("attn_decode: q", "null pointer", "[n_head, head_dim] fp32 queries");
  if (p.out == nullptr) fail("attn_decode: out", "null pointer", "[n_head, head_dim] fp32 output");
  if (!std::isfinite(p.scale) || p.scale <= 0)
    fail("attn_decode: scale", std::to_string(p.scale), "finite and > 0", "usually 1/sqrt(head_dim)");
  if (p.n_threads < 0) fail("attn_decode: n_threads", s(p.n_threads), ">= 0 (0 = all)");
  if (p.idx == nullptr) {
    if (p.idx_count != nullptr) fail("attn_decode: idx", "null with idx_count set", "both set (sparse) or both null (dense)");
    return;
  }
  if (p.idx_count == nullptr) fail("attn_decode: idx_count", "null with idx set", "one count per index list");
  if (p.idx_stride < 0) fail("attn_decode: idx_stride", s(p.idx_stride), ">= 0");
  lists_validate("attn_decode", p.idx, p.idx_count, p.per_group ? kv.n_head_kv : p.n_head, p.idx_stride, kv.n_tok);
}

void hash_encode_validate(const hash_encode_params& p) {
  const hash_mlp_view& m = p.mlp;
  if (m.n_enc <= 0) fail("hash_encode: n_enc", s(m.n_enc), "> 0");
  if (m.in_dim <= 0 || m.in_dim > 4096) fail("hash_encode: in_dim", s(m.in_dim), "in [1, 4096]");
  if (!hash_bits_valid(m.bits)) fail("hash_encode: bits", s(m.bits), "16, 32 or 64");
  if (m.n_layers < 1 || m.n_layers > 3) fail("hash_encode: MLP layers", s(m.n_layers), "1, 2 or 3");
  if (m.n_layers > 1 && (m.hidden <= 0 || m.hidden > 8192))
    fail("hash_encode: hidden", s(m.hidden), "in [1, 8192]");
  for (int i = 0; i < m.n_layers; i++)
    if (m.w[i] == nullptr || m.b[i] == nullptr)
      fail("hash_encode: MLP layer " + s(i) + " weights", "null pointer", "weights and biases of every layer");
  if (p.n_rows < 0) fail("hash_encode: n_rows", s(p.n_rows), ">= 0");
  if (p.in_group < 1 || m.n_enc % p.in_group != 0)
    fail("hash_encode: in_group", s(p.in_group), "a divisor of n_enc = " + s(m.n_enc),
         "G for per-query-head key encoders over KV-head keys, else 1");
  if (p.x_stride_row < 0 || p.x_stride_head < 0) fail("hash_encode: x strides", "negative", ">= 0");
  if (p.n_rows > 0 && p.x == nullptr) fail("hash_encode: x", "null pointer", "[n_rows, heads, in_dim] fp32");
  if (p.n_rows > 0 && p.codes == nullptr) fail("hash_encode: codes", "null pointer", "output code words");
  if (p.code_stride_row < 0 || p.code_stride_enc < 0) fail("hash_encode: code strides", "negative", ">= 0");
  if (p.n_rows > 1 && p.code_stride_row == 0) fail("hash_encode: code_stride_row", "0", "> 0 when n_rows > 1");
  if (m.n_enc > 1 && p.code_stride_enc == 0) fail("hash_encode: code_stride_enc", "0", "> 0 when n_enc > 1");
  if (p.n_rows > 1 && p.x_stride_row < m.in_dim)
    fail("hash_encode: x_stride_row", s(p.x_stride_row), ">= in_dim = " + s(m.in_dim) + " when n_rows > 1");
  if (p.n_threads < 0) fail("hash_encode: n_threads", s(p.n_threads), ">= 0 (0 = all)");
}

int hash_select_max_level(const hash_select_params& p) {
  const int G = p.n_head_kv > 0 ? p.n_head / p.n_head_kv : 1;
  return p.keys.bits * (p.mode == gqa_mode::per_group ? G : 1);
}

void hash_select_validate(const hash_select_params& p) {
  const code_view& k = p.keys;
  if (p.n_head <= 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0)
    fail("hash_select: heads", s(p.n_head) + "/" + s(p.n_head_kv), "n_head a positive multiple of n_head_kv");
  if (p.n_head / p.n_head_kv > 64) fail("hash_select: GQA group", s(p.n_head / p.n_head_kv), "<= 64");
  if (p.mode != gqa_mode::per_head && p.mode != gqa_mode::per_group)
    fail("hash_select: gqa mode", s((int)p.mode), "per_head (0) or per_group (1)");
  if (!hash_bits_valid(k.bits)) fail("hash_select: bits", s(k.bits), "16, 32 or 64");
  if (k.n_enc != p.n_head && k.n_enc != p.n_head_kv)
    fail("hash_select: key code heads", s(k.n_enc),
         "n_head = " + s(p.n_head) + " (per query head) or n_head_kv = " + s(p.n_head_kv) + " (per KV group)");
  if (k.n_tok < 0 || k.n_tok > INT32_MAX) fail("hash_select: n_tok", s(k.n_tok), "in [0, 2^31)");
  if (k.stride_tok < 0 || k.stride_enc < 0) fail("hash_select: code strides", "negative", ">= 0");
  if (k.n_tok > 1 && k.stride_tok == 0) fail("hash_select: stride_tok", "0", "> 0");
  if (k.n_enc > 1 && k.stride_enc == 0) fail("hash_select: stride_enc", "0", "> 0");
  if (k.n_tok > 0 && k.codes == nullptr) fail("hash_select: key codes", "null pointer", "n_tok codes per head");
  if (p.q_codes == nullptr) fail("hash_select: q_codes", "null pointer", "[n_head] query codes");
  out_lists_validate("hash_select", p.budget, k.n_tok, p.idx, p.count, p.idx_stride);
  if (p.n_threads < 0) fail("hash_select: n_threads", s(p.n_threads), ">= 0 (0 = all)");
}

void score_select_validate(const score_select_params& p) {
  if (p.n_tok < 0 || p.n_tok > INT32_MAX) fail("score_select: n_tok", s(p.n_tok), "in [0, 2^31)");
  if (p.n_lists < 1) fail("score_select: n_lists", s(p.n_lists), ">= 1");
  if (p.n_tok > 0 && p.score == nullptr) fail("score_select: score", "null pointer", "[n_lists, score_stride] floats");
  if (p.n_lists > 1 && p.score_stride < p.n_tok)
    fail("score_select: score_stride", s(p.score_stride), ">= n_tok = " + s(p.n_tok) + " with several lists");
  out_lists_validate("score_select", p.budget, p.n_tok, p.idx, p.count, p.idx_stride);
  if (p.n_threads < 0) fail("score_select: n_threads", s(p.n_threads), ">= 0 (0 = all)");
}

}  // namespace hashattn
