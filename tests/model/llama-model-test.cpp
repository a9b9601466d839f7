// Agreement with llama.cpp on the default model (SmolLM2-135M-Instruct Q4_1), from the goldens of
// scripts/make-model-goldens.py (token ids stored, so the tokenizer is not involved):
//   - logits of every position of 5 prompts (3 short, 2 of 2,100-2,300 tokens), through the batched
//     prefill path and, for the last positions, through the decode path (token by token):
//     top-1 agrees on >= 99% of positions, every disagreement is a near-tie in llama.cpp's own
//     logits, and |ours - llama.cpp| <= kMaxLogitDiff on llama.cpp's top-20 ids and on full rows;
//   - 64-token greedy continuations of 3 prompts are identical.
// Why the bound is not tighter: llama.cpp quantizes activations to 8 bits in every quantized
// mat-mul (we do too in decode, but prefill multiplies fp32 activations with dequantized weights),
// and rounds q and the attention probabilities to fp16 in its (non-flash) attention; we keep fp32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/half.h"
#include "hashattn/error.h"
#include "hashattn/model.h"

namespace hashattn {
namespace {

// Max |logit difference| against llama.cpp. Logits of this model span about [-30, 30]; observed
// maxima are recorded in the test output (max_diff lines) and docs; the bound leaves ~2x room.
constexpr double kMaxLogitDiff = 0.75;
// A top-1 disagreement is accepted only where llama.cpp's own top-1 / our top-1 gap is below this.
constexpr double kNearTie = 0.35;

std::string model_path() {
  if (const char* e = std::getenv("HASHATTN_MODEL")) return e;
  return std::string(HASHATTN_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

struct golden_prompt {
  std::string name;
  std::vector<int32_t> tokens;
  std::vector<int64_t> full_rows;
  std::vector<int32_t> top_ids;     // [n_pos, K]
  std::vector<float> top_vals;      // [n_pos, K]
  std::vector<std::vector<float>> full;  // per full row
};

struct goldens {
  nlohmann::json meta;
  int K = 0;
  int64_t n_vocab = 0;
  std::vector<golden_prompt> prompts;
};

const goldens& load_goldens() {
  static goldens g = [] {
    goldens g;
    const std::string dir = std::string(HASHATTN_SOURCE_DIR) + "/tests/data/";
    std::ifstream jf(dir + "model-goldens.json");
    if (!jf) throw std::runtime_error("missing tests/data/model-goldens.json");
    g.meta = nlohmann::json::parse(jf);
    g.K = g.meta["top_k"];
    g.n_vocab = g.meta["model"]["n_vocab"];
    std::ifstream bf(dir + "model-goldens-logits.bin", std::ios::binary);
    if (!bf) throw std::runtime_error("missing tests/data/model-goldens-logits.bin");
    for (const auto& p : g.meta["prompts"]) {
      golden_prompt gp;
      gp.name = p["name"];
      gp.tokens = p["tokens"].get<std::vector<int32_t>>();
      gp.full_rows = p["full_rows"].get<std::vector<int64_t>>();
      const size_t n = gp.tokens.size();
      gp.top_ids.resize(n * g.K);
      gp.top_vals.resize(n * g.K);
      for (size_t i = 0; i < n; ++i) {
        bf.read(reinterpret_cast<char*>(gp.top_ids.data() + i * g.K), 4 * g.K);
        bf.read(reinterpret_cast<char*>(gp.top_vals.data() + i * g.K), 4 * g.K);
      }
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
    return g;
  }();
  return g;
}

class llama_model : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = model_path();
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    ASSERT_TRUE(f.good()) << "model not found: " << path << " (hint: run scripts/setup)";
    const auto& g = load_goldens();
    ASSERT_EQ((int64_t)f.tellg(), g.meta["model"]["size"].get<int64_t>())
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
};

// Compares our logits for position i of prompt gp with the golden.
void compare_row(const goldens& g, const golden_prompt& gp, int64_t i, const float* ours,
                 agreement& a) {
  const int32_t* ids = gp.top_ids.data() + i * g.K;
  const float* vals = gp.top_vals.data() + i * g.K;
  int64_t best = 0;
  for (int64_t j = 1; j < g.n_vocab; ++j)
    if (ours[j] > ours[best]) best = j;
  a.positions++;
  if (best == ids[0]) {
    a.top1_same++;
  } else {
    // llama.cpp's logit for our top-1: from its top-K if present.
    double theirs_for_ours = -INFINITY;
    for (int k = 0; k < g.K; ++k)
      if (ids[k] == best) theirs_for_ours = vals[k];
    const double gap = vals[0] - theirs_for_ours;
    a.worst_tie_gap = std::max(a.worst_tie_gap, gap);
    EXPECT_LT(gap, kNearTie) << gp.name << " position " << i << ": our top-1 " << best
                             << ", llama.cpp's " << ids[0] << " (not a near-tie)";
  }
  for (int k = 0; k < g.K; ++k) {
    const double d = std::fabs((double)ours[ids[k]] - vals[k]);
    a.max_diff = std::max(a.max_diff, d);
    if (!(d <= kMaxLogitDiff)) {
      ADD_FAILURE() << gp.name << " position " << i << " id " << ids[k] << ": ours " << ours[ids[k]]
                    << ", llama.cpp " << vals[k];
      return;
    }
  }
  for (size_t r = 0; r < gp.full_rows.size(); ++r) {
    if (gp.full_rows[r] != i) continue;
    for (int64_t j = 0; j < g.n_vocab; ++j) {
      // The golden row is stored as fp16 (relative rounding 2^-11).
      const double d = std::fabs((double)ours[j] - gp.full[r][j]) - std::fabs(gp.full[r][j]) * 4.9e-4;
      a.max_full_diff = std::max(a.max_full_diff, d);
      ASSERT_LE(d, kMaxLogitDiff) << gp.name << " full row " << i << " id " << j;
    }
  }
}

TEST_F(llama_model, logits_agree_with_llama_cpp_prefill_and_decode) {
  const auto& g = load_goldens();
  agreement total_pre, total_dec;
  for (const auto& gp : g.prompts) {
    SCOPED_TRACE(gp.name);
    const int64_t n = (int64_t)gp.tokens.size();
    // Prefill path: all positions, in calls of 256 tokens (chunks of the cache grow).
    agreement pre;
    {
      session_params sp;
      sp.n_ctx = 4096;
      sp.n_threads = 2;
      session s(*m_, sp);
      for (int64_t c = 0; c < n; c += 256) {
        const int64_t len = std::min<int64_t>(256, n - c);
        s.eval(gp.tokens.data() + c, len, true);
        for (int64_t i = 0; i < len; ++i) compare_row(g, gp, c + i, s.logits_at(i), pre);
      }
    }
    // Decode path: prefill all but the last tokens, then one token at a time.
    agreement dec;
    {
      session_params sp;
      sp.n_ctx = 4096;
      sp.n_threads = 2;
      session s(*m_, sp);
      const int64_t n_dec = std::min<int64_t>(n - 1, 24);
      s.eval(gp.tokens.data(), n - n_dec);
      for (int64_t i = n - n_dec; i < n; ++i) {
        const float* lg = s.eval(gp.tokens.data() + i, 1);
        compare_row(g, gp, i, lg, dec);
      }
    }
    std::printf("[ model    ] %-18s n=%5lld prefill: top-1 %lld/%lld max_diff %.4f full %.4f | "
                "decode: top-1 %lld/%lld max_diff %.4f\n",
                gp.name.c_str(), (long long)n, (long long)pre.top1_same, (long long)pre.positions,
                pre.max_diff, pre.max_full_diff, (long long)dec.top1_same, (long long)dec.positions,
                dec.max_diff);
    for (auto* t : {&total_pre, &total_dec}) {
      const agreement& a = t == &total_pre ? pre : dec;
      t->positions += a.positions;
      t->top1_same += a.top1_same;
      t->max_diff = std::max(t->max_diff, a.max_diff);
      t->max_full_diff = std::max(t->max_full_diff, a.max_full_diff);
      t->worst_tie_gap = std::max(t->worst_tie_gap, a.worst_tie_gap);
    }
  }
  std::printf("[ model    ] total prefill: top-1 %.4f (%lld/%lld), max_diff %.4f, full-row %.4f, "
              "worst tie gap %.4f; decode: top-1 %.4f, max_diff %.4f\n",
              (double)total_pre.top1_same / total_pre.positions, (long long)total_pre.top1_same,
              (long long)total_pre.positions, total_pre.max_diff, total_pre.max_full_diff,
              total_pre.worst_tie_gap, (double)total_dec.top1_same / total_dec.positions,
              total_dec.max_diff);
  EXPECT_GE(total_pre.top1_same, 0.99 * total_pre.positions);
  EXPECT_GE(total_dec.top1_same, 0.99 * total_dec.positions);
}

TEST_F(llama_model, greedy_continuations_match_llama_cpp) {
  const auto& g = load_goldens();
  for (const auto& run : g.meta["greedy"]) {
    const std::string name = run["name"];
    SCOPED_TRACE(name);
    const auto prompt = run["prompt"].get<std::vector<int32_t>>();
    const auto want = run["tokens"].get<std::vector<int32_t>>();
    const auto margins = run["margins"].get<std::vector<double>>();
    session_params sp;
    sp.n_ctx = 1024;
    sp.n_threads = 2;
    session s(*m_, sp);
    sampler greedy(sampler_params{});
    const float* lg = s.eval(prompt.data(), (int64_t)prompt.size());
    std::vector<int32_t> got;
    for (size_t i = 0; i < want.size(); ++i) {
      const int32_t t = greedy.sample(lg, m_->hparams().n_vocab);
      got.push_back(t);
      if (t != want[i]) {
        ADD_FAILURE() << name << ": diverges at step " << i << ": ours " << t << ", llama.cpp "
                      << want[i] << " (llama.cpp's top-1/top-2 margin there " << margins[i] << ")";
        break;
      }
      lg = s.eval(&t, 1);
    }
    double min_margin = 1e9;
    for (double mg : margins) min_margin = std::min(min_margin, mg);
    std::printf("[ model    ] greedy %-14s %zu/%zu tokens identical (smallest llama.cpp margin %.4f)\n",
                name.c_str(), got.size() == want.size() && got == want ? want.size() : got.size() - 1,
                want.size(), min_margin);
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
  s.eval(gp.tokens.data(), n);
  s.truncate(0);
  const float* a = s.eval(gp.tokens.data(), n);
  std::vector<float> la(a, a + m_->hparams().n_vocab);
  s.truncate(n - 1);
  const float* b = s.eval(gp.tokens.data() + n - 1, 1);
  double md = 0;
  for (int64_t j = 0; j < m_->hparams().n_vocab; ++j) md = std::max(md, (double)std::fabs(la[j] - b[j]));
  // Prefill and decode of the same last token differ only by the 8-bit activation rounding.
  EXPECT_LT(md, kMaxLogitDiff);
}

}  // namespace
}  // namespace hashattn
