// Attention policies: the seam between the model and sparse attention.
// A policy owns per-layer auxiliary state that lives next to the KV cache (hash codes, page
// bounds, ...), is told about every appended key ONCE (on_append, post-RoPE), and turns a decode
// query into index lists (select). Every method -- ours and the baselines -- is a policy over the
// same KV cache and the same attention op (the backend table, backend.h), so only the selector differs.
// Budget: total attended tokens = sinks + window + selected; density = attended / context.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hashattn/core.h"

namespace hashattn {

class attention_policy {
 public:
  virtual ~attention_policy() = default;
  virtual std::string name() const = 0;
  // Dense policies need no index lists: the caller runs dense attention.
  virtual bool is_dense() const { return false; }
  // Auxiliary memory the policy keeps, in bits per token per (KV or query) head as it stores it.
  virtual double aux_bits_per_token_head() const = 0;
  // The same normalized per KV head (per-query-head state counts G times): comparable across policies.
  virtual double aux_bits_per_token_kv_head() const { return aux_bits_per_token_head(); }
  // Bytes the last select() read besides its auxiliary state (every select scans all of that) and the
  // attended K/V rows: the oracle's full scan of K, the keys of re-ranked candidates. For accounting.
  virtual double select_extra_read_bytes() const { return 0; }
  // Allocates state for n_layer layers of the given shape and up to max_ctx tokens; clears it.
  virtual void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) = 0;
  // Keys k: [n_new, n_head_kv, head_dim] fp32 post-RoPE, positions pos0 .. pos0+n_new-1.
  virtual void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) = 0;
  // Drops state past n tokens (the KV cache was truncated).
  virtual void truncate(int64_t n) {}
  // q: [n_head, head_dim] fp32 post-RoPE for the newest position kv.n_tok-1.
  virtual void select(int layer, const float* q, const kv_view& kv, index_lists& out) = 0;
};

std::unique_ptr<attention_policy> make_dense_policy();

struct hash_weights;  // hash.h
struct backend;       // ops.h

// Everything a policy may need; each policy reads the fields it uses and ignores the others.
struct policy_config {
  std::string name = "dense";  // dense | hash | simhash | oracle | streaming | quest | double_sparsity
  budget_params budget;
  gqa_mode gqa = gqa_mode::per_head;  // selection per query head or per KV group
  int bits = 32;                      // simhash code width (hash takes it from its weights)
  uint64_t seed = 0;                  // simhash projections
  int page_size = 16;                 // quest
  int channels = 16;                  // double sparsity: channels per KV head
  // hash/simhash: 0 or 1 = off; C >= 2: the codes pick C x the middle budget as candidates, exact q.k
  // over their keys keeps the best (per head, or the group's summed query per KV group).
  int rerank = 0;
  // hash: learned encoders (required). Key codes are per query head unless weights->key_per_group.
  std::shared_ptr<const hash_weights> weights;
  // double sparsity: [n_layer, n_head_kv, channels] channel indices (double_sparsity_calibrate).
  std::vector<int32_t> ds_channels;
  int n_threads = 0;  // kernels' threads, 0 = all
  const backend* be = nullptr;  // the ops' backend (backend.h); nullptr = backend_default()
};
// Names accepted by make_policy, comma separated.
const char* policy_names();
// Builds a policy; throws hashattn::error for an unknown name or a missing input (weights, channels).
std::unique_ptr<attention_policy> make_policy(const policy_config& cfg);

// Double Sparsity calibration for one layer: for each KV head the `channels` channels with the
// largest mean |q_i * k_i| over the group's calibration queries q [n_q, n_head, d] and keys
// k [n_k, n_head_kv, d] (mean over all query-key pairs = mean|q_i| * mean|k_i|). Returns
// [n_head_kv, channels] channel indices, ascending within each head.
std::vector<int32_t> double_sparsity_calibrate(const float* q, int64_t n_q, const float* k, int64_t n_k,
                                               const layer_shape& shape, int channels);

}  // namespace hashattn
