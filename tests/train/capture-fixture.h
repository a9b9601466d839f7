// A random layer capture for the trainer's unit tests: keys and queries drawn N(0, 1) (queries times
// q_scale), unit value norms, n_q query positions sampled from the second half of the window.
#pragma once
#include <random>

#include "train/trainer-core.h"

namespace hashattn::test {

inline layer_capture random_capture(uint64_t seed, int n_head, int n_kv, int d, int64_t n_tok, int n_q,
                                    float q_scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  layer_capture c;
  c.n_head = n_head, c.n_head_kv = n_kv, c.head_dim = d, c.n_tok = n_tok;
  c.k.resize((size_t)n_tok * n_kv * d);
  for (auto& x : c.k) x = nd(rng);
  c.vnorm.assign((size_t)n_tok * n_kv, 1.f);
  c.qpos = sample_positions(seed + 1, n_tok / 2, n_tok, n_q);
  c.q.resize((size_t)c.qpos.size() * n_head * d);
  for (auto& x : c.q) x = q_scale * nd(rng);
  return c;
}

}  // namespace hashattn::test
