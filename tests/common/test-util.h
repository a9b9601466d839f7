// Shared test helpers: seeded random inputs of several distributions, the tolerances (one place),
// comparisons of fp32 results against float64 references, and SIMD-target iteration.
// Seeds are fixed and printed: use HASHATTN_SEED(seed) (SCOPED_TRACE + a log line on failure).
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "hashattn/hash.h"
#include "hashattn/ops.h"
#include "hashattn/policy.h"

namespace hashattn::test {

// Input distributions used across tests.
enum class dist {
  normal,     // N(0, 1)
  large,      // N(0, 1) * 1e3 magnitudes (for V) or * 8 (for logits; see scale_for)
  all_equal,  // every element the same value
  ties,       // values drawn from {-1, 0, 1}: many exact ties
  uniform,    // U(-1, 1)
};
const char* dist_name(dist d);
inline const dist all_dists[] = {dist::normal, dist::large, dist::all_equal, dist::ties, dist::uniform};

// Fills x[0..n) from distribution d scaled by `scale` (large: scale * large_factor).
void fill(std::mt19937_64& rng, dist d, float* x, int64_t n, float scale = 1.f, float large_factor = 8.f);
std::vector<float> random_vec(std::mt19937_64& rng, dist d, int64_t n, float scale = 1.f,
                              float large_factor = 8.f);

// ---- tolerances (the only place they are defined) ----
// fp32 kernel vs float64 reference on the same inputs.
constexpr double nmse_fp32 = 1e-7;           // normalized MSE: sum (x-r)^2 / max(sum r^2, tiny)
constexpr double eps_fp32 = 5.960464477539063e-08;  // 2^-24, unit roundoff
// Per-element absolute tolerance for an fp32 result whose float64 value is a sum/softmax over
// terms of magnitude `mag` accumulated over `len` terms (error grows ~ sqrt(len) typical, we allow 8x).
double atol_fp32(double mag, int64_t len);
// Per-element tolerance for decode attention: logits' fp32 error ~ eps * sqrt(d) * logit_l1 moves the
// softmax weights; the output moves by at most ~2 * that * max|v|; plus the V accumulation error.
double attn_atol(int head_dim, int64_t n_attended, double logit_l1_max, double v_abs_max);

// attn_atol and the matching normalized-MSE bound for decode attention of queries q [n_head, d] (scaled
// by `scale`) over every token of a test cache: the largest logit L1 norm and |v| from the data.
struct attn_tolerance { double atol = 0, nmse = 0; };
struct test_kv;
attn_tolerance attn_tolerance_for(const float* q, int n_head, float scale, const test_kv& kv);

// Compares got (fp32) with ref (float64): every |got - ref| <= atol + rtol*|ref| and nmse <= max_nmse.
testing::AssertionResult all_close(const float* got, const double* ref, int64_t n, double atol,
                                   double rtol, double max_nmse = nmse_fp32);

// Runs fn once per SIMD target Highway generated and this CPU supports (restores afterwards).
// fn receives the target name. Use for every Highway kernel test.
void for_each_simd_target(const std::function<void(const char*)>& fn);

// A random KV cache for one layer. layout 0: [t][h][d]; 1: [h][t][d]; 2: [t][h][d] with padded
// strides (stride_head = d + 5, stride_tok = n_kv * (d + 5) + 3). Values are rounded to `type`.
struct test_kv {
  std::vector<uint8_t> kbuf, vbuf;
  kv_view view;
  float k_at(int64_t t, int h, int j) const;  // stored value as float
  float v_at(int64_t t, int h, int j) const;
};
test_kv make_test_kv(std::mt19937_64& rng, dtype type, int64_t n_tok, int n_kv, int d, int layout,
                     dist kd, dist vd, float kscale = 1.f, float vscale = 1.f);
// Keys as dense fp32 [n_tok, n_kv, d] (for policies' on_append).
std::vector<float> keys_f32(const test_kv& kv);

// Selections. `sel` must follow the rule of hash.h for scores `score[0..n)` and budget b: ascending,
// unique, in range; sinks and window present; size budget_tokens(b, n); and every selected middle
// token scores >= every unselected middle token - tol (any tie order accepted). With tol = 0 and
// exact scores this accepts exactly the selections consistent with some tie order.
testing::AssertionResult selection_consistent(const std::vector<int32_t>& sel, const double* score, int64_t n,
                                              const budget_params& b, double tol = 0);
// Exact comparison of two selections as sets (both must be ascending); reports the first difference.
testing::AssertionResult same_selection(const std::vector<int32_t>& got, const std::vector<int32_t>& want);

// c distinct positions of [0, n), ascending.
std::vector<int32_t> random_subset(std::mt19937_64& rng, int64_t n, int64_t c);

}  // namespace hashattn::test

#define HASHATTN_SEED(seed) SCOPED_TRACE(::testing::Message() << "seed=" << (seed))
