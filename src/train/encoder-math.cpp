// Hash-encoder training math (see encoder-math.h): MLP forward/backward as GEMMs, the tanh-relaxed
// bit score with weighted BCE or a listwise softmax loss, and Adam. Instantiated for float and double.
// Layouts: x [rows, in]; pre/act [rows, out_i]; yq [n_q, G, bits]; yk [n_k, bits]; s [n_q, n_k].
#include "train/encoder-math.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "hashattn/error.h"
#include "train/train-ops.h"

namespace hashattn::train_detail {

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}
template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                  const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

template <class T>
int64_t enc_tensors<T>::n_params() const {
  int64_t n = 0;
  for (int i = 0; i < n_layers; i++) n += (int64_t)dims[i] * dims[i + 1] + dims[i + 1];
  return n;
}

template <class T>
enc_tensors<T> enc_slice(T* base, int n_enc, int e, int n_layers, int in_dim, int hidden, int bits) {
  HASHATTN_ASSERT(n_layers >= 1 && n_layers <= 3 && e >= 0 && e < n_enc);
  enc_tensors<T> t;
  t.n_layers = n_layers;
  t.dims[0] = in_dim;
  for (int i = 1; i < n_layers; i++) t.dims[i] = hidden;
  t.dims[n_layers] = bits;
  T* p = base;
  for (int i = 0; i < n_layers; i++) {
    const int64_t wsz = (int64_t)t.dims[i] * t.dims[i + 1];
    t.w[i] = p + e * wsz;
    p += n_enc * wsz;
    t.b[i] = p + (int64_t)e * t.dims[i + 1];
    p += (int64_t)n_enc * t.dims[i + 1];
  }
  return t;
}

namespace {
template <class T>
inline T sigmoid(T x) {
  return x >= 0 ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
}
}  // namespace

template <class T>
void mlp_forward(const enc_tensors<T>& p, const T* x, int64_t rows, mlp_work<T>& work) {
  const T* in = x;
  for (int i = 0; i < p.n_layers; i++) {
    const int din = p.dims[i], dout = p.dims[i + 1];
    std::vector<T>& y = work.pre[i];
    y.resize((size_t)rows * dout);
    for (int64_t r = 0; r < rows; r++) std::copy(p.b[i], p.b[i] + dout, y.data() + r * dout);
    gemm<T>(false, false, rows, dout, din, T(1), in, din, p.w[i], dout, T(1), y.data(), dout);
    if (i + 1 < p.n_layers) {
      std::vector<T>& a = work.act[i];
      std::vector<T>& sg = work.sig[i];
      a.resize(y.size());
      sg.resize(y.size());
      if constexpr (std::is_same_v<T, float>) {
        silu_forward(y.data(), a.data(), sg.data(), (int64_t)y.size());
      } else {
        for (size_t j = 0; j < y.size(); j++) a[j] = y[j] * (sg[j] = sigmoid(y[j]));
      }
      in = a.data();
    }
  }
}

template <class T>
void mlp_backward(const enc_tensors<T>& p, const T* x, int64_t rows, mlp_work<T>& work, const T* dy,
                  const enc_tensors<T>& g) {
  // dh: gradient of the current layer's pre-activation.
  const T* dh = dy;
  for (int i = p.n_layers - 1; i >= 0; i--) {
    const int din = p.dims[i], dout = p.dims[i + 1];
    const T* in = i == 0 ? x : work.act[i - 1].data();
    gemm<T>(true, false, din, dout, rows, T(1), in, din, dh, dout, T(1), g.w[i], dout);
    for (int64_t r = 0; r < rows; r++) {
      const T* row = dh + r * dout;
      for (int j = 0; j < dout; j++) g.b[i][j] += row[j];
    }
    if (i == 0) break;
    // d(act[i-1]) = dh W_i^T, then through SiLU: silu'(h) = sig(h) (1 + h (1 - sig(h))).
    std::vector<T>& da = (dh == work.d0.data()) ? work.d1 : work.d0;
    da.resize((size_t)rows * din);
    gemm<T>(false, true, rows, din, dout, T(1), dh, dout, p.w[i], dout, T(0), da.data(), din);
    const std::vector<T>& h = work.pre[i - 1];
    const std::vector<T>& sg = work.sig[i - 1];
    if constexpr (std::is_same_v<T, float>) {
      silu_backward(da.data(), h.data(), sg.data(), (int64_t)da.size());
    } else {
      for (size_t j = 0; j < da.size(); j++) da[j] *= sg[j] * (T(1) + h[j] * (T(1) - sg[j]));
    }
    dh = da.data();
  }
}

