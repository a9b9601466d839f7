// Data types of the KV cache and validation of decode-attention params (attention.h).
// attn_decode_validate checks pointers, sizes and strides in O(1) and every index list in
// O(total indices): each index in [0, n_tok), lists ascending and unique, counts in [0, idx_stride].
// Shared by every backend (ref, cpu, cuda) so that all of them refuse the same bad input.
#include <cmath>
#include <string>

#include "hashattn/attention.h"
#include "hashattn/error.h"

namespace hashattn {

size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::f32: return 4;
    case dtype::f16: return 2;
    case dtype::bf16: return 2;
  }
  fail("dtype", std::to_string((int)t), "f32 (0), f16 (1) or bf16 (2)");
}

const char* dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
  }
  return "unknown";
}

namespace {
std::string s(int64_t v) { return std::to_string(v); }
}  // namespace

void kv_view_validate(const kv_view& kv, const char* who) {
  const std::string w = who;
  if (kv.n_head_kv <= 0) fail(w + ": kv.n_head_kv", s(kv.n_head_kv), "> 0");
  if (kv.head_dim <= 0 || kv.head_dim > 4096)
    fail(w + ": kv.head_dim", s(kv.head_dim), "in [1, 4096]");
  if (kv.n_tok < 0 || kv.n_tok > INT32_MAX)
    fail(w + ": kv.n_tok", s(kv.n_tok), "in [0, 2^31)", "positions are int32 in index lists");
  if ((int)kv.type > 2) fail(w + ": kv.type", s((int)kv.type), "f32, f16 or bf16");
  if (kv.n_tok > 0 && (kv.k == nullptr || kv.v == nullptr))
    fail(w + ": kv.k / kv.v", "null pointer", "K and V data for n_tok = " + s(kv.n_tok) + " tokens");
  if (kv.stride_tok < 0 || kv.stride_head < 0)
    fail(w + ": kv strides", "stride_tok " + s(kv.stride_tok) + ", stride_head " + s(kv.stride_head),
         "non-negative element strides");
  if (kv.n_tok > 1 && kv.stride_tok == 0)
    fail(w + ": kv.stride_tok", "0", "> 0 when n_tok > 1", "elements between consecutive tokens");
  if (kv.n_head_kv > 1 && kv.stride_head == 0)
    fail(w + ": kv.stride_head", "0", "> 0 when n_head_kv > 1", "elements between consecutive KV heads");
}

void attn_decode_validate(const attn_decode_params& p) {
  const kv_view& kv = p.kv;
  kv_view_validate(kv, "attn_decode");
  if (p.n_head <= 0) fail("attn_decode: n_head", s(p.n_head), "> 0");
  if (p.n_head % kv.n_head_kv != 0)
    fail("attn_decode: n_head / n_head_kv", s(p.n_head) + " / " + s(kv.n_head_kv),
         "n_head a multiple of n_head_kv", "GQA groups must be equal in size");
  if (p.q == nullptr) fail("attn_decode: q", "null pointer", "[n_head, head_dim] fp32 queries");
  if (p.out == nullptr) fail("attn_decode: out", "null pointer", "[n_head, head_dim] fp32 output");
  if (!std::isfinite(p.scale) || p.scale <= 0)
    fail("attn_decode: scale", std::to_string(p.scale), "finite and > 0", "usually 1/sqrt(head_dim)");
  if (p.n_threads < 0) fail("attn_decode: n_threads", s(p.n_threads), ">= 0 (0 = all)");
  if (p.idx == nullptr) {
    if (p.idx_count != nullptr)
      fail("attn_decode: idx", "null with idx_count set", "both set (sparse) or both null (dense)");
    return;
  }
  if (p.idx_count == nullptr)
    fail("attn_decode: idx_count", "null with idx set", "one count per index list");
  const int n_lists = p.per_group ? kv.n_head_kv : p.n_head;
  if (p.idx_stride < 0) fail("attn_decode: idx_stride", s(p.idx_stride), ">= 0");
  for (int r = 0; r < n_lists; r++) {
    const int64_t c = p.idx_count[r];
    if (c < 0 || c > p.idx_stride)
      fail("attn_decode: idx_count[" + s(r) + "]", s(c), "in [0, idx_stride = " + s(p.idx_stride) + "]");
    const int32_t* l = p.idx + (int64_t)r * p.idx_stride;
    int64_t prev = -1;
    for (int64_t i = 0; i < c; i++) {
      const int64_t t = l[i];
      if (t <= prev || t >= kv.n_tok) {
        if (t < 0 || t >= kv.n_tok)
          fail("attn_decode: index list " + s(r) + " entry " + s(i), s(t),
               "a token position in [0, n_tok = " + s(kv.n_tok) + ")");
        fail("attn_decode: index list " + s(r) + " entry " + s(i), s(t) + " after " + s(prev),
             "ascending, unique positions", "sort and deduplicate the selection");
      }
      prev = t;
    }
  }
}

}  // namespace hashattn
