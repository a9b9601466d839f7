// The evaluation runner. Per (sample, context, task): the job builder (eval-job.h) makes the job, one
// dense prefill of the prompt minus its sparse tail, then every setting (dense reference first) continues from it: the tail is pushed
// through the decode path token by token under the setting's policy, then the answer is generated
// greedily (stopping at end-of-generation, at max_new_tokens, or once every reference string is in
// the output: the score cannot change after that); the accumulator (eval-accum.h) scores and sums what
// every setting did and makes the records.
// Two drivers, same results up to float rounding:
//   batched (default): every setting is a branch of one branch_decoder (model.h) over the prefill,
//     its policy a probe forked from the session's; all branches advance together, the linear layers
//     run once per step for all of them (sgemm); no per-setting decode speed.
//   sequential: one setting at a time on the session (probe_policy::install over the cached keys,
//     decode path, truncate back to the prefix); measures each setting's decode tokens/s.
// ppl: windows of context+1 tokens of held-out text; the last n_eval inputs are decoded through
// the policy; NLL of the next token and KL(dense || policy) from the dense setting's log-probs.
// recall: passkey prompts, tail only (no generation), attention-mass recall and top-32-in-budget overlap
// (metrics.h) measured every recall_stride steps.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <sstream>

#include "eval/eval-accum.h"
#include "eval/eval-job.h"
#include "eval/eval-math.h"
#include "hashattn/error.h"
#include "hashattn/eval.h"

