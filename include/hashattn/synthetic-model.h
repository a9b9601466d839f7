// Llama-architecture GGUF models with random weights, for speed benchmarks (the weights are noise: no
// claim about quality), and random hash encoders bound to such a model (`hashattn make-model`).
// The model file is written through the GGUF writer's streamed tensors, chunk by chunk, never whole in
// memory. Every byte is a function of (seed, tensor index, element index) alone (a counter-based
// generator: splitmix64, 16 bits per element), so the thread count does not change the file.
// Weights: every matrix (embedding and output included) uniform in [-a, a] with a = sqrt(3 / fan_in), i.e.
// a standard deviation of 1 / sqrt(fan_in), where fan_in = ne[0] (the contiguous axis: the input of each
// projection, n_embd for the embedding), so that activations keep their scale through the layers; the
// norms are 1; rope_freqs.weight (optional) holds the Llama 3.1 RoPE scaling factors.
// Tensors, in file order: token_embd, rope_freqs (optional), then per layer attn_norm, attn_q, attn_k,
// attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down, then output_norm and output (untied).
// Vocabulary: tokenizer_vocab_bytes(n_vocab) (tokenizer.h).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hashattn/core.h"
#include "hashattn/gguf.h"

namespace hashattn {

class model;

// Llama 3.1's RoPE frequency scaling: wavelengths shorter than orig_ctx / high_freq_factor keep their
// frequency, those longer than orig_ctx / low_freq_factor have it divided by `factor`, and the band in
// between blends the two smoothly.
struct llama3_rope_scaling {
  double factor = 8;
  double low_freq_factor = 1;
  double high_freq_factor = 4;
  int64_t orig_ctx = 8192;
};
// The rope_freqs.weight factors f_i, i < rope_dims / 2: the model divides its i-th RoPE frequency
// base^(-2i / rope_dims) by f_i (model_hparams::rope_freq_factors). Throws for bad scaling values.
std::vector<float> llama3_rope_freq_factors(int rope_dims, double base, const llama3_rope_scaling& s);

struct synthetic_progress {
  uint64_t bytes_done = 0, bytes_total = 0;  // tensor data
  int layer = -1;                            // block of the tensor being written; -1 outside the blocks
  double seconds = 0;                        // since the write began
};

struct synthetic_model_params {
  std::string name = "synthetic";  // general.name
  int n_layer = 2;
  int n_embd = 256;
  int n_ff = 512;
  int n_head = 4;
  int n_head_kv = 2;
  int head_dim = 64;
  int64_t n_vocab = 512;
  int64_t n_ctx = 4096;  // context_length
  float rope_base = 10000.f;
  float rms_eps = 1e-5f;
  bool rope_scaling = false;  // write rope_freqs.weight from `scaling`
  llama3_rope_scaling scaling;
  gguf::type type = gguf::type::BF16;  // of the matrices: F32, F16 or BF16 (norms and rope_freqs: F32)
  uint64_t seed = 0;
  int n_threads = 0;  // generating threads; 0: all cores but one (the one the writing thread needs)
  size_t chunk_bytes = size_t(64) << 20;  // the writer's chunk (gguf::writer::write); the bytes do not depend on it
  std::function<void(const synthetic_progress&)> on_progress;  // after every chunk written
};

// "llama3.1-8b": 32 layers, n_embd 4096, n_ff 14336, 32/8 heads of 128, vocabulary 128256, context 131072,
// RoPE base 500000 with the Llama 3.1 scaling, rms eps 1e-5, BF16 (16.06 GB).
// "tiny": 2 layers, n_embd 256, n_ff 512, 4/2 heads of 64, vocabulary 512, context 4096 (for tests).
// Throws for an unknown name, listing the presets.
synthetic_model_params synthetic_model_preset(const std::string& name);
const std::vector<std::string>& synthetic_model_preset_names();
// Throws hashattn::error naming the first bad field: sizes positive and within the loader's limits,
// n_head a multiple of n_head_kv, n_head x head_dim = n_embd, head_dim even, vocabulary >= 258, the type.
void synthetic_model_validate(const synthetic_model_params& p);

struct synthetic_model_layout {
  size_t n_tensors = 0;
  int64_t n_params = 0;
  uint64_t file_bytes = 0;  // the whole file
};
// What synthetic_model_write would write (validates p; writes nothing).
synthetic_model_layout synthetic_model_plan(const synthetic_model_params& p);
// Writes the model to path (atomically: temp file + rename).
synthetic_model_layout synthetic_model_write(const std::string& path, const synthetic_model_params& p);

// ---- random hash encoders for a model ----
struct synthetic_hash_params {
  int bits = 32;
  int mlp_layers = 3;
  int hidden = 128;
  gqa_mode gqa = gqa_mode::per_head;  // per_group: key encoders per KV head
  uint64_t seed = 0;
};
// Throws unless encoders of this shape can be made for a model of n_layer x n_head / n_head_kv heads of head_dim.
void synthetic_hash_validate(const synthetic_hash_params& p, int n_layer, int n_head, int n_head_kv, int head_dim);
// Random, untrained encoders (the trainer's initialisation, hash_weights_init_random) written as a hash
// file bound to m (hash_file_save with model_hash_binding(m)): hash_weights_load_for(m, path) accepts it.
void synthetic_hash_write(const model& m, const std::string& path, const synthetic_hash_params& p);

}  // namespace hashattn
