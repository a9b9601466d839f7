// The model on the GPU (src/gpu; built with the CUDA backend): weights uploaded once as bf16, a KV cache
// of f16 (or bf16) pages and hash codes on the device, and decode steps of B sequences at once that run entirely
// on the GPU (only token ids cross to the host), captured once as a CUDA graph and replayed.
// One decode step: embed -> per layer [RMSNorm, one bf16 GEMM for q/k/v (cuBLAS), bias + RoPE + K/V to
//   the pages, attention by policy, output GEMM + residual, RMSNorm, gate/up GEMM, SwiGLU, down GEMM +
//   residual] -> RMSNorm -> logits GEMM -> sampling on the GPU.
// Attention policies: dense (every token), hash (learned codes: encode, select by code matches, attend
//   the selected tokens; hash/head or hash/group), streaming (sinks + window). The selection rule and
//   budget are core's (core.h); the kernels are those of cuda.h.
// Prefill runs the same layers over chunks of a prompt (GEMMs over the chunk) with dense causal attention.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hashattn/core.h"
#include "hashattn/cuda.h"

namespace hashattn {

class model;
struct model_hparams;
struct hash_weights;

namespace gpu {

// True when this build has the CUDA backend and a device is present; otherwise *why says why not.
bool available(std::string* why = nullptr);

// A model's weights on the GPU as bf16 (norms fp32), shared by the sessions made from it.
class device_model {
 public:
  // Dequantizes every matrix to bf16 on the host, a chunk of rows at a time, and uploads it.
  // Throws (naming the sizes) when the GPU has too little memory.
  static std::shared_ptr<const device_model> upload(const model& m, int n_threads = 0, bool verbose = false);
  ~device_model();
  const model_hparams& hparams() const;
  int64_t device_bytes() const;         // weights held on the GPU
  int64_t step_weight_bytes(int batch) const;  // weight bytes one decode step of `batch` sequences reads

  struct impl;
  const impl& internals() const { return *p_; }

 private:
  device_model();
  std::unique_ptr<impl> p_;
};

struct session_params {
  int batch = 1;              // sequences decoded together (B)
  int64_t n_ctx = 0;          // tokens per sequence (0: the model's training context)
  dtype kv_type = dtype::f16;  // K/V pages: f16 (as the CPU cache; 3 more mantissa bits) or bf16
  int page_size = 16;         // tokens per KV page (a power of two); a page holds [KV head][slot][d]
  std::string policy = "dense";  // the policy vocabulary (policy.h): dense, hash[/head|/group]@D, streaming@D
  std::shared_ptr<const hash_weights> hash;  // learned encoders (hash policies)
  // Prompt tokens per prefill pass (GEMMs over the chunk); 1 runs the prompt a token at a time through
  // the decode step's kernels.
  int64_t n_batch = 256;
  int prefill_attn_rows = 64; // prompt rows per prefill attention launch (at most n_batch are used)
  int64_t budget_ctx = 0;     // context at which a density budget's auto sinks / window are set (0: n_ctx)
  bool graph = true;          // capture the decode step once and replay it
  // Projections of up to this many rows (at most cuda::gemv_max_rows = 8) use our matrix-vector kernel,
  // more rows cuBLAS; 0: cuBLAS always. The same-run comparison on an H100 (docs/PERFORMANCE.md) measured
  // it faster than cuBLAS at B = 1 and slower at B = 8; B = 2..7 are not measured.
  int gemv_rows = 1;
  // The attention kernel (cuda.h attend_impl): auto (tensor cores, CUDA cores for per-head lists), cores
  // or tensor.
  std::string attend = cuda::attend_impl_name(cuda::attend_impl::automatic);
  float temp = 0;             // sampling on the GPU: <= 0 greedy; else softmax(logits / temp)
  uint64_t seed = 0;
};

class session {
 public:
  session(std::shared_ptr<const device_model> m, const session_params& p);
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  int batch() const;
  int64_t n_ctx() const;
  int64_t n_past(int seq) const;
  const std::string& policy() const;   // canonical policy text
  budget_params budget() const;        // the budget of hash / streaming
  // Tokens attended per list at a context of n tokens (n for dense).
  int64_t attended(int64_t n) const;
  // KV + codes bytes this session holds on the GPU.
  int64_t cache_bytes() const;
  // Bytes one decode step reads at context n per sequence: weights + K/V (+ codes) of what it attends.
  int64_t step_bytes(int64_t n) const;

  // Appends n tokens to sequence `seq` (prefill) and returns the token sampled on the GPU from the last
  // one's logits. logits != nullptr: also the logits of the last token [n_vocab], or of every token
  // [n, n_vocab] when all_logits.
  int32_t prefill(int seq, const int32_t* tokens, int64_t n, std::vector<float>* logits = nullptr,
                  bool all_logits = false);
  // One decode step: tokens[b] appended to every sequence b; next[b] = the token sampled on the GPU from
  // its logits; logits != nullptr: also the logits [batch, n_vocab] (copied off the GPU).
  void step(const int32_t* tokens, int32_t* next, std::vector<float>* logits = nullptr);
  // n decode steps that feed each sampled token back on the device (no host round trip between steps);
  // returns the GPU time in ms of the n steps (events). The last step's tokens: last_tokens().
  float run_steps(int n);
  std::vector<int32_t> last_tokens();
  // Benchmarks: every sequence holds n tokens of random K/V (and random key codes).
  void fill_synthetic(int64_t n, uint64_t seed);

  struct impl;

 private:
  std::unique_ptr<impl> p_;
};

}  // namespace gpu
}  // namespace hashattn
