// End-to-end evaluation on the default model (label model): a short passkey run (noise haystack,
// 512-token context, 1 sample) through eval_run with a dense reference and two policies over the
// same prefill, and one perplexity window, with both drivers (settings side by side, and one at a
// time). Checks the records (one per setting and metric), that the drivers agree, that dense decode
// via the probe (sequential driver) matches a plain dense session token for token, and that streaming
// reads what its budget says. Seeds fixed (task seed 1234).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "hashattn/eval.h"
#include "hashattn/gguf.h"
#include "hashattn/model.h"

namespace hashattn {
namespace {

std::string model_path() { return std::string(HASHATTN_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"; }

TEST(EvalModel, SmallPasskeyAndPerplexityRunEndToEnd) {
  std::ifstream probe(model_path());
  if (!probe) GTEST_SKIP() << "model not fetched (scripts/setup)";
  auto m = model::load(model_path());
  auto tok = tokenizer::from_gguf(m->file());
  chat_template chat = chat_template_from_gguf(m->file());
  // Held-out text for ppl: a synthetic text is enough here (the real texts may be absent).
  eval_corpus c;
  std::string text;
  for (int i = 0; i < 400; ++i) text += "Line " + std::to_string(i) + " of a plain synthetic text that repeats itself. ";
  c.names = {"synthetic"};
  c.texts = {text};
  c.sentences = {eval_split_sentences(text)};

  std::vector<eval_policy_spec> specs;
  for (const char* name : {"streaming", "oracle"}) {
    eval_policy_spec s;
    s.method = name;
    s.gqa = std::string(name) == "oracle" ? "head" : "";
    s.density = 0.25;
    s.make = [name](int64_t n) {
      policy_config cfg;
      cfg.name = name;
      cfg.budget.density = 0.25;
      cfg.budget.sinks = 8;
      cfg.budget.window = std::string(name) == "streaming" ? 120 : 16;
      return make_policy(cfg);
    };
    specs.push_back(s);
  }
  eval_run_params p;
  p.tasks = {"passkey_noise", "ppl"};
  p.contexts = {512};
  p.n_samples = 1;
  p.sparse_tail = 16;
  p.ppl_eval_tokens = 8;
  p.n_threads = 2;
  std::vector<std::string> answers, answers_batched;
  p.trace = [&](const std::string& s) { answers_batched.push_back(s); };
  const auto batched = eval_run(*m, *tok, &chat, c, specs, p);  // default driver: settings side by side
  p.sequential = true;
  p.trace = [&](const std::string& s) { answers.push_back(s); };
  auto recs = eval_run(*m, *tok, &chat, c, specs, p);

  // Both drivers run the same settings on the same prefill; they differ only in the linear layers'
  // rounding (sgemm over fp32 weights vs 16-bit activation mat-vecs): same records, close values.
  ASSERT_EQ(batched.size(), recs.size());
  for (size_t i = 0; i < recs.size(); ++i) {
    const eval_record &a = recs[i], &b = batched[i];
    SCOPED_TRACE(a.task + " " + a.label() + " " + a.metric);
    ASSERT_EQ(a.label() + a.metric + a.task, b.label() + b.metric + b.task);
    if (a.metric == "ppl") EXPECT_NEAR(b.value, a.value, 0.01 * a.value);
    if (a.metric == "kl") EXPECT_NEAR(b.value, a.value, 0.01 + 0.1 * a.value);
    EXPECT_NEAR(b.attended_frac, a.attended_frac, 1e-9);
    EXPECT_NEAR(b.kv_read_frac, a.kv_read_frac, 0.02);
    EXPECT_EQ(b.decode_tok_s, 0.0) << "no per-setting speed in the batched driver";
  }
  ASSERT_EQ(answers_batched.size(), answers.size());
  for (size_t i = 0; i < answers.size(); ++i)  // answer text (tok/s differs)
    EXPECT_EQ(answers_batched[i].substr(0, answers_batched[i].find(" | score")),
              answers[i].substr(0, answers[i].find(" | score")));

  std::map<std::string, const eval_record*> by;
  for (const auto& r : recs) by[r.task + "|" + r.label() + "|" + r.metric] = &r;
  ASSERT_EQ(answers.size(), 3u);  // dense, streaming, oracle
  for (const char* lab : {"dense", "streaming", "oracle/head"}) {
    SCOPED_TRACE(lab);
    ASSERT_TRUE(by.count(std::string("passkey_noise|") + lab + "|score"));
    const eval_record& r = *by[std::string("passkey_noise|") + lab + "|score"];
    EXPECT_EQ(r.samples, 1);
    EXPECT_EQ(r.context, 512);
    EXPECT_TRUE(r.value == 0.0 || r.value == 1.0);
    EXPECT_GT(r.prompt_tokens, 400);
    EXPECT_LE(r.prompt_tokens, 512);
    ASSERT_TRUE(by.count(std::string("ppl|") + lab + "|ppl"));
    const eval_record& pp = *by[std::string("ppl|") + lab + "|ppl"];
    EXPECT_TRUE(std::isfinite(pp.value));
    EXPECT_GT(pp.value, 1.0);
    const eval_record& kl = *by[std::string("ppl|") + lab + "|kl"];
    if (std::string(lab) == "dense") EXPECT_EQ(kl.value, 0.0);
    else EXPECT_GE(kl.value, 0.0);
  }
  // Streaming attends sinks + window = 128 of ~500 tokens: its reported density is about that.
  const eval_record& st = *by["passkey_noise|streaming|score"];
  EXPECT_NEAR(st.attended_frac, 128.0 / st.prompt_tokens, 0.03);
  EXPECT_DOUBLE_EQ(st.attended_frac, st.kv_read_frac);  // one shared list per KV group
  // Per-head oracle lists of a group differ: the union reads more rows than one head attends.
  const eval_record& orc = *by["passkey_noise|oracle/head|score"];
  EXPECT_GE(orc.kv_read_frac, orc.attended_frac);
  EXPECT_NEAR(orc.attended_frac, 0.25, 0.02);

  // The dense reference through the probe equals a plain dense session (same prefill split).
  task_params tp;
  tp.task = "passkey_noise";
  tp.context = 512;
  tp.seed = p.seed;
  eval_sample smp = eval_make_sample(tp, 0, c, *tok, &chat);
  session_params sp;
  sp.n_ctx = 512;
  sp.n_threads = 2;
  session s(*m, sp);
  const int64_t prefix = (int64_t)smp.prompt.size() - 16;
  s.eval(smp.prompt.data(), prefix);
  const float* lg = nullptr;
  for (int64_t j = prefix; j < (int64_t)smp.prompt.size(); ++j) lg = s.eval(&smp.prompt[j], 1);
  sampler g(sampler_params{});
  std::vector<int32_t> out;
  for (int k = 0; k < smp.max_new_tokens; ++k) {
    int32_t id = g.sample(lg, m->hparams().n_vocab);
    if (tok->is_eog(id)) break;
    out.push_back(id);
    if (string_match_all(tok->decode(out, false), smp.refs) >= 1.0) break;
    lg = s.eval(&id, 1);
  }
  std::string want = tok->decode(out, false);
  for (char& ch : want)
    if (ch == '\n') ch = ' ';
  EXPECT_NE(answers[0].find("answer \"" + want + "\""), std::string::npos) << answers[0] << "\nwant: " << want;
}

}  // namespace
}  // namespace hashattn
