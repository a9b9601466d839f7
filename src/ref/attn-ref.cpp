// Float64 reference for decode attention (dense and over index lists), see src/ref/reference.h.
// For each query head h (KV head h / G): scores s_t = scale * q_h . k_t over the head's token set
// (all tokens, its own list, or its group's list), softmax with max subtraction, out = sum p_t v_t.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "ref/reference.h"

namespace hashattn::ref {

namespace {
// Element offset of (t, h, 0), restated here: page t / page_size of the page table (or one page).
int64_t row_offset(const kv_view& kv, int64_t t, int h) {
  const int64_t page = kv.page_table ? kv.page_table[t / kv.page_size] : 0;
  const int64_t slot = kv.page_table ? t % kv.page_size : t;
  return page * kv.stride_page + slot * kv.stride_tok + (int64_t)h * kv.stride_head;
}
}  // namespace

double kv_elem(const void* base, dtype t, int64_t off) {
  switch (t) {
    case dtype::f32: return (double)((const float*)base)[off];
    case dtype::f16: return (double)fp16_to_fp32(((const uint16_t*)base)[off]);
    case dtype::bf16: return (double)bf16_to_fp32(((const uint16_t*)base)[off]);
  }
  return 0;
}

void attn_decode_ref(const attn_decode_params& p, double* out) {
  {
    attn_decode_params c = p;  // the reference writes `out` (double), not p.out
    float dummy = 0;
    if (c.out == nullptr) c.out = &dummy;
    attn_decode_validate(c);
  }
  const kv_view& kv = p.kv;
  const int d = kv.head_dim;
  const int G = p.n_head / kv.n_head_kv;
  std::vector<int32_t> toks;
  std::vector<double> s;
  for (int h = 0; h < p.n_head; h++) {
    const int hk = h / G;
    toks.clear();
    if (p.idx == nullptr) {
      for (int64_t t = 0; t < kv.n_tok; t++) toks.push_back((int32_t)t);
    } else {
      const int r = p.per_group ? hk : h;
      const int32_t* l = p.idx + (int64_t)r * p.idx_stride;
      toks.assign(l, l + p.idx_count[r]);
    }
    double* o = out + (int64_t)h * d;
    for (int j = 0; j < d; j++) o[j] = 0;
    if (toks.empty()) continue;
    s.assign(toks.size(), 0.0);
    double mx = -INFINITY;
    for (size_t i = 0; i < toks.size(); i++) {
      const int64_t base = row_offset(kv, toks[i], hk);
      double acc = 0;
      for (int j = 0; j < d; j++) acc += (double)p.q[(int64_t)h * d + j] * kv_elem(kv.k, kv.type, base + j);
      s[i] = acc * (double)p.scale;
      mx = std::max(mx, s[i]);
    }
    double sum = 0;
    for (size_t i = 0; i < toks.size(); i++) {
      s[i] = std::exp(s[i] - mx);
      sum += s[i];
    }
    for (size_t i = 0; i < toks.size(); i++) {
      const int64_t base = row_offset(kv, toks[i], hk);
      const double w = s[i] / sum;
      for (int j = 0; j < d; j++) o[j] += w * kv_elem(kv.v, kv.type, base + j);
    }
  }
}

}  // namespace hashattn::ref
