// Task generators: passkey and RULER-style synthetic tasks (needle in a haystack with single,
// multiple keys, values and queries; variable tracking; common-words extraction) with RULER's
// prompt templates, as a table of tasks (name, haystack kind, draw function). Every random choice of a
// sample is drawn first (task_draw) from a generator seeded by (seed, task, context, index); the
// haystack size is then set by the one prompt-fitting function (eval_fit_prompt) so that the tokenized
// prompt plus max_new_tokens fits the context. Scoring: string_match_all.
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

// What a prompt says around its haystack: the user message and the text the assistant turn starts with.
struct rendered {
  std::string user;
  std::string answer_prefix;
};

// Every random choice of one sample, drawn before any rendering. The prompt of haystack size n
// (0 .. n_max) under variant v (0 .. n_variants-1) is wrap(haystack(n, v)); the variant is the first
// whose prompt at min_n fits the context, else the last (cwe: fewer repetitions of the common words).
struct task_draw {
  std::vector<std::string> refs;
  int max_new_tokens = 16;
  double depth = -1;
  std::string source;
  int64_t n_max = 0;
  int n_variants = 1;
  int64_t min_n = 0;
  std::function<std::string(int64_t n, int variant)> haystack;
  std::function<rendered(const std::string& hay)> wrap;
};

// What a task's draw function reads.
struct draw_input {
  const task_params& p;
  int index;
  const eval_corpus& corpus;
};

// The haystack kinds: sentences of a held-out text ("essay"), the repeated noise filler, or none (the
// task builds its own).
enum class hay_kind { essay, noise, own };

// A haystack of units with the needles inserted (build_haystack), for tasks of one variant.
void set_unit_haystack(task_draw& d, const std::vector<std::string>& units, const std::vector<needle_at>& needles) {
  d.haystack = [units, needles](int64_t n, int) { return build_haystack(units, n, needles, " "); };
}

// The units of the haystack of a task kind (essay: the text of the sample's index from a drawn start);
// sets the draw's source and n_max (at most one unit per context token).
std::vector<std::string> haystack_units(hay_kind kind, rng64& r, const draw_input& in, task_draw& d) {
  if (kind == hay_kind::essay) {
    const size_t t = (size_t)in.index % in.corpus.sentences.size();
    const size_t start = r.below(in.corpus.sentences[t].size());
    d.source = in.corpus.names[t];
    d.n_max = in.p.context;
    return essay_units(in.corpus, t, start, (size_t)in.p.context);
  }
  d.source = "noise";
  d.n_max = in.p.context;
  return noise_sentences();
}

constexpr const char* kNiahType = "numbers";  // RULER's type_needle_v for these tasks

std::string niah_needle(const std::string& key, const std::string& value) {
  return std::string("One of the special magic ") + kNiahType + " for " + key + " is: " + value + ".";
}

std::function<rendered(const std::string&)> niah_wrap(const std::string& query) {
  return [query](const std::string& hay) {
    const std::string t = kNiahType;
    rendered x;
    x.user = "Some special magic " + t +
             " are hidden within the following text. Make sure to memorize it. I will quiz you about the " + t +
             " afterwards.\n" + hay + "\nWhat are all the special magic " + t + " for " + query +
             " mentioned in the provided text?";
    x.answer_prefix = "The special magic " + t + " for " + query + " mentioned in the provided text are";
    return x;
  };
}

// An "adjective-noun" key not drawn before for this sample.
std::string key_word(rng64& r, const eval_corpus& c, std::vector<std::string>& used) {
  for (;;) {
    std::string k = c.adjectives[r.below(c.adjectives.size())] + "-" + c.nouns[r.below(c.nouns.size())];
    if (std::find(used.begin(), used.end(), k) == used.end()) {
      used.push_back(k);
      return k;
    }
  }
}

// ---- the tasks: one draw function each ----

task_draw draw_passkey(rng64& r, const draw_input& in, hay_kind kind) {
  task_draw d;
  const auto units = haystack_units(kind, r, in, d);
  const std::string key = digits(r, 5);
  d.depth = (double)(in.index % 11) / 10.0;
  d.refs = {key};
  d.max_new_tokens = 8;
  set_unit_haystack(d, units, {{d.depth, "The pass key is " + key + ". Remember it. " + key + " is the pass key."}});
  d.wrap = [](const std::string& hay) {
    rendered x;
    x.user =
        "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
        "I will quiz you about the important information there.\n\n" +
        hay + "\n\nWhat is the pass key?";
    x.answer_prefix = "The pass key is";
    return x;
  };
  return d;
}

task_draw draw_niah_single(rng64& r, const draw_input& in, hay_kind kind) {
  task_draw d;
  const auto units = haystack_units(kind, r, in, d);
  std::vector<std::string> used;
  const std::string key = key_word(r, in.corpus, used), value = digits(r, 7);
  d.depth = r.unit();
  set_unit_haystack(d, units, {{d.depth, niah_needle(key, value)}});
  d.refs = {value};
  d.max_new_tokens = 16;
  d.wrap = niah_wrap(key);
  return d;
}

