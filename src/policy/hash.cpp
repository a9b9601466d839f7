// Hash policy (learned HashAttention encoders) and SimHash (random sign projections, the same
// machinery with untrained 1-layer encoders shared by q and k).
// Key codes are computed once per appended key (on_append) into a code store next to the KV cache:
// per query head (weights.key_per_group = false, the paper: key k of KV head h hashed by each of its G
// query heads' key encoders) or per KV head (key_per_group = true; SimHash always). select() encodes
// the n_head queries, then the backend's select_codes picks per query head or per KV group (summed group scores).
// Optional re-rank (policy_config.rerank = C >= 2): the codes pick C x the middle budget as candidates,
// exact q.k over the candidates' keys keeps the best (the group's summed query per KV group), so the
// attended count is unchanged and the candidates' keys are the extra read (select_extra_read_bytes).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "hashattn/hash.h"
#include "policy/policy-util.h"

namespace hashattn {
namespace {
using namespace policy_detail;

class hash_policy : public attention_policy {
 public:
  hash_policy(std::string name, const policy_config& cfg, std::shared_ptr<const hash_weights> w)
      : name_(std::move(name)), cfg_(cfg), w_(std::move(w)) {
    budget_validate(cfg.budget);
    if (cfg.rerank < 0 || cfg.rerank > 64)
      fail(name_ + " policy: rerank", std::to_string(cfg.rerank), "0 (off) or a candidate factor 2 .. 64");
  }
  std::string name() const override { return name_; }
  double select_extra_read_bytes() const override { return extra_read_; }
  double aux_bits_per_token_head() const override { return w_ ? w_->bits : cfg_.bits; }
  double aux_bits_per_token_kv_head() const override {
    if (!w_) return cfg_.bits;
    return w_->key_per_group ? w_->bits : (double)w_->bits * (w_->n_head / w_->n_head_kv);
  }
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override {
    check_begin(name_.c_str(), n_layer, shape, max_ctx);
    prepare(n_layer, shape);
    const hash_weights& w = *w_;
    if (w.n_layer != n_layer || w.n_head != shape.n_head || w.n_head_kv != shape.n_head_kv ||
        w.head_dim != shape.head_dim)
      fail(name_ + " policy: hash weights shape",
           std::to_string(w.n_layer) + " layers, " + std::to_string(w.n_head) + "/" + std::to_string(w.n_head_kv) +
               " heads, d " + std::to_string(w.head_dim),
           std::to_string(n_layer) + " layers, " + std::to_string(shape.n_head) + "/" +
               std::to_string(shape.n_head_kv) + " heads, d " + std::to_string(shape.head_dim),
           "the hash file was trained for another model");
    shape_ = shape;
    n_layer_ = n_layer;
    store_.reset(n_layer, w.n_key_enc(), w.bits, max_ctx);
    qcodes_.assign(shape.n_head, 0);
  }
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override {
    check_layer(name_.c_str(), layer, n_layer_);
    if (n_new <= 0) return;
    if (k == nullptr) fail(name_ + " policy: keys", "null pointer", "[n_new, n_head_kv, head_dim] fp32");
    if (pos0 != store_.n_tok(layer))
      fail(name_ + " policy: append position", std::to_string(pos0), std::to_string(store_.n_tok(layer)),
           "keys must be appended in order (truncate() first to rewrite)");
    if (pos0 + n_new > store_.max_ctx())
      fail(name_ + " policy: context", std::to_string(pos0 + n_new), "<= " + std::to_string(store_.max_ctx()),
           "begin() with a larger max_ctx");
    hash_encode_params p;
    p.mlp = w_->key(layer);
    p.x = k;
    p.n_rows = n_new;
    p.x_stride_row = (int64_t)shape_.n_head_kv * shape_.head_dim;
    p.x_stride_head = shape_.head_dim;
    p.in_group = w_->key_per_group ? 1 : shape_.n_head / shape_.n_head_kv;
    p.codes = store_.row(layer, pos0);
    p.code_stride_row = 1;
    p.code_stride_enc = store_.stride_enc();
    p.n_threads = cfg_.n_threads;
    policy_backend(cfg_).call_encode(p);
    store_.commit(layer, pos0, n_new);
  }
  void truncate(int64_t n) override { store_.truncate(n); }
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override {
    check_layer(name_.c_str(), layer, n_layer_);
    check_kv(name_.c_str(), kv, shape_);
    if (q == nullptr) fail(name_ + " policy: q", "null pointer", "[n_head, head_dim] fp32");
    if (store_.n_tok(layer) != kv.n_tok)
      fail(name_ + " policy: codes of layer " + std::to_string(layer), std::to_string(store_.n_tok(layer)) + " tokens",
           std::to_string(kv.n_tok) + " (the KV cache)", "every appended key must go through on_append");
    hash_encode_params e;
    e.mlp = w_->query(layer);
    e.x = q;
    e.n_rows = 1;
    e.x_stride_row = (int64_t)shape_.n_head * shape_.head_dim;
    e.x_stride_head = shape_.head_dim;
    e.codes = qcodes_.data();
    e.code_stride_row = shape_.n_head;
    e.code_stride_enc = 1;
    e.n_threads = cfg_.n_threads;
    policy_backend(cfg_).call_encode(e);
    hash_select_params s;
    s.keys = store_.view(layer);
    s.q_codes = qcodes_.data();
    s.n_head = shape_.n_head;
    s.n_head_kv = shape_.n_head_kv;
    s.mode = cfg_.gqa;
    s.budget = cfg_.budget;
    s.n_threads = cfg_.n_threads;
    const bool pg = cfg_.gqa == gqa_mode::per_group;
    const select_split sp = select_split_for(cfg_.budget, kv.n_tok);
    extra_read_ = 0;
    if (cfg_.rerank >= 2 && sp.k_mid > 0 && sp.k_mid < sp.hi - sp.lo) {
      s.budget.density = 0;
      s.budget.count = sp.n_sinks + sp.n_window + std::min<int64_t>(sp.k_mid * cfg_.rerank, sp.hi - sp.lo);
      cand_.reset(hash_select_n_lists(s), std::max<int64_t>(s.budget.count, 1), pg);
      s.idx = cand_.idx.data();
      s.count = cand_.count.data();
      s.idx_stride = cand_.stride;
      policy_backend(cfg_).call_select_codes(s);
      out.reset(hash_select_n_lists(s), std::max<int64_t>(sp.total, 1), pg);
      rerank(q, kv, sp, out);
      return;
    }
    out.reset(hash_select_n_lists(s), std::max<int64_t>(sp.total, 1), pg);
    s.idx = out.idx.data();
    s.count = out.count.data();
    s.idx_stride = out.stride;
    policy_backend(cfg_).call_select_codes(s);
  }
  const hash_code_store& store() const { return store_; }

