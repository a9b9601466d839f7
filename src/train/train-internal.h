// Helpers shared by the training and recall files of src/train (not a public API).
//   head_logits: logits [n_q, n_tok] = q_h . k_{h/G} / sqrt(d) of one query head over all captured keys.
//   head_probs:  causal softmax of those logits per query row (row i covers keys 0 .. qpos[i]).
//   top_k_desc:  the k highest values of v over [lo, hi), ties to the highest position; ascending output.
//   label_attention_weights: soft targets of one unit (query head, or KV group): per query, its labels'
//     attention weights renormalized over the labels (group: the mean over the group's heads), times the
//     label count (mean 1); aligned with labels[i].
#pragma once
#include <cstdint>
#include <vector>

#include "hashattn/train.h"

namespace hashattn::train_detail {

void head_logits(const layer_capture& c, int h, std::vector<float>& out);
void head_probs(const layer_capture& c, int h, std::vector<double>& out);
void top_k_desc(const double* v, int64_t lo, int64_t hi, int64_t k, std::vector<int32_t>& out);
std::vector<std::vector<float>> label_attention_weights(const layer_capture& c, gqa_mode mode, int unit,
                                                        const std::vector<std::vector<int32_t>>& labels);

}  // namespace hashattn::train_detail
