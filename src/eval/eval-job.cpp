// The job builder (see eval-job.h).
#include "eval/eval-job.h"

#include <algorithm>

#include "hashattn/error.h"

namespace hashattn::eval_detail {

job_builder::job_builder(const eval_run_params& p, const eval_corpus& corpus, const tokenizer& tok,
                         const chat_template* chat)
    : p_(p), corpus_(corpus), tok_(tok), chat_(chat), text_tokens_(corpus.texts.size()) {}

const std::vector<int32_t>& job_builder::text_tokens(size_t i) {
  if (text_tokens_[i].empty()) text_tokens_[i] = tok_.encode(corpus_.texts[i], false, false);
  return text_tokens_[i];
}

eval_job job_builder::build(const std::string& task, int64_t ctx, int index) {
  eval_job j;
  j.task = task;
  j.context = ctx;
  j.index = index;
  if (j.is_ppl()) {
    if (corpus_.texts.empty()) fail("eval: task ppl needs held-out texts (--text)");
    const size_t ti = (size_t)index % corpus_.texts.size();
    const auto& tt = text_tokens(ti);
    const int64_t L = ctx;
    const int64_t n_eval = std::min<int64_t>(p_.ppl_eval_tokens, L - 1);
    if ((int64_t)tt.size() < L + 2)
      fail("eval: text '" + corpus_.names[ti] + "' has " + std::to_string(tt.size()) +
           " tokens, expected more than the context " + std::to_string(L));
    // Window offset: deterministic in (seed, context, sample).
    uint64_t h = (p_.seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)ctx << 20) ^ (uint64_t)index;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    const int64_t off = (int64_t)(h % (uint64_t)(tt.size() - (size_t)L - 1));
    j.prompt.assign(tt.begin() + off, tt.begin() + off + L);
    j.prefix = L - n_eval;
    j.job.targets.assign(tt.begin() + off + j.prefix + 1, tt.begin() + off + L + 1);
  } else {
    task_params tp;
    tp.task = j.is_recall() ? "passkey" : task;
    tp.context = ctx;
    tp.seed = p_.seed;
    tp.chat = p_.chat;
    j.smp = eval_make_sample(tp, index, corpus_, tok_, p_.chat ? chat_ : nullptr);
    j.prompt = j.smp.prompt;
    const int64_t n = (int64_t)j.prompt.size();
    j.prefix = n - std::min<int64_t>(p_.sparse_tail, n - 1);
    j.job.max_new = j.is_recall() ? 0 : j.smp.max_new_tokens;
    j.job.refs = j.smp.refs;
    j.job.recall = j.is_recall() || p_.recall_all;
    j.job.recall_stride = p_.recall_stride;
  }
  j.job.forced.assign(j.prompt.begin() + j.prefix, j.prompt.end());
  return j;
}

}  // namespace hashattn::eval_detail
