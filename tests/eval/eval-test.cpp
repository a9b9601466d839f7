// Unit tests of the evaluation module without a model: text normalization and sentence splitting,
// WordNet lists, density parsing, task generators with a byte-level tokenizer (every byte one
// token, plus ChatML control tokens) -- lengths fit, references present, needles at their depth,
// determinism -- string-match scoring, the probe policy (replay over kept keys gives the same
// selections as a fresh policy; KV-read unions and recall against brute force in float64), and
// the JSON / Markdown writers; perplexity and KL on hand-computed logits (and a negative KL is an
// error, not clamped). Seeds are fixed and printed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <algorithm>
#include <random>
#include <set>

#include "common/test-util.h"
#include "eval/eval-math.h"
#include "hashattn/error.h"
#include "hashattn/eval.h"
#include "hashattn/policy.h"

namespace hashattn {
namespace {

// GPT-2 byte -> code point map, as UTF-8 text (the byte-level BPE vocabulary's token texts).
std::string byte_token(int b) {
  int cp;
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
    cp = b;
  } else {
    int n = 0;
    for (int x = 0; x < b; ++x)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += (char)cp;
  } else {
    s += (char)(0xC0 | (cp >> 6));
    s += (char)(0x80 | (cp & 0x3F));
  }
  return s;
}

std::unique_ptr<tokenizer> byte_tokenizer() {
  tokenizer_vocab v;
  v.pre = "gpt2";
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_token(b)), v.types.push_back(1);
  v.tokens.push_back("<|im_start|>"), v.types.push_back(3);
  v.tokens.push_back("<|im_end|>"), v.types.push_back(3);
  v.bos = 256;
  v.eos = 257;
  return tokenizer::from_vocab(v);
}

eval_corpus synthetic_corpus(uint64_t seed) {
  std::mt19937_64 rng(seed);
  eval_corpus c;
  const char* w[] = {"alpha", "beta", "gamma", "delta", "river", "stone", "light", "house", "green", "quiet"};
  for (int t = 0; t < 2; ++t) {
    std::vector<std::string> sents;
    std::string text;
    for (int i = 0; i < 400; ++i) {
      std::string s = "Sentence" + std::to_string(i);
      int n = 3 + (int)(rng() % 8);
      for (int j = 0; j < n; ++j) s += std::string(" ") + w[rng() % 10];
      s += ".";
      sents.push_back(s);
      text += (text.empty() ? "" : " ") + s;
    }
    c.names.push_back("text" + std::to_string(t));
    c.texts.push_back(text);
    c.sentences.push_back(sents);
  }
  for (int i = 0; i < 3000; ++i) {
    std::string n, a;
    uint64_t x = rng();
    for (int j = 0; j < 6; ++j) n += (char)('a' + (x >> (5 * j)) % 26), a += (char)('a' + (x >> (5 * j + 30)) % 26);
    c.nouns.push_back(n);
    c.adjectives.push_back(a);
  }
  return c;
}

TEST(EvalText, NormalizeJoinsParagraphsAndDropsVerseLabels) {
  std::string raw = "  Chapter 1\n\nIt was a  dark\n   and stormy night.\n\n\nThe end\nGe1:1 In the beginning.\nGe1:2 And the earth.\n";
  std::string n = eval_text_normalize(raw);
  EXPECT_EQ(n, "Chapter 1\n\nIt was a dark and stormy night.\n\nThe end\n\nIn the beginning.\n\nAnd the earth.");
  auto s = eval_split_sentences(n);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0], "Chapter 1");
  EXPECT_EQ(s[1], "It was a dark and stormy night.");
  EXPECT_EQ(s[3], "In the beginning.");
}

TEST(EvalText, SentencesKeepClosingQuotesAndNumbers) {
  auto s = eval_split_sentences("\"Go home!\" she said. Is it 3.5 miles? Yes.");
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0], "\"Go home!\"");  // a closing quote stays with its sentence
  EXPECT_EQ(s[1], "she said.");
  EXPECT_EQ(s[2], "Is it 3.5 miles?");  // no split inside a number
  EXPECT_EQ(s[3], "Yes.");              // 3 letters: kept
}

