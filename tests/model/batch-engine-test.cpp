// batch_engine (model.h) on tiny random models (tests/common/tiny-model.h):
// - unrelated sequences prefilled in chunks that cross pages, then decoded together while others join
//   and leave the batch, agree with the float64 forward of each sequence's own tokens (dense);
// - a sequence's logits do not depend on its batch: bit-equal to a session that prefills the same
//   prompt with the same chunk size and decodes token by token (dense and sparse policies);
// - fork() shares the prefix's full pages and agrees with the reference;
// - pages come back when sequences close; every misuse is refused before anything is written.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/test-util.h"
#include "common/tiny-model.h"
#include "hashattn/error.h"
#include "hashattn/model.h"
#include "hashattn/policy.h"

namespace hashattn {
namespace {

using namespace tiny;

// An engine of tiny pages (4 tokens) for the tiny models.
batch_params small_engine(int64_t n_ctx, int max_seqs, int n_threads) {
  batch_params bp;
  bp.n_ctx = n_ctx;
  bp.max_seqs = max_seqs;
  bp.page_size = 4;
  bp.n_threads = n_threads;
  return bp;
}

std::unique_ptr<attention_policy> policy_of(const std::string& name) {
  if (name == "dense") return nullptr;
  policy_config pc;
  pc.name = name;
  pc.budget.count = 6;
  pc.budget.sinks = 2;
  pc.budget.window = 2;
  return make_policy(pc);
}

struct plan {
  std::string policy;
  int prompt = 0;   // prompt tokens
  int join = 0;     // step at which it is prefilled and joins
  int leave = 0;    // step after which it is closed (exclusive)
};

// Runs the plans through one engine; returns per sequence its tokens and the logits after its prefill
// and after each of its decode steps.
struct run_result {
  std::vector<std::vector<int32_t>> toks;
  std::vector<std::vector<std::vector<float>>> logits;
};

run_result run_engine(const model& m, const std::vector<plan>& plans, int steps, int nt, uint64_t seed,
                      int n_vocab) {
  batch_params bp = small_engine(48, 4, nt);
  bp.n_batch = 5;
  batch_engine e(m, bp);
  std::mt19937_64 rng(seed);
  run_result r;
  r.toks.resize(plans.size());
  r.logits.resize(plans.size());
  std::vector<int64_t> id(plans.size(), -1);
  for (int t = 0; t <= steps; ++t) {
    std::vector<int64_t> ids;
    std::vector<int32_t> step_toks;
    std::vector<size_t> who;
    for (size_t i = 0; i < plans.size(); ++i) {
      const plan& p = plans[i];
      if (t == p.leave && id[i] >= 0) {
        e.close(id[i]);
        id[i] = -2;
      }
      if (t == p.join) {
        id[i] = e.open(policy_of(p.policy));
        r.toks[i] = random_tokens(p.prompt, n_vocab, rng);
        const float* lg = e.prefill(id[i], r.toks[i].data(), p.prompt);
        r.logits[i].emplace_back(lg, lg + n_vocab);
      } else if (id[i] >= 0 && t < steps) {
        ids.push_back(id[i]);
        step_toks.push_back((int32_t)(rng() % n_vocab));
        who.push_back(i);
      }
    }
    if (ids.empty()) continue;
    e.step(ids.data(), step_toks.data(), (int)ids.size());
    for (size_t j = 0; j < ids.size(); ++j) {
      r.toks[who[j]].push_back(step_toks[j]);
      const float* lg = e.logits(ids[j]);
      r.logits[who[j]].emplace_back(lg, lg + n_vocab);
      EXPECT_EQ(e.n_past(ids[j]), (int64_t)r.toks[who[j]].size());
    }
  }
  for (size_t i = 0; i < plans.size(); ++i)
    if (id[i] >= 0) e.close(id[i]);
  EXPECT_EQ(e.n_open(), 0);
  EXPECT_EQ(e.pages_free(), e.pages_total()) << "every page comes back";
  return r;
}

void check_engine(const tiny_cfg& c, uint64_t seed, double tol) {
  HASHATTN_SEED(seed);
  const tiny_model tm = build(c, seed);
  auto m = load(tm);
  const std::vector<plan> plans = {
      {"dense", 7, 0, 100}, {"dense", 13, 0, 5}, {"streaming", 9, 2, 100}, {"oracle", 5, 3, 100}, {"dense", 11, 6, 100}};
  const int steps = 10;
  for (int nt : {1, 2}) {
    SCOPED_TRACE("threads=" + std::to_string(nt));
    const run_result r = run_engine(*m, plans, steps, nt, seed + 1, c.n_vocab);
    for (size_t i = 0; i < plans.size(); ++i) {
      const plan& p = plans[i];
      SCOPED_TRACE("sequence " + std::to_string(i) + " (" + p.policy + ")");
      const std::vector<int32_t>& toks = r.toks[i];
      ASSERT_EQ(r.logits[i].size(), toks.size() - p.prompt + 1);
      // Bit-equal to a session with the same prompt chunks, decoding token by token.
      session s(*m, session_params{48, nt, 5}, policy_of(p.policy));
      const float* lg = s.eval(toks.data(), p.prompt);
      for (size_t k = 0; k < r.logits[i].size(); ++k) {
        if (k > 0) lg = s.eval(&toks[p.prompt + k - 1], 1);
        ASSERT_EQ(0, std::memcmp(lg, r.logits[i][k].data(), sizeof(float) * c.n_vocab))
            << "logits " << k << " differ from the session's";
      }
      if (p.policy != "dense") continue;
      const std::vector<double> ref = ref_forward(tm, toks);
      for (size_t k = 0; k < r.logits[i].size(); ++k)
        expect_row_close(r.logits[i][k].data(), &ref[(size_t)(p.prompt - 1 + k) * c.n_vocab], c.n_vocab, tol,
                         "position " + std::to_string(p.prompt - 1 + k));
    }
  }
}

TEST(batch_engine, sequences_joining_and_leaving_match_float64_and_single_sessions) {
  check_engine(tiny_cfg{}, 3001, kTol);
  check_engine(qwen2_cfg(), 3002, kTolQuant);
}

// Steps of kSmallBatchMin rows or more take the small-batch mat-mat: each weight row read once for all
// rows. A sequence's logits then do not depend on which other sequences share its steps (bit for bit:
// the same sequences stepped among 5 and among 9), and agree with the float64 forward.
TEST(batch_engine, large_steps_are_batch_invariant_and_match_float64) {
  const uint64_t seed = 3006;
  HASHATTN_SEED(seed);
  const tiny_cfg c = qwen2_cfg();
  const tiny_model tm = build(c, seed);
  auto m = load(tm);
  std::mt19937_64 rng(seed + 1);
  const int B = 9, T = 5;
  std::vector<std::vector<int32_t>> toks(B);
  for (int b = 0; b < B; ++b) toks[b] = random_tokens(3 + b, c.n_vocab, rng);
  std::vector<std::vector<int32_t>> steps(B);
  for (auto& s : steps) s = random_tokens(T, c.n_vocab, rng);
  // run(k): the first k sequences decoded together; logits [b][t].
  auto run = [&](int k) {
    batch_engine e(*m, small_engine(32, B, 2));
    std::vector<int64_t> ids;
    for (int b = 0; b < k; ++b) {
      ids.push_back(e.open());
      e.prefill(ids.back(), toks[b].data(), (int64_t)toks[b].size());
    }
    std::vector<std::vector<std::vector<float>>> out(k);
    for (int t = 0; t < T; ++t) {
      std::vector<int32_t> tk;
      for (int b = 0; b < k; ++b) tk.push_back(steps[b][t]);
      e.step(ids.data(), tk.data(), k);
      for (int b = 0; b < k; ++b) out[b].emplace_back(e.logits(ids[b]), e.logits(ids[b]) + c.n_vocab);
    }
    return out;
  };
  const auto five = run(5), nine = run(B);
  for (int b = 0; b < 5; ++b)
    for (int t = 0; t < T; ++t)
      ASSERT_EQ(0, std::memcmp(five[b][t].data(), nine[b][t].data(), sizeof(float) * c.n_vocab))
          << "sequence " << b << " step " << t << ": its logits depend on the batch";
  for (int b = 0; b < B; ++b) {
    std::vector<int32_t> all = toks[b];
    all.insert(all.end(), steps[b].begin(), steps[b].end());
    const auto ref = ref_forward(tm, all);
    for (int t = 0; t < T; ++t)
      expect_row_close(nine[b][t].data(), &ref[(toks[b].size() + t) * c.n_vocab], c.n_vocab, kTolQuant,
                       "sequence " + std::to_string(b) + " step " + std::to_string(t));
  }
}

TEST(batch_engine, fork_shares_prefix_pages_and_matches_float64) {
  const uint64_t seed = 3003;
  HASHATTN_SEED(seed);
  const tiny_cfg c = qwen2_cfg();
  const tiny_model tm = build(c, seed);
  auto m = load(tm);
  std::mt19937_64 rng(seed + 1);
  batch_engine e(*m, small_engine(40, 3, 2));
  const auto prompt = random_tokens(14, c.n_vocab, rng);
  const int64_t a = e.open();
  e.prefill(a, prompt.data(), 14);
  const int64_t used = e.pages_total() - e.pages_free();
  EXPECT_EQ(used, 4);
  // Fork at 10 tokens: pages 0, 1 shared, the partial third copied.
  const int64_t b = e.fork(a, 10);
  EXPECT_EQ(e.n_past(b), 10);
  EXPECT_EQ(e.pages_total() - e.pages_free(), used + 1);
  std::vector<int32_t> ta(prompt), tb(prompt.begin(), prompt.begin() + 10);
  for (int t = 0; t < 6; ++t) {
    const int64_t ids[2] = {a, b};
    const int32_t tk[2] = {(int32_t)(rng() % c.n_vocab), (int32_t)(rng() % c.n_vocab)};
    e.step(ids, tk, 2);
    ta.push_back(tk[0]);
    tb.push_back(tk[1]);
    const auto ra = ref_forward(tm, ta), rb = ref_forward(tm, tb);
    expect_row_close(e.logits(a), &ra[(ta.size() - 1) * c.n_vocab], c.n_vocab, kTolQuant, "a step " + std::to_string(t));
    expect_row_close(e.logits(b), &rb[(tb.size() - 1) * c.n_vocab], c.n_vocab, kTolQuant, "b step " + std::to_string(t));
  }
  e.close(a);
  e.close(b);
  EXPECT_EQ(e.pages_free(), e.pages_total());
}

// A forked sequence's policy is told the shared keys as the cache holds them: a stateful selector
// (SimHash codes of every key) then selects exactly as in a sequence that prefilled the same tokens.
TEST(batch_engine, fork_gives_a_stateful_policy_the_shared_keys) {
  const uint64_t seed = 3005;
  HASHATTN_SEED(seed);
  const tiny_cfg c = qwen2_cfg();
  const tiny_model tm = build(c, seed);
  auto m = load(tm);
  std::mt19937_64 rng(seed + 1);
  batch_engine e(*m, small_engine(40, 3, 1));
  const auto prompt = random_tokens(18, c.n_vocab, rng);
  const int64_t a = e.open();
  e.prefill(a, prompt.data(), 18);
  const int64_t b = e.fork(a, 18, policy_of("simhash"));
  const int64_t d = e.open(policy_of("simhash"));
  e.prefill(d, prompt.data(), 18);
  for (int t = 0; t < 8; ++t) {
    const int64_t ids[2] = {b, d};
    const int32_t tk = (int32_t)(rng() % c.n_vocab), tks[2] = {tk, tk};
    e.step(ids, tks, 2);
    ASSERT_EQ(0, std::memcmp(e.logits(b), e.logits(d), sizeof(float) * c.n_vocab)) << "step " << t;
  }
  EXPECT_LT(e.attended_density(b), 0.9) << "the policy was sparse";
}

TEST(batch_engine, refuses_bad_use_before_writing_anything) {
  const tiny_cfg c;
  const tiny_model tm = build(c, 3004);
  auto m = load(tm);
  batch_params bp = small_engine(16, 2, 1);
  bp.n_pages = 5;
  {
    batch_params bad = bp;
    bad.max_seqs = 0;
    EXPECT_THROW(batch_engine(*m, bad), error);
    bad = bp;
    bad.page_size = 3;
    EXPECT_THROW(batch_engine(*m, bad), error);
    bad = bp;
    bad.n_ctx = c.ctx + 1;
    EXPECT_THROW(batch_engine(*m, bad), error);
  }
  batch_engine e(*m, bp);
  EXPECT_EQ(e.pages_total(), 5);
  const int64_t a = e.open(), b = e.open();
  EXPECT_THROW(e.open(), error) << "max_seqs";
  EXPECT_THROW(e.logits(a), error) << "no logits yet";
  const std::vector<int32_t> p12(12, 3), p1(1, 3);
  e.prefill(a, p12.data(), 12);  // 3 pages
  EXPECT_THROW(e.prefill(b, p12.data(), 12), error) << "3 pages needed, 2 free";
  EXPECT_EQ(e.n_past(b), 0);
  EXPECT_EQ(e.pages_free(), 2);
  e.prefill(b, p1.data(), 1);
  const int32_t out_of_vocab = c.n_vocab;
  EXPECT_THROW(e.prefill(b, &out_of_vocab, 1), error);
  EXPECT_THROW(e.prefill(b, p1.data(), 0), error);
  const int64_t both[2] = {a, b}, twice[2] = {a, a}, unknown[1] = {99};
  const int32_t two[2] = {1, 2}, bad_tok[2] = {1, -1};
  EXPECT_THROW(e.step(twice, two, 2), error) << "one sequence twice";
  EXPECT_THROW(e.step(unknown, two, 1), error);
  EXPECT_THROW(e.step(both, bad_tok, 2), error);
  EXPECT_EQ(e.n_past(a), 12);
  EXPECT_EQ(e.n_past(b), 1);
  e.step(both, two, 2);  // a: 13 tokens, a fourth page; b: 2
  const std::vector<int32_t> p3(3, 5);
  e.prefill(a, p3.data(), 3);  // 16 tokens: the context is full
  const int64_t just_a[1] = {a};
  EXPECT_THROW(e.step(just_a, two, 1), error) << "context full";
  EXPECT_THROW(e.prefill(a, p1.data(), 1), error) << "context full";
  EXPECT_THROW(e.fork(a, 0), error);
  EXPECT_THROW(e.fork(a, 17), error);
  EXPECT_THROW(e.fork(a, 4), error) << "max_seqs open";
  e.close(a);
  EXPECT_THROW(e.close(a), error) << "closed twice";
  EXPECT_THROW(e.n_past(a), error);
  EXPECT_FALSE(e.is_open(a));
  e.close(b);
  EXPECT_EQ(e.pages_free(), 5);
}

}  // namespace
}  // namespace hashattn
