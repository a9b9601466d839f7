// Dense policy: attends to every token. is_dense() tells the caller to run dense attention; select()
// still returns correct lists (one per KV group holding 0 .. n_tok-1) for callers that always use lists.
#include <numeric>

#include "hashattn/error.h"
#include "hashattn/policy.h"

namespace hashattn {
namespace {

class dense_policy final : public attention_policy {
 public:
  std::string name() const override { return "dense"; }
  bool is_dense() const override { return true; }
  double aux_bits_per_token_head() const override { return 0; }
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override {
    if (n_layer <= 0) fail("dense policy: n_layer", std::to_string(n_layer), "> 0");
    n_layer_ = n_layer;
    shape_ = shape;
  }
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override {}
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override {
    const int nl = kv.n_head_kv;
    out.per_group = true;
    out.stride = kv.n_tok;
    out.count.assign(nl, (int32_t)kv.n_tok);
    out.idx.resize((size_t)nl * kv.n_tok);
    for (int r = 0; r < nl; r++) std::iota(out.idx.begin() + r * kv.n_tok, out.idx.begin() + (r + 1) * kv.n_tok, 0);
  }

 private:
  int n_layer_ = 0;
  layer_shape shape_;
};

}  // namespace

std::unique_ptr<attention_policy> make_dense_policy() { return std::make_unique<dense_policy>(); }

}  // namespace hashattn
