// Mixed training windows (see train.h, make_mixed_windows): each window is one chat-templated user turn
// holding many unrelated passages of the training texts, interleaved with generated items (numbers, names,
// identifiers, lists, key-value records), optionally with answered questions about earlier records after
// pieces (question_share), and ending with a question about one of the records and the opened assistant
// turn, cut to exactly ctx tokens. Pieces are tokenized one at a time and concatenated.
#include <algorithm>
#include <random>

#include <fmt/core.h>

#include "hashattn/error.h"
#include "hashattn/tokenizer.h"
#include "hashattn/train.h"

namespace hashattn {

namespace {

using rng_t = std::mt19937_64;

int64_t uni(rng_t& r, int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(r); }

std::string gen_name(rng_t& r) {
  static const char* syl[] = {"ka", "lo", "mi", "ren", "sa", "tor", "vel", "an", "bri", "do", "el", "fin",
                              "gar", "hal", "is", "jo", "mor", "nel", "or", "pe", "quin", "ros", "ta", "ul"};
  std::string s;
  const int n = (int)uni(r, 2, 3);
  for (int i = 0; i < n; i++) s += syl[uni(r, 0, 23)];
  s[0] = (char)(s[0] - 'a' + 'A');
  return s;
}

std::string gen_number(rng_t& r) {
  const int digits = (int)uni(r, 3, 9);
  std::string s(1, (char)('1' + uni(r, 0, 8)));
  for (int i = 1; i < digits; i++) s += (char)('0' + uni(r, 0, 9));
  return s;
}

std::string gen_ident(rng_t& r) {
  static const char hex[] = "0123456789abcdef";
  std::string s;
  const int groups = (int)uni(r, 2, 4);
  for (int g = 0; g < groups; g++) {
    if (g) s += '-';
    for (int i = 0; i < 4; i++) s += hex[uni(r, 0, 15)];
  }
  return s;
}

std::string gen_value(rng_t& r) {
  switch (uni(r, 0, 2)) {
    case 0: return gen_number(r);
    case 1: return gen_ident(r);
    default: return gen_name(r);
  }
}

struct record {
  std::string key, value;
};

// One generated item; records (key -> value) are remembered for the closing question.
std::string gen_item(rng_t& r, std::vector<record>& recs) {
  switch (uni(r, 0, 3)) {
    case 0: {
      record x{gen_name(r), gen_value(r)};
      recs.push_back(x);
      return fmt::format("The special code of {} is {}. Remember it.", x.key, x.value);
    }
    case 1: {
      record x{gen_ident(r), gen_number(r)};
      recs.push_back(x);
      return fmt::format("Record {}: amount {}, owner {}.", x.key, x.value, gen_name(r));
    }
    case 2: {
      std::string s = "List:";
      const int n = (int)uni(r, 3, 8);
      for (int i = 0; i < n; i++) s += (i ? ", " : " ") + gen_value(r);
      return s + ".";
    }
    default: {
      std::string s = "Numbers:";
      const int n = (int)uni(r, 4, 12);
      for (int i = 0; i < n; i++) s += " " + gen_number(r);
      return s;
    }
  }
}

}  // namespace

void mix_params_validate(const mix_params& p) {
  if (p.ctx < 64) fail("train: mixed windows: context", std::to_string(p.ctx), ">= 64 tokens");
  if (p.n_windows < 1) fail("train: mixed windows: count", std::to_string(p.n_windows), ">= 1");
  if (p.passage_min < 1 || p.passage_max < p.passage_min)
    fail("train: mixed windows: passage length", fmt::format("{}..{}", p.passage_min, p.passage_max),
         "1 <= min <= max tokens");
  if (!(p.item_share >= 0 && p.item_share < 1))
    fail("train: mixed windows: item share", fmt::format("{}", p.item_share), "in [0, 1)");
  if (!(p.question_share >= 0 && p.question_share < 1))
    fail("train: mixed windows: question share", fmt::format("{}", p.question_share), "in [0, 1)");
}

std::vector<train_text> make_mixed_windows(const std::vector<train_text>& texts,
                                           const std::function<std::vector<int32_t>(const std::string&)>& encode,
                                           const chat_template* chat, const mix_params& p) {
  mix_params_validate(p);
  int64_t longest = 0;
  for (const auto& t : texts) longest = std::max<int64_t>(longest, (int64_t)t.tokens.size());
  if (longest < p.passage_max)
    fail("train: mixed windows: texts", fmt::format("longest {} tokens", longest),
         fmt::format(">= the longest passage ({} tokens)", p.passage_max), "add text or lower the passage length");
  // The user turn's frame: the template rendered around a marker, split at it.
  std::string head = "Read the passages and notes below. Some questions will ask about them.\n\n", tail;
  if (chat) {
    const std::string marker = "\x01";
    const std::string full = apply_chat_template(*chat, {{"user", marker}}, true);
    const size_t at = full.find(marker);
    HASHATTN_ASSERT(at != std::string::npos);
    head = full.substr(0, at) + head;
    tail = full.substr(at + marker.size());
  }
  const std::vector<int32_t> head_tok = encode(head);
  std::vector<train_text> out;
  for (int w = 0; w < p.n_windows; w++) {
    rng_t r(p.seed * 0x9E3779B97F4A7C15ull + 0x51 + (uint64_t)w * 0x2545F4914F6CDD1Dull);
    std::vector<record> recs;
    // Room kept for the closing question, the frame's tail and the answer prefix.
    const int64_t reserve = 64 + (int64_t)encode(tail).size();
    std::vector<int32_t> toks = head_tok;
    int piece = 0;
    while ((int64_t)toks.size() < p.ctx - reserve) {
      std::vector<int32_t> add;
      if (std::uniform_real_distribution<double>(0, 1)(r) < p.item_share) {
        add = encode(gen_item(r, recs) + "\n\n");
      } else {
        const train_text* t = nullptr;
        do t = &texts[(size_t)uni(r, 0, (int64_t)texts.size() - 1)];
        while ((int64_t)t->tokens.size() < p.passage_max);
        const int64_t len = uni(r, p.passage_min, p.passage_max);
        const int64_t s = uni(r, 0, (int64_t)t->tokens.size() - len);
        add = encode(fmt::format("Passage {}: ", ++piece));
        add.insert(add.end(), t->tokens.begin() + s, t->tokens.begin() + s + len);
        const std::vector<int32_t> nl = encode("\n\n");
        add.insert(add.end(), nl.begin(), nl.end());
      }
      toks.insert(toks.end(), add.begin(), add.end());
      // An answered question about a uniformly chosen earlier record (no draw when question_share is 0, so
      // that the windows stay those of the plain mixed data).
      if (p.question_share > 0 && !recs.empty() &&
          std::uniform_real_distribution<double>(0, 1)(r) < p.question_share) {
        const record& x = recs[(size_t)uni(r, 0, (int64_t)recs.size() - 1)];
        add = encode(fmt::format("Question: what was given for {} in the notes above? The value for {} is {}.\n\n",
                                 x.key, x.key, x.value));
        toks.insert(toks.end(), add.begin(), add.end());
      }
    }
    toks.resize((size_t)std::min<int64_t>((int64_t)toks.size(), p.ctx - reserve));
    std::string q = "Question: what is the special code mentioned above?";
    std::string a = "Answer:";
    if (!recs.empty()) {
      const record& x = recs[(size_t)uni(r, 0, (int64_t)recs.size() - 1)];
      q = fmt::format("Question: what was given for {} in the notes above?", x.key);
      a = fmt::format("The value for {} is", x.key);
    }
    std::vector<int32_t> end = encode("\n" + q + tail + a);
    // Fill to exactly ctx: the closing part last, passage text before it trimmed or padded with items.
    while ((int64_t)(toks.size() + end.size()) < p.ctx) {
      const std::vector<int32_t> add = encode(gen_item(r, recs) + "\n");
      toks.insert(toks.end(), add.begin(), add.end());
    }
    const int64_t keep_end = std::min<int64_t>((int64_t)end.size(), p.ctx / 4);
    toks.resize((size_t)(p.ctx - keep_end));
    toks.insert(toks.end(), end.end() - keep_end, end.end());
    train_text tt;
    tt.name = fmt::format("mix-{}", w);
    tt.tokens = std::move(toks);
    out.push_back(std::move(tt));
  }
  return out;
}

}  // namespace hashattn
