// Internal state of a loaded model: hyperparameters and views of the weights inside the GGUF
// mapping (no copies of matrices; norms and biases are small and kept as fp32 vectors).
// weight: [rows, cols] in GGUF block format, row r at data + r * row_bytes (cols = ne[0]).
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "hashattn/gguf.h"
#include "hashattn/model.h"

namespace hashattn {

struct weight {
  std::string name;
  gguf::type type = gguf::type::F32;
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t bytes() const { return row_bytes * (size_t)rows; }
};

struct layer_weights {
  int il = 0;                              // the layer's index (model_hparams' per-layer data)
  std::vector<float> attn_norm, ffn_norm;  // [n_embd]
  std::vector<float> q_norm, k_norm;       // [head_dim] (qk_norm) or empty
  std::vector<float> attn_post_norm, ffn_post_norm;  // [n_embd] (post_norms) or empty
  weight wq, wk, wv, wo;                   // [n_head*hd, n_embd], [n_kv*hd, n_embd] x2, [n_embd, n_head*hd]
  std::vector<float> bq, bk, bv;           // empty when absent
  weight gate, up, down;                   // [n_ff, n_embd] x2, [n_embd, n_ff]
};

// Reads and checks the hyperparameters of f (model-hparams.cpp): sizes, RoPE (with its scaling),
// the architecture's features, per-layer windows. rope_freqs: llama3 factors computed from the
// rope.scaling.* metadata (empty otherwise). Throws naming the key.
void read_hparams(const gguf::file& f, model_hparams& hp, std::vector<float>& rope_freqs);

struct model::impl {
  std::shared_ptr<const gguf::file> f;
  model_hparams hp;
  weight tok_embd;   // [n_vocab, n_embd]
  weight output;     // [n_vocab, n_embd]; == tok_embd when tied
  std::vector<float> output_norm;  // [n_embd]
  std::vector<float> rope_freqs;   // [rope_dims / 2] or empty: rope_freqs.weight, or llama3 factors from the metadata
  std::vector<layer_weights> layers;

  // fp32 copies of weights, made on first use and shared by every session of the model (the branch
  // decoder multiplies a few rows at a time: dequantizing tiles at every step would cost more than the
  // products). 4 bytes per parameter once asked for.
  const float* weight_f32(const weight& wt, int n_threads) const;

 private:
  mutable std::mutex w32_mu_;
  mutable std::unordered_map<const weight*, std::vector<float>> w32_;
};

}  // namespace hashattn
