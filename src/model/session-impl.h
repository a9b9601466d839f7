// Internal state of a session (model.h): the KV cache, scratch buffers and the forward-pass steps.
// Shared by the forward pass (model-forward.cpp) and the branch decoder (model-branches.cpp).
#pragma once
#include <memory>
#include <vector>

#include "cpu/matvec.h"
#include "hashattn/model.h"
#include "model/kv-pages.h"
#include "model/model-impl.h"

namespace hashattn {

// How the batched layer halves multiply rows by a weight: tiles dequantized to fp32 + sgemm (prefill),
// the model's fp32 copy + sgemm (branch steps), or integer products on the quantized weight (decode):
// below kSmallBatchMin rows one mat-vec per row (each row exactly as a single-token decode step
// computes it), from kSmallBatchMin rows the small-batch mat-mat (each weight row read once for all
// rows; a row's bits do not depend on the other rows, and differ from the mat-vec's by fp32 rounding
// only: cpu/matvec.h). Measured: below 5 rows the per-row mat-vecs are faster (docs/PERFORMANCE.md).
enum class wpath : uint8_t { tiles, f32, quant };
constexpr int kSmallBatchMin = 5;
// Rows of one multi-sequence decode step at most (the batch engine splits larger steps).
constexpr int kStepRows = cpu::kMaxSmallBatch;

// One row of a multi-sequence decode step: the sequence's KV pages, its policy, the position the row
// appends at, and (optional) the policy's attended / context token counters to add to.
struct seq_row {
  kv_seq* seq = nullptr;
  attention_policy* pol = nullptr;
  int64_t pos = 0;
  double* attended = nullptr;
  double* context = nullptr;
};

struct session::impl {
  const model* m = nullptr;
  const model::impl* w = nullptr;
  model_hparams hp;
  int64_t n_ctx = 0;
  int nt = 1;
  int64_t n_batch = 512;
  int q_dim = 0, kv_dim = 0;
  const backend* be = nullptr;  // attention ops
  std::unique_ptr<attention_policy> policy;
  forward_observer observer;
  // The KV cache: a page pool and the session's own sequence, which holds pages 0 .. n_ctx/page_size - 1
  // in order (so its rows are contiguous: row t of layer l at pool->k(l) + t * kv_dim). Branch decoders
  // add pages to the pool for their own sequences, forked from this one.
  std::unique_ptr<kv_pages> pool;
  std::unique_ptr<kv_seq> seq;
  int64_t n_past = 0;
  double attended_tokens = 0, context_tokens = 0;  // decode steps x layers: mean list length, context

  // decode scratch
  std::vector<float> xn;
  cpu::act_i16 xq;
  std::vector<cpu::act_i16> xqs;  // small-batch rows
  index_lists lists;
  // prefill scratch
  std::vector<float> X, XN, Q, K, V, A, T, G, U, kf, vf, CS, SN, wtile;
  std::vector<std::vector<float>> S;  // per thread
  // logits: [n_rows, n_vocab]
  std::vector<float> logits;
  int64_t n_logit_rows = 0;

  // Sets up the forward pass of a model (weights, threads, backend, prefill chunk) and a KV page pool of
  // kv_tokens tokens (-1: the context), checked against the memory available. who: for messages.
  void init(const model& mod, const char* who, int64_t ctx, int n_threads, const std::string& backend, int64_t batch,
            int page_size, int64_t kv_tokens);
  void mv(const weight* const* ws, float* const* ys, int n, const float* xin);
  // Y = X W^T over n rows (wpath above); gemm_multi: several weights of the same input (at most 4).
  void gemm(const weight& wt, const float* xin, int64_t n, float* yout, wpath wp);
  void gemm_multi(const weight* const* ws, float* const* ys, int nw, const float* xin, int64_t n, wpath wp);
  void gemm_one(const weight& wt, const float* xin, int64_t n, float* yout, wpath wp);
  // Batched layer halves over n rows of the prefill scratch, shared by prefill and the branch decoder:
  // rows_resize sizes X .. U for n rows; layer_qkv: X -> RMSNorm -> Q, K, V (+bias, per-head q/k
  // RMSNorm, RoPE with the angles of row i at cs/sn + i * angle_stride; 0: one position for all rows);
  // layer_out_ffn: A -> output projection (-> post-norm) -> residual into X -> RMSNorm -> SwiGLU or
  // GeGLU FFN (-> post-norm) -> residual into X. rows_embed: token rows into X (times embd_scale);
  // rows_logits: final RMSNorm of n rows of X and their logits into out (soft-capped when asked).
  // The angles of one position: rope_row() floats each for cos and sin, filled by rope_row_angles (one
  // block of rope_dims/2 per RoPE set; layer_qkv takes its layer's block): angle_stride = rope_row().
  // Attention of layer l from position pos covers keys hp.attn_first(l, pos) .. pos: window_lists fills
  // per-group index lists of that range for a sliding-window layer (false: a global layer, where the
  // policy decides), and softmax scales by hp.attn_scale.
  int64_t rope_row() const;
  void rope_row_angles(int64_t pos, float* cs, float* sn) const;
  int64_t rope_offset(int l) const;  // layer l's block in a rope row
  bool window_lists(int l, int64_t pos, index_lists& out) const;
  void finish_logits(float* out, int64_t n_vocab) const;  // soft-capping of one row of logits
  void rows_resize(int64_t n);
  void rows_embed(const int32_t* toks, int64_t n);
  void rows_logits(int64_t n, float* out, wpath wp);
  void layer_qkv(const layer_weights& L, int64_t n, const float* cs, const float* sn, int64_t angle_stride,
                 wpath wp);
  void layer_out_ffn(const layer_weights& L, int64_t n, wpath wp);
  kv_view view(int l, int64_t n_tok) const;
  void decode(int32_t tok);
  void prefill(const int32_t* toks, int64_t n, bool all_logits, int64_t out_row0);
  // Prefill of n tokens of one sequence at positions pos0 .. pos0+n-1 (pages reserved by the caller):
  // K/V rows into its pages, pol.on_append, dense causal attention over its pages. Logits of every
  // row (all_logits) or of the last into out.
  void prefill_seq(kv_seq& sq, attention_policy& pol, int64_t pos0, const int32_t* toks, int64_t n, float* out,
                   bool all_logits);
  void attn_prefill(int l, int64_t pos0, int64_t n, const kv_seq& sq);
  // One decode step of n rows (model-decode-rows.cpp): row i appends toks[i] to rows[i].seq at rows[i].pos
  // (distinct sequences, pages reserved), attention per row through its policy; logits [n, n_vocab].
  void decode_rows(const seq_row* rows, const int32_t* toks, int64_t n, float* out, wpath wp);
};

}  // namespace hashattn
