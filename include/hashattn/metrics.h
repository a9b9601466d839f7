// Attention metrics: how well an attended set covers exact attention, for one query of one head.
// The one definition shared by the trainer's held-out report (train.h) and the evaluation's recall
// task (eval.h). Both measures compare a set S of attended positions (what the policy attends at its
// budget: sinks, window and the selected middle) with the exact attention weights p of the query over
// every visible key (softmax(q.k / sqrt(d)), summing to 1):
//   attention-mass recall  mass(S) = sum of p over S (1 = nothing of the attention is dropped);
//   top-T-in-budget overlap        = |S ∩ top_T(p)| / min(T, n): the share of the T heaviest keys that
//                                    the set holds (T = 32 by default: the paper's label count). Keys
//                                    tied at the T-th weight fill the top slots left by the heavier
//                                    ones: any T heaviest keys score 1 however ties are broken, and a
//                                    set of tied keys counts at most for the slots they share.
#pragma once
#include <cstdint>

namespace hashattn {

struct attention_recall_params {
  const double* prob = nullptr;  // [n] exact attention weights of the query over positions 0 .. n-1
  int64_t n = 0;
  const int32_t* attended = nullptr;  // distinct positions in [0, n)
  int64_t n_attended = 0;
  int top = 32;  // T of the overlap
};
// Throws hashattn::error for n < 1, a null pointer with a positive count, top < 1, a position outside
// [0, n) or a repeated position.
void attention_recall_validate(const attention_recall_params& p);

struct attention_recall {
  double mass = 0;         // attention-mass recall
  double top_overlap = 0;  // top-T-in-budget overlap
};
attention_recall attention_recall_of(const attention_recall_params& p);

// Names of the two measures in reports and records.
constexpr const char* metric_mass_recall = "mass_recall";
constexpr const char* metric_top_overlap = "top32_overlap";

}  // namespace hashattn
