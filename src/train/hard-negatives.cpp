// Hard negatives (see train.h, hard_negatives): per captured query, the middle keys that the current codes
// rank highest among those that are not labels (the selector's current false positives).
#include <cmath>

#include "hashattn/error.h"
#include "train/train-internal.h"

namespace hashattn {
using namespace train_detail;

std::vector<std::vector<int32_t>> hard_negatives(const layer_capture& c, const eval_codes& codes,
                                                 const std::vector<std::vector<int32_t>>& labels,
                                                 const hard_negative_params& p, int unit) {
  const int G = c.n_head / c.n_head_kv, W = codes.words();
  const int64_t nq = c.n_q(), n = c.n_tok;
  const int n_units = p.gqa == gqa_mode::per_head ? c.n_head : c.n_head_kv;
  const int nke = codes.key_per_group ? c.n_head_kv : c.n_head;
  if (unit < 0 || unit >= n_units) fail("hard negatives: unit", std::to_string(unit), "0 .. " + std::to_string(n_units - 1));
  if (p.pool < 1) fail("hard negatives: pool", std::to_string(p.pool), ">= 1");
  HASHATTN_ASSERT((int64_t)codes.q.size() == nq * c.n_head * W && (int64_t)codes.k.size() == n * nke * W);
  HASHATTN_ASSERT((int64_t)labels.size() == nq);
  const int h0 = p.gqa == gqa_mode::per_head ? unit : unit * G;
  const int nh = p.gqa == gqa_mode::per_head ? 1 : G;
  std::vector<std::vector<int32_t>> out(nq);
  std::vector<double> score(n);
  for (int64_t i = 0; i < nq; i++) {
    const middle_range r = label_middle(p.labels, c.qpos[i]);
    if (r.k <= 0) continue;
    for (int64_t t = r.lo; t < r.hi; t++) {
      double s = 0;
      for (int g = 0; g < nh; g++) {
        const int h = h0 + g, e = codes.key_per_group ? h / G : h;
        const uint64_t* qc = codes.q.data() + ((size_t)i * c.n_head + h) * W;
        const uint64_t* kc = codes.k.data() + ((size_t)t * nke + e) * W;
        int pc = 0;
        for (int w = 0; w < W; w++) pc += __builtin_popcountll(qc[w] ^ kc[w]);
        s += codes.bits - pc;
      }
      score[t] = s;
    }
    for (int32_t t : labels[i])
      if (t >= r.lo && t < r.hi) score[t] = -INFINITY;
    const int64_t n_neg = (r.hi - r.lo) - (int64_t)labels[i].size();
    top_k_desc(score.data(), r.lo, r.hi, std::min<int64_t>(p.pool, std::max<int64_t>(n_neg, 0)), out[i]);
  }
  return out;
}

}  // namespace hashattn
