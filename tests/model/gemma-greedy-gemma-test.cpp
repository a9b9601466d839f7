// The second architecture on its real file: Gemma 3 270M Q4_K_M (fetched by `scripts/setup --models
// gemma3`; label gemma, run by `make test-gemma`, left out of `make test`) against llama.cpp's greedy
// continuations in tests/data/gemma-greedy-goldens.json (scripts/make-gemma-goldens.py: 5 short
// completion prompts and one of 1,062 tokens, past the 512-token sliding window):
//   - the hyperparameters read from the file (18 layers, 4/1 heads of 256, window 512 on all layers but
//     5, 11, 17, two RoPE bases, embeddings scaled by sqrt(640), tied output);
//   - our tokenizer gives llama.cpp's prompt ids for every prompt text (<bos> first);
//   - 64 greedy tokens from llama.cpp's prompt ids: identical, or diverging only at a step where
//     llama.cpp's own top-1/top-2 margin is below kGreedyTie (its 8-bit activations in every quantized
//     product move logits by a few hundredths on this model; we keep 16-bit or fp32 activations).
// A missing file fails the tests (never skips), as for the default model's tests.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/model-files.h"
#include "hashattn/model.h"
#include "hashattn/tokenizer.h"

namespace hashattn {
namespace {

constexpr double kGreedyTie = 0.25;
constexpr const char* kSetup = "scripts/setup --models gemma3";

const nlohmann::json& goldens() {
  static const nlohmann::json g = [] {
    const std::string path = std::string(HASHATTN_SOURCE_DIR) + "/tests/data/gemma-greedy-goldens.json";
    std::ifstream f(path);
    if (!f) throw std::runtime_error("missing " + path + " (made by scripts/make-gemma-goldens.py)");
    return nlohmann::json::parse(f);
  }();
  return g;
}

// Loaded once, by the first test that runs, in SetUp: a missing file fails every test of the suite.
class gemma_model : public ::testing::Test {
 protected:
  void SetUp() override {
    if (m_) return;
    const std::string path = test::gemma_model_path();
    ASSERT_NO_FATAL_FAILURE(test::require_file(path, kSetup));
    ASSERT_EQ((int64_t)std::filesystem::file_size(path), goldens()["model"]["size"].get<int64_t>())
        << "the goldens were made from another file (" << goldens()["model"]["file"] << ")";
    m_ = model::load(path).release();
  }
  static void TearDownTestSuite() {
    delete m_;
    m_ = nullptr;
  }
  static model* m_;
};
model* gemma_model::m_ = nullptr;

TEST_F(gemma_model, hyperparameters_from_metadata) {
  const auto& hp = m_->hparams();
  EXPECT_EQ(hp.arch, "gemma3");
  EXPECT_EQ(hp.n_layer, 18);
  EXPECT_EQ(hp.n_embd, 640);
  EXPECT_EQ(hp.n_head, 4);
  EXPECT_EQ(hp.n_head_kv, 1);
  EXPECT_EQ(hp.head_dim, 256);
  EXPECT_EQ(hp.n_ff, 2048);
  EXPECT_EQ(hp.n_vocab, 262144);
  EXPECT_EQ(hp.n_ctx_train, 32768);
  EXPECT_TRUE(hp.tied_embeddings);
  EXPECT_TRUE(hp.qk_norm);
  EXPECT_TRUE(hp.post_norms);
  EXPECT_NEAR(hp.embd_scale, std::sqrt(640.f), 1e-4);
  ASSERT_EQ((int)hp.window.size(), 18);
  for (int l = 0; l < 18; ++l) {
    const bool global = l % 6 == 5;
    EXPECT_EQ(hp.is_global(l), global) << "layer " << l;
    EXPECT_EQ(hp.window[l], global ? 0 : 512) << "layer " << l;
    EXPECT_FLOAT_EQ(hp.rope_of(l).base, global ? 1e6f : 1e4f) << "layer " << l;
  }
}

TEST_F(gemma_model, tokenizer_matches_llama_cpp) {
  const auto tok = tokenizer::from_gguf(m_->file());
  for (const auto& g : goldens()["greedy"]) {
    const std::string name = g["name"];
    const auto want = g["prompt"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok->encode(g["text"].get<std::string>()), want) << name;
  }
}

TEST_F(gemma_model, greedy_continuations_match_llama_cpp) {
  const int64_t n_vocab = m_->hparams().n_vocab;
  int identical_runs = 0;
  for (const auto& g : goldens()["greedy"]) {
    const std::string name = g["name"];
    SCOPED_TRACE(name);
    const auto prompt = g["prompt"].get<std::vector<int32_t>>();
    const auto want = g["tokens"].get<std::vector<int32_t>>();
    const auto margins = g["margins"].get<std::vector<double>>();
    ASSERT_EQ(want.size(), margins.size());
    session_params sp;
    sp.n_ctx = 2048;
    sp.n_threads = 2;
    session s(*m_, sp);
    sampler greedy(sampler_params{});
    const float* lg = s.eval(prompt.data(), (int64_t)prompt.size());
    size_t same = 0;
    int32_t got = -1;
    double ours = 0;
    for (; same < want.size(); ++same) {
      got = greedy.sample(lg, n_vocab);
      float second = -INFINITY;
      for (int64_t j = 0; j < n_vocab; ++j)
        if (j != got) second = std::max(second, lg[j]);
      ours = lg[got] - second;
      if (got != want[same]) break;
      lg = s.eval(&got, 1);
    }
    if (same == want.size()) {
      ++identical_runs;
      std::printf("[ gemma    ] greedy %-15s %4zu prompt tokens: %zu/%zu identical to llama.cpp\n", name.c_str(),
                  prompt.size(), same, want.size());
      continue;
    }
    std::printf("[ gemma    ] greedy %-15s %4zu prompt tokens: first %zu/%zu identical, then ours %d (our margin "
                "%.4f) vs llama.cpp %d (its margin %.4f)\n",
                name.c_str(), prompt.size(), same, want.size(), got, ours, want[same], margins[same]);
    EXPECT_LT(margins[same], kGreedyTie) << name << ": diverges from llama.cpp at step " << same
                                         << " where its top-1/top-2 margin is " << margins[same]
                                         << " (not a near-tie)";
  }
  std::printf("[ gemma    ] %d of %zu greedy runs identical for all their tokens\n", identical_runs,
              goldens()["greedy"].size());
}

}  // namespace
}  // namespace hashattn
