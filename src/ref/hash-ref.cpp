// Float64 reference for hash encoders (MLP forward, sign codes), bit scores and the selection rule.
// x: [head_dim] fp32 per (row, encoder); outputs: [n_rows, n_enc, bits] double; codes: [n_rows, n_enc].
// Selection rule: sinks [0, S'), window [n - W', n), and the top k_mid middle tokens by score where
// ties at the cutoff go to the most recent positions (sort by (score desc, position desc)).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "ref/reference.h"

namespace hashattn::ref {

void hash_mlp_ref(const hash_mlp_view& mlp, int e, const float* x, double* out) {
  std::vector<double> cur(x, x + mlp.in_dim), nxt;
  for (int i = 0; i < mlp.n_layers; i++) {
    const int in = mlp.layer_in(i), o = mlp.layer_out(i);
    const float* w = mlp.w[i] + (size_t)e * in * o;
    const float* b = mlp.b[i] + (size_t)e * o;
    nxt.assign(o, 0.0);
    for (int c = 0; c < o; c++) {
      double acc = b[c];
      for (int r = 0; r < in; r++) acc += cur[r] * (double)w[(size_t)r * o + c];
      nxt[c] = acc;
    }
    if (i + 1 < mlp.n_layers)
      for (double& v : nxt) v = v / (1.0 + std::exp(-v));  // SiLU
    cur.swap(nxt);
  }
  std::copy(cur.begin(), cur.end(), out);
}

uint64_t hash_code_from_outputs(const double* out, int bits) {
  uint64_t c = 0;
  for (int j = 0; j < bits; j++)
    if (out[j] > 0) c |= 1ull << j;
  return c;
}

std::vector<uint64_t> hash_encode_ref(const hash_encode_params& p, std::vector<double>* outputs) {
  {
    hash_encode_params c = p;  // validate the shape; the reference does not write codes
    uint64_t dummy = 0;
    if (c.codes == nullptr) c.codes = &dummy;
    hash_encode_validate(c);
  }
  const int ne = p.mlp.n_enc, b = p.mlp.bits;
  std::vector<uint64_t> codes((size_t)p.n_rows * ne);
  if (outputs) outputs->assign((size_t)p.n_rows * ne * b, 0.0);
  std::vector<double> o(b);
  for (int64_t r = 0; r < p.n_rows; r++)
    for (int e = 0; e < ne; e++) {
      const float* x = p.x + r * p.x_stride_row + (int64_t)(e / p.in_group) * p.x_stride_head;
      hash_mlp_ref(p.mlp, e, x, o.data());
      codes[(size_t)r * ne + e] = hash_code_from_outputs(o.data(), b);
      if (outputs) std::copy(o.begin(), o.end(), outputs->begin() + ((size_t)r * ne + e) * b);
    }
  return codes;
}

std::vector<int> hash_scores_ref(const hash_select_params& p) {
  const code_view& k = p.keys;
  const int G = p.n_head / p.n_head_kv;
  const bool per_head_codes = k.n_enc == p.n_head;
  const int n_lists = hash_select_n_lists(p);
  std::vector<int> sc((size_t)n_lists * k.n_tok, 0);
  for (int r = 0; r < n_lists; r++)
    for (int64_t t = 0; t < k.n_tok; t++) {
      int s = 0;
      if (p.mode == gqa_mode::per_head) {
        const int e = per_head_codes ? r : r / G;
        s = hash_score_ref(code_get(p.q_codes, k.bits, r), code_get(k.codes, k.bits, t * k.stride_tok + e * k.stride_enc), k.bits);
      } else {
        for (int g = 0; g < G; g++) {
          const int h = r * G + g;
          const int e = per_head_codes ? h : r;
          s += hash_score_ref(code_get(p.q_codes, k.bits, h), code_get(k.codes, k.bits, t * k.stride_tok + e * k.stride_enc),
                              k.bits);
        }
      }
      sc[(size_t)r * k.n_tok + t] = s;
    }
  return sc;
}

std::vector<int32_t> select_rule_ref(const double* score, int64_t n, const budget_params& b) {
  const double want = b.count > 0 ? (double)b.count : std::floor(b.density * (double)n + 1e-9);
  std::vector<int32_t> out;
  if (want < (double)(b.sinks + b.window) || want >= (double)n) {  // everything
    for (int64_t t = 0; t < n; t++) out.push_back((int32_t)t);
    return out;
  }
  std::vector<char> keep(n, 0);
  for (int64_t t = 0; t < b.sinks; t++) keep[t] = 1;
  for (int64_t t = n - b.window; t < n; t++) keep[t] = 1;
  std::vector<int64_t> mid;
  for (int64_t t = b.sinks; t < n - b.window; t++) mid.push_back(t);
  std::sort(mid.begin(), mid.end(), [&](int64_t a, int64_t c) {
    if (score[a] != score[c]) return score[a] > score[c];
    return a > c;  // most recent first
  });
  for (int64_t i = 0; i < (int64_t)want - b.sinks - b.window; i++) keep[mid[i]] = 1;
  for (int64_t t = 0; t < n; t++)
    if (keep[t]) out.push_back((int32_t)t);
  return out;
}

std::vector<std::vector<int32_t>> hash_select_ref(const hash_select_params& p) {
  {
    hash_select_params c = p;
    int32_t dummy[1];
    if (c.idx == nullptr) c.idx = dummy;
    if (c.count == nullptr) c.count = dummy;
    if (c.idx_stride == 0) c.idx_stride = std::max<int64_t>(p.keys.n_tok, 1);  // any list fits
    hash_select_validate(c);
  }
  const std::vector<int> sc = hash_scores_ref(p);
  const int n_lists = hash_select_n_lists(p);
  const int64_t n = p.keys.n_tok;
  std::vector<std::vector<int32_t>> lists(n_lists);
  std::vector<double> s(n);
  for (int r = 0; r < n_lists; r++) {
    for (int64_t t = 0; t < n; t++) s[t] = sc[(size_t)r * n + t];
    lists[r] = select_rule_ref(s.data(), n, p.budget);
  }
  return lists;
}

}  // namespace hashattn::ref
