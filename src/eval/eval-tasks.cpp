// Task generators: passkey and RULER-style synthetic tasks (needle in a haystack with single,
// multiple keys, values and queries; variable tracking; common-words extraction) with RULER's
// prompt templates. Every random choice of a sample is drawn first from a generator seeded by
// (seed, task, context, index); the haystack size is then set by binary search so that the
// tokenized prompt plus max_new_tokens fits the context. Scoring: string_match_all.
#include <algorithm>
#include <cctype>
#include <cstring>

#include "hashattn/error.h"
#include "hashattn/eval.h"

namespace hashattn {

namespace {

// splitmix64: the same stream on every platform (std distributions are not portable).
struct rng64 {
  uint64_t s;
  explicit rng64(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) {  // uniform in [0, n) without modulo bias
    HASHATTN_ASSERT(n > 0);
    uint64_t lim = ~0ull - (~0ull % n);
    uint64_t x;
    do x = next();
    while (x >= lim);
    return x % n;
  }
  double unit() { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); }
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }
};

uint64_t mix_string(uint64_t h, const std::string& s) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

std::vector<std::string> noise_sentences() {
  return {"The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."};
}

std::string digits(rng64& r, int n) {  // n-digit number, no leading zero
  std::string s(1, char('1' + r.below(9)));
  for (int i = 1; i < n; ++i) s += char('0' + r.below(10));
  return s;
}

std::string upper_name(rng64& r, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += char('A' + r.below(26));
  return s;
}

// Distinct draws from a word list.
std::vector<std::string> draw_words(rng64& r, const std::vector<std::string>& from, size_t n,
                                    std::vector<std::string> avoid = {}) {
  if (from.size() < n + avoid.size() + 16)
    fail("eval: word list too short: got " + std::to_string(from.size()) + " words, expected more than " +
         std::to_string(n + avoid.size() + 16) + " (hint: install wordnet-base)");
  std::vector<std::string> out;
  while (out.size() < n) {
    const std::string& w = from[r.below(from.size())];
    if (std::find(out.begin(), out.end(), w) != out.end()) continue;
    if (std::find(avoid.begin(), avoid.end(), w) != avoid.end()) continue;
    out.push_back(w);
  }
  return out;
}

// A haystack of n units with needles inserted before unit floor(depth * n) (in depth order).
struct needle_at {
  double depth;
  std::string text;
};
std::string build_haystack(const std::vector<std::string>& units, int64_t n, std::vector<needle_at> needles,
                           const char* sep) {
  std::stable_sort(needles.begin(), needles.end(),
                   [](const needle_at& a, const needle_at& b) { return a.depth < b.depth; });
  std::string out;
  size_t k = 0;
  auto add = [&](const std::string& s) {
    if (!out.empty()) out += sep;
    out += s;
  };
  for (int64_t i = 0; i <= n; ++i) {
    while (k < needles.size() && (int64_t)(needles[k].depth * (double)n) <= i) add(needles[k++].text);
    if (i < n) add(units[(size_t)i % units.size()]);
  }
  return out;
}

// Units of an essay haystack: consecutive sentences of one text from a start sentence (wrapping).
std::vector<std::string> essay_units(const eval_corpus& c, size_t text, size_t start, size_t n) {
  const auto& s = c.sentences[text];
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(s[(start + i) % s.size()]);
  return out;
}

struct rendered {
  std::string user;           // the user message
  std::string answer_prefix;  // text the assistant turn starts with
};

std::string plural_type = "numbers";

}  // namespace

const std::vector<std::string>& eval_task_names() {
  static const std::vector<std::string> names = {"passkey",         "passkey_noise",     "niah_single_noise", "niah_single_essay",
                                                 "niah_multikey",   "niah_multivalue",   "niah_multiquery",
                                                 "vt",              "cwe"};
  return names;
}

bool eval_task_is_generated(const std::string& task) {
  const auto& n = eval_task_names();
  return std::find(n.begin(), n.end(), task) != n.end();
}

double string_match_all(const std::string& output, const std::vector<std::string>& refs) {
  if (refs.empty()) return 0;
  auto lower = [](std::string s) {
    for (char& c : s) c = (char)std::tolower((unsigned char)c);
    return s;
  };
  std::string o = lower(output);
  int hit = 0;
  for (const auto& r : refs) hit += o.find(lower(r)) != std::string::npos ? 1 : 0;
  return (double)hit / (double)refs.size();
}

