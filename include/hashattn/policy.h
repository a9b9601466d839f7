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
  // Keys k: [n_new, n_head_kv, head_dim] post-RoPE, positions pos0 .. pos0+n_new-1, as the KV cache
  // holds them (fp16 values in fp32): prefilled, decoded and shared keys alike.
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

// ---- the policy vocabulary: settings as text ----
// "METHOD[/MODE][@DENSITY]", e.g. "hash-rr4/group@1/32", "streaming@1/16", "dense". Methods (canonical
// names): dense, hash, hash-rrC (C = 2..64: the codes pick C x the middle budget, exact q.k keeps the
// best), simhash-BITS (1..4096), oracle, streaming, quest, dsparse. Aliases: simhash = simhash-32,
// hash-rerank = hash-rr4, double_sparsity / double-sparsity / ds = dsparse. MODE: head | group.
struct policy_spec {
  std::string method = "dense";
  gqa_mode gqa = gqa_mode::per_head;
  double density = 0;   // attended / context; 0 = a fixed count
  int64_t count = 0;    // fixed attended tokens when density == 0
  int64_t sinks = -1;   // -1: auto (default_sinks_window)
  int64_t window = -1;  // -1: auto (streaming: the rest of the budget)

  bool is_dense() const { return method == "dense"; }
  bool is_hash() const;         // hash or hash-rrC (needs learned encoders)
  bool has_gqa_mode() const;    // every method but dense and streaming
  int rerank() const;           // C of hash-rrC, else 0
  int simhash_bits() const;     // BITS of simhash-BITS, else 0
  std::string label() const;    // "METHOD[/MODE]"
  std::string str() const;      // "METHOD[/MODE][@DENSITY]" (parse(str()) == *this for auto sinks / window)
};
// Canonical method name; throws hashattn::error listing the vocabulary for an unknown one.
std::string policy_method_canonical(const std::string& method);
// The vocabulary for messages and help texts.
const char* policy_method_help();
// The methods of the standard comparison, in report order (dense first).
const std::vector<std::string>& policy_comparison_methods();
// Rank of a method in reports: its place in the comparison (hash-rrC after hash), others after it.
int policy_method_rank(const std::string& method);
// "1/32" or "0.03125" -> (0, 1]; throws otherwise.
double policy_density_parse(const std::string& s);
std::string policy_density_name(double d);  // "1/32" when 1/d is an integer, else the decimal
policy_spec policy_spec_parse(const std::string& s);

// The default sinks and window of a budget of `total` tokens: clamp(total / 8, 4, 128) each.
int64_t default_sinks_window(int64_t total);
// The budget of a spec for a context of n tokens: auto sinks and window from the budget at n (streaming
// spends the rest of its budget on the window). Below the floor the policy attends every token
// (core.h). Throws for a bad spec (density outside (0, 1], negative counts, window < 1).
budget_params policy_budget(const policy_spec& s, int64_t n);
// policy_config of a spec at context n (name, rerank, bits, budget, GQA mode); the caller adds the
// inputs (hash weights, Double Sparsity channels), the backend and the threads.
policy_config policy_config_for(const policy_spec& s, int64_t n);

}  // namespace hashattn
