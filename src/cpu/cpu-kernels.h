// The CPU backend's kernels for the ops of ops.h (Highway SIMD with runtime dispatch, OpenMP).
// Reached through the backend table (backend.h, "cpu"); tests and benchmarks call them directly to
// compare them with src/ref. Each validates its params first (the validators of ops.h).
#pragma once
#include <cstdint>

#include "hashattn/ops.h"

namespace hashattn {

// Dense or sparse decode attention: online softmax with running max, split-KV partials merged per
// head; dense and per-group lists process the G query heads of a group together (K/V read once).
void attn_decode_cpu(const attn_decode_params& p);
// Name of the SIMD target the CPU kernels dispatch to on this machine (e.g. "AVX2", "AVX3").
const char* cpu_simd_target();
// First layer (and the others) as OpenBLAS sgemm when n_rows > 1, Highway mat-vec when 1.
void hash_encode_cpu(const hash_encode_params& p);
// Scores only: scores[r * n_tok + t] for every token of every list.
void hash_score_cpu(const hash_select_params& p, uint16_t* scores);
// Score + histogram over the levels + cutoff + compaction (no sort). OpenMP over lists.
void hash_select_cpu(const hash_select_params& p);
// The selection rule over float scores: nth_element over a copy of each list's middle, one ordered pass.
void score_select_cpu(const score_select_params& p);
// One list of score_select without validation (for callers inside their own parallel loops that
// validated once): writes the ascending list to idx and returns its length.
int64_t select_topk_float(const float* score, int64_t n, const budget_params& b, int32_t* idx);

// The CPU backend's table (every op).
const backend& cpu_backend();

}  // namespace hashattn