eval_sample eval_make_sample(const task_params& p, int index, const eval_corpus& corpus, const tokenizer& tok,
                             const chat_template* chat) {
  if (!eval_task_is_generated(p.task)) fail("eval: unknown task '" + p.task + "'");
  if (p.context < 256) fail("eval: context " + std::to_string(p.context) + " too small: expected >= 256 tokens");
  const bool essay = p.task == "passkey" || p.task == "niah_single_essay" || p.task == "niah_multikey" ||
                     p.task == "niah_multivalue" || p.task == "niah_multiquery";
  const bool words = p.task.rfind("niah", 0) == 0 || p.task == "cwe";
  if (essay && corpus.sentences.empty()) fail("eval: task '" + p.task + "' needs haystack texts (--text)");
  if (words && (corpus.nouns.empty() || corpus.adjectives.empty()))
    fail("eval: task '" + p.task + "' needs WordNet word lists (hint: install wordnet-base, --wordnet DIR)");

  uint64_t h = mix_string(0xCBF29CE484222325ull ^ p.seed, p.task);
  h = (h ^ (uint64_t)p.context) * 0x100000001B3ull;
  h = (h ^ (uint64_t)index) * 0x100000001B3ull;
  rng64 r(h);

  eval_sample s;
  s.task = p.task;
  s.index = index;

  // Pre-drawn choices, then a render function of the haystack size n.
  std::vector<std::string> units;
  const char* sep = " ";
  std::vector<needle_at> needles;
  std::function<rendered(const std::string& hay)> wrap;
  std::function<std::string(int64_t)> make_hay;
  int64_t n_max = p.context;

  if (essay) {
    size_t t = (size_t)index % corpus.sentences.size();
    size_t start = r.below(corpus.sentences[t].size());
    units = essay_units(corpus, t, start, (size_t)p.context);
    s.source = corpus.names[t];
  } else if (p.task != "cwe") {  // passkey_noise, niah_single_noise, vt
    units = noise_sentences();
    s.source = "noise";
  }

  auto key_word = [&](std::vector<std::string>& used) {
    for (;;) {
      std::string k = corpus.adjectives[r.below(corpus.adjectives.size())] + "-" +
                      corpus.nouns[r.below(corpus.nouns.size())];
      if (std::find(used.begin(), used.end(), k) == used.end()) {
        used.push_back(k);
        return k;
      }
    }
  };
  auto niah_needle = [](const std::string& key, const std::string& value) {
    return "One of the special magic " + plural_type + " for " + key + " is: " + value + ".";
  };
  auto niah_wrap = [](const std::string& query) {
    return [query](const std::string& hay) {
      rendered x;
      x.user = "Some special magic " + plural_type +
               " are hidden within the following text. Make sure to memorize it. I will quiz you about the " +
               plural_type + " afterwards.\n" + hay + "\nWhat are all the special magic " + plural_type + " for " +
               query + " mentioned in the provided text?";
      x.answer_prefix = "The special magic " + plural_type + " for " + query + " mentioned in the provided text are";
      return x;
    };
  };

  if (p.task == "passkey" || p.task == "passkey_noise") {
    std::string key = digits(r, 5);
    s.depth = (double)(index % 11) / 10.0;
    s.refs = {key};
    s.max_new_tokens = 8;
    needles.push_back({s.depth, "The pass key is " + key + ". Remember it. " + key + " is the pass key."});
    wrap = [](const std::string& hay) {
      rendered x;
      x.user =
          "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
          "I will quiz you about the important information there.\n\n" +
          hay + "\n\nWhat is the pass key?";
      x.answer_prefix = "The pass key is";
      return x;
    };
  } else if (p.task == "niah_single_noise" || p.task == "niah_single_essay") {
    std::vector<std::string> used;
    std::string key = key_word(used), value = digits(r, 7);
    double d = r.unit();
    s.depth = d;
    needles.push_back({d, niah_needle(key, value)});
    s.refs = {value};
    s.max_new_tokens = 16;
    wrap = niah_wrap(key);
  } else if (p.task == "niah_multikey") {
    std::vector<std::string> used;
    std::vector<std::string> keys, values;
    for (int i = 0; i < 4; ++i) keys.push_back(key_word(used)), values.push_back(digits(r, 7));
    for (int i = 0; i < 4; ++i) needles.push_back({r.unit(), niah_needle(keys[i], values[i])});
    size_t q = r.below(4);  // the queried key; the other three are distractors
    s.refs = {values[q]};
    s.max_new_tokens = 16;
    wrap = niah_wrap(keys[q]);
  } else if (p.task == "niah_multivalue") {
    std::vector<std::string> used;
    std::string key = key_word(used);
    for (int i = 0; i < 4; ++i) {
      std::string v = digits(r, 7);
      s.refs.push_back(v);
      needles.push_back({r.unit(), niah_needle(key, v)});
    }
    s.max_new_tokens = 48;
    wrap = niah_wrap(key);
  } else if (p.task == "niah_multiquery") {
    std::vector<std::string> used, keys;
    for (int i = 0; i < 4; ++i) {
      keys.push_back(key_word(used));
      std::string v = digits(r, 7);
      s.refs.push_back(v);
      needles.push_back({r.unit(), niah_needle(keys[i], v)});
    }
    std::string query = keys[0] + ", " + keys[1] + ", " + keys[2] + ", and " + keys[3];
    s.max_new_tokens = 48;
    wrap = niah_wrap(query);
  } else if (p.task == "vt") {
    // One chain of 4 hops: VAR A = value, VAR B = VAR A, ... (5 names), in order in the noise.
    std::vector<std::string> names;
    while (names.size() < 5) {
      std::string n = upper_name(r, 5);
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
    std::string value = digits(r, 5);
    std::vector<double> ds;
    for (int i = 0; i < 5; ++i) ds.push_back(r.unit());
    std::sort(ds.begin(), ds.end());
    needles.push_back({ds[0], "VAR " + names[0] + " = " + value + "."});
    for (int i = 1; i < 5; ++i) needles.push_back({ds[i], "VAR " + names[i] + " = VAR " + names[i - 1] + "."});
    s.refs = names;
    s.max_new_tokens = 32;
    wrap = [value](const std::string& hay) {
      rendered x;
      x.user = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n" + hay +
               "\nQuestion: Find all variables that are assigned the value " + value + " in the text above.";
      x.answer_prefix = "Answer: According to the chain(s) of variable assignment in the text above, 5 variables "
                        "are assigned the value " + value + ", they are:";
      return x;
    };
  } else if (p.task == "cwe") {
    // 10 common words x freq_cw + n uncommon words x 3, shuffled, numbered; n is the haystack size.
    std::vector<std::string> common = draw_words(r, corpus.nouns, 10);
    // At most ~context/5 uncommon words can fit (each listed 3 times as "N. word\n").
    const size_t pool = std::min<size_t>((size_t)p.context / 5, corpus.nouns.size() / 2);
    std::vector<std::string> uncommon = draw_words(r, corpus.nouns, pool, common);
    uint64_t shuffle_seed = r.next();
    s.refs = common;
    s.max_new_tokens = 48;
    n_max = (int64_t)uncommon.size();
    auto freq_cw = std::make_shared<int>(30);
    make_hay = [common, uncommon, shuffle_seed, freq_cw](int64_t n) {
      std::vector<std::string> list;
      for (const auto& w : common)
        for (int i = 0; i < *freq_cw; ++i) list.push_back(w);
      for (int64_t j = 0; j < n; ++j)
        for (int i = 0; i < 3; ++i) list.push_back(uncommon[(size_t)j]);
      rng64 sr(shuffle_seed);
      sr.shuffle(list);
      std::string out;
      for (size_t i = 0; i < list.size(); ++i) out += std::to_string(i + 1) + ". " + list[i] + "\n";
      return out;
    };
    wrap = [](const std::string& hay) {
      rendered x;
      x.user = "Below is a numbered list of words. In these words, some appear more often than others. Memorize "
               "the ones that appear most often.\n" + hay +
               "Question: What are the 10 most common words in the above list?";
      x.answer_prefix = "Answer: The top 10 words that appear most often in the list are:";
      return x;
    };
    // Short contexts cannot hold 10 x 30 entries: lower freq_cw (>= 4) until 10 uncommon words fit.
    // (The check below uses the same render path as the search.)
    auto fits = [&](int64_t n) {
      rendered x = wrap(make_hay(n));
      std::string text;
      if (chat) {
        text = apply_chat_template(chat[0], {{"user", x.user}}, true) + x.answer_prefix;
      } else {
        text = x.user + "\n" + x.answer_prefix;
      }
      return (int64_t)tok.encode(text, true, true).size() + s.max_new_tokens <= p.context;
    };
    while (*freq_cw > 4 && !fits(10)) *freq_cw -= 2;
  }
  if (!make_hay) {
    auto u = units;
    auto nd = needles;
    std::string sp = sep;
    make_hay = [u, nd, sp](int64_t n) { return build_haystack(u, n, nd, sp.c_str()); };
  }

  auto render = [&](int64_t n) {
    rendered x = wrap(make_hay(n));
    std::string text;
    if (chat) {
      text = apply_chat_template(*chat, {{"user", x.user}}, true) + x.answer_prefix;
    } else {
      text = x.user + "\n" + x.answer_prefix;
    }
    return tok.encode(text, true, true);
  };
  const int64_t limit = p.context - s.max_new_tokens;
  std::vector<int32_t> best = render(0);
  if ((int64_t)best.size() > limit)
    fail("eval: task '" + p.task + "' does not fit a context of " + std::to_string(p.context) +
         " tokens even without haystack: the prompt alone has " + std::to_string(best.size()) + " tokens");
  // Exponential then binary search for the largest n <= n_max that fits (lo always fits).
  int64_t lo = 0, hi = std::min<int64_t>(64, n_max);
  for (;;) {
    std::vector<int32_t> t = render(hi);
    if ((int64_t)t.size() > limit) break;
    lo = hi;
    best = std::move(t);
    if (hi == n_max) break;
    hi = std::min<int64_t>(hi * 2, n_max);
  }
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    std::vector<int32_t> t = render(mid);
    if ((int64_t)t.size() <= limit) {
      lo = mid;
      best = std::move(t);
    } else {
      hi = mid;
    }
  }
  s.prompt = std::move(best);
  return s;
}

}  // namespace hashattn
