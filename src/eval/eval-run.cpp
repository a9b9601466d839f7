// The evaluation runner. Per (sample, context, task): one dense prefill of the prompt minus its
// sparse tail, then every setting (dense reference first) continues from it: the tail is pushed
// through the decode path token by token under the setting's policy, then the answer is generated
// greedily (stopping at end-of-generation, at max_new_tokens, or once every reference string is in
// the output: the score cannot change after that), and scored.
// Two drivers, same results up to float rounding:
//   batched (default): every setting is a branch of one branch_decoder (model.h) over the prefill,
//     its policy a probe forked from the session's; all branches advance together, the linear layers
//     run once per step for all of them (sgemm); no per-setting decode speed.
//   sequential: one setting at a time on the session (probe_policy::install over the cached keys,
//     decode path, truncate back to the prefix); measures each setting's decode tokens/s.
// ppl: windows of context+1 tokens of held-out text; the last n_eval inputs are decoded through
// the policy; NLL of the next token and KL(dense || policy) from the dense setting's log-probs.
// recall: passkey prompts, tail only (no generation), recall measured every recall_stride steps.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <sstream>

#include "eval/eval-math.h"
#include "hashattn/error.h"
#include "hashattn/eval.h"

namespace hashattn {

namespace {

using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

struct acc {
  std::vector<double> vals;  // per-sample values
  double nll = 0, ntok = 0;  // ppl
  double att = 0, kvf = 0, kvb = 0, selb = 0, denseb = 0, steps = 0;
  double prompt = 0, secs = 0, dec_steps = 0, dec_secs = 0;
  std::vector<double> topk, mass;  // per layer x head sums
  double recall_steps = 0;
};

struct key_t {
  std::string task;
  size_t cfg;
  int64_t context;
  std::string metric;
  bool operator<(const key_t& o) const {
    return std::tie(task, cfg, context, metric) < std::tie(o.task, o.cfg, o.context, o.metric);
  }
};

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

// What one setting did on one sample.
struct setting_out {
  double nll = 0, kl = 0;       // ppl: sums over the forced positions
  std::string text;             // the generated answer
  probe_stats st;
  int64_t steps = 0;            // decode steps
  double secs = 0;              // wall time of the tail + answer (batched: the batch's, shared evenly)
  double dec_secs = 0, dec_steps = 0;  // per-step decode timing (sequential driver only)
};

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

  // Configurations: the dense reference first, then every non-dense policy.
  std::vector<eval_policy_spec> cfgs;
  eval_policy_spec dense;
  dense.method = "dense";
  cfgs.push_back(dense);
  for (const auto& s : policies)
    if (s.method != "dense") cfgs.push_back(s);

  std::map<key_t, acc> accs;
  std::vector<std::vector<int32_t>> text_tokens(corpus.texts.size());
  auto tokens_of_text = [&](size_t i) -> const std::vector<int32_t>& {
    if (text_tokens[i].empty()) text_tokens[i] = tok.encode(corpus.texts[i], false, false);
    return text_tokens[i];
  };

