// Mixed training windows (make_mixed_windows) with a byte tokenizer (one token per byte, no template
// parsing) over two synthetic texts: exact length, determinism in the seed, the chat frame around the
// content, passages copied from the texts, generated items present, and the errors of bad parameters.
// Retrieval windows (question_share > 0): answered questions in the windows, every answer the value of a
// record stated earlier in the same window; question_share 0 adds none.
// Seeds are fixed and printed.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>
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

size_t count(const std::string& s, const std::string& x) {
  size_t n = 0;
  for (size_t at = s.find(x); at != std::string::npos; at = s.find(x, at + 1)) n++;
  return n;
}

TEST(MixData, RetrievalQuestionsAnswerEarlierRecords) {
  const uint64_t seed = 11;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  mix_params p;
  p.ctx = 6000;
  p.n_windows = 3;
  p.passage_min = 20;
  p.passage_max = 60;
  p.item_share = 0.4;
  p.question_share = 0.5;
  p.seed = seed;
  chat_template chat;
  const auto w = make_mixed_windows(two_texts(), bytes, &chat, p);
  ASSERT_EQ(w.size(), 3u);
  const std::regex rec_re(R"(The special code of (\w+) is ([\w-]+)\. Remember it\.)"
                          R"(|Record ([0-9a-f-]+): amount (\d+), owner )");
  const std::regex ans_re(R"(Question: what was given for ([\w-]+) in the notes above\? )"
                          R"(The value for ([\w-]+) is ([\w-]+)\.\n)");
  size_t answers = 0;
  for (size_t wi = 0; wi < w.size(); wi++) {
    SCOPED_TRACE(::testing::Message() << "window " << wi);
    const std::string s = text_of(w[wi].tokens);
    ASSERT_EQ((int64_t)s.size(), p.ctx);
    std::multimap<std::string, std::pair<std::string, size_t>> recs;  // key -> (value, position)
    for (auto it = std::sregex_iterator(s.begin(), s.end(), rec_re); it != std::sregex_iterator(); ++it) {
      const std::smatch& m = *it;
      if (m[1].matched) recs.insert({m[1].str(), {m[2].str(), (size_t)m.position(0)}});
      else recs.insert({m[3].str(), {m[4].str(), (size_t)m.position(0)}});
    }
    size_t here = 0;
    for (auto it = std::sregex_iterator(s.begin(), s.end(), ans_re); it != std::sregex_iterator(); ++it) {
      const std::smatch& m = *it;
      const size_t at = (size_t)m.position(0);
      EXPECT_EQ(m[1].str(), m[2].str()) << "at " << at;
      bool found = false;
      auto [lo, hi] = recs.equal_range(m[2].str());
      for (auto r = lo; r != hi; ++r) found |= r->second.first == m[3].str() && r->second.second < at;
      EXPECT_TRUE(found) << "answer '" << m[2].str() << " is " << m[3].str() << "' at " << at
                         << " has no earlier record: " << s.substr(at, 160);
      here++;
    }
    // Many answered questions per window, and still the closing question last.
    EXPECT_GE(here, 5u) << s.substr(0, 600);
    EXPECT_GT(count(s, "Question: "), here);
    EXPECT_NE(s.find("<|im_start|>assistant\n"), std::string::npos);
    answers += here;
  }
  EXPECT_GE(answers, 15u);
  EXPECT_EQ(make_mixed_windows(two_texts(), bytes, &chat, p)[1].tokens, w[1].tokens);
  // Without questions: the plain mixed windows, only the closing question.
  mix_params d = p;
  d.question_share = 0;
  const auto plain = make_mixed_windows(two_texts(), bytes, &chat, d);
  for (const auto& x : plain) EXPECT_EQ(count(text_of(x.tokens), "Question: "), 1u);
  EXPECT_NE(plain[0].tokens, w[0].tokens);
  mix_params def;  // default question_share: the same windows as question_share 0
  def.ctx = d.ctx, def.n_windows = d.n_windows, def.passage_min = d.passage_min, def.passage_max = d.passage_max;
  def.item_share = d.item_share, def.seed = d.seed;
  EXPECT_EQ(def.question_share, 0.0);
  const auto plain_def = make_mixed_windows(two_texts(), bytes, &chat, def);
  for (size_t i = 0; i < plain.size(); i++) EXPECT_EQ(plain_def[i].tokens, plain[i].tokens);
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
  for (double q : {-0.1, 1.0, 2.0, std::nan("")}) {
    p.question_share = q;
    EXPECT_THROW(make_mixed_windows(two_texts(), bytes, nullptr, p), error) << "question share " << q;
  }
  p.question_share = 0.5;
  EXPECT_NO_THROW(make_mixed_windows(two_texts(), bytes, nullptr, p));
  p.question_share = 0;
  p.passage_max = 100000;  // longer than any text
  EXPECT_THROW(make_mixed_windows(two_texts(), bytes, nullptr, p), error);
  p.passage_max = 100;
  p.ctx = 10;
  EXPECT_THROW(make_mixed_windows(two_texts(), bytes, nullptr, p), error);
}

}  // namespace
}  // namespace hashattn