namespace hashattn {

namespace {
using namespace eval_detail;

using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

// Greedy answer state of one setting; returns false once the answer is final (no further step).
struct answer_state {
  std::vector<int32_t> out;
  std::string text;
  bool next(const float* lg, int64_t n_vocab, int k, const sample_job& job, const tokenizer& tok, sampler& greedy,
            int32_t& id) {
    id = greedy.sample(lg, n_vocab);
    if (tok.is_eog(id)) return false;
    out.push_back(id);
    text = tok.decode(out, false);
    if (string_match_all(text, job.refs) >= 1.0) return false;
    return k + 1 < job.max_new;
  }
};

std::vector<setting_out> run_sequential(session& s, probe_policy& pr, const sample_job& job,
                                        const std::vector<eval_policy_spec>& cfgs, int64_t ctx,
                                        const std::vector<float>& prefill_logits, const tokenizer& tok) {
  const int64_t n_vocab = s.get_model().hparams().n_vocab;
  const int64_t prefix = s.n_past();
  sampler greedy(sampler_params{});
  std::vector<setting_out> res(cfgs.size());
  std::vector<eval_ref_dist> dense(job.targets.size());
  std::vector<double> lp;
  for (size_t c = 0; c < cfgs.size(); ++c) {
    setting_out& o = res[c];
    pr.install(cfgs[c].make ? cfgs[c].make(ctx) : nullptr);
    pr.reset_stats();
    const auto t0 = clock_type::now();
    auto step_eval = [&](int32_t t) {
      const bool rec = job.recall_at(c, o.steps);
      pr.set_measure_recall(rec);
      const auto ts = clock_type::now();
      const float* r = s.eval(&t, 1);
      if (!rec) o.dec_secs += since(ts), o.dec_steps += 1;
      ++o.steps;
      return r;
    };
    const float* lg = prefill_logits.data();
    for (size_t j = 0; j < job.forced.size(); ++j) {
      lg = step_eval(job.forced[j]);
      if (job.targets.empty()) continue;
      if (c == 0) {
        dense[j].set(lg, n_vocab);
        o.nll -= dense[j].lp[(size_t)job.targets[j]];
      } else {
        eval_log_softmax(lg, n_vocab, lp);
        o.nll -= lp[(size_t)job.targets[j]];
        o.kl += eval_kl(dense[j], lp);
      }
    }
    answer_state a;
    int32_t id = 0;
    for (int k = 0; k < job.max_new; ++k) {
      const bool more = a.next(lg, n_vocab, k, job, tok, greedy, id);
      if (!more) break;
      lg = step_eval(id);
    }
    o.text = a.text;
    pr.set_measure_recall(false);
    o.secs = since(t0);
    o.st = pr.stats();
    pr.install(nullptr);  // (some policies, e.g. quest, cannot truncate mid-page)
    s.truncate(prefix);
  }
  return res;
}

std::vector<setting_out> run_batched(session& s, probe_policy& pr, const sample_job& job,
                                     const std::vector<eval_policy_spec>& cfgs, int64_t ctx,
                                     const std::vector<float>& prefill_logits, const tokenizer& tok) {
  const int64_t n_vocab = s.get_model().hparams().n_vocab;
  const size_t B = cfgs.size();
  std::vector<setting_out> res(B);
  const int64_t max_steps = job.max_steps();
  if (max_steps == 0) return res;
  const auto t0 = clock_type::now();
  std::vector<std::unique_ptr<probe_policy>> probes;
  std::vector<attention_policy*> pols;
  for (size_t c = 0; c < B; ++c) {
    probes.push_back(probe_policy::fork(pr, cfgs[c].make ? cfgs[c].make(ctx) : nullptr, max_steps));
    pols.push_back(probes.back().get());
  }
  branch_decoder bd(s, pols, max_steps);
  std::vector<int32_t> toks(B);
  std::vector<uint8_t> active(B, 1);
  auto step = [&]() {
    for (size_t c = 0; c < B; ++c) probes[c]->set_measure_recall(active[c] && job.recall_at(c, res[c].steps));
    bd.step(toks.data(), active.data());
    for (size_t c = 0; c < B; ++c) res[c].steps += active[c] ? 1 : 0;
  };
  eval_ref_dist dense;
  std::vector<double> lp;
  for (size_t j = 0; j < job.forced.size(); ++j) {
    std::fill(toks.begin(), toks.end(), job.forced[j]);
    step();
    if (job.targets.empty()) continue;
    const size_t target = (size_t)job.targets[j];
    dense.set(bd.logits(0), n_vocab);
    res[0].nll -= dense.lp[target];
    for (size_t c = 1; c < B; ++c) {
      eval_log_softmax(bd.logits((int)c), n_vocab, lp);
      res[c].nll -= lp[target];
      res[c].kl += eval_kl(dense, lp);
    }
  }
  if (job.max_new > 0) {
    sampler greedy(sampler_params{});
    std::vector<answer_state> ans(B);
    for (int k = 0; k < job.max_new; ++k) {
      bool any = false;
      for (size_t c = 0; c < B; ++c) {
        if (!active[c]) continue;
        const float* lg = k == 0 && job.forced.empty() ? prefill_logits.data() : bd.logits((int)c);
        active[c] = ans[c].next(lg, n_vocab, k, job, tok, greedy, toks[c]) ? 1 : 0;
        any |= active[c] != 0;
      }
      if (!any) break;
      step();
    }
    for (size_t c = 0; c < B; ++c) res[c].text = ans[c].text;
  }
  const double secs = since(t0) / (double)B;
  for (size_t c = 0; c < B; ++c) {
    probes[c]->set_measure_recall(false);
    res[c].st = probes[c]->stats();
    res[c].secs = secs;
  }
  return res;
}

// The --answers line of one setting on one generated sample.
std::string trace_line(const eval_job& j, const eval_policy_spec& cfg, const setting_out& o, double score) {
  const probe_stats& st = o.st;
  std::ostringstream tr;
  tr << "ctx=" << j.context << " " << j.task << " #" << j.index << " prompt=" << j.prompt.size() << " tok";
  if (j.smp.depth >= 0) tr << " depth=" << j.smp.depth;
  tr << " | " << cfg.label() << " @" << policy_density_name(cfg.density) << " | score " << score << " | refs";
  for (const auto& r : j.smp.refs) tr << " " << r;
  std::string shown = o.text;
  for (char& ch : shown)
    if (ch == '\n') ch = ' ';
  tr << " | answer \"" << shown << "\"";
  if (o.dec_secs > 0) tr << " | " << o.dec_steps / o.dec_secs << " tok/s";
  if (!st.top_overlap.empty() && st.recall_steps > 0) {
    double tk = 0, ms = 0;
    for (size_t k = 0; k < st.top_overlap.size(); ++k) tk += st.top_overlap[k], ms += st.mass_recall[k];
    tr << " | top-32-in-budget " << tk / st.top_overlap.size() / st.recall_steps << " mass recall "
       << ms / st.mass_recall.size() / st.recall_steps;
  }
  return tr.str();
}

}  // namespace

std::string eval_policy_spec::label() const { return gqa.empty() ? method : method + "/" + gqa; }
std::string eval_record::label() const { return gqa.empty() ? method : method + "/" + gqa; }

std::vector<eval_record> eval_run(const model& m, const tokenizer& tok, const chat_template* chat,
                                  const eval_corpus& corpus, const std::vector<eval_policy_spec>& policies,
                                  const eval_run_params& p) {
  if (p.tasks.empty()) fail("eval: no task given (expected --task ppl, passkey, niah_*, vt, cwe or recall)");
  if (p.contexts.empty()) fail("eval: no context length given");
  if (p.n_samples < 1) fail("eval: samples: got " + std::to_string(p.n_samples) + ", expected >= 1");
  for (const auto& t : p.tasks)
    if (!eval_task_is_generated(t) && t != "ppl" && t != "recall")
      fail("eval: unknown task '" + t + "' (expected ppl, recall, or one of the generated tasks)");
  const auto& hp = m.hparams();
  for (int64_t c : p.contexts)
    if (c < 256 || (hp.n_ctx_train > 0 && c > hp.n_ctx_train))
      fail("eval: context " + std::to_string(c) + " out of range: expected 256 .. " +
           std::to_string(hp.n_ctx_train) + " (the model's training context)");
  if (p.sparse_tail < 0) fail("eval: sparse tail must be >= 0");
  if (p.ppl_eval_tokens < 1) fail("eval: ppl eval tokens must be >= 1");
  for (int l : p.dense_layers)
    if (l < 0 || l >= hp.n_layer)
      fail("eval: dense layer", std::to_string(l), "in [0, " + std::to_string(hp.n_layer) + ")");

  // Configurations: the dense reference first, then every non-dense policy.
  std::vector<eval_policy_spec> cfgs;
  eval_policy_spec dense;
  dense.method = "dense";
  cfgs.push_back(dense);
  for (const auto& s : policies)
    if (s.method != "dense") cfgs.push_back(s);

  accumulator acc;
  job_builder jobs(p, corpus, tok, chat);

  // One session per context (KV cache of that size); the probe is its policy.
  std::vector<std::unique_ptr<session>> sessions;
  for (int64_t c : p.contexts) {
    session_params sp;
    sp.n_ctx = c;
    sp.n_threads = p.n_threads;
    auto probe = std::make_unique<probe_policy>();
    probe->set_dense_layers(p.dense_layers);
    sessions.push_back(std::make_unique<session>(m, sp, std::move(probe)));
  }

  const auto t_start = clock_type::now();
  const int64_t n_vocab = hp.n_vocab;
  std::vector<float> prefill_logits((size_t)n_vocab);
  const size_t n_units = (size_t)p.n_samples * p.contexts.size() * p.tasks.size();
  size_t done_units = 0;

  for (int i = p.first_sample; i < p.first_sample + p.n_samples; ++i) {
    if (p.time_limit_s > 0 && since(t_start) > p.time_limit_s) {
      if (p.log) p.log("time limit reached after " + std::to_string(i - p.first_sample) + " samples per task and context");
      break;
    }
    for (size_t ci = 0; ci < p.contexts.size(); ++ci) {
      const int64_t ctx = p.contexts[ci];
      session& s = *sessions[ci];
      auto& pr = static_cast<probe_policy&>(s.policy());
      for (const auto& task : p.tasks) {
        const auto t_unit = clock_type::now();
        std::ostringstream line;
        line << "[" << ctx << "] " << task << " " << (i - p.first_sample + 1) << "/" << p.n_samples << ":";
        const eval_job j = jobs.build(task, ctx, i);
        s.truncate(0);
        pr.install(nullptr);
        pr.set_measure_recall(false);
        const float* lg0 = s.eval(j.prompt.data(), j.prefix);
        std::copy(lg0, lg0 + n_vocab, prefill_logits.begin());
        const std::vector<setting_out> res = p.sequential
                                                 ? run_sequential(s, pr, j.job, cfgs, ctx, prefill_logits, tok)
                                                 : run_batched(s, pr, j.job, cfgs, ctx, prefill_logits, tok);
        s.truncate(j.prefix);
        for (size_t c = 0; c < cfgs.size(); ++c) {
          const double v = acc.add(j, c, res[c]);
          if (j.is_recall()) continue;
          line << " " << cfgs[c].label() << " " << v;
          if (!j.is_ppl() && p.trace) p.trace(trace_line(j, cfgs[c], res[c], v));
        }
        ++done_units;
        if (p.log) {
          const double el = since(t_start);
          line << "  (" << std::fixed;
          line.precision(1);
          line << since(t_unit) << " s; ETA " << el / (double)done_units * (double)(n_units - done_units) << " s)";
          p.log(line.str());
        }
      }
    }
  }
  return acc.records(cfgs, hp, p.first_sample);
}

}  // namespace hashattn
