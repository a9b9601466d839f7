// Mixed training windows (make_mixed_windows) with a byte tokenizer (one token per byte, no template
// parsing) over two synthetic texts: exact length, determinism in the seed, the chat frame around the
// content, passages copied from the texts, generated items present, and the errors of bad parameters.
// Seeds are fixed and printed.
#include <gtest/gtest.h>

#include <string>

#include "hashattn/error.h"
#include "hashattn/tokenizer.h"
#include "hashattn/train.h"

namespace hashattn {
namespace {

std::vector<int32_t> bytes(const std::string& s) { return std::vector<int32_t>(s.begin(), s.end()); }
std::string text_of(const std::vector<int32_t>& t) { return std::string(t.begin(), t.end()); }

std::vector<train_text> two_texts() {
  std::string a, b;
  for (int i = 0; i < 400; i++) a += "alpha" + std::to_string(i) + " ", b += "beta" + std::to_string(i) + " ";
  return {{"a.txt", bytes(a)}, {"b.txt", bytes(b)}};
}

TEST(MixData, LengthFrameAndContent) {
  const uint64_t seed = 7;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  mix_params p;
  p.ctx = 3000;
  p.n_windows = 3;
  p.passage_min = 20;
  p.passage_max = 60;
  p.item_share = 0.3;
  p.seed = seed;
  chat_template chat;  // ChatML
  const auto w = make_mixed_windows(two_texts(), bytes, &chat, p);
  ASSERT_EQ(w.size(), 3u);
  for (const auto& x : w) {
    ASSERT_EQ((int64_t)x.tokens.size(), p.ctx);
    const std::string s = text_of(x.tokens);
    EXPECT_EQ(s.rfind("<|im_start|>", 0), 0u) << s.substr(0, 80);
    EXPECT_NE(s.find("<|im_start|>assistant\n"), std::string::npos);
    EXPECT_NE(s.find("Passage 1: "), std::string::npos);
    EXPECT_TRUE(s.find("alpha") != std::string::npos || s.find("beta") != std::string::npos);
    EXPECT_TRUE(s.find("Record ") != std::string::npos || s.find("List:") != std::string::npos ||
                s.find("Numbers:") != std::string::npos || s.find("special code") != std::string::npos);
  }
  EXPECT_NE(w[0].tokens, w[1].tokens);
  EXPECT_EQ(make_mixed_windows(two_texts(), bytes, &chat, p)[2].tokens, w[2].tokens);
  p.seed = seed + 1;
  EXPECT_NE(make_mixed_windows(two_texts(), bytes, &chat, p)[0].tokens, w[0].tokens);
  const auto plain = make_mixed_windows(two_texts(), bytes, nullptr, p);
  EXPECT_EQ(text_of(plain[0].tokens).find("<|im_start|>"), std::string::npos);
}

TEST(MixData, BadParameters) {
  mix_params p;
  p.ctx = 1000;
  p.passage_min = 50;
  p.passage_max = 10;
  EXPECT_THROW(make_mixed_windows(two_texts(), bytes, nullptr, p), error);
  p.passage_max = 100;
  p.item_share = 1.0;
  EXPECT_THROW(make_mixed_windows(two_texts(), bytes, nullptr, p), error);
  p.item_share = 0.2;
  p.passage_max = 100000;  // longer than any text
  EXPECT_THROW(make_mixed_windows(two_texts(), bytes, nullptr, p), error);
  p.passage_max = 100;
  p.ctx = 10;
  EXPECT_THROW(make_mixed_windows(two_texts(), bytes, nullptr, p), error);
}

}  // namespace
}  // namespace hashattn
