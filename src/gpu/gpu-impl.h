// Internal state of the GPU runtime (gpu.h): the device weights and a session's device buffers.
#pragma once
#include <vector>

#include "hashattn/cuda.h"
#include "hashattn/gpu.h"
#include "hashattn/model.h"

namespace hashattn {
namespace gpu {

// A device allocation freed with its owner.
struct dbuf {
  void* p = nullptr;
  size_t bytes = 0;
  dbuf() = default;
  dbuf(size_t n, const char* what);
  ~dbuf();
  dbuf(dbuf&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr, o.bytes = 0; }
  dbuf& operator=(dbuf&& o) noexcept;
  dbuf(const dbuf&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(p); }
};

struct device_layer {
  dbuf attn_norm, ffn_norm;  // fp32 [n_embd]
  dbuf wqkv;                 // bf16 [(n_head + 2 n_head_kv) head_dim, n_embd]: wq; wk; wv
  dbuf bqkv;                 // fp32 [(n_head + 2 n_head_kv) head_dim] or empty
  dbuf wo;                   // bf16 [n_embd, n_head head_dim]
  dbuf wgu;                  // bf16 [2 n_ff, n_embd]: gate; up
  dbuf wdown;                // bf16 [n_embd, n_ff]
};

struct device_model::impl {
  model_hparams hp;
  dbuf tok_embd;            // bf16 [n_vocab, n_embd]
  dbuf output;              // bf16 [n_vocab, n_embd]; empty when tied (tok_embd is used)
  dbuf output_norm;         // fp32 [n_embd]
  dbuf rope_freqs;          // fp32 [rope_dims / 2] or empty
  std::vector<device_layer> layers;
  int64_t bytes = 0;
  int64_t matrix_bytes = 0;  // every matrix read by a step (the output projection included)
  const void* out_w() const { return output.p ? output.p : tok_embd.p; }
  int qkv_width() const { return (hp.n_head + 2 * hp.n_head_kv) * hp.head_dim; }
};

// Hash encoders on the device: all layers' fp32 tensors in one buffer, views per layer.
struct device_hash {
  dbuf data;
  std::vector<cuda::mlp_device> query, key;
  int bits = 32;
  bool key_per_group = false;
};
device_hash upload_hash(const hash_weights& w, const model_hparams& hp);

}  // namespace gpu
}  // namespace hashattn
