// The evaluation runner. Per (sample, context, task): one dense prefill of the prompt minus its
// sparse tail, then for every policy (dense reference first): install the policy over the cached
// keys (probe_policy), push the tail through the decode path token by token, generate greedily
// (stopping at end-of-generation, at max_new_tokens, or once every reference string is in the
// output: the score cannot change after that), score, and truncate back to the prefix.
// ppl: windows of context+1 tokens of held-out text; the last n_eval inputs are decoded through
// the policy; NLL of the next token and KL(dense || policy) from the dense run's log-probs.
// recall: passkey prompts, tail only (no generation), recall measured every recall_stride steps.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <sstream>

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

void log_softmax(const float* x, int64_t n, std::vector<double>& out) {
  out.resize((size_t)n);
  double mx = -1e300;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, (double)x[i]);
  double z = 0;
  for (int64_t i = 0; i < n; ++i) z += std::exp((double)x[i] - mx);
  const double lz = mx + std::log(z);
  for (int64_t i = 0; i < n; ++i) out[i] = (double)x[i] - lz;
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
  sampler greedy(sampler_params{});
  const int64_t n_vocab = hp.n_vocab;
  std::vector<float> prefill_logits((size_t)n_vocab);
  std::vector<std::vector<double>> dense_lp;  // ppl: dense log-probs per eval position
  std::vector<double> lp;
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
        if (task == "ppl") {
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
          const int32_t* w = tt.data() + off;
          const int64_t W = L - n_eval;
          pr.install(nullptr);
          s.truncate(0);
          pr.install(nullptr);
          pr.set_measure_recall(false);
          s.eval(w, W);
          dense_lp.assign((size_t)n_eval, {});
          for (size_t c = 0; c < cfgs.size(); ++c) {
            pr.install(cfgs[c].make ? cfgs[c].make(ctx) : nullptr);
            pr.reset_stats();
            const auto t0 = clock_type::now();
            double nll = 0, kl = 0;
            for (int64_t j = 0; j < n_eval; ++j) {
              const float* lg = s.eval(&w[W + j], 1);
              log_softmax(lg, n_vocab, lp);
              nll -= lp[(size_t)w[W + j + 1]];
              if (c == 0) {
                dense_lp[(size_t)j] = lp;
              } else {
                const auto& d = dense_lp[(size_t)j];
                double k = 0;
                for (int64_t v = 0; v < n_vocab; ++v) k += std::exp(d[v]) * (d[v] - lp[v]);
                kl += std::max(0.0, k);
              }
            }
            const double secs = since(t0);
            const auto& st = pr.stats();
            for (const char* metric : {"ppl", "kl"}) {
              acc& a = accs[{task, c, ctx, metric}];
              if (std::string(metric) == "ppl") {
                a.nll += nll;
                a.ntok += (double)n_eval;
                a.vals.push_back(nll / (double)n_eval);
              } else {
                a.vals.push_back(kl / (double)n_eval);
              }
              a.att += st.attended_frac, a.kvf += st.kv_read_frac, a.kvb += st.kv_read_bytes, a.steps += st.steps;
              a.selb += st.select_read_bytes, a.denseb += st.dense_bytes;
              a.prompt += (double)L;
              a.secs += secs, a.dec_steps += (double)n_eval, a.dec_secs += secs;
            }
            line << " " << cfgs[c].label() << " " << std::exp(nll / (double)n_eval);
            pr.install(nullptr);  // the next setting installs its own policy over the kept keys
            s.truncate(W);
          }
        } else {
          const bool recall_task = task == "recall";
          task_params tp;
          tp.task = recall_task ? "passkey" : task;
          tp.context = ctx;
          tp.seed = p.seed;
          tp.chat = p.chat;
          eval_sample smp = eval_make_sample(tp, i, corpus, tok, p.chat ? chat : nullptr);
          const int64_t n = (int64_t)smp.prompt.size();
          const int64_t tail = std::min<int64_t>(p.sparse_tail, n - 1);
          const int64_t prefix = n - tail;
          const int max_new = recall_task ? 0 : smp.max_new_tokens;
          s.truncate(0);
          pr.install(nullptr);
          pr.set_measure_recall(false);
          const float* lg0 = s.eval(smp.prompt.data(), prefix);
          std::copy(lg0, lg0 + n_vocab, prefill_logits.begin());
          for (size_t c = 0; c < cfgs.size(); ++c) {
            pr.install(cfgs[c].make ? cfgs[c].make(ctx) : nullptr);
            pr.reset_stats();
            const bool measure = (recall_task || p.recall_all) && c > 0;
            const auto t0 = clock_type::now();
            double dec_secs = 0, dec_steps = 0;
            int64_t step = 0;
            auto step_eval = [&](int32_t t) {
              const bool rec = measure && step % std::max(1, p.recall_stride) == 0;
              pr.set_measure_recall(rec);
              const auto ts = clock_type::now();
              const float* r = s.eval(&t, 1);
              if (!rec) dec_secs += since(ts), dec_steps += 1;
              ++step;
              return r;
            };
            const float* lg = prefill_logits.data();
            for (int64_t j = 0; j < tail; ++j) lg = step_eval(smp.prompt[prefix + j]);
            std::vector<int32_t> out;
            std::string text;
            for (int k = 0; k < max_new; ++k) {
              int32_t id = greedy.sample(lg, n_vocab);
              if (tok.is_eog(id)) break;
              out.push_back(id);
              text = tok.decode(out, false);
              if (string_match_all(text, smp.refs) >= 1.0) break;
              if (k + 1 < max_new) lg = step_eval(id);
            }
            pr.set_measure_recall(false);
            const double secs = since(t0);
            const auto& st = pr.stats();
            auto fill = [&](acc& a) {
              a.att += c == 0 ? (double)step : st.attended_frac;
              a.kvf += c == 0 ? (double)step : st.kv_read_frac;
              a.kvb += c == 0 ? 0 : st.kv_read_bytes;
              a.selb += c == 0 ? 0 : st.select_read_bytes;
              a.denseb += c == 0 ? 0 : st.dense_bytes;
              a.steps += c == 0 ? (double)step : (double)st.steps;
              a.prompt += (double)n;
              a.secs += secs, a.dec_steps += dec_steps, a.dec_secs += dec_secs;
              if (!st.topk_recall.empty()) {
                if (a.topk.empty()) a.topk.assign(st.topk_recall.size(), 0), a.mass.assign(st.mass_recall.size(), 0);
                for (size_t k = 0; k < st.topk_recall.size(); ++k)
                  a.topk[k] += st.topk_recall[k], a.mass[k] += st.mass_recall[k];
                a.recall_steps += (double)st.recall_steps;
              }
            };
            if (recall_task) {
              if (c > 0) {
                for (const char* metric : {"topk_recall", "mass_recall"}) {
                  acc& a = accs[{task, c, ctx, metric}];
                  double sum = 0;
                  const auto& v = std::string(metric) == "topk_recall" ? st.topk_recall : st.mass_recall;
                  for (double x : v) sum += x;
                  a.vals.push_back(v.empty() || st.recall_steps == 0 ? 0 : sum / (double)v.size() / st.recall_steps);
                  fill(a);
                }
              }
            } else {
              const double score = string_match_all(text, smp.refs);
              acc& a = accs[{task, c, ctx, "score"}];
              a.vals.push_back(score);
              fill(a);
              line << " " << cfgs[c].label() << " " << score;
              if (p.trace) {
                std::ostringstream tr;
                tr << "ctx=" << ctx << " " << task << " #" << i << " prompt=" << n << " tok";
                if (smp.depth >= 0) tr << " depth=" << smp.depth;
                tr << " | " << cfgs[c].label() << " @" << density_name(cfgs[c].density) << " | score " << score
                   << " | refs";
                for (const auto& r : smp.refs) tr << " " << r;
                std::string shown = text;
                for (char& ch : shown)
                  if (ch == '\n') ch = ' ';
                tr << " | answer \"" << shown << "\"";
                if (dec_secs > 0) tr << " | " << dec_steps / dec_secs << " tok/s";
                if (!st.topk_recall.empty() && st.recall_steps > 0) {
                  double tk = 0, ms = 0;
                  for (size_t k = 0; k < st.topk_recall.size(); ++k) tk += st.topk_recall[k], ms += st.mass_recall[k];
                  tr << " | top-k recall " << tk / st.topk_recall.size() / st.recall_steps << " mass recall "
                     << ms / st.mass_recall.size() / st.recall_steps;
                }
                p.trace(tr.str());
              }
            }
            pr.install(nullptr);  // (some policies, e.g. quest, cannot truncate mid-page)
            s.truncate(prefix);
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
    r.metric = k.metric;
    double mean = 0;
    for (double v : a.vals) mean += v;
    mean /= (double)a.vals.size();
    double var = 0;
    for (double v : a.vals) var += (v - mean) * (v - mean);
    const double nv = (double)a.vals.size();
    r.stderr_ = nv > 1 ? std::sqrt(var / (nv - 1) / nv) : 0;
    r.value = k.metric == "ppl" ? std::exp(a.nll / a.ntok) : mean;
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
