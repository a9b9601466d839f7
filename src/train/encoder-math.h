// Training math of the hash encoders, batched as GEMMs (OpenBLAS), for T = float (training) and
// T = double (the finite-difference gradient check):
//   mlp_forward / mlp_backward: one encoder's MLP (Linear -> SiLU -> ... -> Linear) on x [rows, in];
//     weights w_i [in_i, out_i] row-major (x . W), biases b_i [out_i] (the hash_weights layout, one head).
//   pair_loss: soft bit score s(i, t) = sum_j tanh(yq_ij) tanh(yk_tj) between query rows and key rows
//     (group mode: the mean over a group's G query heads of tanh(yq), then the same product), then
//     weighted BCE (positive weight in the pair weights) or a listwise softmax loss per query row.
// Shapes: yq [n_q, G, bits] (query-major, the G heads of a group adjacent), yk [n_k, bits],
//   label / weight [n_q, n_k]; gradients have the shapes of their inputs.
#pragma once
#include <cstdint>
#include <vector>

namespace hashattn::train_detail {

// One encoder's tensors (non-owning). Row-major w[i]: [dims[i], dims[i+1]], b[i]: [dims[i+1]].
template <class T>
struct enc_tensors {
  int n_layers = 0;
  int dims[4] = {0, 0, 0, 0};
  T* w[3] = {nullptr, nullptr, nullptr};
  T* b[3] = {nullptr, nullptr, nullptr};
  int64_t n_params() const;
};

// Encoder e of a role block laid out as in hash.h: for each layer i, w_i [n_enc, in_i, out_i] then
// b_i [n_enc, out_i]. `base` points at the role's first tensor (weights, gradients or Adam moments).
template <class T>
enc_tensors<T> enc_slice(T* base, int n_enc, int e, int n_layers, int in_dim, int hidden, int bits);

// Activations kept by the forward pass for the backward pass.
template <class T>
struct mlp_work {
  std::vector<T> pre[3];  // pre-activations of each layer [rows, out_i]; pre[n_layers-1] is the output
  std::vector<T> act[3];  // act[i] = silu(pre[i]) for hidden layers (input of layer i+1)
  std::vector<T> sig[3];  // sigmoid(pre[i]) for hidden layers (reused by the backward pass)
  std::vector<T> d0, d1;  // backward scratch
};

// y = MLP(x): leaves the output in work.pre[n_layers - 1] ([rows, bits]).
template <class T>
void mlp_forward(const enc_tensors<T>& p, const T* x, int64_t rows, mlp_work<T>& work);
// Adds the gradients of sum(dy * y) with respect to every weight and bias to g (same layout as p).
// work must hold the forward pass of the same x. dy: [rows, bits].
template <class T>
void mlp_backward(const enc_tensors<T>& p, const T* x, int64_t rows, mlp_work<T>& work, const T* dy,
                  const enc_tensors<T>& g);

enum class loss_kind : uint8_t { bce = 0, listwise = 1 };

struct loss_params {
  loss_kind kind = loss_kind::bce;
  double scale = 1.0;  // logit of a pair = scale * s (BCE) or softmax temperature (listwise)
};

// One minibatch of (query, key) pairs. weight 0 = pair not used (outside the query's middle region).
// bce:      loss = sum_{i,t} weight(i,t) * BCE(sigmoid(scale * s), label)  (weights carry the positive
//           class weight and the normalisation).
// listwise: per row i, with importance weights c = weight(i, .): Z = sum_t c_t exp(scale * s_t),
//           loss_i = -sum_{t: label} c_t (scale * s_t - log Z) / sum_{t: label} c_t; loss = mean_i loss_i
//           over rows with at least one positive. With target (soft targets): the positives' shares are
//           a_t = c_t * target(i,t) instead of c_t: loss_i = -sum_{t: label} a_t (scale * s_t - log Z) / sum a_t.
template <class T>
struct pair_batch {
  int64_t n_q = 0, n_k = 0;
  int group = 1;  // G query heads per row (their tanh outputs are averaged)
  int bits = 0;
  std::vector<uint8_t> label;  // [n_q, n_k]
  std::vector<T> weight;       // [n_q, n_k]
  std::vector<T> target;       // [n_q, n_k] listwise positives' target weights (> 0); empty: all 1
};

template <class T>
struct loss_work {
  std::vector<T> tq, tk, tqm, s, ds, dtqm, dtk;
};

// Returns the loss; writes dyq [n_q, G, bits] and dyk [n_k, bits].
template <class T>
double pair_loss(const loss_params& lp, const pair_batch<T>& b, const T* yq, const T* yk, T* dyq, T* dyk,
                 loss_work<T>& work);

// C = alpha * op(A) op(B) + beta * C, row-major (cblas_sgemm / cblas_dgemm).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Adam update of one encoder's tensors: m, v moments (same layout), step t >= 1 (bias correction).
struct adam_params {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};
void adam_step(const adam_params& a, int64_t t, const enc_tensors<float>& w, const enc_tensors<float>& g,
               const enc_tensors<float>& m, const enc_tensors<float>& v);

}  // namespace hashattn::train_detail