task_draw draw_niah_multikey(rng64& r, const draw_input& in, hay_kind kind) {
  task_draw d;
  const auto units = haystack_units(kind, r, in, d);
  std::vector<std::string> used, keys, values;
  for (int i = 0; i < 4; ++i) keys.push_back(key_word(r, in.corpus, used)), values.push_back(digits(r, 7));
  std::vector<needle_at> needles;
  for (int i = 0; i < 4; ++i) needles.push_back({r.unit(), niah_needle(keys[i], values[i])});
  const size_t q = r.below(4);  // the queried key; the other three are distractors
  set_unit_haystack(d, units, needles);
  d.refs = {values[q]};
  d.max_new_tokens = 16;
  d.wrap = niah_wrap(keys[q]);
  return d;
}

task_draw draw_niah_multivalue(rng64& r, const draw_input& in, hay_kind kind) {
  task_draw d;
  const auto units = haystack_units(kind, r, in, d);
  std::vector<std::string> used;
  const std::string key = key_word(r, in.corpus, used);
  std::vector<needle_at> needles;
  for (int i = 0; i < 4; ++i) {
    std::string v = digits(r, 7);
    d.refs.push_back(v);
    needles.push_back({r.unit(), niah_needle(key, v)});
  }
  set_unit_haystack(d, units, needles);
  d.max_new_tokens = 48;
  d.wrap = niah_wrap(key);
  return d;
}

task_draw draw_niah_multiquery(rng64& r, const draw_input& in, hay_kind kind) {
  task_draw d;
  const auto units = haystack_units(kind, r, in, d);
  std::vector<std::string> used, keys;
  std::vector<needle_at> needles;
  for (int i = 0; i < 4; ++i) {
    keys.push_back(key_word(r, in.corpus, used));
    std::string v = digits(r, 7);
    d.refs.push_back(v);
    needles.push_back({r.unit(), niah_needle(keys[i], v)});
  }
  set_unit_haystack(d, units, needles);
  d.max_new_tokens = 48;
  d.wrap = niah_wrap(keys[0] + ", " + keys[1] + ", " + keys[2] + ", and " + keys[3]);
  return d;
}

// One chain of 4 hops: VAR A = value, VAR B = VAR A, ... (5 names), in order in the noise.
task_draw draw_vt(rng64& r, const draw_input& in, hay_kind kind) {
  task_draw d;
  const auto units = haystack_units(kind, r, in, d);
  std::vector<std::string> names;
  while (names.size() < 5) {
    std::string n = upper_name(r, 5);
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  const std::string value = digits(r, 5);
  std::vector<double> ds;
  for (int i = 0; i < 5; ++i) ds.push_back(r.unit());
  std::sort(ds.begin(), ds.end());
  std::vector<needle_at> needles = {{ds[0], "VAR " + names[0] + " = " + value + "."}};
  for (int i = 1; i < 5; ++i) needles.push_back({ds[i], "VAR " + names[i] + " = VAR " + names[i - 1] + "."});
  set_unit_haystack(d, units, needles);
  d.refs = names;
  d.max_new_tokens = 32;
  d.wrap = [value](const std::string& hay) {
    rendered x;
    x.user = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n" + hay +
             "\nQuestion: Find all variables that are assigned the value " + value + " in the text above.";
    x.answer_prefix = "Answer: According to the chain(s) of variable assignment in the text above, 5 variables "
                      "are assigned the value " + value + ", they are:";
    return x;
  };
  return d;
}

// 10 common words x freq + n uncommon words x 3, shuffled, numbered; n is the haystack size. Short
// contexts cannot hold 10 x 30 entries: the variants lower freq from 30 by 2 down to 4, the first with
// which 10 uncommon words fit is used.
task_draw draw_cwe(rng64& r, const draw_input& in, hay_kind) {
  task_draw d;
  const std::vector<std::string> common = draw_words(r, in.corpus.nouns, 10);
  // At most ~context/5 uncommon words can fit (each listed 3 times as "N. word\n").
  const size_t pool = std::min<size_t>((size_t)in.p.context / 5, in.corpus.nouns.size() / 2);
  const std::vector<std::string> uncommon = draw_words(r, in.corpus.nouns, pool, common);
  const uint64_t shuffle_seed = r.next();
  d.refs = common;
  d.max_new_tokens = 48;
  d.n_max = (int64_t)uncommon.size();
  d.n_variants = (30 - 4) / 2 + 1;
  d.min_n = 10;
  d.haystack = [common, uncommon, shuffle_seed](int64_t n, int variant) {
    const int freq = 30 - 2 * variant;
    std::vector<std::string> list;
    for (const auto& w : common)
      for (int i = 0; i < freq; ++i) list.push_back(w);
    for (int64_t j = 0; j < n; ++j)
      for (int i = 0; i < 3; ++i) list.push_back(uncommon[(size_t)j]);
    rng64 sr(shuffle_seed);
    sr.shuffle(list);
    std::string out;
    for (size_t i = 0; i < list.size(); ++i) out += std::to_string(i + 1) + ". " + list[i] + "\n";
    return out;
  };
  d.wrap = [](const std::string& hay) {
    rendered x;
    x.user = "Below is a numbered list of words. In these words, some appear more often than others. Memorize "
             "the ones that appear most often.\n" + hay +
             "Question: What are the 10 most common words in the above list?";
    x.answer_prefix = "Answer: The top 10 words that appear most often in the list are:";
    return x;
  };
  return d;
}

// The task table, in report order.
struct task_def {
  const char* name;
  hay_kind hay;
  bool needs_words;  // WordNet nouns and adjectives
  task_draw (*draw)(rng64&, const draw_input&, hay_kind);
};
const std::vector<task_def>& task_table() {
  static const std::vector<task_def> t = {
      {"passkey", hay_kind::essay, false, draw_passkey},
      {"passkey_noise", hay_kind::noise, false, draw_passkey},
      {"niah_single_noise", hay_kind::noise, true, draw_niah_single},
      {"niah_single_essay", hay_kind::essay, true, draw_niah_single},
      {"niah_multikey", hay_kind::essay, true, draw_niah_multikey},
      {"niah_multivalue", hay_kind::essay, true, draw_niah_multivalue},
      {"niah_multiquery", hay_kind::essay, true, draw_niah_multiquery},
      {"vt", hay_kind::noise, false, draw_vt},
      {"cwe", hay_kind::own, true, draw_cwe},
  };
  return t;
}

const task_def* find_task(const std::string& name) {
  for (const auto& t : task_table())
    if (name == t.name) return &t;
  return nullptr;
}

// The tokens of a rendered prompt: in the chat template (user turn, then the assistant turn opened with the
// answer prefix), or plain "user\nprefix".
std::vector<int32_t> prompt_tokens(const rendered& x, const tokenizer& tok, const chat_template* chat) {
  const std::string text = chat ? apply_chat_template(*chat, {{"user", x.user}}, true) + x.answer_prefix
                                : x.user + "\n" + x.answer_prefix;
  return tok.encode(text, true, true);
}

}  // namespace