 private:
  // cand_ holds each list's candidates (ascending: sinks, middle candidates, window); keeps the sinks,
  // the window and the k_mid middle candidates of highest exact score (ties to the most recent). Per KV
  // head: the union of its lists' middle candidates is converted to fp32 once and scored against the
  // head's list queries (q_h, or the group's summed query).
  void rerank(const float* q, const kv_view& kv, const select_split& sp, index_lists& out) {
    const int H = shape_.n_head, Hk = shape_.n_head_kv, G = H / Hk, d = shape_.head_dim;
    const bool pg = cfg_.gqa == gqa_mode::per_group;
    const int per_kv = pg ? 1 : G;
    const int64_t n = kv.n_tok;
    if ((int64_t)col_.size() < (int64_t)Hk * n) col_.assign((size_t)Hk * n, -1);
    const int nt = cfg_.n_threads > 0 ? cfg_.n_threads : omp_get_max_threads();
    double extra_rows = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, std::min(nt, Hk))) reduction(+ : extra_rows)
    for (int hk = 0; hk < Hk; hk++) {
      thread_local std::vector<float> qb, kb, sc;
      thread_local std::vector<int32_t> uni, mid, ord;
      thread_local std::vector<uint8_t> kept_col;
      thread_local std::vector<float> score;
      int32_t* col = col_.data() + (size_t)hk * n;  // position -> column of the union (-1: absent)
      uni.clear();
      for (int r = hk * per_kv; r < (hk + 1) * per_kv; r++)
        for (int32_t i = 0; i < cand_.count[r]; i++) {
          const int32_t t = cand_.idx[(size_t)r * cand_.stride + i];
          if (t >= sp.lo && t < sp.hi && col[t] < 0) col[t] = (int32_t)uni.size(), uni.push_back(t);
        }
      const int64_t m = (int64_t)uni.size();
      kb.resize((size_t)m * d);
      const kv_rows rw(kv);
      for (int64_t u = 0; u < m; u++) kv_key_row_f32(kv, rw, uni[u], hk, kb.data() + u * d);
      qb.resize((size_t)per_kv * d);
      kv_head_list_queries(q, hk, G, d, pg, qb.data());
      sc.resize((size_t)per_kv * m);
      for (int rl = 0; rl < per_kv; rl++)
        for (int64_t u = 0; u < m; u++) sc[(size_t)rl * m + u] = dot_f32(qb.data() + (size_t)rl * d, kb.data() + u * d, d);
      int64_t kept = 0;
      kept_col.assign((size_t)m, 0);
      for (int rl = 0; rl < per_kv; rl++) {
        const int r = hk * per_kv + rl;
        mid.clear();
        score.clear();
        for (int32_t i = 0; i < cand_.count[r]; i++) {
          const int32_t t = cand_.idx[(size_t)r * cand_.stride + i];
          if (t < sp.lo || t >= sp.hi) continue;
          mid.push_back(t);
          score.push_back(sc[(size_t)rl * m + col[t]]);
        }
        const int64_t keep = std::min<int64_t>(sp.k_mid, (int64_t)mid.size());
        ord.resize(mid.size());
        std::iota(ord.begin(), ord.end(), 0);
        std::nth_element(ord.begin(), ord.begin() + std::max<int64_t>(keep - 1, 0), ord.end(),
                         [&](int32_t a, int32_t b) { return score[a] != score[b] ? score[a] > score[b] : mid[a] > mid[b]; });
        int32_t* o = out.idx.data() + (size_t)r * out.stride;
        int64_t k = 0;
        for (int64_t t = 0; t < sp.lo; t++) o[k++] = (int32_t)t;
        for (int64_t i = 0; i < keep; i++) {
          const int32_t t = mid[ord[i]];
          o[k + i] = t;
          if (!kept_col[col[t]]) kept_col[col[t]] = 1, kept++;  // kept by some list of this KV head
        }
        std::sort(o + k, o + k + keep);
        k += keep;
        for (int64_t t = sp.hi; t < n; t++) o[k++] = (int32_t)t;
        out.count[r] = (int32_t)k;
      }
      for (int32_t t : uni) col[t] = -1;
      // Extra read: keys of candidates no list kept (the kept ones are read by attention anyway).
      extra_rows += (double)(m - kept);
    }
    extra_read_ = extra_rows * d * (double)dtype_size(kv.type);
  }

