// Learned hash encoders (HashAttention) and the key-code store (src/hash).
// Encoder: per (layer, head) MLP of 1..3 layers, SiLU between layers, biases; the b outputs' signs
// (> 0 -> 1) form a b-bit code (b = 16, 32, 64), packed LSB-first into one uint16/uint32/uint64 word.
// Weights of one layer and one role (query or key), all heads stacked: w[i] [n_enc, in_i, out_i]
// (row-major, x . W), b[i] [n_enc, out_i]; in_0 = head_dim, out_last = bits, other sizes = hidden.
// Key codes are computed ONCE when keys are appended (policy on_append) into a code store that lives
// next to the KV cache: codes [n_enc, max_ctx] words (encoder-major, so that scoring streams each
// encoder's codes contiguously). Two code layouts:
//   per query head (the paper): n_enc = n_head, key k of KV head h hashed by each of its G query heads'
//     key encoders; selection per query head, or per KV group from the summed group scores.
//   per KV group: n_enc = n_head_kv, one key encoder per KV head (weights key_per_group).
// Encoding, scoring and selection are backend ops (ops.h, backend.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hashattn/core.h"

namespace hashattn {

// ---- encoder weights ----
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
// Throws unless the shape is one hash_weights_alloc accepts (bits, layers 1..3, hidden > 0, GQA); allocates nothing.
void hash_weights_check_shape(int n_layer, int n_head, int n_head_kv, int head_dim, int bits, int mlp_layers,
                              int hidden);
// Allocates zeroed weights of this shape; throws on bad sizes (hash_weights_check_shape).
hash_weights hash_weights_alloc(int n_layer, int n_head, int n_head_kv, int head_dim, int bits, int mlp_layers,
                                int hidden, bool key_per_group);
// Fills weights N(0, 1/fan_in) and biases N(0, bias_std^2) from seed (deterministic).
void hash_weights_init_random(hash_weights& w, uint64_t seed, float bias_std = 0.f);

// ---- code store (one per model, next to the KV cache) ----
// The fast scoring path needs code_view.stride_tok == 1 (this store's layout).
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

}  // namespace hashattn
