// The accumulator of the evaluation (internal to src/eval): what each setting did on each job, summed
// per (task, setting, context, metric), and the records made from the sums.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "eval/eval-job.h"
#include "hashattn/eval.h"

namespace hashattn::eval_detail {

// What one setting did on one job.
struct setting_out {
  double nll = 0, kl = 0;       // ppl: sums over the forced positions
  std::string text;             // the generated answer
  probe_stats st;
  int64_t steps = 0;            // decode steps
  double secs = 0;              // wall time of the tail + answer (batched: the batch's, shared evenly)
  double dec_secs = 0, dec_steps = 0;  // per-step decode timing (sequential driver only)
};

class accumulator {
 public:
  // Adds setting c's result on a job (c = 0: the dense reference; nothing is measured for it, every row
  // is read). Returns the setting's headline value for progress lines (perplexity or score; recall: -1).
  double add(const eval_job& j, size_t c, const setting_out& o);
  // One record per (task, setting, context, metric) with values; settings as given to the run (dense first).
  std::vector<eval_record> records(const std::vector<eval_policy_spec>& cfgs, const model_hparams& hp,
                                   int first_sample) const;

 private:
  struct sums {
    std::vector<double> vals;  // per-sample values
    double nll = 0, ntok = 0;  // ppl
    double att = 0, kvf = 0, kvb = 0, selb = 0, denseb = 0, steps = 0;
    double prompt = 0, secs = 0, dec_steps = 0, dec_secs = 0;
    std::vector<double> top, mass;  // top-32 overlap and mass recall, per layer x head sums
    double recall_steps = 0;
  };
  struct key {
    std::string task;
    size_t cfg;
    int64_t context;
    std::string metric;
    bool operator<(const key& o) const {
      return std::tie(task, cfg, context, metric) < std::tie(o.task, o.cfg, o.context, o.metric);
    }
  };
  sums& at(const eval_job& j, size_t c, const char* metric);
  static void add_reads(sums& a, size_t c, const setting_out& o, double n_prompt);
  std::map<key, sums> sums_;
};

}  // namespace hashattn::eval_detail
