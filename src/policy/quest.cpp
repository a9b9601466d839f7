// Quest policy: keys grouped in pages of page_size positions (page p = [p*P, (p+1)*P)); per page and
// KV head the channel-wise min and max of its keys (fp32, updated on append). A query scores a page
// with the upper bound sum_i max(q_i * min_i, q_i * max_i) (summed over the group's queries in
// per-group mode); the highest pages (ties to the most recent) whose middle-region tokens fit in the
// budget are attended, plus sinks and window. Pages are clipped to the middle region.
// State: pmin/pmax [n_layer][max_pages, n_head_kv, d] fp32 = 2*32*d/P bits per token per KV head.
#include <omp.h>

#include <algorithm>
#include <numeric>

#include "hashattn/hash.h"
#include "policy/policy-util.h"

namespace hashattn {
namespace {
using namespace policy_detail;

class quest_policy final : public attention_policy {
 public:
  explicit quest_policy(const policy_config& cfg) : cfg_(cfg) {
    budget_validate(cfg.budget);
    if (cfg.page_size <= 0 || cfg.page_size > 65536)
      fail("quest policy: page size", std::to_string(cfg.page_size), "in [1, 65536]");
  }
  std::string name() const override { return "quest"; }
  double aux_bits_per_token_head() const override { return 2.0 * 32 * shape_.head_dim / cfg_.page_size; }
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override {
    check_begin("quest", n_layer, shape, max_ctx);
    shape_ = shape;
    n_layer_ = n_layer;
    max_pages_ = (max_ctx + cfg_.page_size - 1) / cfg_.page_size;
    const size_t per_layer = (size_t)max_pages_ * shape.n_head_kv * shape.head_dim;
    pmin_.assign((size_t)n_layer * per_layer, 0.f);
    pmax_.assign((size_t)n_layer * per_layer, 0.f);
    n_tok_.assign(n_layer, 0);
    max_ctx_ = max_ctx;
  }
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override {
    check_layer("quest", layer, n_layer_);
    if (n_new <= 0) return;
    if (pos0 != n_tok_[layer] || pos0 + n_new > max_ctx_)
      fail("quest policy: append at " + std::to_string(pos0) + " of " + std::to_string(n_new),
           "layer has " + std::to_string(n_tok_[layer]) + " tokens, max " + std::to_string(max_ctx_),
           "appends in order within max_ctx");
    const int nk = shape_.n_head_kv, d = shape_.head_dim;
    for (int64_t i = 0; i < n_new; i++) {
      const int64_t t = pos0 + i, pg = t / cfg_.page_size;
      const bool first = t % cfg_.page_size == 0;
      for (int h = 0; h < nk; h++) {
        const float* kr = k + (i * nk + h) * d;
        float* mn = page(pmin_, layer, pg, h);
        float* mx = page(pmax_, layer, pg, h);
        for (int j = 0; j < d; j++) {
          mn[j] = first ? kr[j] : std::min(mn[j], kr[j]);
          mx[j] = first ? kr[j] : std::max(mx[j], kr[j]);
        }
      }
    }
    n_tok_[layer] = pos0 + n_new;
  }
  void truncate(int64_t n) override {
    // Page bounds of a partially dropped page cannot shrink: recomputing needs the keys, so refuse.
    for (int l = 0; l < n_layer_; l++)
      if (n < n_tok_[l] && n % cfg_.page_size != 0)
        fail("quest policy: truncate", std::to_string(n), "a multiple of the page size " + std::to_string(cfg_.page_size),
             "page bounds are only kept per whole page");
    for (auto& t : n_tok_) t = std::min(t, n);
  }
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override {
    check_layer("quest", layer, n_layer_);
    check_kv("quest", kv, shape_);
    const int64_t n = kv.n_tok;
    if (n != n_tok_[layer])
      fail("quest policy: pages of layer " + std::to_string(layer), std::to_string(n_tok_[layer]) + " tokens",
           std::to_string(n) + " (the KV cache)", "every appended key must go through on_append");
    const int G = shape_.n_head / shape_.n_head_kv, d = shape_.head_dim, P = cfg_.page_size;
    const bool pg = cfg_.gqa == gqa_mode::per_group;
    const int n_lists = pg ? shape_.n_head_kv : shape_.n_head;
    const select_split sp = select_split_for(cfg_.budget, n);
    out.reset(n_lists, std::max<int64_t>(sp.total, 1), pg);
    const int64_t p_lo = sp.lo / P, p_hi = sp.hi > sp.lo ? (sp.hi - 1) / P + 1 : p_lo;
    const int nt = cfg_.n_threads > 0 ? cfg_.n_threads : omp_get_max_threads();
#pragma omp parallel num_threads(std::max(1, std::min(nt, n_lists)))
    {
      std::vector<float> ps;
      std::vector<int64_t> order;
      std::vector<char> take;
#pragma omp for schedule(dynamic, 1)
      for (int r = 0; r < n_lists; r++) {
        const int hk = pg ? r : r / G;
        const int h0 = pg ? r * G : r, nh = pg ? G : 1;
        const int64_t np = p_hi - p_lo;
        ps.assign(np, 0.f);
        for (int64_t i = 0; i < np; i++) {
          const float* mn = page(pmin_, layer, p_lo + i, hk);
          const float* mx = page(pmax_, layer, p_lo + i, hk);
          float s = 0;
          for (int h = h0; h < h0 + nh; h++) {
            const float* qh = q + (int64_t)h * d;
            for (int j = 0; j < d; j++) s += std::max(qh[j] * mn[j], qh[j] * mx[j]);
          }
          ps[i] = s;
        }
        order.resize(np);
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
          if (ps[a] != ps[b]) return ps[a] > ps[b];
          return a > b;
        });
        take.assign(np, 0);
        int64_t left = sp.k_mid;
        for (int64_t i = 0; i < np && left > 0; i++) {
          const int64_t p = p_lo + order[i];
          const int64_t a = std::max(p * P, sp.lo), b = std::min((p + 1) * P, sp.hi);
          if (b - a <= left) {
            take[order[i]] = 1;
            left -= b - a;
          }
        }
        int32_t* l = out.idx.data() + r * out.stride;
        int64_t k = 0;
        for (int64_t t = 0; t < sp.lo; t++) l[k++] = (int32_t)t;
        for (int64_t t = sp.lo; t < sp.hi; t++)
          if (take[t / P - p_lo]) l[k++] = (int32_t)t;
        for (int64_t t = sp.hi; t < n; t++) l[k++] = (int32_t)t;
        out.count[r] = (int32_t)k;
      }
    }
  }

 private:
  float* page(std::vector<float>& v, int layer, int64_t p, int h) {
    return v.data() + (((size_t)layer * max_pages_ + p) * shape_.n_head_kv + h) * shape_.head_dim;
  }
  policy_config cfg_;
  layer_shape shape_;
  int n_layer_ = 0;
  int64_t max_pages_ = 0, max_ctx_ = 0;
  std::vector<float> pmin_, pmax_;
  std::vector<int64_t> n_tok_;
};

}  // namespace

std::unique_ptr<attention_policy> make_quest_policy(const policy_config& cfg) {
  return std::make_unique<quest_policy>(cfg);
}

}  // namespace hashattn
