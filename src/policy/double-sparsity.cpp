// Double Sparsity policy: r channels per KV head chosen offline (double_sparsity_calibrate: largest
// mean |q_i * k_i| over calibration queries and keys); a label cache keeps those channels of every
// appended key (fp16, r*16 bits per token per KV head); a query's approximate score of token t is
// sum over the channels of q_i * k_t,i (summed over the group's queries in per-group mode); then the
// common selection rule (sinks + window + top middle scores, ties to the most recent).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "hashattn/hash.h"
#include "policy/policy-util.h"

namespace hashattn {

std::vector<int32_t> double_sparsity_calibrate(const float* q, int64_t n_q, const float* k, int64_t n_k,
                                               const layer_shape& s, int channels) {
  if (s.n_head <= 0 || s.n_head_kv <= 0 || s.n_head % s.n_head_kv != 0 || s.head_dim <= 0)
    fail("double sparsity calibration: shape", std::to_string(s.n_head) + "/" + std::to_string(s.n_head_kv),
         "n_head a positive multiple of n_head_kv, head_dim > 0");
  if (channels <= 0 || channels > s.head_dim)
    fail("double sparsity calibration: channels", std::to_string(channels), "in [1, head_dim = " + std::to_string(s.head_dim) + "]");
  if (n_q <= 0 || n_k <= 0 || q == nullptr || k == nullptr)
    fail("double sparsity calibration: samples", std::to_string(n_q) + " queries, " + std::to_string(n_k) + " keys",
         "at least one of each");
  const int G = s.n_head / s.n_head_kv, d = s.head_dim;
  std::vector<int32_t> out((size_t)s.n_head_kv * channels);
  std::vector<double> mq(d), mk(d);
  std::vector<int32_t> ord(d);
  for (int hk = 0; hk < s.n_head_kv; hk++) {
    std::fill(mq.begin(), mq.end(), 0.0);
    std::fill(mk.begin(), mk.end(), 0.0);
    for (int64_t i = 0; i < n_q; i++)
      for (int g = 0; g < G; g++)
        for (int j = 0; j < d; j++) mq[j] += std::fabs(q[(i * s.n_head + hk * G + g) * d + j]);
    for (int64_t i = 0; i < n_k; i++)
      for (int j = 0; j < d; j++) mk[j] += std::fabs(k[(i * s.n_head_kv + hk) * d + j]);
    std::iota(ord.begin(), ord.end(), 0);
    std::stable_sort(ord.begin(), ord.end(), [&](int a, int b) { return mq[a] * mk[a] > mq[b] * mk[b]; });
    std::sort(ord.begin(), ord.begin() + channels);
    std::copy(ord.begin(), ord.begin() + channels, out.begin() + (size_t)hk * channels);
  }
  return out;
}

namespace {
using namespace policy_detail;

class ds_policy final : public attention_policy {
 public:
  explicit ds_policy(const policy_config& cfg) : cfg_(cfg) {
    budget_validate(cfg.budget);
    if (cfg.channels <= 0) fail("double sparsity policy: channels", std::to_string(cfg.channels), "> 0");
  }
  std::string name() const override { return "double_sparsity"; }
  double aux_bits_per_token_head() const override { return 16.0 * cfg_.channels; }
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override {
    check_begin("double sparsity", n_layer, shape, max_ctx);
    const int r = cfg_.channels;
    const size_t need = (size_t)n_layer * shape.n_head_kv * r;
    if (cfg_.ds_channels.size() != need)
      fail("double sparsity policy: calibrated channels", std::to_string(cfg_.ds_channels.size()) + " indices",
           std::to_string(need) + " ([n_layer, n_head_kv, channels])",
           "run double_sparsity_calibrate on calibration q/k for every layer");
    for (int32_t c : cfg_.ds_channels)
      if (c < 0 || c >= shape.head_dim)
        fail("double sparsity policy: channel index", std::to_string(c), "in [0, head_dim)");
    if (r > shape.head_dim) fail("double sparsity policy: channels", std::to_string(r), "<= head_dim");
    shape_ = shape;
    n_layer_ = n_layer;
    max_ctx_ = max_ctx;
    label_.assign((size_t)n_layer * max_ctx * shape.n_head_kv * r, 0);
    n_tok_.assign(n_layer, 0);
  }
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override {
    check_layer("double sparsity", layer, n_layer_);
    if (n_new <= 0) return;
    if (pos0 != n_tok_[layer] || pos0 + n_new > max_ctx_)
      fail("double sparsity policy: append at " + std::to_string(pos0) + " of " + std::to_string(n_new),
           "layer has " + std::to_string(n_tok_[layer]) + " tokens, max " + std::to_string(max_ctx_),
           "appends in order within max_ctx");
    const int nk = shape_.n_head_kv, d = shape_.head_dim, r = cfg_.channels;
    for (int64_t i = 0; i < n_new; i++)
      for (int h = 0; h < nk; h++) {
        const int32_t* ch = cfg_.ds_channels.data() + ((size_t)layer * nk + h) * r;
        uint16_t* dst = label(layer, pos0 + i, h);
        for (int c = 0; c < r; c++) dst[c] = fp32_to_fp16(k[(i * nk + h) * d + ch[c]]);
      }
    n_tok_[layer] = pos0 + n_new;
  }
  void truncate(int64_t n) override {
    for (auto& t : n_tok_) t = std::min(t, n);
  }
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override {
    check_layer("double sparsity", layer, n_layer_);
    check_kv("double sparsity", kv, shape_);
    const int64_t n = kv.n_tok;
    if (n != n_tok_[layer])
      fail("double sparsity policy: label cache of layer " + std::to_string(layer),
           std::to_string(n_tok_[layer]) + " tokens", std::to_string(n) + " (the KV cache)",
           "every appended key must go through on_append");
    const int G = shape_.n_head / shape_.n_head_kv, d = shape_.head_dim, r = cfg_.channels;
    const bool pg = cfg_.gqa == gqa_mode::per_group;
    const int n_lists = pg ? shape_.n_head_kv : shape_.n_head;
    out.reset(n_lists, std::max<int64_t>(budget_tokens(cfg_.budget, n), 1), pg);
    const int nt = cfg_.n_threads > 0 ? cfg_.n_threads : omp_get_max_threads();
    // The layer's labels [n, n_head_kv, r] as fp32, converted once for all lists.
    const int64_t row = (int64_t)shape_.n_head_kv * r;
    labels_f32_.resize((size_t)(n * row));
    cpu::f16_to_f32_row(label(layer, 0, 0), labels_f32_.data(), n * row);
#pragma omp parallel num_threads(std::max(1, std::min(nt, n_lists)))
    {
      std::vector<float> sc(n), qs(r);
#pragma omp for schedule(dynamic, 1)
      for (int li = 0; li < n_lists; li++) {
        const int hk = pg ? li : li / G;
        const int h0 = pg ? li * G : li, nh = pg ? G : 1;
        const int32_t* ch = cfg_.ds_channels.data() + ((size_t)layer * shape_.n_head_kv + hk) * r;
        // Summing the group's queries first gives the same sum of per-query scores.
        std::fill(qs.begin(), qs.end(), 0.f);
        for (int h = h0; h < h0 + nh; h++)
          for (int c = 0; c < r; c++) qs[c] += q[(int64_t)h * d + ch[c]];
        const float* lf = labels_f32_.data() + (size_t)hk * r;
        for (int64_t t = 0; t < n; t++) {
          const float* lb = lf + t * row;
          float s = 0;
          for (int c = 0; c < r; c++) s += qs[c] * lb[c];
          sc[t] = s;
        }
        select_from_scores(policy_backend(cfg_), sc.data(), n, li, 1, cfg_.budget, 1, out);
      }
    }
  }

 private:
  uint16_t* label(int layer, int64_t t, int h) {
    return label_.data() + (((size_t)layer * max_ctx_ + t) * shape_.n_head_kv + h) * cfg_.channels;
  }
  policy_config cfg_;
  layer_shape shape_;
  int n_layer_ = 0;
  int64_t max_ctx_ = 0;
  std::vector<uint16_t> label_;
  std::vector<float> labels_f32_;  // select scratch: one layer's labels as fp32
  std::vector<int64_t> n_tok_;
};

}  // namespace

std::unique_ptr<attention_policy> make_double_sparsity_policy(const policy_config& cfg) {
  return std::make_unique<ds_policy>(cfg);
}

}  // namespace hashattn
