// The runtime on the default model (SmolLM2-135M-Instruct Q4_1) against the goldens of
// scripts/make-model-goldens.py (token ids stored, so the tokenizer is not involved) from two
// references: a float64 numpy forward pass (the model's exact math: the oracle) and llama.cpp.
//   - logits of every position of 5 prompts (3 short, 2 of 2,100-2,300 tokens), through the batched
//     prefill path and, for the last 24 positions, through the decode path (token by token):
//     vs float64: top-1 on >= 99% of positions, disagreements only on near-ties (< 0.1), |diff|
//     <= 0.1 on its top-10 ids; vs llama.cpp: top-1 on >= 94% of positions, and wherever we differ
//     from llama.cpp it differs from float64 too (or float64 has a near-tie), |diff| <= 4.5 on its
//     top-20 ids and on full rows;
//   - 64-token greedy continuations of 3 prompts identical to float64's; against llama.cpp's,
//     identical or diverging only at a step where llama.cpp's own top-1/top-2 margin is < 1.
// Why llama.cpp cannot be matched tighter: it quantizes activations to 8 bits in every quantized
// mat-mul and rounds q and the attention weights to fp16; this model has outlier activations of
// ~2.5e4 beside values of ~1, and an 8-bit block holding one rounds its neighbours to zero. The
// goldens' JSON records llama.cpp's own agreement with the float64 oracle (about 95% top-1).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/model-files.h"
#include "core/half.h"
#include "hashattn/error.h"
#include "hashattn/model.h"

