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
    lists_reset(out, n_lists, std::max<int64_t>(budget_tokens(cfg_.budget, n), 1), pg);
    const int nt = cfg_.n_threads > 0 ? cfg_.n_threads : omp_get_max_threads();
#pragma omp parallel num_threads(std::max(1, std::min(nt, n_lists)))
    {
      std::vector<float> sc(n), krow(d);
#pragma omp for schedule(dynamic, 1)
      for (int r = 0; r < n_lists; r++) {
        const int hk = pg ? r : r / G;
        const int h0 = pg ? r * G : r, nh = pg ? G : 1;
        for (int64_t t = 0; t < n; t++) {
          for (int j = 0; j < d; j++) krow[j] = kv_k(kv, t, hk, j);
          float s = 0;
          for (int h = h0; h < h0 + nh; h++) {
            const float* qh = q + (int64_t)h * d;
            float a = 0;
            for (int j = 0; j < d; j++) a += qh[j] * krow[j];
            s += a;
          }
          sc[t] = s;
        }
        out.count[r] = (int32_t)select_topk_float(sc.data(), n, cfg_.budget, out.idx.data() + r * out.stride);
      }
    }
  }

 private:
  policy_config cfg_;
  layer_shape shape_;
  int n_layer_ = 0;
};

}  // namespace

std::unique_ptr<attention_policy> make_oracle_policy(const policy_config& cfg) {
  return std::make_unique<oracle_policy>(cfg);
}

}  // namespace hashattn
