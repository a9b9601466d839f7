// Wide SimHash baseline (bits a multiple of 64 above 64, e.g. simhash-256): b Gaussian directions per
// (layer, KV head), shared by the keys and by the group's queries; codes of b/64 words per key and KV
// head are computed once at append. Score of key t for query head h = matching bits (b - popcount of
// the XOR); per KV group the sum over the group's heads. Selection: the common rule over float scores
// (the backend's select_scores: sinks + window + top middle scores, ties to the most recent). A quality baseline
// ("random projections with many bits"), not a fast path: the learned 32-bit codes are that.
#include <cblas.h>
#include <omp.h>

#include <random>

#include <hwy/base.h>

#include "hashattn/hash.h"
#include "policy/policy-util.h"

namespace hashattn {
namespace {
using namespace policy_detail;

class simhash_wide_policy final : public attention_policy {
 public:
  explicit simhash_wide_policy(const policy_config& cfg) : cfg_(cfg) {
    budget_validate(cfg.budget);
    if (cfg.bits <= 64 || cfg.bits % 64 != 0 || cfg.bits > 4096)
      fail("simhash policy: bits", std::to_string(cfg.bits), "16, 32, 64, or a multiple of 64 up to 4096");
    words_ = cfg.bits / 64;
  }
  std::string name() const override { return "simhash"; }
  double aux_bits_per_token_head() const override { return cfg_.bits; }
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override {
    check_begin("simhash", n_layer, shape, max_ctx);
    shape_ = shape;
    n_layer_ = n_layer;
    const size_t per_layer = (size_t)shape.n_head_kv * cfg_.bits * shape.head_dim;
    dirs_.resize(per_layer * n_layer);
    std::mt19937_64 rng(cfg_.seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (float& x : dirs_) x = nd(rng);
    codes_.assign(n_layer, {});
    for (auto& c : codes_) c.reserve((size_t)max_ctx * shape.n_head_kv * words_);
  }
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override {
    check_layer("simhash", layer, n_layer_);
    if (n_new <= 0) return;
    if (k == nullptr) fail("simhash policy: keys", "null pointer", "[n_new, n_head_kv, head_dim] fp32");
    auto& c = codes_[layer];
    const int64_t have = (int64_t)c.size() / ((int64_t)shape_.n_head_kv * words_);
    if (pos0 != have)
      fail("simhash policy: append position", std::to_string(pos0), std::to_string(have),
           "keys must be appended in order (truncate() first to rewrite)");
    const int hkv = shape_.n_head_kv, d = shape_.head_dim;
    c.resize((size_t)(pos0 + n_new) * hkv * words_);
    for (int h = 0; h < hkv; h++)
      encode(layer, h, k + (size_t)h * d, n_new, (int64_t)hkv * d, c.data() + ((size_t)pos0 * hkv + h) * words_,
             (int64_t)hkv * words_);
  }
  void truncate(int64_t n) override {
    for (auto& c : codes_)
      if ((int64_t)c.size() > n * shape_.n_head_kv * words_) c.resize((size_t)n * shape_.n_head_kv * words_);
  }
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override {
    check_layer("simhash", layer, n_layer_);
    check_kv("simhash", kv, shape_);
    if (q == nullptr) fail("simhash policy: q", "null pointer", "[n_head, head_dim] fp32");
    const int G = shape_.n_head / shape_.n_head_kv, d = shape_.head_dim, hkv = shape_.n_head_kv;
    const auto& c = codes_[layer];
    const int64_t n = kv.n_tok;
    if ((int64_t)c.size() != n * hkv * words_)
      fail("simhash policy: codes of layer " + std::to_string(layer),
           std::to_string(c.size() / ((size_t)hkv * words_)) + " tokens", std::to_string(n) + " (the KV cache)",
           "every appended key must go through on_append");
    qcodes_.resize((size_t)shape_.n_head * words_);
    for (int hk = 0; hk < hkv; hk++)  // the G query heads of a KV head share its directions
      encode(layer, hk, q + (size_t)hk * G * d, G, d, qcodes_.data() + (size_t)hk * G * words_, words_);
    const bool pg = cfg_.gqa == gqa_mode::per_group;
    const int n_lists = pg ? hkv : shape_.n_head;
    out.reset(n_lists, std::max<int64_t>(budget_tokens(cfg_.budget, n), 1), pg);
    const int nt = cfg_.n_threads > 0 ? cfg_.n_threads : omp_get_max_threads();
#pragma omp parallel num_threads(std::max(1, std::min(nt, n_lists)))
    {
      std::vector<float> sc(n);
#pragma omp for schedule(dynamic, 1)
      for (int r = 0; r < n_lists; r++) {
        const int hk = pg ? r : r / G;
        const int h0 = pg ? r * G : r, nh = pg ? G : 1;
        for (int64_t t = 0; t < n; t++) {
          const uint64_t* kc = c.data() + ((size_t)t * hkv + hk) * words_;
          int match = 0;
          for (int h = h0; h < h0 + nh; h++) {
            const uint64_t* qc = qcodes_.data() + (size_t)h * words_;
            for (int w = 0; w < words_; w++) match += 64 - (int)hwy::PopCount(qc[w] ^ kc[w]);
          }
          sc[t] = (float)match;
        }
        select_from_scores(policy_backend(cfg_), sc.data(), n, r, 1, cfg_.budget, 1, out);
      }
    }
  }

 private:
  // Codes of `rows` vectors x (row stride ldx) on the b directions of (layer, KV head hk): one sgemm
  // [rows, d] x [b, d]^T, then the sign bits LSB-first into dst (row stride ldc words). Keys and queries
  // take this same path, so equal vectors always get equal codes.
  void encode(int layer, int hk, const float* x, int64_t rows, int64_t ldx, uint64_t* dst, int64_t ldc) {
    const int d = shape_.head_dim, B = cfg_.bits;
    const float* R = dirs_.data() + (((size_t)layer * shape_.n_head_kv + hk) * B) * d;
    proj_.resize((size_t)rows * B);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, B, d, 1.f, x, (int)ldx, R, d, 0.f, proj_.data(), B);
    for (int64_t t = 0; t < rows; t++) {
      uint64_t* o = dst + t * ldc;
      const float* y = proj_.data() + (size_t)t * B;
      for (int w = 0; w < words_; w++) o[w] = 0;
      for (int j = 0; j < B; j++)
        if (y[j] > 0.f) o[j / 64] |= uint64_t(1) << (j % 64);
    }
  }

  policy_config cfg_;
  layer_shape shape_;
  int n_layer_ = 0, words_ = 0;
  std::vector<float> dirs_;                   // [n_layer, n_head_kv, bits, head_dim]
  std::vector<std::vector<uint64_t>> codes_;  // per layer [n_tok, n_head_kv, words]
  std::vector<uint64_t> qcodes_;              // [n_head, words]
  std::vector<float> proj_;                   // encode's projections [rows, bits]
};

}  // namespace

std::unique_ptr<attention_policy> make_simhash_wide_policy(const policy_config& cfg) {
  return std::make_unique<simhash_wide_policy>(cfg);
}

}  // namespace hashattn