TEST(EvalText, WordNetLoaderKeepsPlainLowercaseWords) {
  std::string path = ::testing::TempDir() + "/index.test";
  {
    std::ofstream f(path);
    f << "  1 This software and database is being provided\n";
    for (int i = 0; i < 150; ++i) f << "word" << (char)('a' + i % 26) << (char)('a' + i / 26) << " n 1 1 @ 1 0 0001\n";
    f << "new_york n 1 0 1 0 0002\nx-ray n 1 0 1 0 0003\nab n 1 0 1 0 0004\n";
  }
  auto w = eval_load_wordnet(path);
  EXPECT_EQ(w.size(), 150u);
  for (const auto& x : w) EXPECT_TRUE(x.find('_') == std::string::npos && x.find('-') == std::string::npos);
  EXPECT_THROW(eval_load_wordnet(path + ".missing"), error);
}

TEST(EvalOptions, DensityFractionsAndDecimals) {
  EXPECT_DOUBLE_EQ(policy_density_parse("1/32"), 1.0 / 32);
  EXPECT_DOUBLE_EQ(policy_density_parse("0.03125"), 1.0 / 32);
  EXPECT_DOUBLE_EQ(policy_density_parse(" 1 "), 1.0);
  EXPECT_THROW(policy_density_parse("0"), error);
  EXPECT_THROW(policy_density_parse("2"), error);
  EXPECT_THROW(policy_density_parse("1/0"), error);
  EXPECT_THROW(policy_density_parse("-1/8"), error);
  EXPECT_THROW(policy_density_parse("1/32x"), error);
  EXPECT_THROW(policy_density_parse("abc"), error);
  auto l = parse_density_list("1/4, 1/8,0.0625");
  ASSERT_EQ(l.size(), 3u);
  EXPECT_DOUBLE_EQ(l[2], 1.0 / 16);
  EXPECT_EQ(policy_density_name(1.0 / 64), "1/64");
  EXPECT_EQ(policy_density_name(0.3), "0.3");
}

TEST(EvalScore, StringMatchAllIsCaseInsensitiveContainment) {
  EXPECT_DOUBLE_EQ(string_match_all(" The key is 12345.", {"12345"}), 1.0);
  EXPECT_DOUBLE_EQ(string_match_all("1234", {"12345"}), 0.0);
  EXPECT_DOUBLE_EQ(string_match_all("ABCDE, fghij", {"abcde", "FGHIJ", "klmno", "zzz"}), 0.5);
  EXPECT_DOUBLE_EQ(string_match_all("anything", {}), 0.0);
}

class EvalTasks : public ::testing::TestWithParam<std::string> {};

