// Internal state of a session (model.h): the KV cache, scratch buffers and the forward-pass steps.
// Shared by the forward pass (model-forward.cpp) and the branch decoder (model-branches.cpp).
#pragma once
#include <memory>
#include <unordered_map>
#include <vector>

#include "cpu/matvec.h"
#include "hashattn/model.h"
#include "model/model-impl.h"

namespace hashattn {

struct session::impl {
  const model* m = nullptr;
  const model::impl* w = nullptr;
  model_hparams hp;
  int64_t n_ctx = 0;
  int nt = 1;
  int64_t n_batch = 512;
  int q_dim = 0, kv_dim = 0;
  std::unique_ptr<attention_policy> policy;
  forward_observer observer;
  std::vector<std::vector<uint16_t>> kc, vc;  // per layer [n_ctx, kv_dim] fp16
  int64_t n_past = 0;

  // decode scratch
  std::vector<float> x, xn, q, k, v, att, tmp, g, u, cos_t, sin_t;
  cpu::act_i16 xq;
  index_lists lists;
  // prefill scratch
  std::vector<float> X, XN, Q, K, V, A, T, G, U, kf, vf, CS, SN, wtile;
  std::vector<std::vector<float>> S;  // per thread
  // logits: [n_rows, n_vocab]
  std::vector<float> logits;
  int64_t n_logit_rows = 0;
  // fp32 copies of the weights, made on first use by the branch decoder (its steps multiply a few
  // rows at a time: dequantizing the tiles at every step would cost more than the products).
  std::unordered_map<const weight*, std::vector<float>> w32;
  const float* weight_f32(const weight& wt);

  void mv(const weight* const* ws, float* const* ys, int n, const float* xin);
  void gemm(const weight& wt, const float* xin, int64_t n, float* yout);
  kv_view view(int l, int64_t n_tok) const;
  void decode(int32_t tok);
  void prefill(const int32_t* toks, int64_t n, bool all_logits, int64_t out_row0);
  void attn_prefill(int l, int64_t pos0, int64_t n);
};

// Adds a bias vector in place (no-op when the model has none).
void add_bias(float* y, const std::vector<float>& b);

}  // namespace hashattn
