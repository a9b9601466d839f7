// The job builder of the evaluation (internal to src/eval): what one (task, context, sample) asks of
// every setting. A job is the prompt, the prefix prefilled densely once, and what each setting does
// after it (tokens decoded through its policy, targets of perplexity, the greedy answer and its
// references, when to measure recall).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hashattn/eval.h"

namespace hashattn::eval_detail {

// What one sample asks of every setting, after the prefix has been prefilled.
struct sample_job {
  std::vector<int32_t> forced;    // tokens decoded through the policy (sparse tail, ppl positions)
  std::vector<int32_t> targets;   // ppl: the next token of each forced position; else empty
  int max_new = 0;                // greedy answer tokens (0: none)
  std::vector<std::string> refs;  // generation stops once every one is in the output
  bool recall = false;            // measure recall (non-dense settings, every recall_stride-th step)
  int recall_stride = 4;
  bool recall_at(size_t c, int64_t step) const { return recall && c > 0 && step % std::max(1, recall_stride) == 0; }
  int64_t max_steps() const { return (int64_t)forced.size() + std::max(0, max_new - 1); }
};

// One (task, context, sample): the prompt, its densely prefilled prefix, the job; smp holds the
// generated sample (task, references, depth) for the generated tasks and recall.
struct eval_job {
  std::string task;
  int64_t context = 0;
  int index = 0;
  std::vector<int32_t> prompt;
  int64_t prefix = 0;
  sample_job job;
  eval_sample smp;
  bool is_ppl() const { return task == "ppl"; }
  bool is_recall() const { return task == "recall"; }
};

// Builds the jobs of a run: ppl windows of the held-out texts (tokenized once, on first use; offsets
// deterministic in (seed, context, sample)), generated samples (eval_make_sample) and recall (passkey
// prompts, tail only).
class job_builder {
 public:
  job_builder(const eval_run_params& p, const eval_corpus& corpus, const tokenizer& tok, const chat_template* chat);
  eval_job build(const std::string& task, int64_t ctx, int index);

 private:
  const std::vector<int32_t>& text_tokens(size_t i);
  const eval_run_params& p_;
  const eval_corpus& corpus_;
  const tokenizer& tok_;
  const chat_template* chat_;
  std::vector<std::vector<int32_t>> text_tokens_;
};

}  // namespace hashattn::eval_detail