template <class T>
double pair_loss(const loss_params& lp, const pair_batch<T>& b, const T* yq, const T* yk, T* dyq, T* dyk,
                 loss_work<T>& w) {
  const int64_t nq = b.n_q, nk = b.n_k;
  const int G = b.group, B = b.bits;
  HASHATTN_ASSERT(nq > 0 && nk > 0 && G >= 1 && B > 0);
  HASHATTN_ASSERT((int64_t)b.label.size() == nq * nk && (int64_t)b.weight.size() == nq * nk);
  HASHATTN_ASSERT(b.target.empty() || ((int64_t)b.target.size() == nq * nk && lp.kind == loss_kind::listwise));
  w.tq.resize((size_t)nq * G * B);
  w.tk.resize((size_t)nk * B);
  w.tqm.resize((size_t)nq * B);
  if constexpr (std::is_same_v<T, float>) {
    tanh_rows(yq, w.tq.data(), (int64_t)w.tq.size());
    tanh_rows(yk, w.tk.data(), (int64_t)w.tk.size());
  } else {
    for (size_t j = 0; j < w.tq.size(); j++) w.tq[j] = std::tanh(yq[j]);
    for (size_t j = 0; j < w.tk.size(); j++) w.tk[j] = std::tanh(yk[j]);
  }
  for (int64_t i = 0; i < nq; i++)
    for (int j = 0; j < B; j++) {
      T acc = 0;
      for (int g = 0; g < G; g++) acc += w.tq[((size_t)i * G + g) * B + j];
      w.tqm[(size_t)i * B + j] = acc / T(G);
    }
  w.s.resize((size_t)nq * nk);
  w.ds.assign((size_t)nq * nk, T(0));
  gemm<T>(false, true, nq, nk, B, T(1), w.tqm.data(), B, w.tk.data(), B, T(0), w.s.data(), nk);
  const T sc = (T)lp.scale;
  double loss = 0;
  if (lp.kind == loss_kind::bce) {
    for (int64_t i = 0; i < nq * nk; i++) {
      const T wt = b.weight[i];
      if (wt == T(0)) continue;
      const T z = sc * w.s[i];
      const bool y = b.label[i] != 0;
      // One exp: e = exp(-|z|); sigmoid(z) and softplus(+-z) follow from it.
      const T e = std::exp(-std::fabs(z));
      const T l1p = std::log1p(e);
      const T sg = z >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
      const T sp_pos = std::max(z, T(0)) + l1p;   // softplus(z)
      const T sp_neg = std::max(-z, T(0)) + l1p;  // softplus(-z)
      loss += (double)(wt * (y ? sp_neg : sp_pos));
      w.ds[i] = wt * sc * (sg - (y ? T(1) : T(0)));
    }
  } else {
    int64_t rows_used = 0;
    for (int64_t i = 0; i < nq; i++)
      for (int64_t t = 0; t < nk; t++)
        if (b.label[i * nk + t] && b.weight[i * nk + t] > T(0)) {
          rows_used++;
          break;
        }
    for (int64_t i = 0; i < nq && rows_used > 0; i++) {
      const T* c = b.weight.data() + i * nk;
      const uint8_t* y = b.label.data() + i * nk;
      const T* s = w.s.data() + i * nk;
      const T* tg = b.target.empty() ? nullptr : b.target.data() + i * nk;
      auto share = [&](int64_t t) { return tg ? c[t] * tg[t] : c[t]; };
      T zmax = -INFINITY, cpos = 0;
      for (int64_t t = 0; t < nk; t++)
        if (c[t] > T(0)) {
          zmax = std::max(zmax, sc * s[t]);
          if (y[t]) cpos += share(t);
        }
      if (cpos <= T(0)) continue;
      T z = 0;
      for (int64_t t = 0; t < nk; t++)
        if (c[t] > T(0)) z += c[t] * std::exp(sc * s[t] - zmax);
      const T logz = zmax + std::log(z);
      T li = 0;
      T* ds = w.ds.data() + i * nk;
      const T inv_rows = T(1) / T(rows_used);
      for (int64_t t = 0; t < nk; t++) {
        if (c[t] <= T(0)) continue;
        const T pt = c[t] * std::exp(sc * s[t] - logz);
        T d = pt;
        if (y[t]) {
          li -= share(t) * (sc * s[t] - logz) / cpos;
          d -= share(t) / cpos;
        }
        ds[t] = sc * d * inv_rows;
      }
      loss += (double)(li * inv_rows);
    }
  }
  // ds -> d(tqm) = ds tk, d(tk) = ds^T tqm; then through the mean and tanh.
  w.dtqm.resize((size_t)nq * B);
  w.dtk.resize((size_t)nk * B);
  gemm<T>(false, false, nq, B, nk, T(1), w.ds.data(), nk, w.tk.data(), B, T(0), w.dtqm.data(), B);
  gemm<T>(true, false, nk, B, nq, T(1), w.ds.data(), nk, w.tqm.data(), B, T(0), w.dtk.data(), B);
  for (int64_t i = 0; i < nq; i++)
    for (int g = 0; g < G; g++)
      for (int j = 0; j < B; j++) {
        const size_t q = ((size_t)i * G + g) * B + j;
        dyq[q] = w.dtqm[(size_t)i * B + j] / T(G) * (T(1) - w.tq[q] * w.tq[q]);
      }
  if constexpr (std::is_same_v<T, float>) {
    tanh_backward(w.dtk.data(), w.tk.data(), dyk, (int64_t)w.tk.size());
  } else {
    for (size_t j = 0; j < w.tk.size(); j++) dyk[j] = w.dtk[j] * (T(1) - w.tk[j] * w.tk[j]);
  }
  return loss;
}

