// Streaming policy (StreamingLLM): sinks + recent window only, the same lists for every KV group.
// The rest of the budget is left unused, so the attended count (and the density reported from the
// lists) is min(n, sinks + window), not the budget. Its budget is its sinks and window (the vocabulary
// gives streaming the whole budget as window), so it has no floor below which it attends everything: a
// context a little shorter than the one its budget was set for keeps its sinks and window.
#include "policy/policy-util.h"

namespace hashattn {
namespace {
using namespace policy_detail;

class streaming_policy final : public attention_policy {
 public:
  explicit streaming_policy(const policy_config& cfg) : cfg_(cfg) { budget_validate(cfg.budget); }
  std::string name() const override { return "streaming"; }
  double aux_bits_per_token_head() const override { return 0; }
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override {
    check_begin("streaming", n_layer, shape, max_ctx);
    shape_ = shape;
    n_layer_ = n_layer;
  }
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override {}
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override {
    check_layer("streaming", layer, n_layer_);
    check_kv("streaming", kv, shape_);
    const int64_t n = kv.n_tok;
    const int64_t s = std::min<int64_t>(cfg_.budget.sinks, n);
    const int64_t w = std::min<int64_t>(cfg_.budget.window, n - s);
    out.reset(shape_.n_head_kv, std::max<int64_t>(s + w, 1), true);
    for (int r = 0; r < shape_.n_head_kv; r++) {
      int32_t* l = out.idx.data() + r * out.stride;
      int64_t k = 0;
      for (int64_t t = 0; t < s; t++) l[k++] = (int32_t)t;
      for (int64_t t = n - w; t < n; t++) l[k++] = (int32_t)t;
      out.count[r] = (int32_t)k;
    }
  }

 private:
  policy_config cfg_;
  layer_shape shape_;
  int n_layer_ = 0;
};

}  // namespace

std::unique_ptr<attention_policy> make_streaming_policy(const policy_config& cfg) {
  return std::make_unique<streaming_policy>(cfg);
}

}  // namespace hashattn
