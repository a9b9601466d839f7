// Tokenizer and chat template of the default model against tests/data/tokenizer-goldens.json
// (ids from llama.cpp via llama-cpp-python; chat prompts rendered by Jinja2 from the model's own
// template; scripts/make-tokenizer-goldens.py). Also: decode round trips, streaming decode of
// pieces that split UTF-8 sequences, and ~100K tokens of text encoded twice the same and decoded back
// (the time is printed, not asserted: timing belongs in benchmarks).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/model-files.h"
#include "hashattn/gguf.h"
#include "hashattn/tokenizer.h"

using namespace hashattn;

namespace {

nlohmann::json goldens() {
  std::ifstream in(std::string(HASHATTN_SOURCE_DIR) + "/tests/data/tokenizer-goldens.json");
  return nlohmann::json::parse(in);
}

// Loaded once, by the first test, in SetUp: a missing model or a loader error fails the tests.
struct model_fixture : ::testing::Test {
  void SetUp() override {
    if (tok) return;
    ASSERT_NO_FATAL_FAILURE(test::require_file(test::model_path()));
    delete file;
    file = gguf::file::open(test::model_path()).release();
    tok = tokenizer::from_gguf(*file).release();
  }
  static void TearDownTestSuite() {
    delete tok;
    delete file;
    tok = nullptr;
    file = nullptr;
  }
  static gguf::file* file;
  static tokenizer* tok;
};
gguf::file* model_fixture::file = nullptr;
tokenizer* model_fixture::tok = nullptr;

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

}  // namespace

TEST_F(model_fixture, vocabulary) {
  EXPECT_EQ(tok->n_vocab(), 49152);
  EXPECT_EQ(tok->pre(), "smollm");
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ(tok->find_token("<|im_start|>"), 1);
  EXPECT_EQ(tok->type(1), token_type::control);
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_TRUE(tok->is_eog(0));  // <|endoftext|>
  EXPECT_FALSE(tok->is_eog(1));
}

TEST_F(model_fixture, ids_match_llama_cpp) {
  const auto g = goldens();
  EXPECT_EQ(g["n_vocab"].get<int>(), tok->n_vocab());
  int n = 0;
  for (const auto& c : g["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE("text: \"" + text + "\"");
    for (int add = 0; add < 2; add++)
      for (int sp = 0; sp < 2; sp++) {
        const auto want = c["ids_add" + std::to_string(add) + "_special" + std::to_string(sp)].get<std::vector<int32_t>>();
        const auto got = tok->encode(text, add, sp);
        EXPECT_EQ(got, want) << "add_special=" << add << " parse_special=" << sp << "\n got:  " << show(got)
                             << "\n want: " << show(want);
        n++;
      }
    // Decoding gives the text back, and matches llama.cpp's detokenizer.
    EXPECT_EQ(tok->decode(tok->encode(text, false, true)), text);
    EXPECT_EQ(tok->decode(tok->encode(text, false, false)), text);
    EXPECT_EQ(tok->decode(c["ids_add0_special1"].get<std::vector<int32_t>>()), c["detok_special"].get<std::string>());
  }
  EXPECT_GE(n, 4 * 30);
}

TEST_F(model_fixture, render_special_off_drops_control_tokens) {
  const auto ids = tok->encode("<|im_start|>user\nhi<|im_end|>\n", false, true);
  EXPECT_EQ(tok->decode(ids, false), "user\nhi\n");
}

TEST_F(model_fixture, streaming_decode_keeps_partial_utf8) {
  const std::string text = "emoji 😀🎉 中文 naïve 👨‍👩‍👧 end";
  const auto ids = tok->encode(text, false, false);
  std::string pending, shown;
  int partial = 0;
  for (int32_t id : ids) {
    pending += tok->token_to_piece(id);
    const size_t k = utf8_complete_prefix(pending);
    if (k < pending.size()) partial++;
    shown += pending.substr(0, k);
    EXPECT_EQ(utf8_find_invalid(shown), std::string::npos);
    pending.erase(0, k);
  }
  EXPECT_TRUE(pending.empty());
  EXPECT_EQ(shown, text);
  EXPECT_GT(partial, 0) << "expected some tokens to end inside a UTF-8 sequence";
}

