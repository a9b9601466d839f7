// The optimizer state of hash-encoder training, fed one captured layer of one window at a time
// (train_hash_encoders drives it over the text; tools and experiments can drive it over cached captures).
// Holds the weights being trained (hash_weights layout), Adam moments of the same layout, per-unit step
// counts, per-thread step buffers, and the per-layer input standardization (train_params.input_norm). Units: query heads (head mode) or KV groups (group mode).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "hashattn/train.h"

namespace hashattn {

struct step_work;

class hash_trainer {
 public:
  hash_trainer(int n_layer, int n_head, int n_head_kv, int head_dim, const train_params& p);
  ~hash_trainer();
  // steps_per_window Adam steps for every unit of layer l on capture c; returns the mean loss.
  // stream: seeds this call's sampling (e.g. the window index).
  double train_layer(int l, const layer_capture& c, uint64_t stream);
  // The encoders as they are used at inference (input standardization folded into the first layer).
  const hash_weights& weights() const { return p_.input_norm ? folded_ : w_; }
  const std::vector<int>& units() const { return units_; }

 private:
  train_params p_;
  hash_weights w_;       // trained weights (on standardized inputs when p_.input_norm)
  hash_weights folded_;  // w_ with the standardization folded in (layers updated after each train_layer)
  // Input standardization per layer: mean and 1/spread of queries [n_head, d] and keys [n_head_kv, d].
  std::vector<std::vector<float>> mu_q_, is_q_, mu_k_, is_k_;
  void input_stats(int l, const layer_capture& c);
  void fold_layer(int l);
  std::vector<float> m1_, m2_, grad_;
  std::vector<int> units_;
  std::vector<int64_t> steps_;
  int nt_ = 1;
  std::unique_ptr<std::vector<step_work>> work_;
};

// First query position sampled for training windows.
int64_t train_query_lo(const train_params& p);

}  // namespace hashattn