namespace hashattn {
namespace {

// Against the float64 oracle: our prefill (fp32 activations, sgemm) and decode (16-bit integer
// activations) both track the model's exact math; the bounds leave ~3x room over what is observed
// (printed as max_diff lines). K/V are rounded to fp16 in our cache, not in the oracle.
constexpr double kMaxDiffF64 = 0.1;
constexpr double kNearTieF64 = 0.1;   // a top-1 disagreement must be a near-tie of the oracle
constexpr double kTop1F64 = 0.99;
// Against llama.cpp: its 8-bit activations move logits by up to 3.8 from the exact values on this
// model (KJV prompt, position 1576) and its top-1 agrees with the oracle on 95.6% of positions
// (recorded in the goldens' JSON), so agreement with it is bounded by its noise, not ours. Where
// our top-1 differs from llama.cpp's, llama.cpp's must differ from the oracle's (or the oracle
// must have a near-tie there): the disagreement is then llama.cpp's.
constexpr double kMaxDiffLlama = 4.5;
constexpr double kTop1Llama = 0.94;
// A greedy divergence from llama.cpp is accepted where llama.cpp's top-1/top-2 margin is below
// this; a divergence from the float64 oracle only where the oracle's margin is below kGreedyTieF64.
constexpr double kGreedyTieLlama = 1.0;
constexpr double kGreedyTieF64 = 0.03;

struct topk {
  int K = 0;
  std::vector<int32_t> ids;  // [n_pos, K]
  std::vector<float> vals;   // [n_pos, K]
};

struct golden_prompt {
  std::string name;
  std::vector<int32_t> tokens;
  std::vector<int64_t> full_rows;
  topk llama, f64;
  std::vector<std::vector<float>> full;  // llama.cpp, per full row
};

struct goldens {
  nlohmann::json meta;
  int64_t n_vocab = 0;
  std::vector<golden_prompt> prompts;
};

void read_topk(std::ifstream& bf, size_t n, int K, topk& t) {
  t.K = K;
  t.ids.resize(n * K);
  t.vals.resize(n * K);
  for (size_t i = 0; i < n; ++i) {
    bf.read(reinterpret_cast<char*>(t.ids.data() + i * K), 4 * K);
    bf.read(reinterpret_cast<char*>(t.vals.data() + i * K), 4 * K);
  }
}

const goldens& load_goldens() {
  static goldens g = [] {
    goldens g;
    const std::string dir = std::string(HASHATTN_SOURCE_DIR) + "/tests/data/";
    std::ifstream jf(dir + "model-goldens.json");
    if (!jf) throw std::runtime_error("missing tests/data/model-goldens.json");
    g.meta = nlohmann::json::parse(jf);
    g.n_vocab = g.meta["model"]["n_vocab"];
    std::ifstream bf(dir + "model-goldens-logits.bin", std::ios::binary);
    if (!bf) throw std::runtime_error("missing tests/data/model-goldens-logits.bin");
    for (const auto& p : g.meta["prompts"]) {
      golden_prompt gp;
      gp.name = p["name"];
      gp.tokens = p["tokens"].get<std::vector<int32_t>>();
      gp.full_rows = p["full_rows"].get<std::vector<int64_t>>();
      const size_t n = gp.tokens.size();
      read_topk(bf, n, g.meta["top_k"], gp.llama);
      read_topk(bf, n, g.meta["top_k_f64"], gp.f64);
      for (size_t r = 0; r < gp.full_rows.size(); ++r) {
        std::vector<uint16_t> h(g.n_vocab);
        bf.read(reinterpret_cast<char*>(h.data()), 2 * g.n_vocab);
        std::vector<float> f(g.n_vocab);
        for (int64_t j = 0; j < g.n_vocab; ++j) f[j] = fp16_to_fp32(h[j]);
        gp.full.push_back(std::move(f));
      }
      if (!bf) throw std::runtime_error("tests/data/model-goldens-logits.bin is truncated");
      g.prompts.push_back(std::move(gp));
    }
    char extra;
    if (bf.read(&extra, 1)) throw std::runtime_error("tests/data/model-goldens-logits.bin has trailing bytes");
    return g;
  }();
  return g;
}

// The model is loaded once, by the first test that runs, in SetUp (not SetUpTestSuite): a missing file
// or a loader error fails every test of the suite instead of skipping it.
class llama_model : public ::testing::Test {
 protected:
  void SetUp() override {
    if (m_) return;
    const std::string path = test::model_path();
    ASSERT_NO_FATAL_FAILURE(test::require_file(path));
    const auto& g = load_goldens();
    ASSERT_EQ((int64_t)std::filesystem::file_size(path), g.meta["model"]["size"].get<int64_t>())
        << "the goldens were made from another file (" << g.meta["model"]["file"] << ")";
    m_ = model::load(path).release();
  }
  static void TearDownTestSuite() {
    delete m_;
    m_ = nullptr;
  }
  static model* m_;
};
model* llama_model::m_ = nullptr;

struct agreement {
  int64_t positions = 0, top1_same = 0;
  double max_diff = 0, max_full_diff = 0, worst_tie_gap = 0;
  void add(const agreement& a) {
    positions += a.positions;
    top1_same += a.top1_same;
    max_diff = std::max(max_diff, a.max_diff);
    max_full_diff = std::max(max_full_diff, a.max_full_diff);
    worst_tie_gap = std::max(worst_tie_gap, a.worst_tie_gap);
  }
};

// The reference's gap between its top-1 and token `id` at position i (infinite if not in its top-K).
double ref_gap(const topk& ref, int64_t i, int64_t id) {
  const int32_t* ids = ref.ids.data() + i * ref.K;
  const float* vals = ref.vals.data() + i * ref.K;
  for (int k = 0; k < ref.K; ++k)
    if (ids[k] == id) return (double)vals[0] - vals[k];
  return INFINITY;
}

// Compares our logits for position i with a reference's top-K there. near_tie < 0: a top-1
// disagreement is checked by the caller instead.
int64_t compare_topk(const std::string& what, const topk& ref, int64_t i, const float* ours, int64_t n_vocab,
                     double max_diff, double near_tie, agreement& a) {
  const int32_t* ids = ref.ids.data() + i * ref.K;
  const float* vals = ref.vals.data() + i * ref.K;
  int64_t best = 0;
  for (int64_t j = 1; j < n_vocab; ++j)
    if (ours[j] > ours[best]) best = j;
  a.positions++;
  if (best == ids[0]) {
    a.top1_same++;
  } else {
    const double gap = ref_gap(ref, i, best);
    a.worst_tie_gap = std::max(a.worst_tie_gap, gap);
    if (near_tie >= 0) {
      EXPECT_LT(gap, near_tie) << what << " position " << i << ": our top-1 " << best << ", the reference's "
                               << ids[0] << " (not a near-tie)";
    }
  }
  for (int k = 0; k < ref.K; ++k) {
    const double d = std::fabs((double)ours[ids[k]] - vals[k]);
    a.max_diff = std::max(a.max_diff, d);
    if (!(d <= max_diff)) {
      ADD_FAILURE() << what << " position " << i << " id " << ids[k] << ": ours " << ours[ids[k]]
                    << ", reference " << vals[k];
      break;
    }
  }
  return best;
}

void compare_row(const goldens& g, const golden_prompt& gp, int64_t i, const float* ours, agreement& af,
                 agreement& al) {
  const int64_t best = compare_topk(gp.name + " vs float64", gp.f64, i, ours, g.n_vocab, kMaxDiffF64, kNearTieF64, af);
  compare_topk(gp.name + " vs llama.cpp", gp.llama, i, ours, g.n_vocab, kMaxDiffLlama, -1, al);
  const int32_t llama_top = gp.llama.ids[i * gp.llama.K];
  const int32_t f64_top = gp.f64.ids[i * gp.f64.K];
  if (best != llama_top) {
    EXPECT_TRUE(llama_top != f64_top || ref_gap(gp.f64, i, best) < kNearTieF64)
        << gp.name << " position " << i << ": our top-1 " << best << " differs from llama.cpp's " << llama_top
        << ", which is also the float64 oracle's (no near-tie there)";
  }
  for (size_t r = 0; r < gp.full_rows.size(); ++r) {
    if (gp.full_rows[r] != i) continue;
    for (int64_t j = 0; j < g.n_vocab; ++j) {
      // The llama.cpp row is stored as fp16 (relative rounding 2^-11).
      const double d = std::fabs((double)ours[j] - gp.full[r][j]) - std::fabs(gp.full[r][j]) * 4.9e-4;
      al.max_full_diff = std::max(al.max_full_diff, d);
      ASSERT_LE(d, kMaxDiffLlama) << gp.name << " full row " << i << " id " << j;
    }
  }
}

void print_agreement(const char* label, const std::string& name, int64_t n, const agreement& f,
                     const agreement& l) {
  std::printf("[ model    ] %-8s %-17s n=%5lld | float64: top-1 %lld/%lld, max_diff %.4f, tie gap %.4f | "
              "llama.cpp: top-1 %lld/%lld, max_diff %.4f, full-row %.4f, gap %.3f\n",
              label, name.c_str(), (long long)n, (long long)f.top1_same, (long long)f.positions, f.max_diff,
              f.worst_tie_gap, (long long)l.top1_same, (long long)l.positions, l.max_diff, l.max_full_diff,
              l.worst_tie_gap);
}

TEST_F(llama_model, logits_agree_with_float64_and_llama_cpp) {
  const auto& g = load_goldens();
  agreement pre_f, pre_l, dec_f, dec_l;
  for (const auto& gp : g.prompts) {
    SCOPED_TRACE(gp.name);
    const int64_t n = (int64_t)gp.tokens.size();
    agreement f, l;
    {  // Prefill path: every position, in calls of 256 tokens (the cache grows between calls).
      session_params sp;
      sp.n_ctx = 4096;
      sp.n_threads = 2;
      session s(*m_, sp);
      for (int64_t c = 0; c < n; c += 256) {
        const int64_t len = std::min<int64_t>(256, n - c);
        s.eval(gp.tokens.data() + c, len, true);
        for (int64_t i = 0; i < len; ++i) compare_row(g, gp, c + i, s.logits_at(i), f, l);
      }
    }
    print_agreement("prefill", gp.name, n, f, l);
    pre_f.add(f);
    pre_l.add(l);
    agreement df, dl;
    {  // Decode path: prefill all but the last tokens, then one token at a time.
      session_params sp;
      sp.n_ctx = 4096;
      sp.n_threads = 2;
      session s(*m_, sp);
      const int64_t n_dec = std::min<int64_t>(n - 1, 24);
      s.eval(gp.tokens.data(), n - n_dec);
      for (int64_t i = n - n_dec; i < n; ++i) compare_row(g, gp, i, s.eval(gp.tokens.data() + i, 1), df, dl);
    }
    print_agreement("decode", gp.name, n, df, dl);
    dec_f.add(df);
    dec_l.add(dl);
  }
  print_agreement("prefill", "ALL", pre_f.positions, pre_f, pre_l);
  print_agreement("decode", "ALL", dec_f.positions, dec_f, dec_l);
  EXPECT_GE(pre_f.top1_same, kTop1F64 * pre_f.positions);
  EXPECT_GE(dec_f.top1_same, kTop1F64 * dec_f.positions);
  EXPECT_GE(pre_l.top1_same, kTop1Llama * pre_l.positions);
  EXPECT_GE(dec_l.top1_same, kTop1Llama * dec_l.positions);
}

// Greedy continuation from the prompt; stops at the first token that differs from `want`.
std::vector<int32_t> greedy_run(const model& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& want,
                                std::vector<double>* our_margins) {
  session_params sp;
  sp.n_ctx = 1024;
  sp.n_threads = 2;
  session s(m, sp);
  sampler greedy(sampler_params{});
  const float* lg = s.eval(prompt.data(), (int64_t)prompt.size());
  std::vector<int32_t> got;
  for (size_t i = 0; i < want.size(); ++i) {
    const int32_t t = greedy.sample(lg, m.hparams().n_vocab);
    if (our_margins) {
      float second = -INFINITY;
      for (int64_t j = 0; j < m.hparams().n_vocab; ++j)
        if (j != t) second = std::max(second, lg[j]);
      our_margins->push_back(lg[t] - second);
    }
    got.push_back(t);
    if (t != want[i]) break;
    lg = s.eval(&t, 1);
  }
  return got;
}

TEST_F(llama_model, greedy_continuations_match_float64_and_llama_cpp) {
  const auto& g = load_goldens();
  for (size_t r = 0; r < g.meta["greedy"].size(); ++r) {
    const auto& rl = g.meta["greedy"][r];
    const auto& rf = g.meta["greedy_f64"][r];
    const std::string name = rl["name"];
    SCOPED_TRACE(name);
    const auto prompt = rl["prompt"].get<std::vector<int32_t>>();
    ASSERT_EQ(prompt, rf["prompt"].get<std::vector<int32_t>>());
    // The float64 oracle's continuation: identical, all 64 tokens (unless the oracle itself has a
    // near-tie at the divergence, within our distance to it).
    const auto want_f = rf["tokens"].get<std::vector<int32_t>>();
    const auto margins_f = rf["margins"].get<std::vector<double>>();
    const auto got_f = greedy_run(*m_, prompt, want_f, nullptr);
    size_t same_f = 0;
    while (same_f < got_f.size() && same_f < want_f.size() && got_f[same_f] == want_f[same_f]) ++same_f;
    if (same_f < want_f.size()) {
      EXPECT_LT(margins_f[same_f], kGreedyTieF64)
          << name << ": diverges from the float64 greedy continuation at step " << same_f << " (oracle margin "
          << margins_f[same_f] << ")";
    }
    // llama.cpp's: identical, or diverging only where llama.cpp's own top-1/top-2 margin is within
    // its activation-rounding noise (and then we must agree with the oracle there, checked above).
    const auto want_l = rl["tokens"].get<std::vector<int32_t>>();
    const auto margins_l = rl["margins"].get<std::vector<double>>();
    std::vector<double> ours;
    const auto got_l = greedy_run(*m_, prompt, want_l, &ours);
    size_t same = 0;
    while (same < got_l.size() && same < want_l.size() && got_l[same] == want_l[same]) ++same;
    if (same < want_l.size()) {
      EXPECT_LT(margins_l[same], kGreedyTieLlama)
          << name << ": diverges from llama.cpp at step " << same << " where its margin is "
          << margins_l[same] << " (not a near-tie)";
      std::printf("[ model    ] greedy %-14s float64: %zu/%zu identical | llama.cpp: first %zu/%zu identical, "
                  "then ours %d (margin %.3f) vs llama.cpp %d (its margin %.3f)\n",
                  name.c_str(), same_f, want_f.size(), same, want_l.size(), got_l[same], ours[same], want_l[same],
                  margins_l[same]);
    } else {
      std::printf("[ model    ] greedy %-14s float64: %zu/%zu identical | llama.cpp: %zu/%zu identical\n",
                  name.c_str(), same_f, want_f.size(), same, want_l.size());
    }
  }
}

TEST_F(llama_model, hyperparameters_from_metadata) {
  const auto& hp = m_->hparams();
  EXPECT_EQ(hp.arch, "llama");
  EXPECT_EQ(hp.n_layer, 30);
  EXPECT_EQ(hp.n_embd, 576);
  EXPECT_EQ(hp.n_head, 9);
  EXPECT_EQ(hp.n_head_kv, 3);
  EXPECT_EQ(hp.head_dim, 64);
  EXPECT_EQ(hp.n_ff, 1536);
  EXPECT_EQ(hp.n_vocab, 49152);
  EXPECT_EQ(hp.n_ctx_train, 8192);
  EXPECT_EQ(hp.rope_dims, 64);
  EXPECT_FLOAT_EQ(hp.rope_base, 100000.f);
  EXPECT_FLOAT_EQ(hp.rms_eps, 1e-5f);
  EXPECT_TRUE(hp.tied_embeddings);
  EXPECT_FALSE(hp.qkv_bias);
  EXPECT_EQ(hp.rope, rope_layout::adjacent);
}

TEST_F(llama_model, context_and_token_errors) {
  session_params sp;
  sp.n_ctx = 8;
  sp.n_threads = 1;
  session s(*m_, sp);
  std::vector<int32_t> t(9, 1);
  EXPECT_THROW(s.eval(t.data(), 9), error);
  EXPECT_EQ(s.n_past(), 0);
  int32_t bad = (int32_t)m_->hparams().n_vocab;
  EXPECT_THROW(s.eval(&bad, 1), error);
  s.eval(t.data(), 8);
  EXPECT_THROW(s.eval(t.data(), 1), error);
  session_params big;
  big.n_ctx = m_->hparams().n_ctx_train + 1;
  EXPECT_THROW(session(*m_, big), error);
}

TEST_F(llama_model, truncate_and_replay_gives_same_logits) {
  session_params sp;
  sp.n_ctx = 256;
  sp.n_threads = 2;
  session s(*m_, sp);
  const auto& gp = load_goldens().prompts.at(1);
  const int64_t n = (int64_t)gp.tokens.size();
  const int64_t V = m_->hparams().n_vocab;
  const float* first = s.eval(gp.tokens.data(), n);
  const std::vector<float> l1(first, first + V);
  s.truncate(0);
  EXPECT_EQ(s.n_past(), 0);
  const float* again = s.eval(gp.tokens.data(), n);
  const std::vector<float> l2(again, again + V);
  EXPECT_EQ(l1, l2) << "replaying the same tokens after truncate(0) must give the same logits";
  s.truncate(n - 1);
  EXPECT_EQ(s.n_past(), n - 1);
  const float* b = s.eval(gp.tokens.data() + n - 1, 1);
  double md = 0;
  for (int64_t j = 0; j < V; ++j) md = std::max(md, (double)std::fabs(l1[j] - b[j]));
  // The last token through prefill (fp32 sgemm) and through decode (16-bit integer mat-vecs):
  // both are within kMaxDiffF64 of the exact values.
  EXPECT_LT(md, 2 * kMaxDiffF64);
}

}  // namespace
}  // namespace hashattn
