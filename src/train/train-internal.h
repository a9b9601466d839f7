// Helpers shared by the training and recall files of src/train (not a public API).
//   head_logits: logits [n_q, n_tok] = q_h . k_{h/G} / sqrt(d) of one query head over all captured keys.
//   head_probs:  causal softmax of those logits per query row (row i covers keys 0 .. qpos[i]).
//   top_k_desc:  the k highest values of v over [lo, hi), ties to the highest position; ascending output.
//   label_attention_weights: soft targets of one unit (query head, or KV group): per query, its labels'
//     attention weights renormalized over the labels (group: the mean over the group's heads), times the
//     label count (mean 1); aligned with labels[i].
//   batch_keys: the keys of one training step (sorted, unique): up to batch_pos positives of each selected
//     query (labels[qi]), hard_neg draws from each hard[i] (aligned with qsel; empty: none), then batch_neg
//     random keys of the union of the queries' middles, or every key of that union with all_negatives.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "hashattn/train.h"

namespace hashattn::train_detail {

void head_logits(const layer_capture& c, int h, std::vector<float>& out);
void head_probs(const layer_capture& c, int h, std::vector<double>& out);
void top_k_desc(const double* v, int64_t lo, int64_t hi, int64_t k, std::vector<int32_t>& out);
std::vector<std::vector<float>> label_attention_weights(const layer_capture& c, gqa_mode mode, int unit,
                                                        const std::vector<std::vector<int32_t>>& labels);
void batch_keys(const layer_capture& c, const train_params& p, const std::vector<int32_t>& qsel,
                const std::vector<std::vector<int32_t>>& labels,
                const std::vector<const std::vector<int32_t>*>& hard, std::mt19937_64& rng,
                std::vector<int32_t>& keys);

}  // namespace hashattn::train_detail