void adam_step(const adam_params& a, int64_t t, const enc_tensors<float>& w, const enc_tensors<float>& g,
               const enc_tensors<float>& m, const enc_tensors<float>& v) {
  HASHATTN_ASSERT(t >= 1);
  const double c1 = 1.0 - std::pow(a.beta1, (double)t), c2 = 1.0 - std::pow(a.beta2, (double)t);
  const float lr_t = (float)(a.lr * std::sqrt(c2) / c1);
  const float b1 = (float)a.beta1, b2 = (float)a.beta2;
  const float eps_t = (float)(a.eps * std::sqrt(c2));
  auto upd = [&](float* wp, const float* gp, float* mp, float* vp, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
      mp[i] = b1 * mp[i] + (1 - b1) * gp[i];
      vp[i] = b2 * vp[i] + (1 - b2) * gp[i] * gp[i];
      wp[i] -= lr_t * mp[i] / (std::sqrt(vp[i]) + eps_t);
    }
  };
  for (int i = 0; i < w.n_layers; i++) {
    upd(w.w[i], g.w[i], m.w[i], v.w[i], (int64_t)w.dims[i] * w.dims[i + 1]);
    upd(w.b[i], g.b[i], m.b[i], v.b[i], w.dims[i + 1]);
  }
}

template struct enc_tensors<float>;
template struct enc_tensors<double>;
template enc_tensors<float> enc_slice(float*, int, int, int, int, int, int);
template enc_tensors<double> enc_slice(double*, int, int, int, int, int, int);
template void mlp_forward(const enc_tensors<float>&, const float*, int64_t, mlp_work<float>&);
template void mlp_forward(const enc_tensors<double>&, const double*, int64_t, mlp_work<double>&);
template void mlp_backward(const enc_tensors<float>&, const float*, int64_t, mlp_work<float>&, const float*,
                           const enc_tensors<float>&);
template void mlp_backward(const enc_tensors<double>&, const double*, int64_t, mlp_work<double>&, const double*,
                           const enc_tensors<double>&);
template double pair_loss(const loss_params&, const pair_batch<float>&, const float*, const float*, float*, float*,
                          loss_work<float>&);
template double pair_loss(const loss_params&, const pair_batch<double>&, const double*, const double*, double*,
                          double*, loss_work<double>&);

}  // namespace hashattn::train_detail