fitted_prompt eval_fit_prompt(const std::function<std::vector<int32_t>(int64_t)>& render, int64_t n_max,
                              int64_t limit) {
  if (n_max < 0) fail("eval: prompt fitting: n_max", std::to_string(n_max), ">= 0");
  fitted_prompt best;
  std::vector<int32_t> t0 = render(0);
  if ((int64_t)t0.size() > limit) return best;
  best.n = 0;
  best.tokens = std::move(t0);
  // Exponential then binary search for the largest n <= n_max that fits (lo always fits).
  int64_t lo = 0, hi = std::min<int64_t>(64, n_max);
  for (;;) {
    std::vector<int32_t> t = render(hi);
    if ((int64_t)t.size() > limit) break;
    lo = hi;
    best = {hi, std::move(t)};
    if (hi == n_max) break;
    hi = std::min<int64_t>(hi * 2, n_max);
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    std::vector<int32_t> t = render(mid);
    if ((int64_t)t.size() <= limit) {
      lo = mid;
      best = {mid, std::move(t)};
    } else {
      hi = mid;
    }
  }
  return best;
}

const std::vector<std::string>& eval_task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& t : task_table()) n.push_back(t.name);
    return n;
  }();
  return names;
}

bool eval_task_is_generated(const std::string& task) { return find_task(task) != nullptr; }

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
  const task_def* t = find_task(p.task);
  if (!t) fail("eval: unknown task '" + p.task + "'");
  if (p.context < 256) fail("eval: context " + std::to_string(p.context) + " too small: expected >= 256 tokens");
  if (t->hay == hay_kind::essay && corpus.sentences.empty())
    fail("eval: task '" + p.task + "' needs haystack texts (--text)");
  if (t->needs_words && (corpus.nouns.empty() || corpus.adjectives.empty()))
    fail("eval: task '" + p.task + "' needs WordNet word lists (hint: install wordnet-base, --wordnet DIR)");

  uint64_t h = mix_string(0xCBF29CE484222325ull ^ p.seed, p.task);
  h = (h ^ (uint64_t)p.context) * 0x100000001B3ull;
  h = (h ^ (uint64_t)index) * 0x100000001B3ull;
  rng64 r(h);
  task_draw d = t->draw(r, draw_input{p, index, corpus}, t->hay);

  const int64_t limit = p.context - d.max_new_tokens;
  int variant = 0;
  auto render = [&](int64_t n) { return prompt_tokens(d.wrap(d.haystack(n, variant)), tok, chat); };
  while (variant + 1 < d.n_variants && (int64_t)render(d.min_n).size() > limit) ++variant;
  fitted_prompt f = eval_fit_prompt(render, d.n_max, limit);
  if (f.n < 0)
    fail("eval: task '" + p.task + "' does not fit a context of " + std::to_string(p.context) +
         " tokens even without haystack: the prompt alone has " + std::to_string(render(0).size()) + " tokens");
  eval_sample s;
  s.task = p.task;
  s.index = index;
  s.prompt = std::move(f.tokens);
  s.refs = std::move(d.refs);
  s.max_new_tokens = d.max_new_tokens;
  s.depth = d.depth;
  s.source = std::move(d.source);
  return s;
}

}  // namespace hashattn
