// Attention-mass recall and top-T-in-budget overlap of an attended set (see metrics.h).
#include "hashattn/metrics.h"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "hashattn/error.h"

namespace hashattn {

void attention_recall_validate(const attention_recall_params& p) {
  if (p.n < 1) fail("attention recall: keys", std::to_string(p.n), ">= 1");
  if (p.prob == nullptr) fail("attention recall: attention weights", "null", "n values");
  if (p.n_attended < 0 || (p.n_attended > 0 && p.attended == nullptr))
    fail("attention recall: attended set", std::to_string(p.n_attended) + " positions", "a valid array");
  if (p.top < 1) fail("attention recall: top", std::to_string(p.top), ">= 1");
  std::vector<uint8_t> seen((size_t)p.n, 0);
  for (int64_t i = 0; i < p.n_attended; i++) {
    const int32_t t = p.attended[i];
    if (t < 0 || t >= p.n) fail("attention recall: attended position", std::to_string(t), "in [0, " + std::to_string(p.n) + ")");
    if (seen[(size_t)t]) fail("attention recall: attended position " + std::to_string(t), "repeated", "distinct positions");
    seen[(size_t)t] = 1;
  }
}

attention_recall attention_recall_of(const attention_recall_params& p) {
  attention_recall_validate(p);
  attention_recall r;
  for (int64_t i = 0; i < p.n_attended; i++) r.mass += p.prob[p.attended[i]];
  const int64_t T = std::min<int64_t>(p.top, p.n);
  // The T-th largest weight w_T: keys above it are top keys; keys tied at it fill the slots left
  // (T - #above), so any T heaviest keys score 1 however ties are broken, and no more than T count.
  std::vector<double> w(p.prob, p.prob + p.n);
  std::nth_element(w.begin(), w.begin() + (T - 1), w.end(), std::greater<double>());
  const double kth = w[(size_t)T - 1];
  int64_t above = 0, hit_above = 0, hit_tied = 0;
  for (int64_t t = 0; t < p.n; t++) above += p.prob[t] > kth ? 1 : 0;
  for (int64_t i = 0; i < p.n_attended; i++) {
    const double x = p.prob[p.attended[i]];
    hit_above += x > kth ? 1 : 0;
    hit_tied += x == kth ? 1 : 0;
  }
  r.top_overlap = (double)(hit_above + std::min(hit_tied, T - above)) / (double)T;
  return r;
}

}  // namespace hashattn
