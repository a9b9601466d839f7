// Float64 reference kernels: the oracle every optimized kernel is tested against.
// Deliberately simple loops in double precision; not optimized, not used at runtime.
//   attn_decode_ref: q [n_head, d], K/V via kv_view, out [n_head, d] (double); dense or index lists.
//   hash_*_ref: MLP encoder forward, code packing, bit scores, the selection rule (see hash.h).
#pragma once
#include <cstdint>
#include <vector>

#include "hashattn/core.h"
#include "hashattn/ops.h"

namespace hashattn::ref {

// One K or V element as double (f32 / f16 / bf16 storage).
double kv_elem(const void* base, dtype t, int64_t off);

// Dense or sparse decode attention in float64; same params (and validation) as attn_decode_cpu.
// Writes out[n_head * head_dim]; an empty list gives zeros.
void attn_decode_ref(const attn_decode_params& p, double* out);

// ---- hash encoders ----
// MLP forward of encoder e on x[0..in_dim): linear layers with biases, SiLU between them.
// Writes the bits pre-sign outputs to out (double).
void hash_mlp_ref(const hash_mlp_view& mlp, int e, const float* x, double* out);
// Code from pre-sign outputs: bit j (LSB first) = out[j] > 0.
uint64_t hash_code_from_outputs(const double* out, int bits);
// Encodes every (row, encoder) of p; returns the codes [n_rows, n_enc] and, if outputs != nullptr,
// the pre-sign outputs [n_rows, n_enc, bits]. Does not write p.codes.
std::vector<uint64_t> hash_encode_ref(const hash_encode_params& p, std::vector<double>* outputs);

// ---- scores and selection ----
inline int hash_score_ref(uint64_t q, uint64_t k, int bits) {
  const uint64_t mask = bits == 64 ? ~0ull : ((1ull << bits) - 1);
  return bits - __builtin_popcountll((q ^ k) & mask);
}
// Scores of every list (see hash_select_params): scores[r * n_tok + t].
std::vector<int> hash_scores_ref(const hash_select_params& p);
// The selection rule, stated on its own (not through core's select_split): total = count, or
// floor(density * n); every token when total < sinks + window or total >= n; otherwise the sinks, the
// window and the (total - sinks - window) best middle tokens after a full sort by (score desc,
// position desc). Ascending. score[t] for t in [0, n) (sinks' and window's scores are ignored).
std::vector<int32_t> select_rule_ref(const double* score, int64_t n, const budget_params& b);
// hash_select in float64 / plain loops: one list per output list.
std::vector<std::vector<int32_t>> hash_select_ref(const hash_select_params& p);

}  // namespace hashattn::ref
