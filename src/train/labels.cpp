// Training labels (see train.h): per captured query, the top-k middle keys of one unit (a query head, or
// a KV group in group mode) by logit, by attention weight x ||v||, or (group mode) by the group's summed
// attention weights (x ||v||). Logits come from one sgemm per head: [n_q, d] x [d, n_tok].
#include <algorithm>
#include <cmath>

#include "hashattn/error.h"
#include "train/encoder-math.h"
#include "train/train-internal.h"

namespace hashattn {
using namespace train_detail;

middle_range label_middle(const label_params& p, int64_t pos) {
  const int64_t n = pos + 1;
  middle_range r;
  const select_split all = select_split_of(1.0, 0, p.sinks, p.window, n);  // core's split of the context
  r.lo = all.lo;
  r.hi = all.hi;
  const int64_t n_mid = r.hi - r.lo;
  if (p.k_fixed > 0)
    r.k = std::min<int64_t>(p.k_fixed, n_mid);
  else
    r.k = std::min<int64_t>(n_mid, (int64_t)std::floor(p.density * (double)n_mid + 1e-9));
  return r;
}

namespace train_detail {

void head_logits(const layer_capture& c, int h, std::vector<float>& out) {
  const int d = c.head_dim, G = c.n_head / c.n_head_kv, hk = h / G;
  const int64_t nq = c.n_q(), n = c.n_tok;
  out.resize((size_t)nq * n);
  if (nq == 0) return;
  gemm<float>(false, true, nq, n, d, 1.0f / std::sqrt((float)d), c.q.data() + (size_t)h * d, (int64_t)c.n_head * d,
              c.k.data() + (size_t)hk * d, (int64_t)c.n_head_kv * d, 0.0f, out.data(), n);
}

void head_probs(const layer_capture& c, int h, std::vector<double>& out) {
  std::vector<float> lg;
  head_logits(c, h, lg);
  const int64_t nq = c.n_q(), n = c.n_tok;
  out.assign((size_t)nq * n, 0.0);
  for (int64_t i = 0; i < nq; i++) {
    const int64_t m = c.qpos[i] + 1;
    const float* l = lg.data() + i * n;
    double* p = out.data() + i * n;
    double mx = -INFINITY;
    for (int64_t t = 0; t < m; t++) mx = std::max(mx, (double)l[t]);
    double z = 0;
    for (int64_t t = 0; t < m; t++) z += (p[t] = std::exp((double)l[t] - mx));
    for (int64_t t = 0; t < m; t++) p[t] /= z;
  }
}

void top_k_desc(const double* v, int64_t lo, int64_t hi, int64_t k, std::vector<int32_t>& out) {
  out.clear();
  if (k <= 0 || hi <= lo) return;
  k = std::min(k, hi - lo);
  std::vector<int32_t> idx(hi - lo);
  for (int64_t t = lo; t < hi; t++) idx[t - lo] = (int32_t)t;
  auto better = [v](int32_t a, int32_t b) { return v[a] != v[b] ? v[a] > v[b] : a > b; };
  std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), better);
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  out = std::move(idx);
}

// Soft targets of one unit: per query, its labels' attention weights renormalized over the labels (group
// mode: the mean over the group's heads), times the label count (mean 1).
std::vector<std::vector<float>> label_attention_weights(const layer_capture& c, gqa_mode mode, int unit,
                                              const std::vector<std::vector<int32_t>>& labels) {
  const int G = c.n_head / c.n_head_kv, d = c.head_dim;
  const int h0 = mode == gqa_mode::per_head ? unit : unit * G, nh = mode == gqa_mode::per_head ? 1 : G;
  const float inv = 1.0f / std::sqrt((float)d);
  std::vector<std::vector<float>> out(labels.size());
  std::vector<double> lg, acc;
  for (size_t i = 0; i < labels.size(); i++) {
    const auto& L = labels[i];
    acc.assign(L.size(), 0.0);
    for (int g = 0; g < nh; g++) {
      const int h = h0 + g, hk = h / G;
      const float* q = c.q.data() + (i * c.n_head + h) * d;
      lg.resize(L.size());
      double mx = -INFINITY;
      for (size_t j = 0; j < L.size(); j++) {
        const float* k = c.k.data() + ((size_t)L[j] * c.n_head_kv + hk) * d;
        double s = 0;
        for (int x = 0; x < d; x++) s += (double)q[x] * k[x];
        mx = std::max(mx, lg[j] = s * inv);
      }
      double z = 0;
      for (size_t j = 0; j < L.size(); j++) z += std::exp(lg[j] - mx);
      for (size_t j = 0; j < L.size(); j++) acc[j] += std::exp(lg[j] - mx) / z / nh;
    }
    out[i].resize(L.size());
    for (size_t j = 0; j < L.size(); j++) out[i][j] = (float)(acc[j] * (double)L.size());
  }
  return out;
}

}  // namespace train_detail

std::vector<std::vector<int32_t>> make_labels(const layer_capture& c, const label_params& p, gqa_mode mode,
                                              int unit) {
  const int G = c.n_head / c.n_head_kv;
  const int64_t nq = c.n_q(), n = c.n_tok;
  const int n_units = mode == gqa_mode::per_head ? c.n_head : c.n_head_kv;
  if (unit < 0 || unit >= n_units) fail("labels: unit", std::to_string(unit), "0 .. " + std::to_string(n_units - 1));
  const int hk = mode == gqa_mode::per_head ? unit / G : unit;
  std::vector<double> val((size_t)nq * n, 0.0);
  if (mode == gqa_mode::per_head && p.rank == label_rank::logit) {
    std::vector<float> lg;
    head_logits(c, unit, lg);
    for (size_t j = 0; j < lg.size(); j++) val[j] = lg[j];
  } else if (mode == gqa_mode::per_head) {
    // attention weight x ||v||: same order as logit + log ||v|| (the softmax normaliser is per row).
    std::vector<float> lg;
    head_logits(c, unit, lg);
    for (int64_t i = 0; i < nq; i++)
      for (int64_t t = 0; t < n; t++)
        val[i * n + t] = (double)lg[i * n + t] + std::log(std::max(1e-30, (double)c.vnorm[t * c.n_head_kv + hk]));
  } else {
    std::vector<double> pr;
    for (int g = 0; g < G; g++) {
      head_probs(c, hk * G + g, pr);
      for (size_t j = 0; j < pr.size(); j++) val[j] += pr[j];
    }
    if (p.rank == label_rank::value_norm)
      for (int64_t i = 0; i < nq; i++)
        for (int64_t t = 0; t < n; t++) val[i * n + t] *= (double)c.vnorm[t * c.n_head_kv + hk];
  }
  std::vector<std::vector<int32_t>> out(nq);
  for (int64_t i = 0; i < nq; i++) {
    const middle_range r = label_middle(p, c.qpos[i]);
    top_k_desc(val.data() + i * n, r.lo, r.hi, r.k, out[i]);
  }
  return out;
}

}  // namespace hashattn