TEST_F(model_fixture, chat_template_matches_jinja) {
  const auto g = goldens();
  const chat_template t = chat_template_from_gguf(*file);
  EXPECT_EQ(t.format, chat_format::chatml);
  EXPECT_TRUE(t.warning.empty()) << t.warning;
  EXPECT_EQ(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(g["chat_template"].get<std::string>(), file->get_string("tokenizer.chat_template"));
  for (const auto& c : g["chats"]) {
    std::vector<chat_message> msgs;
    for (const auto& m : c["messages"]) msgs.push_back({m["role"], m["content"]});
    EXPECT_EQ(apply_chat_template(t, msgs, c["add_generation_prompt"]), c["text"].get<std::string>());
  }
}

TEST_F(model_fixture, encode_100k_tokens_twice_the_same_and_back) {
  // ~100K tokens of varied text: words from a seeded generator, digits, punctuation, newlines.
  const uint32_t seed = 4242;
  std::printf("encode seed %u\n", seed);
  std::mt19937 rng(seed);
  const char* words[] = {"the", "attention", "hash", "model", "tokens", "quick", "brown", "fox", "learned",
                         "sparse", "décodage", "中文", "😀", "don't", "context", "2024", "x", "(", ")", ".\n"};
  // Half of the words are random letter strings, so most pieces miss the BPE cache.
  std::string text;
  while (text.size() < 400000) {
    if (rng() % 2) {
      text += words[rng() % 20];
    } else {
      const int n = 1 + rng() % 9;
      for (int k = 0; k < n; k++) text += (char)('a' + rng() % 26);
    }
    text += (rng() % 7 == 0) ? "  " : " ";
    if (rng() % 50 == 0) text += std::to_string(rng() % 100000);
  }
  auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok->encode(text, false, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  const auto ids2 = tok->encode(text, false, false);
  const double s2 = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("encode: %zu bytes -> %zu tokens in %.3f s (first call), %.3f s (warm cache)\n", text.size(),
              ids.size(), s, s2);
  EXPECT_EQ(ids, ids2);
  EXPECT_GE(ids.size(), 100000u);
  EXPECT_EQ(tok->decode(ids), text);
}

// The other pre-tokenizers on the same vocabulary (llama.cpp on a copy of the metadata with
// tokenizer.ggml.pre replaced).
TEST_F(model_fixture, other_pre_tokenizers_match_llama_cpp) {
  const auto g = goldens();
  int n = 0;
  for (const auto& [pre, cases] : g["pre_cases"].items()) {
    SCOPED_TRACE("pre " + pre);
    tokenizer_vocab v;
    v.pre = pre;
    v.tokens = file->get_strings("tokenizer.ggml.tokens");
    for (int64_t x : file->get_ints("tokenizer.ggml.token_type")) v.types.push_back((int32_t)x);
    v.merges = file->get_strings("tokenizer.ggml.merges");
    v.bos = 1;
    v.eos = 2;
    auto t = tokenizer::from_vocab(v);
    ASSERT_EQ(cases.size(), g["cases"].size());
    for (size_t k = 0; k < cases.size(); k++) {
      const std::string text = g["cases"][k]["text"];
      SCOPED_TRACE("text: \"" + text + "\"");
      for (int sp = 0; sp < 2; sp++) {
        const auto want = cases[k]["ids_special" + std::to_string(sp)].get<std::vector<int32_t>>();
        const auto got = t->encode(text, false, sp);
        EXPECT_EQ(got, want) << "parse_special=" << sp << "\n got:  " << show(got) << "\n want: " << show(want);
        n++;
      }
      EXPECT_EQ(t->decode(t->encode(text, false, false)), text);
    }
  }
  EXPECT_EQ(n, 4 * 2 * (int)g["cases"].size());
}
