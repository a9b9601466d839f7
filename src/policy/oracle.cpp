// Oracle top-k policy: exact scores q . k over every cached key (reads all of K), then the common
// selection rule (sinks + window + top middle scores, ties to the most recent). Per query head:
// score_h(t) = q_h . k_t; per KV group: the sum of the group's query scores. The quality upper bound
// for a budget, not a fast path. No auxiliary memory.
#include <omp.h>

#include "hashattn/hash.h"
#include "policy/policy-util.h"

namespace hashattn {
namespace {
using namespace policy_detail;

class oracle_policy final : public attention_policy {
 public:
  explicit oracle_policy(const policy_config& cfg) : cfg_(cfg) { budget_validate(cfg.budget); }
  std::string name() const override { return "oracle"; }
  double aux_bits_per_token_head() const override { return 0; }
  double select_extra_read_bytes() const override { return last_read_; }
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override {
    check_begin("oracle", n_layer, shape, max_ctx);
    shape_ = shape;
    n_layer_ = n_layer;
  }
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override {}
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override {
    check_layer("oracle", layer, n_layer_);
    check_kv("oracle", kv, shape_);
    kv_view_validate(kv, "oracle policy");
    const int G = shape_.n_head / shape_.n_head_kv, d = shape_.head_dim;
    const bool pg = cfg_.gqa == gqa_mode::per_group;
    const int n_lists = pg ? shape_.n_head_kv : shape_.n_head;
    const int64_t n = kv.n_tok;
    last_read_ = (double)n * shape_.n_head_kv * d * (double)dtype_size(kv.type);  // all of K
    out.reset(n_lists, std::max<int64_t>(budget_tokens(cfg_.budget, n), 1), pg);
    const int nt = cfg_.n_threads > 0 ? cfg_.n_threads : omp_get_max_threads();
    // Per list the query vector: q_h (per head) or sum_h q_h over the group (per group: the sum of the
    // group's scores is the score of the summed query). One pass per KV head converts each key row to
    // fp32 once and scores it against all lists of that head.
    const int lists_per_kv = pg ? 1 : G;
    qsum_.resize((size_t)n_lists * d);
    for (int hk = 0; hk < shape_.n_head_kv; hk++)
      kv_head_list_queries(q, hk, G, d, pg, qsum_.data() + (size_t)hk * lists_per_kv * d);
    sc_.resize((size_t)n_lists * n);
    const int hkv = shape_.n_head_kv;
#pragma omp parallel num_threads((int)std::max<int64_t>(1, std::min<int64_t>(nt, (int64_t)hkv * ((n + 255) / 256))))
    {
      std::vector<float> krow(d);
      const kv_rows rw(kv);  // the row addressing, set up once
#pragma omp for schedule(static) collapse(2)
      for (int hk = 0; hk < hkv; hk++)
        for (int64_t t0 = 0; t0 < n; t0 += 256)
          for (int64_t t = t0; t < std::min<int64_t>(n, t0 + 256); t++) {
            kv_key_row_f32(kv, rw, t, hk, krow.data());
            for (int r = hk * lists_per_kv; r < (hk + 1) * lists_per_kv; r++) {
              sc_[(size_t)r * n + t] = dot_f32(qsum_.data() + (size_t)r * d, krow.data(), d);
            }
          }
    }
    select_from_scores(policy_backend(cfg_), sc_.data(), n, 0, n_lists, cfg_.budget, nt, out);
  }

 private:
  policy_config cfg_;
  layer_shape shape_;
  int n_layer_ = 0;
  double last_read_ = 0;
  std::vector<float> qsum_, sc_;  // [n_lists, d] list queries, [n_lists, n] scores
};

}  // namespace

std::unique_ptr<attention_policy> make_oracle_policy(const policy_config& cfg) {
  return std::make_unique<oracle_policy>(cfg);
}

}  // namespace hashattn