 protected:
  // SimHash builds its weights here (it needs the shape); the learned policy has them already.
  virtual void prepare(int n_layer, const layer_shape& shape) {}
  std::string name_;
  policy_config cfg_;
  std::shared_ptr<const hash_weights> w_;
  layer_shape shape_;
  int n_layer_ = 0;
  hash_code_store store_;
  std::vector<uint64_t> qcodes_;
  index_lists cand_;
  std::vector<int32_t> col_;  // rerank: [n_head_kv, max tokens] position -> union column, -1 between calls
  double extra_read_ = 0;
};

class simhash_policy final : public hash_policy {
 public:
  explicit simhash_policy(const policy_config& cfg) : hash_policy("simhash", cfg, nullptr) {
    if (!hash_bits_valid(cfg.bits)) fail("simhash policy: bits", std::to_string(cfg.bits), "16, 32, 64, or a multiple of 64 up to 4096");
  }

 protected:
  // b Gaussian directions per (layer, KV head), shared by the keys and by the group's queries.
  void prepare(int n_layer, const layer_shape& s) override {
    auto w = std::make_shared<hash_weights>(
        hash_weights_alloc(n_layer, s.n_head, s.n_head_kv, s.head_dim, cfg_.bits, 1, 0, true));
    std::mt19937_64 rng(cfg_.seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    const int G = s.n_head / s.n_head_kv;
    const size_t per = (size_t)s.head_dim * cfg_.bits;
    for (int l = 0; l < n_layer; l++) {
      float* kw = w->key_data(l);  // w0 [n_head_kv, d, bits], then b0 (zeros)
      for (size_t i = 0; i < per * s.n_head_kv; i++) kw[i] = nd(rng);
      float* qw = w->query_data(l);
      for (int h = 0; h < s.n_head; h++) std::copy(kw + (h / G) * per, kw + (h / G + 1) * per, qw + h * per);
    }
    w_ = std::move(w);
  }
};

}  // namespace

std::unique_ptr<attention_policy> make_hash_policy(const policy_config& cfg) {
  if (!cfg.weights)
    fail("hash policy: weights", "none", "learned hash encoders (policy_config.weights)",
         "train them with `hashattn train` or use --attn simhash for untrained projections");
  return std::make_unique<hash_policy>("hash", cfg, cfg.weights);
}
std::unique_ptr<attention_policy> make_simhash_policy(const policy_config& cfg) {
  return std::make_unique<simhash_policy>(cfg);
}

}  // namespace hashattn
