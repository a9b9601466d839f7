// Learned hash codes for sparse decode attention (HashAttention): encoders, code store, scoring, selection.
// Encoder: per (layer, head) MLP of 1..3 layers, SiLU between layers, biases; the b outputs' signs
// (> 0 -> 1) form a b-bit code (b = 16, 32, 64), packed LSB-first into one uint16/uint32/uint64 word.
// Weights of one layer and one role (query or key), all heads stacked: w[i] [n_enc, in_i, out_i]
// (row-major, x . W), b[i] [n_enc, out_i]; in_0 = head_dim, out_last = bits, other sizes = hidden.
// Key codes are computed ONCE when keys are appended (policy on_append) into a code store that lives
// next to the KV cache: codes [n_enc, max_ctx] words (encoder-major, so that scoring streams each
// encoder's codes contiguously). Two code layouts:
//   per query head (the paper): n_enc = n_head, key k of KV head h hashed by each of its G query heads'
//     key encoders; selection per query head, or per KV group from the summed group scores.
//   per KV group: n_enc = n_head_kv, one key encoder per KV head (weights key_per_group); the group's
//     score for token t is sum_g (b - popcount(q_g xor k_t)) over its G query codes (G*b+1 levels).
// Score: b - popcount(q xor k). Selection: sinks and window always kept, the rest of the budget goes to
// the highest middle scores, ties at the cutoff to the most recent positions; lists ascending, unique.
// Params structs hold raw pointers, strides and sizes only (consumed by ref, cpu and cuda alike).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hashattn/attention.h"
#include "hashattn/policy.h"

namespace hashattn {

// ---- code words ----
inline bool hash_bits_valid(int bits) { return bits == 16 || bits == 32 || bits == 64; }
inline size_t hash_code_bytes(int bits) { return (size_t)bits / 8; }
inline uint64_t code_get(const void* codes, int bits, int64_t i) {
  switch (bits) {
    case 16: return ((const uint16_t*)codes)[i];
    case 32: return ((const uint32_t*)codes)[i];
    default: return ((const uint64_t*)codes)[i];
  }
}
inline void code_set(void* codes, int bits, int64_t i, uint64_t v) {
  switch (bits) {
    case 16: ((uint16_t*)codes)[i] = (uint16_t)v; return;
    case 32: ((uint32_t*)codes)[i] = (uint32_t)v; return;
    default: ((uint64_t*)codes)[i] = v; return;
  }
}

// ---- encoder weights ----
// One layer's encoders of one role for n_enc heads (fp32, see the layout above). Non-owning.
struct hash_mlp_view {
  int n_enc = 0;
  int in_dim = 0;
  int hidden = 0;
  int bits = 32;
  int n_layers = 3;  // 1..3 linear layers
  const float* w[3] = {nullptr, nullptr, nullptr};
  const float* b[3] = {nullptr, nullptr, nullptr};
  int layer_in(int i) const { return i == 0 ? in_dim : hidden; }
  int layer_out(int i) const { return i == n_layers - 1 ? bits : hidden; }
};

// All encoders of a model (owning). For now filled in memory (tests, training, simhash);
// a later format (GGUF, architecture "hashattn") loads into the same struct.
struct hash_weights {
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int bits = 32;
  int mlp_layers = 3;
  int hidden = 128;
  bool key_per_group = false;  // key encoders per KV head (n_head_kv) instead of per query head
  std::vector<float> data;     // per layer: query MLP tensors then key MLP tensors (w0 b0 w1 b1 ...)