TEST_P(EvalTasks, FitsContextHoldsReferencesAndIsDeterministic) {
  const uint64_t seed = 77;
  SCOPED_TRACE("seed " + std::to_string(seed) + " task " + GetParam());
  auto tok = byte_tokenizer();
  eval_corpus c = synthetic_corpus(seed);
  chat_template chat;
  for (int64_t ctx : {1024, 3000}) {
    for (const chat_template* ct : {(const chat_template*)nullptr, (const chat_template*)&chat}) {
      task_params p;
      p.task = GetParam();
      p.context = ctx;
      p.seed = seed;
      eval_sample s = eval_make_sample(p, 3, c, *tok, ct);
      const int64_t n = (int64_t)s.prompt.size();
      EXPECT_LE(n + s.max_new_tokens, ctx);
      // The haystack is the longest that fits: within a few units of the limit.
      EXPECT_GE(n + s.max_new_tokens, ctx - (GetParam() == "cwe" ? 64 : 160)) << "prompt " << n;
      std::string text = tok->decode(s.prompt);
      ASSERT_FALSE(s.refs.empty());
      for (const auto& r : s.refs) EXPECT_NE(text.find(r), std::string::npos) << r;
      // The refs must not be given away after the haystack (the question names no value).
      const std::string tail = text.substr(text.size() - 200);
      if (GetParam() != "vt" && GetParam() != "cwe") {
        for (const auto& r : s.refs) EXPECT_EQ(tail.find(r), std::string::npos) << r;
      }
      eval_sample again = eval_make_sample(p, 3, c, *tok, ct);
      EXPECT_EQ(again.prompt, s.prompt);
      eval_sample other = eval_make_sample(p, 4, c, *tok, ct);
      EXPECT_NE(other.prompt, s.prompt);
      if (ct) {
        EXPECT_NE(text.find("<|im_start|>assistant\n"), std::string::npos);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, EvalTasks, ::testing::ValuesIn(eval_task_names()));

// The one prompt-fitting function on hand-made families: prompt of n units = 5 + 3n tokens.
TEST(EvalTasks, FitPromptFindsTheLongestThatFitsRenderingEachSizeOnce) {
  std::vector<int64_t> calls;
  auto render = [&](int64_t n) {
    calls.push_back(n);
    return std::vector<int32_t>((size_t)(5 + 3 * n), (int32_t)n);
  };
  // limit 100: 5 + 3 x 31 = 98 fits, 32 -> 101 does not.
  fitted_prompt f = eval_fit_prompt(render, 1000, 100);
  EXPECT_EQ(f.n, 31);
  EXPECT_EQ(f.tokens.size(), 98u);
  EXPECT_EQ(f.tokens[0], 31);  // the tokens of n = 31, not of another size
  std::set<int64_t> once(calls.begin(), calls.end());
  EXPECT_EQ(once.size(), calls.size()) << "a size was rendered twice";
  // Everything fits: n_max itself (exactly at the limit: 5 + 3 x 20 = 65).
  calls.clear();
  f = eval_fit_prompt(render, 20, 65);
  EXPECT_EQ(f.n, 20);
  EXPECT_EQ(f.tokens.size(), 65u);
  // n_max 0: the empty haystack.
  EXPECT_EQ(eval_fit_prompt(render, 0, 100).n, 0);
  // Not even n = 0 fits: n = -1, no tokens.
  f = eval_fit_prompt(render, 10, 4);
  EXPECT_EQ(f.n, -1);
  EXPECT_TRUE(f.tokens.empty());
  // A family with a jump (n >= 7 adds 50 tokens): the largest n below the jump.
  auto jump = [](int64_t n) { return std::vector<int32_t>((size_t)(n + (n >= 7 ? 50 : 0)), 0); };
  EXPECT_EQ(eval_fit_prompt(jump, 100, 40).n, 6);
  EXPECT_THROW(eval_fit_prompt(render, -1, 10), error);
}

TEST(EvalTasks, PasskeyDepthPlacesTheNeedle) {
  auto tok = byte_tokenizer();
  eval_corpus c = synthetic_corpus(5);
  for (int i = 0; i < 11; ++i) {
    task_params p;
    p.task = "passkey";
    p.context = 2048;
    eval_sample s = eval_make_sample(p, i, c, *tok, nullptr);
    EXPECT_DOUBLE_EQ(s.depth, i / 10.0);
    std::string text = tok->decode(s.prompt);
    size_t pos = text.find("The pass key is " + s.refs[0]);
    ASSERT_NE(pos, std::string::npos);
    // Depth in haystack sentences (each synthetic sentence starts with "Sentence").
    auto count = [&](size_t from, size_t to) {
      int n = 0;
      for (size_t p2 = text.find("Sentence", from); p2 != std::string::npos && p2 < to; p2 = text.find("Sentence", p2 + 1)) ++n;
      return n;
    };
    const int before = count(0, pos), total = count(0, text.size());
    ASSERT_GT(total, 20);
    EXPECT_NEAR((double)before / total, s.depth, 1.0 / total + 1e-12) << "sample " << i;
  }
}

TEST(EvalTasks, CommonWordsAppearMostOften) {
  auto tok = byte_tokenizer();
  eval_corpus c = synthetic_corpus(9);
  task_params p;
  p.task = "cwe";
  p.context = 3000;
  eval_sample s = eval_make_sample(p, 0, c, *tok, nullptr);
  std::string text = tok->decode(s.prompt);
  auto count = [&](const std::string& w) {
    int n = 0;
    for (size_t pos = text.find(". " + w + "\n"); pos != std::string::npos; pos = text.find(". " + w + "\n", pos + 1)) ++n;
    return n;
  };
  int least_common = 1 << 30;
  for (const auto& r : s.refs) least_common = std::min(least_common, count(r));
  EXPECT_GE(least_common, 4);
  for (const auto& w : c.nouns)
    if (std::find(s.refs.begin(), s.refs.end(), w) == s.refs.end()) {
      EXPECT_LE(count(w), 3) << w;
    }
}

TEST(EvalTasks, ErrorsAreClear) {
  auto tok = byte_tokenizer();
  eval_corpus c = synthetic_corpus(1);
  task_params p;
  p.task = "nope";
  EXPECT_THROW(eval_make_sample(p, 0, c, *tok, nullptr), error);
  p.task = "cwe";
  p.context = 300;  // the question alone does not leave room for 10 words x 4
  EXPECT_THROW(eval_make_sample(p, 0, c, *tok, nullptr), error);
  eval_corpus empty;
  p.task = "niah_single_essay";
  p.context = 2048;
  EXPECT_THROW(eval_make_sample(p, 0, empty, *tok, nullptr), error);
}

// ---- probe policy ----
TEST(EvalProbe, ReplayMatchesFreshPolicyAndMeasuresReads) {
  const uint64_t seed = 4242;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int n_layer = 2, H = 6, Hk = 2, d = 16;
  const int64_t n = 300;
  const layer_shape shape{H, Hk, d};
  auto kv = test::make_test_kv(rng, dtype::f16, n, Hk, d, 0, test::dist::normal, test::dist::normal);
  auto keys = test::keys_f32(kv);
  for (auto mode : {gqa_mode::per_head, gqa_mode::per_group}) {
    policy_config cfg;
    cfg.name = "oracle";
    cfg.budget.density = 0.25;
    cfg.budget.sinks = 4;
    cfg.budget.window = 8;
    cfg.gqa = mode;
    // Fresh policy fed directly.
    auto fresh = make_policy(cfg);
    fresh->begin(n_layer, shape, n);
    // Probe: keys arrive first with no inner policy (dense prefill), then the policy is installed.
    probe_policy probe;
    probe.begin(n_layer, shape, n);
    for (int l = 0; l < n_layer; ++l) {
      fresh->on_append(l, keys.data(), 0, n - 10);
      probe.on_append(l, keys.data(), 0, n - 10);
    }
    probe.install(make_policy(cfg));
    probe.set_measure_recall(true);
    for (int l = 0; l < n_layer; ++l)
      for (int64_t t = n - 10; t < n; ++t) {
        fresh->on_append(l, keys.data() + t * Hk * d, t, 1);
        probe.on_append(l, keys.data() + t * Hk * d, t, 1);
      }
    auto q = test::random_vec(rng, test::dist::normal, H * d, 2.f);
    double want_rows = 0, want_att = 0;
    for (int l = 0; l < n_layer; ++l) {
      index_lists a, b;
      fresh->select(l, q.data(), kv.view, a);
      probe.select(l, q.data(), kv.view, b);
      ASSERT_EQ(a.count, b.count);
      for (int r = 0; r < a.n_lists(); ++r)
        for (int i = 0; i < a.count[r]; ++i) ASSERT_EQ(a.idx[r * a.stride + i], b.idx[r * b.stride + i]);
      // Brute-force union per KV group.
      const int G = H / Hk;
      for (int hk = 0; hk < Hk; ++hk) {
        std::set<int32_t> u;
        for (int h = hk * G; h < (hk + 1) * G; ++h) {
          int r = a.per_group ? hk : h;
          for (int i = 0; i < a.count[r]; ++i) u.insert(a.idx[r * a.stride + i]);
        }
        want_rows += (double)u.size();
      }
      for (int h = 0; h < H; ++h) want_att += a.count[a.per_group ? h / G : h] / (double)n / H;
      // Recall in float64 against the kept fp32 keys: mass = sum of softmax weights of the list; the
      // oracle keeps the 63 middle keys of largest q.k besides 4 sinks and 8 recent ones, so per head
      // it holds the 32 heaviest keys (up to fp32 rounding of near-ties in its scores).
      for (int h = 0; h < H; ++h) {
        const int r = a.per_group ? h / G : h;
        std::vector<double> s(n);
        double mx = -1e300;
        for (int64_t t = 0; t < n; ++t) {
          double x = 0;
          for (int j = 0; j < d; ++j) x += (double)q[h * d + j] * keys[(t * Hk + h / G) * d + j];
          s[t] = x / std::sqrt((double)d);
          mx = std::max(mx, s[t]);
        }
        double z = 0, m = 0;
        for (int64_t t = 0; t < n; ++t) z += std::exp(s[t] - mx);
        for (int i = 0; i < a.count[r]; ++i) m += std::exp(s[a.idx[r * a.stride + i]] - mx) / z;
        EXPECT_NEAR(probe.stats().mass_recall[l * H + h], m, 1e-9);
        // Top-32-in-budget overlap: listed keys among the 32 of largest score (no ties in normal data).
        std::vector<double> sorted = s;
        std::sort(sorted.begin(), sorted.end(), std::greater<double>());
        int64_t hit = 0;
        for (int i = 0; i < a.count[r]; ++i) hit += s[a.idx[r * a.stride + i]] >= sorted[31] ? 1 : 0;
        EXPECT_NEAR(probe.stats().top_overlap[l * H + h], hit / 32.0, 1e-12);
        if (mode == gqa_mode::per_head) {
          EXPECT_GE(probe.stats().top_overlap[l * H + h], 31.0 / 32);
        }
      }
    }
    const auto& st = probe.stats();
    EXPECT_EQ(st.steps, n_layer);
    EXPECT_NEAR(st.kv_read_frac, want_rows / ((double)n * Hk), 1e-12);
    EXPECT_NEAR(st.attended_frac, want_att, 1e-12);
    EXPECT_NEAR(st.kv_read_bytes, want_rows * d * 2 * 2, 1e-9);
    // Selector reads: the oracle has no auxiliary state and scans all of K (fp16) every step.
    EXPECT_NEAR(st.select_read_bytes, (double)n_layer * n * Hk * d * 2, 1e-9);
    EXPECT_NEAR(st.dense_bytes, (double)n_layer * n * Hk * d * 2 * 2, 1e-9);
    // Truncation drops state: after truncate + re-append the selections are unchanged.
    probe.truncate(n - 5);
    for (int l = 0; l < n_layer; ++l)
      for (int64_t t = n - 5; t < n; ++t) probe.on_append(l, keys.data() + t * Hk * d, t, 1);
    index_lists a, b;
    fresh->select(0, q.data(), kv.view, a);
    probe.select(0, q.data(), kv.view, b);
    EXPECT_EQ(a.count, b.count);
    EXPECT_EQ(a.idx, b.idx);
  }
}

// --dense-layers: the listed layers attend every token under any inner policy, the others keep the
// policy's lists; a fork inherits the layers.
TEST(EvalProbe, DenseLayersAttendEveryToken) {
  std::mt19937_64 rng(4343);
  const int n_layer = 3, H = 6, Hk = 2, d = 16;
  const int64_t n = 200;
  const layer_shape shape{H, Hk, d};
  auto kv = test::make_test_kv(rng, dtype::f16, n, Hk, d, 0, test::dist::normal, test::dist::normal);
  auto keys = test::keys_f32(kv);
  policy_config cfg;
  cfg.name = "oracle";
  cfg.budget = {0.25, 0, 4, 8};
  probe_policy probe;
  probe.begin(n_layer, shape, n);
  probe.set_dense_layers({1});
  for (int l = 0; l < n_layer; ++l) probe.on_append(l, keys.data(), 0, n);
  probe.install(make_policy(cfg));
  auto fork = probe_policy::fork(probe, make_policy(cfg), 4);
  const auto q = test::random_vec(rng, test::dist::normal, H * d, 2.f);
  for (probe_policy* p : {&probe, fork.get()})
    for (int l = 0; l < n_layer; ++l) {
      index_lists lists;
      p->select(l, q.data(), kv.view, lists);
      ASSERT_EQ(lists.n_lists(), H);
      for (int r = 0; r < H; ++r) {
        if (l != 1) {
          EXPECT_EQ(lists.count[r], 50) << "layer " << l;  // the oracle's budget: 1/4 of 200
          continue;
        }
        ASSERT_EQ(lists.count[r], n);
        for (int64_t t = 0; t < n; ++t) EXPECT_EQ(lists.idx[r * lists.stride + t], t);
      }
    }
  // Attended share: layers 0 and 2 at 1/4, layer 1 at 1.
  EXPECT_NEAR(probe.stats().attended_frac / probe.stats().steps, (0.25 + 1 + 0.25) / 3, 1e-12);
}

// A probe forked at the prefix (one branch of a branch decoder) behaves like a probe that saw every
// key: same selections, same reads, same recall; and it refuses to truncate before its fork.
TEST(EvalProbe, ForkSharesThePrefixAndMatchesAWholeProbe) {
  const uint64_t seed = 4343;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int n_layer = 2, H = 6, Hk = 2, d = 16;
  const int64_t n = 200, fork_at = 180;
  const layer_shape shape{H, Hk, d};
  auto kv = test::make_test_kv(rng, dtype::f16, n, Hk, d, 0, test::dist::normal, test::dist::normal);
  auto keys = test::keys_f32(kv);
  policy_config cfg;
  cfg.name = "oracle";
  cfg.budget.density = 0.2;
  cfg.budget.sinks = 4;
  cfg.budget.window = 4;
  probe_policy base, whole;
  base.begin(n_layer, shape, n);
  whole.begin(n_layer, shape, n);
  for (int l = 0; l < n_layer; ++l) {
    base.on_append(l, keys.data(), 0, fork_at);
    whole.on_append(l, keys.data(), 0, fork_at);
  }
  auto br = probe_policy::fork(base, make_policy(cfg), n - fork_at);
  whole.install(make_policy(cfg));
  br->set_measure_recall(true);
  whole.set_measure_recall(true);
  for (int l = 0; l < n_layer; ++l)
    for (int64_t t = fork_at; t < n; ++t) {
      br->on_append(l, keys.data() + t * Hk * d, t, 1);
      whole.on_append(l, keys.data() + t * Hk * d, t, 1);
    }
  auto q = test::random_vec(rng, test::dist::normal, H * d, 2.f);
  for (int l = 0; l < n_layer; ++l) {
    index_lists a, b;
    whole.select(l, q.data(), kv.view, a);
    br->select(l, q.data(), kv.view, b);
    EXPECT_EQ(a.count, b.count);
    EXPECT_EQ(a.idx, b.idx);
  }
  EXPECT_EQ(br->stats().kv_read_bytes, whole.stats().kv_read_bytes);
  EXPECT_EQ(br->stats().top_overlap, whole.stats().top_overlap);
  EXPECT_EQ(br->stats().mass_recall, whole.stats().mass_recall);
  EXPECT_EQ(base.n_tok(0), fork_at) << "the base is not touched by its branches";
  EXPECT_THROW(br->truncate(fork_at - 1), error);
  EXPECT_THROW(probe_policy::fork(*br, nullptr, 4), error) << "no fork of a fork";
}

// ---- reports ----
// Shards of one grid pool into what one run over all samples reports; overlapping samples: the later wins.
TEST(EvalReport, MergePoolsDisjointShardsAndReplacesOverlaps) {
  const std::vector<double> scores = {1, 0, 1, 0.5, 0, 0, 1};  // samples 0..6 of one setting
  const std::vector<double> logppl = {3.0, 3.2, 2.9, 3.1, 3.3, 3.0, 2.8};
  auto shard = [&](int first, int n, const std::string& metric) {
    eval_record r;
    r.task = metric == "ppl" ? "ppl" : "passkey";
    r.method = "hash";
    r.gqa = "head";
    r.density = 1.0 / 16;
    r.context = 4096;
    r.metric = metric;
    r.first_sample = first;
    r.samples = n;
    const auto& v = metric == "ppl" ? logppl : scores;
    double m = 0, ss = 0;
    for (int i = first; i < first + n; ++i) m += v[i] / n;
    for (int i = first; i < first + n; ++i) ss += (v[i] - m) * (v[i] - m);
    r.value = metric == "ppl" ? std::exp(m) : m;
    r.stderr_ = n < 2 ? 0 : std::sqrt(ss / (n - 1) / n);  // ppl: of the mean log-perplexity
    r.attended_frac = 0.0625 + 0.001 * first;
    r.seconds = 10.0 * n;
    return r;
  };
  for (const char* metric : {"score", "ppl"}) {
    SCOPED_TRACE(metric);
    const eval_record whole = shard(0, 7, metric);
    // Three shards, out of order, one of a single sample.
    auto merged = eval_records_merge({{shard(3, 3, metric)}, {shard(0, 3, metric)}, {shard(6, 1, metric)}});
    ASSERT_EQ(merged.size(), 1u);
    const eval_record& m = merged[0];
    EXPECT_EQ(m.samples, 7);
    EXPECT_EQ(m.first_sample, 0);
    EXPECT_NEAR(m.value, whole.value, 1e-12);
    EXPECT_NEAR(m.stderr_, whole.stderr_, 1e-12);
    // The pooled record's interval is that of the whole (Wilson for the score, log space for ppl).
    const eval_ci want = eval_interval(metric, whole.value, whole.stderr_, 7);
    ASSERT_TRUE(m.ci.valid());
    EXPECT_NEAR(m.ci.lo, want.lo, 1e-12);
    EXPECT_NEAR(m.ci.hi, want.hi, 1e-12);
    EXPECT_NEAR(m.seconds, 70.0, 1e-12);
    EXPECT_NEAR(m.attended_frac, (3 * 0.0655 + 3 * 0.0625 + 1 * 0.0685) / 7, 1e-12);
    // A re-run of samples 0..2 replaces what was merged before it.
    auto rerun = eval_records_merge({{shard(0, 3, metric), shard(3, 3, metric)}, {shard(0, 3, metric)}});
    ASSERT_EQ(rerun.size(), 1u);
    EXPECT_EQ(rerun[0].samples, 3);
    EXPECT_NEAR(rerun[0].value, shard(0, 3, metric).value, 1e-12);
  }
  // Different settings stay apart; averages are dropped.
  eval_record a = shard(0, 3, "score"), b = a, avg = a;
  b.density = 1.0 / 32;
  avg.task = "average";
  EXPECT_EQ(eval_records_merge({{a, b, avg}}).size(), 2u);
}

TEST(EvalReport, JsonRoundTripMarkdownAndAverage) {
  std::vector<eval_record> recs;
  for (const char* task : {"passkey", "vt"})
    for (const char* m : {"dense", "hash"})
      for (double d : {1.0 / 16, 1.0 / 32}) {
        if (std::string(m) == "dense" && d != 1.0 / 16) continue;
        eval_record r;
        r.task = task;
        r.method = m;
        r.gqa = std::string(m) == "hash" ? "head" : "";
        r.density = std::string(m) == "dense" ? 1.0 : d;
        r.context = 4096;
        r.samples = 50;
        r.metric = "score";
        r.value = std::string(task) == "vt" ? 0.5 : (std::string(m) == "dense" ? 0.9 : 0.8);
        r.attended_frac = r.density;
        r.kv_read_frac = r.density * 1.5;
        recs.push_back(r);
      }
  auto all = eval_add_average(recs);
  int n_avg = 0;
  for (const auto& r : all)
    if (r.task == "average") {
      ++n_avg;
      EXPECT_NEAR(r.value, r.method == "dense" ? 0.7 : 0.65, 1e-12);
      // Wilson over the 100 answers of its two tasks: 0.7 -> [0.6042, 0.7811], 0.65 -> [0.5525, 0.7364].
      ASSERT_TRUE(r.ci.valid());
      EXPECT_NEAR(r.ci.lo, r.method == "dense" ? 0.6041514536665332 : 0.5525444329688796, 1e-12);
      EXPECT_NEAR(r.ci.hi, r.method == "dense" ? 0.7810511470506724 : 0.7363575175690247, 1e-12);
    }
  EXPECT_EQ(n_avg, 3);
  std::string js = eval_records_json(all, "{\"command\":\"x\"}");
  auto back = eval_records_from_json(js);
  ASSERT_EQ(back.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(back[i].task, all[i].task);
    EXPECT_EQ(back[i].label(), all[i].label());
    EXPECT_DOUBLE_EQ(back[i].density, all[i].density);
    EXPECT_DOUBLE_EQ(back[i].value, all[i].value);
    EXPECT_EQ(back[i].ci.valid(), all[i].ci.valid());
    EXPECT_DOUBLE_EQ(back[i].ci.lo, all[i].ci.lo);
    EXPECT_DOUBLE_EQ(back[i].ci.hi, all[i].ci.hi);
  }
  std::string md = eval_records_markdown(all);
  EXPECT_NE(md.find("### passkey, context 4096, score (%)"), std::string::npos);
  EXPECT_NE(md.find("| hash/head | 80.0 | 80.0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| dense | 90.0 | 90.0 |"), std::string::npos) << md;
  // Records with an interval print it after the value.
  EXPECT_NE(md.find("| dense | 70.0 [60.4, 78.1] | 70.0 [60.4, 78.1] |"), std::string::npos) << md;
  EXPECT_NE(md.find("KV read per decode step"), std::string::npos);
  EXPECT_THROW(eval_records_from_json("{\"records\": [{\"task\": 1}]}"), error);
  EXPECT_THROW(eval_records_from_json("not json"), error);
}

// Wilson 95% intervals, hand-computed (z = 1.959964): 3 of 6 -> [0.18762, 0.81238]; 0 of 6 -> [0, 0.39033];
// 1 of 1 -> [0.20655, 1]; 5 of 6 -> [0.43650, 0.96995]. Mean and standard error of {1, 2, 3, 4}: 2.5 and
// sqrt((5/3) / 4) = 0.645497, interval 2.5 -+ 1.959964 x 0.645497 = [1.234849, 3.765151]. Perplexity of
// three windows of mean log-perplexity 3.0, 3.2, 2.9: exp(3.03333) = 20.76634, standard error 0.0881917,
// interval exp(3.03333 -+ 1.959964 x 0.0881917) = [17.46992, 24.68476].
TEST(EvalMath, WilsonAndStandardErrorIntervals) {
  auto near = [](eval_ci c, double lo, double hi) {
    ASSERT_TRUE(c.valid());
    EXPECT_NEAR(c.lo, lo, 1e-9);
    EXPECT_NEAR(c.hi, hi, 1e-9);
  };
  near(eval_wilson(0.5, 6), 0.18761630648265054, 0.8123836935173494);
  near(eval_wilson(0.0, 6), 0.0, 0.39033428790216534);
  near(eval_wilson(1.0, 1), 0.20654931437723745, 1.0);
  near(eval_wilson(5.0 / 6, 6), 0.43649717781352987, 0.9699466302516935);
  near(eval_interval("score", 0.5, 0.0, 6), 0.18761630648265054, 0.8123836935173494);  // stderr unused
  EXPECT_THROW(eval_wilson(0.5, 0), error);
  EXPECT_THROW(eval_wilson(1.5, 4), error);

  const mean_stderr ms = eval_mean_stderr({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(ms.mean, 2.5);
  EXPECT_NEAR(ms.stderr_, 0.6454972243679028, 1e-15);
  near(eval_interval("kl", ms.mean, ms.stderr_, 4), 1.23484868811834, 3.76515131188166);
  EXPECT_EQ(eval_mean_stderr({7}).stderr_, 0.0);
  EXPECT_FALSE(eval_interval("kl", 7, 0, 1).valid());  // one sample: no spread, no interval
  EXPECT_THROW(eval_mean_stderr({}), error);

  const mean_stderr lp = eval_mean_stderr({3.0, 3.2, 2.9});
  EXPECT_NEAR(lp.stderr_, 0.08819171036881977, 1e-15);
  near(eval_interval("ppl", std::exp(lp.mean), lp.stderr_, 3), 17.469923710938822, 24.68475654984071);
}

// Hand-computed: ref logits (0, ln 2, 0) + 3 -> p = (1/4, 1/2, 1/4); q logits (0, 0, ln 6) -> q = (1/8, 1/8, 3/4).
// KL(p || q) = 1/4 ln 2 + 1/2 ln 4 + 1/4 ln(1/3) = 1.25 ln 2 - 0.25 ln 3; KL(p || p) = 0 exactly.
// Perplexity of the targets 1 under p and 2 under q: exp((ln 2 + ln 4/3) / 2) = sqrt(8/3);
// of any target under 1000 equal logits: 1000. The logits are fp32 (ln 2 rounded): tolerance 1e-7.
TEST(EvalMath, PerplexityAndKlOnHandComputedLogits) {
  const float ln2 = (float)std::log(2.0), ln6 = (float)std::log(6.0);
  const float ref_logits[3] = {3.f, 3.f + ln2, 3.f}, q_logits[3] = {0.f, 0.f, ln6};
  eval_ref_dist ref;
  ref.set(ref_logits, 3);
  std::vector<double> lq;
  eval_log_softmax(q_logits, 3, lq);
  ASSERT_EQ(lq.size(), 3u);
  const double want_p[3] = {0.25, 0.5, 0.25}, want_q[3] = {0.125, 0.125, 0.75};
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(ref.p[i], want_p[i], 1e-7) << "p[" << i << "]";
    EXPECT_NEAR(std::exp(lq[i]), want_q[i], 1e-7) << "q[" << i << "]";
  }
  EXPECT_NEAR(eval_kl(ref, lq), 1.25 * std::log(2.0) - 0.25 * std::log(3.0), 1e-7);
  EXPECT_EQ(eval_kl(ref, ref.lp), 0.0);
  const double nll = -ref.lp[1] - lq[2];
  EXPECT_NEAR(eval_perplexity(nll, 2), std::sqrt(8.0 / 3.0), 1e-7);
  const std::vector<float> flat(1000, 0.5f);
  std::vector<double> lu;
  eval_log_softmax(flat.data(), (int64_t)flat.size(), lu);
  EXPECT_NEAR(eval_perplexity(-lu[17] - lu[999], 2), 1000.0, 1e-9);
  EXPECT_THROW(eval_perplexity(1.0, 0), error);
  EXPECT_THROW(eval_perplexity(-0.5, 1), error);
}

// KL below zero beyond rounding is a bug (log-probabilities that do not sum to 1 here): it throws
// instead of being clamped to 0; rounding-sized negatives (within kl_rounding_eps) read 0.
TEST(EvalMath, NegativeKlIsAnErrorAndRoundingIsZero) {
  const float logits[4] = {1.f, -2.f, 0.5f, 3.f};
  eval_ref_dist ref;
  ref.set(logits, 4);
  std::vector<double> shifted = ref.lp;
  for (double& x : shifted) x += 0.01;  // not normalized: "KL" = -0.01
  EXPECT_THROW(eval_kl(ref, shifted), error);
  for (double& x : shifted) x -= 0.01 - 0.1 * kl_rounding_eps;  // -1e-10: rounding
  EXPECT_EQ(eval_kl(ref, shifted), 0.0);
  EXPECT_THROW(eval_kl(ref, std::vector<double>(3, -1.0)), error);  // another vocabulary size
}

}  // namespace
}  // namespace hashattn
