// The accumulator (see eval-accum.h).
#include "eval/eval-accum.h"

#include <sstream>
#include <tuple>

#include "eval/eval-math.h"
#include "hashattn/metrics.h"

namespace hashattn::eval_detail {

accumulator::sums& accumulator::at(const eval_job& j, size_t c, const char* metric) {
  return sums_[{j.task, c, j.context, metric}];
}

void accumulator::add_reads(sums& a, size_t c, const setting_out& o, double n_prompt) {
  const probe_stats& st = o.st;
  const bool dense_ref = c == 0;
  a.att += dense_ref ? (double)o.steps : st.attended_frac;
  a.kvf += dense_ref ? (double)o.steps : st.kv_read_frac;
  if (!dense_ref) a.kvb += st.kv_read_bytes, a.selb += st.select_read_bytes, a.denseb += st.dense_bytes;
  a.steps += dense_ref ? (double)o.steps : (double)st.steps;
  a.prompt += n_prompt;
  a.secs += o.secs, a.dec_steps += o.dec_steps, a.dec_secs += o.dec_secs;
  if (!st.top_overlap.empty()) {
    if (a.top.empty()) a.top.assign(st.top_overlap.size(), 0), a.mass.assign(st.mass_recall.size(), 0);
    for (size_t k = 0; k < st.top_overlap.size(); ++k) a.top[k] += st.top_overlap[k], a.mass[k] += st.mass_recall[k];
    a.recall_steps += (double)st.recall_steps;
  }
}

double accumulator::add(const eval_job& j, size_t c, const setting_out& o) {
  const probe_stats& st = o.st;
  const double n_prompt = (double)j.prompt.size();
  if (j.is_ppl()) {
    const double n_eval = (double)j.job.forced.size();
    sums& ap = at(j, c, "ppl");
    ap.nll += o.nll;
    ap.ntok += n_eval;
    ap.vals.push_back(o.nll / n_eval);
    add_reads(ap, c, o, n_prompt);
    sums& ak = at(j, c, "kl");
    ak.vals.push_back(o.kl / n_eval);
    add_reads(ak, c, o, n_prompt);
    return eval_perplexity(o.nll, n_eval);
  }
  if (j.is_recall()) {
    if (c == 0) return -1;
    for (const char* metric : {metric_top_overlap, metric_mass_recall}) {
      sums& a = at(j, c, metric);
      const auto& v = std::string(metric) == metric_top_overlap ? st.top_overlap : st.mass_recall;
      double sum = 0;
      for (double x : v) sum += x;
      a.vals.push_back(v.empty() || st.recall_steps == 0 ? 0 : sum / (double)v.size() / st.recall_steps);
      add_reads(a, c, o, n_prompt);
    }
    return -1;
  }
  const double score = string_match_all(o.text, j.smp.refs);
  sums& a = at(j, c, "score");
  a.vals.push_back(score);
  add_reads(a, c, o, n_prompt);
  return score;
}

std::vector<eval_record> accumulator::records(const std::vector<eval_policy_spec>& cfgs, const model_hparams& hp,
                                              int first_sample) const {
  std::vector<eval_record> recs;
  for (const auto& [k, a] : sums_) {
    if (a.vals.empty()) continue;
    const auto& cfg = cfgs[k.cfg];
    eval_record r;
    r.task = k.task;
    r.method = cfg.method;
    r.gqa = cfg.gqa;
    r.density = cfg.method == "dense" ? 1.0 : cfg.density;
    r.context = k.context;
    r.samples = (int)a.vals.size();
    r.first_sample = first_sample;
    r.metric = k.metric;
    const mean_stderr ms = eval_mean_stderr(a.vals);
    // ppl: the perplexity of all positions (windows have equal positions: exp of the mean log-perplexity);
    // its standard error is that of the mean log-perplexity.
    r.value = k.metric == "ppl" ? eval_perplexity(a.nll, a.ntok) : ms.mean;
    r.stderr_ = ms.stderr_;
    r.ci = eval_interval(k.metric, r.value, r.stderr_, r.samples);
    const double nv = (double)a.vals.size();
    if (a.steps > 0) {
      r.attended_frac = a.att / a.steps;
      r.kv_read_frac = a.kvf / a.steps;
      r.kv_read_bytes = cfg.method == "dense" ? 0 : a.kvb / a.steps * hp.n_layer;
      r.select_read_bytes = cfg.method == "dense" ? 0 : a.selb / a.steps * hp.n_layer;
      r.total_read_frac = a.denseb > 0 ? (a.kvb + a.selb) / a.denseb : 1;
    }
    r.prompt_tokens = a.prompt / nv;
    r.seconds = a.secs;
    r.decode_tok_s = a.dec_secs > 0 ? a.dec_steps / a.dec_secs : 0;
    if (!a.top.empty() && a.recall_steps > 0) {
      double tk = 0, ms_sum = 0;
      for (size_t j = 0; j < a.top.size(); ++j) tk += a.top[j], ms_sum += a.mass[j];
      r.top_overlap = tk / a.top.size() / a.recall_steps;
      r.mass_recall = ms_sum / a.mass.size() / a.recall_steps;
      if (k.task == "recall") {  // per layer and head
        std::ostringstream d;
        d << "{\"n_layer\":" << hp.n_layer << ",\"n_head\":" << hp.n_head << ",\""
          << k.metric << "\":[";
        const auto& v = k.metric == metric_top_overlap ? a.top : a.mass;
        for (size_t j = 0; j < v.size(); ++j) {
          if (j) d << ",";
          d << v[j] / a.recall_steps;
        }
        d << "]}";
        r.detail = d.str();
      }
    }
    recs.push_back(std::move(r));
  }
  // Dense KV bytes: every row of every KV head of every layer, per step, at the mean prompt length.
  for (auto& r : recs)
    if (r.method == "dense") {
      r.attended_frac = 1, r.kv_read_frac = 1, r.total_read_frac = 1;
      r.kv_read_bytes = r.prompt_tokens * hp.n_head_kv * hp.head_dim * 2.0 * 2.0 * hp.n_layer;
    }
  return recs;
}

}  // namespace hashattn::eval_detail