  int n_key_enc() const { return key_per_group ? n_head_kv : n_head; }
  // Floats of one role's encoder for n_enc heads.
  size_t role_floats(int n_enc) const;
  size_t layer_floats() const { return role_floats(n_head) + role_floats(n_key_enc()); }
  hash_mlp_view query(int layer) const;
  hash_mlp_view key(int layer) const;
  float* query_data(int layer);  // start of the layer's query tensors (w0, b0, w1, b1, ...)
  float* key_data(int layer);
};
// Allocates zeroed weights of this shape; throws on bad sizes (bits, layers 1..3, hidden > 0, GQA).
hash_weights hash_weights_alloc(int n_layer, int n_head, int n_head_kv, int head_dim, int bits, int mlp_layers,
                                int hidden, bool key_per_group);
// Fills weights N(0, 1/fan_in) and biases N(0, bias_std^2) from seed (deterministic).
void hash_weights_init_random(hash_weights& w, uint64_t seed, float bias_std = 0.f);

// ---- encode: x -> codes ----
// Input vector of encoder e for row r: x + r * x_stride_row + (e / in_group) * x_stride_head (head_dim
// floats). in_group = G for per-query-head key encoders over KV-head keys, 1 otherwise.
// Code of (r, e) written at word r * code_stride_row + e * code_stride_enc (words of mlp.bits).
struct hash_encode_params {
  hash_mlp_view mlp;
  const float* x = nullptr;
  int64_t n_rows = 0;
  int64_t x_stride_row = 0;
  int64_t x_stride_head = 0;
  int in_group = 1;
  void* codes = nullptr;
  int64_t code_stride_row = 1;  // words between rows
  int64_t code_stride_enc = 0;  // words between encoders
  int n_threads = 0;            // 0 = all
};
void hash_encode_validate(const hash_encode_params& p);
// CPU: first layer (and the others) as OpenBLAS sgemm when n_rows > 1, Highway mat-vec when 1.
void hash_encode_cpu(const hash_encode_params& p);

// ---- code store (one per model, next to the KV cache) ----
// Read-only view of one layer's key codes: code (t, e) is word t * stride_tok + e * stride_enc.
// The fast scoring path needs stride_tok == 1 (the store's layout); others take a scalar path.
struct code_view {
  const void* codes = nullptr;
  int bits = 32;
  int n_enc = 0;
  int64_t n_tok = 0;
  int64_t stride_tok = 1;  // words
  int64_t stride_enc = 0;  // words
};
class hash_code_store {
 public:
  // Allocates n_layer x max_ctx x n_enc codes (zeroed) and sets every layer empty.
  void reset(int n_layer, int n_enc, int bits, int64_t max_ctx);
  int n_layer() const { return (int)n_tok_.size(); }
  int n_enc() const { return n_enc_; }
  int bits() const { return bits_; }
  int64_t max_ctx() const { return max_ctx_; }
  int64_t n_tok(int layer) const { return n_tok_.at(layer); }
  code_view view(int layer) const;
  // Word address of (pos, enc 0) of a layer; encoder e of that row is stride_enc() words further.
  void* row(int layer, int64_t pos);
  int64_t stride_enc() const { return max_ctx_; }
  // Marks positions pos0 .. pos0+n-1 written; pos0 must equal the layer's n_tok (append only).
  void commit(int layer, int64_t pos0, int64_t n);
  void truncate(int64_t n);  // every layer
  size_t bytes() const { return data_.size() * 8; }

 private:
  std::vector<uint64_t> data_;
  std::vector<int64_t> n_tok_;
  int n_enc_ = 0;
  int bits_ = 32;
  int64_t max_ctx_ = 0;
  size_t layer_words_ = 0;  // code words per layer
};

// ---- score + select ----
// Lists: mode per_head -> n_head lists; list h scores b - popcount(q_h xor k_t[e(h)]), e(h) = h for
// per-query-head codes, h / G for per-group codes. mode per_group -> n_head_kv lists; list hk scores
// sum_g (b - popcount(q_{hk*G+g} xor k_t[e])), e = hk*G+g (per-head codes) or hk (per-group codes).
// q_codes: [n_head] words. Output list r at idx[r * idx_stride ..), count[r]; ascending, unique,
// sinks and window included, count[r] = budget_tokens(budget, n_tok). idx_stride >= that count.
struct hash_select_params {
  code_view keys;
  const void* q_codes = nullptr;
  int n_head = 0;
  int n_head_kv = 0;
  gqa_mode mode = gqa_mode::per_head;
  budget_params budget;
  int32_t* idx = nullptr;
  int32_t* count = nullptr;
  int64_t idx_stride = 0;
  int n_threads = 0;  // 0 = all
};
void hash_select_validate(const hash_select_params& p);
inline int hash_select_n_lists(const hash_select_params& p) {
  return p.mode == gqa_mode::per_head ? p.n_head : p.n_head_kv;
}
// Highest score level: bits for per-head lists, G * bits for per-group lists.
int hash_select_max_level(const hash_select_params& p);
// Scores only (for tests and diagnostics): scores[r * n_tok + t] for every token of every list.
void hash_score_cpu(const hash_select_params& p, uint16_t* scores);
// Score + histogram over the levels + cutoff + compaction (no sort). Highway, OpenMP over lists.
void hash_select_cpu(const hash_select_params& p);

// ---- selection over float scores (oracle, quest pages, double sparsity) ----
// Same rule as hash_select: sinks + window + the top (total - sinks - window) middle scores, ties to the
// most recent; writes the ascending list to idx and returns its length. score[t] for t in [0, n).
int64_t select_topk_float(const float* score, int64_t n, const budget_params& b, int32_t* idx);
// Middle region [lo, hi) and the number of middle tokens to pick, as every selector computes them.
struct select_split {
  int64_t n_sinks = 0, lo = 0, hi = 0, n_window = 0, total = 0, k_mid = 0;
};
select_split select_split_for(const budget_params& b, int64_t n);

}  // namespace hashattn