  // One session per context (KV cache of that size); the probe is its policy.
  std::vector<std::unique_ptr<session>> sessions;
  for (int64_t c : p.contexts) {
    session_params sp;
    sp.n_ctx = c;
    sp.n_threads = p.n_threads;
    sessions.push_back(std::make_unique<session>(m, sp, std::make_unique<probe_policy>()));
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
        // The prompt (prefix + forced tokens) and what every setting does after the prefix.
        std::vector<int32_t> prompt;
        int64_t prefix = 0;
        sample_job job;
        eval_sample smp;
        const bool ppl_task = task == "ppl", recall_task = task == "recall";
        if (ppl_task) {
          if (corpus.texts.empty()) fail("eval: task ppl needs held-out texts (--text)");
          const size_t ti = (size_t)i % corpus.texts.size();
          const auto& tt = tokens_of_text(ti);
          const int64_t L = ctx;
          const int64_t n_eval = std::min<int64_t>(p.ppl_eval_tokens, L - 1);
          if ((int64_t)tt.size() < L + 2)
            fail("eval: text '" + corpus.names[ti] + "' has " + std::to_string(tt.size()) +
                 " tokens, expected more than the context " + std::to_string(L));
          // Window offset: deterministic in (seed, context, sample).
          uint64_t h = (p.seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)ctx << 20) ^ (uint64_t)i;
          h ^= h >> 31;
          h *= 0xBF58476D1CE4E5B9ull;
          h ^= h >> 29;
          const int64_t off = (int64_t)(h % (uint64_t)(tt.size() - (size_t)L - 1));
          prompt.assign(tt.begin() + off, tt.begin() + off + L);
          prefix = L - n_eval;
          job.targets.assign(tt.begin() + off + prefix + 1, tt.begin() + off + L + 1);
        } else {
          task_params tp;
          tp.task = recall_task ? "passkey" : task;
          tp.context = ctx;
          tp.seed = p.seed;
          tp.chat = p.chat;
          smp = eval_make_sample(tp, i, corpus, tok, p.chat ? chat : nullptr);
          prompt = smp.prompt;
          const int64_t n = (int64_t)prompt.size();
          prefix = n - std::min<int64_t>(p.sparse_tail, n - 1);
          job.max_new = recall_task ? 0 : smp.max_new_tokens;
          job.refs = smp.refs;
          job.recall = recall_task || p.recall_all;
          job.recall_stride = p.recall_stride;
        }
        job.forced.assign(prompt.begin() + prefix, prompt.end());
        s.truncate(0);
        pr.install(nullptr);
        pr.set_measure_recall(false);
        const float* lg0 = s.eval(prompt.data(), prefix);
        std::copy(lg0, lg0 + n_vocab, prefill_logits.begin());
        const std::vector<setting_out> res = p.sequential
                                                 ? run_sequential(s, pr, job, cfgs, ctx, prefill_logits, tok)
                                                 : run_batched(s, pr, job, cfgs, ctx, prefill_logits, tok);
        s.truncate(prefix);
        const double n_prompt = (double)prompt.size();
        for (size_t c = 0; c < cfgs.size(); ++c) {
          const setting_out& o = res[c];
          const probe_stats& st = o.st;
          const bool dense_ref = c == 0;  // the dense reference: nothing measured, every row read
          auto fill = [&](acc& a) {
            a.att += dense_ref ? (double)o.steps : st.attended_frac;
            a.kvf += dense_ref ? (double)o.steps : st.kv_read_frac;
            if (!dense_ref) a.kvb += st.kv_read_bytes, a.selb += st.select_read_bytes, a.denseb += st.dense_bytes;
            a.steps += dense_ref ? (double)o.steps : (double)st.steps;
            a.prompt += n_prompt;
            a.secs += o.secs, a.dec_steps += o.dec_steps, a.dec_secs += o.dec_secs;
            if (!st.topk_recall.empty()) {
              if (a.topk.empty()) a.topk.assign(st.topk_recall.size(), 0), a.mass.assign(st.mass_recall.size(), 0);
              for (size_t k = 0; k < st.topk_recall.size(); ++k)
                a.topk[k] += st.topk_recall[k], a.mass[k] += st.mass_recall[k];
              a.recall_steps += (double)st.recall_steps;
            }
          };
          if (ppl_task) {
            const double n_eval = (double)job.forced.size();
            acc& ap = accs[{task, c, ctx, "ppl"}];
            ap.nll += o.nll;
            ap.ntok += n_eval;
            ap.vals.push_back(o.nll / n_eval);
            fill(ap);
            acc& ak = accs[{task, c, ctx, "kl"}];
            ak.vals.push_back(o.kl / n_eval);
            fill(ak);
            line << " " << cfgs[c].label() << " " << eval_perplexity(o.nll, n_eval);
          } else if (recall_task) {
            if (c == 0) continue;
            for (const char* metric : {"topk_recall", "mass_recall"}) {
              acc& a = accs[{task, c, ctx, metric}];
              const auto& v = std::string(metric) == "topk_recall" ? st.topk_recall : st.mass_recall;
              double sum = 0;
              for (double x : v) sum += x;
              a.vals.push_back(v.empty() || st.recall_steps == 0 ? 0 : sum / (double)v.size() / st.recall_steps);
              fill(a);
            }
          } else {
            const double score = string_match_all(o.text, smp.refs);
            acc& a = accs[{task, c, ctx, "score"}];
            a.vals.push_back(score);
            fill(a);
            line << " " << cfgs[c].label() << " " << score;
            if (p.trace) {
              std::ostringstream tr;
              tr << "ctx=" << ctx << " " << task << " #" << i << " prompt=" << prompt.size() << " tok";
              if (smp.depth >= 0) tr << " depth=" << smp.depth;
              tr << " | " << cfgs[c].label() << " @" << policy_density_name(cfgs[c].density) << " | score " << score
                 << " | refs";
              for (const auto& r : smp.refs) tr << " " << r;
              std::string shown = o.text;
              for (char& ch : shown)
                if (ch == '\n') ch = ' ';
              tr << " | answer \"" << shown << "\"";
              if (o.dec_secs > 0) tr << " | " << o.dec_steps / o.dec_secs << " tok/s";
              if (!st.topk_recall.empty() && st.recall_steps > 0) {
                double tk = 0, ms = 0;
                for (size_t k = 0; k < st.topk_recall.size(); ++k) tk += st.topk_recall[k], ms += st.mass_recall[k];
                tr << " | top-k recall " << tk / st.topk_recall.size() / st.recall_steps << " mass recall "
                   << ms / st.mass_recall.size() / st.recall_steps;
              }
              p.trace(tr.str());
            }
          }
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

  // Records.
  std::vector<eval_record> recs;
  for (const auto& [k, a] : accs) {
    if (a.vals.empty()) continue;
    const auto& cfg = cfgs[k.cfg];
    eval_record r;
    r.task = k.task;
    r.method = cfg.method;
    r.gqa = cfg.gqa;
    r.density = cfg.method == "dense" ? 1.0 : cfg.density;
    r.context = k.context;
    r.samples = (int)a.vals.size();
    r.first_sample = p.first_sample;
    r.metric = k.metric;
    double mean = 0;
    for (double v : a.vals) mean += v;
    mean /= (double)a.vals.size();
    double var = 0;
    for (double v : a.vals) var += (v - mean) * (v - mean);
    const double nv = (double)a.vals.size();
    r.stderr_ = nv > 1 ? std::sqrt(var / (nv - 1) / nv) : 0;
    r.value = k.metric == "ppl" ? eval_perplexity(a.nll, a.ntok) : mean;
    if (k.metric == "ppl") r.stderr_ = 0;
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
    if (!a.topk.empty() && a.recall_steps > 0) {
      double tk = 0, ms = 0;
      for (size_t j = 0; j < a.topk.size(); ++j) tk += a.topk[j], ms += a.mass[j];
      r.topk_recall = tk / a.topk.size() / a.recall_steps;
      r.mass_recall = ms / a.mass.size() / a.recall_steps;
      if (k.task == "recall") {  // per layer and head
        std::ostringstream d;
        d << "{\"n_layer\":" << hp.n_layer << ",\"n_head\":" << hp.n_head << ",\""
          << (k.metric == "topk_recall" ? "topk_recall" : "mass_recall") << "\":[";
        const auto& v = k.metric == "topk_recall" ? a.topk : a.mass;
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

}  // namespace hashattn
