// The optimizer state of hash-encoder training, fed one captured layer of one window at a time
// (train_hash_encoders drives it over the text; tools and experiments can drive it over cached captures).
// Holds the weights being trained (hash_weights layout), Adam moments of the same layout, per-unit step
// counts, and per-thread step buffers. Units: query heads (head mode) or KV groups (group mode).
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
  hash_weights& weights() { return w_; }
  const std::vector<int>& units() const { return units_; }

 private:
  train_params p_;
  hash_weights w_;
  std::vector<float> m1_, m2_, grad_;
  std::vector<int> units_;
  std::vector<int64_t> steps_;
  int nt_ = 1;
  std::unique_ptr<std::vector<step_work>> work_;
};

// First query position sampled for training windows.
int64_t train_query_lo(const train_params& p);

}  // namespace hashattn
