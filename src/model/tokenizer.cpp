// Byte-level BPE tokenizer (include/hashattn/tokenizer.h).
// Tokens are stored byte-mapped (GPT-2 map: printable bytes stand for themselves, the others map to
// U+0100.. in order). Merges become (left symbol, right symbol) -> (rank, result symbol) over a
// symbol table of the vocabulary plus any merge result missing from it (ids >= n_vocab). BPE of a
// piece starts from one symbol per byte and merges the lowest-ranked adjacent pair first (leftmost
// on ties) with a heap; results are cached per piece.
#include <algorithm>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/tokenizer.h"
#include "model/tokenizer-pre.h"
#include "model/tokenizer-spm.h"

namespace hashattn {

namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += (char)cp;
  } else if (cp < 0x800) {
    out += (char)(0xC0 | (cp >> 6));
    out += (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += (char)(0xE0 | (cp >> 12));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  } else {
    out += (char)(0xF0 | (cp >> 18));
    out += (char)(0x80 | ((cp >> 12) & 0x3F));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  }
}

// Length of the valid UTF-8 sequence at s[i], or 0 when it is invalid or cut off.
size_t utf8_seq_len(const std::string& s, size_t i) {
  const unsigned char c = (unsigned char)s[i];
  const size_t n = s.size() - i;
  auto cont = [&](size_t k) { return k < n && ((unsigned char)s[i + k] & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    const unsigned char c1 = (unsigned char)s[i + 1];
    if (c == 0xE0 && c1 < 0xA0) return 0;   // overlong
    if (c == 0xED && c1 >= 0xA0) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const unsigned char c1 = (unsigned char)s[i + 1];
    if (c == 0xF0 && c1 < 0x90) return 0;   // overlong
    if (c == 0xF4 && c1 >= 0x90) return 0;  // > U+10FFFF
    return 4;
  }
  return 0;
}

// True when byte i of s starts a character (or is the end): not a UTF-8 continuation byte.
bool char_boundary(const std::string& s, size_t i) { return i >= s.size() || ((unsigned char)s[i] & 0xC0) != 0x80; }

uint32_t utf8_decode_at(const std::string& s, size_t i, size_t len) {
  const unsigned char c = (unsigned char)s[i];
  if (len == 1) return c;
  uint32_t cp = c & (0xFF >> (len + 1));
  for (size_t k = 1; k < len; k++) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
  return cp;
}

// GPT-2 byte map: byte -> code point.
std::vector<uint32_t> make_byte_map() {
  std::vector<uint32_t> m(256);
  uint32_t next = 256;
  for (int b = 0; b < 256; b++) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    m[b] = printable ? (uint32_t)b : next++;
  }
  return m;
}

const std::vector<std::string> k_eog_texts = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>",
                                              "<|end|>", "<end_of_turn>", "<|eom_id|>"};

}  // namespace

size_t utf8_find_invalid(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_seq_len(s, i);
    if (!n) return i;
    i += n;
  }
  return std::string::npos;
}

std::string utf8_sanitize(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_seq_len(s, i);
    if (n) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i++;
    }
  }
  return out;
}

size_t utf8_complete_prefix(const std::string& s) {
  // Walk back over at most 3 continuation bytes to the last lead byte.
  size_t i = s.size();
  for (int k = 0; k < 4 && i > 0; k++) {
    const unsigned char c = (unsigned char)s[i - 1];
    if ((c & 0xC0) != 0x80) {  // lead byte (or ASCII) at i-1
      const size_t start = i - 1;
      size_t need = c < 0x80 ? 1 : (c >= 0xF0 && c <= 0xF4) ? 4 : (c >= 0xE0) ? 3 : (c >= 0xC2) ? 2 : 1;
      if (c >= 0xF5) need = 1;
      return s.size() - start < need ? start : s.size();
    }
    i--;
  }
  return s.size();
}

struct tokenizer::impl {
  tokenizer_vocab v;
  int32_t n_vocab = 0;
  std::unique_ptr<tok::pre_tokenizer> pre;
  std::unique_ptr<tok::spm> spm;  // SentencePiece vocabularies
  std::unordered_map<std::string, int32_t> text_to_id;  // real tokens
  std::vector<std::string> sym_text;                    // symbols: tokens, then synthetic merge results
  std::unordered_map<std::string, int32_t> synth_id;
  struct merge {
    int32_t rank, result;
  };
  std::unordered_map<uint64_t, merge> merges;
  std::vector<uint32_t> byte_cp;  // byte -> code point
  std::vector<int16_t> cp_byte;   // code point (< 512) -> byte, -1 if none
  int32_t byte_sym[256];
  std::string byte_mapped[256];   // UTF-8 of byte_cp
  struct special {
    std::string text;
    int32_t id;
    bool control;  // control / unknown: only matched with parse_special
  };
  std::vector<special> specials;
  std::unordered_set<int32_t> eog;
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  int32_t sym_of(const std::string& text) {
    const auto it = text_to_id.find(text);
    if (it != text_to_id.end()) return it->second;
    const auto jt = synth_id.find(text);
    if (jt != synth_id.end()) return jt->second;
    const int32_t id = (int32_t)sym_text.size();
    sym_text.push_back(text);
    synth_id.emplace(text, id);
    return id;
  }

  static uint64_t key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

  token_type type_of(int32_t id) const {
    return v.types.empty() ? token_type::normal : (token_type)v.types[id];
  }

  void bpe(const std::string& text, size_t off, size_t len, std::vector<int32_t>& out) const;
  void bpe_uncached(const std::string& piece, std::vector<int32_t>& out) const;
};

tokenizer::tokenizer() : p_(new impl()) {}
tokenizer::~tokenizer() = default;

std::unique_ptr<tokenizer> tokenizer::from_vocab(tokenizer_vocab v) {
  if (v.model != "gpt2" && v.model != "llama")
    fail("tokenizer: unsupported tokenizer model '" + v.model + "'", "",
         "\"gpt2\" (byte-level BPE) or \"llama\" (SentencePiece BPE)");
  if (v.model == "llama" && !v.scores.empty() && v.scores.size() != v.tokens.size())
    fail("tokenizer: scores length differs from the token count", std::to_string(v.scores.size()),
         std::to_string(v.tokens.size()));
  if (v.model == "llama" && v.scores.empty()) v.scores.assign(v.tokens.size(), 0.0f);
  if (v.tokens.empty()) fail("tokenizer: the vocabulary is empty", "0 tokens", ">= 1");
  if (v.tokens.size() > (size_t)INT32_MAX / 2) fail("tokenizer: the vocabulary is too large", std::to_string(v.tokens.size()));
  const int32_t n = (int32_t)v.tokens.size();
  if (!v.types.empty() && v.types.size() != v.tokens.size())
    fail("tokenizer: token_type length differs from the token count", std::to_string(v.types.size()),
         std::to_string(v.tokens.size()));
  for (size_t k = 0; k < v.types.size(); k++)
    if (v.types[k] < 0 || v.types[k] > 6)
      fail("tokenizer: token " + std::to_string(k) + " has an unknown token type", std::to_string(v.types[k]), "0..6");
  const std::pair<const char*, int32_t> ids[] = {{"bos", v.bos}, {"eos", v.eos}, {"eot", v.eot}, {"unknown", v.unk},
                                                 {"padding", v.pad}};
  for (const auto& [name, id] : ids)
    if (id < -1 || id >= n)
      fail(std::string("tokenizer: ") + name + " token id out of range", std::to_string(id),
           "-1 (none) or 0.." + std::to_string(n - 1));
  if (v.add_bos && v.bos < 0) fail("tokenizer: add_bos is set but there is no bos token id");
  if (v.add_eos && v.eos < 0) fail("tokenizer: add_eos is set but there is no eos token id");

  std::unique_ptr<tokenizer> t(new tokenizer());
  impl& I = *t->p_;
  I.v = std::move(v);
  const tokenizer_vocab& V = I.v;
  I.pre = std::make_unique<tok::pre_tokenizer>(V.pre);
  I.n_vocab = n;
  I.text_to_id.reserve(V.tokens.size() * 2);
  for (int32_t i = 0; i < n; i++) I.text_to_id[V.tokens[i]] = i;  // a repeated text maps to its last id
  I.sym_text = V.tokens;
  if (V.model == "llama") I.spm = std::make_unique<tok::spm>(&I.text_to_id, &I.v.scores, V.unk);

  I.byte_cp = make_byte_map();
  I.cp_byte.assign(512, -1);
  for (int b = 0; b < 256; b++) {
    I.cp_byte[I.byte_cp[b]] = (int16_t)b;
    append_utf8(I.byte_mapped[b], I.byte_cp[b]);
  }
  for (int b = 0; b < 256; b++) I.byte_sym[b] = I.sym_of(I.byte_mapped[b]);

  I.merges.reserve(V.merges.size() * 2);
  for (size_t r = 0; r < V.merges.size(); r++) {
    const std::string& m = V.merges[r];
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos || sp + 1 >= m.size())
      fail("tokenizer: merge " + std::to_string(r) + " is malformed", "\"" + m + "\"", "\"left right\"");
    const std::string l = m.substr(0, sp), rr = m.substr(sp + 1);
    const int32_t a = I.sym_of(l), b = I.sym_of(rr), c = I.sym_of(l + rr);
    I.merges.emplace(impl::key(a, b), impl::merge{(int32_t)r, c});  // first (lowest rank) wins
  }

  for (int32_t i = 0; i < n; i++) {
    const token_type tt = I.type_of(i);
    if (V.tokens[i].empty()) continue;
    if (tt == token_type::control || tt == token_type::unknown)
      I.specials.push_back({V.tokens[i], i, true});
    else if (tt == token_type::user_defined)
      I.specials.push_back({V.tokens[i], i, false});
  }
  std::stable_sort(I.specials.begin(), I.specials.end(),
                   [](const impl::special& a, const impl::special& b) { return a.text.size() > b.text.size(); });
  if (V.eos >= 0) I.eog.insert(V.eos);
  if (V.eot >= 0) I.eog.insert(V.eot);
  for (const auto& s : k_eog_texts) {
    const auto it = I.text_to_id.find(s);
    if (it != I.text_to_id.end() && I.type_of(it->second) == token_type::control) I.eog.insert(it->second);
  }
  return t;
}

std::unique_ptr<tokenizer> tokenizer::from_gguf(const gguf::file& f) {
  // Every refusal names the file (when it has a path) and, in its message, the key.
  try {
    return from_gguf_checked(f);
  } catch (const error& e) {
    if (f.path().empty()) throw;
    throw error("model file '" + f.path() + "': " + e.what());
  }
}

std::unique_ptr<tokenizer> tokenizer::from_gguf_checked(const gguf::file& f) {
  tokenizer_vocab v;
  v.model = f.get_string("tokenizer.ggml.model");
  if (v.model != "gpt2" && v.model != "llama")
    fail("tokenizer: unsupported tokenizer.ggml.model '" + v.model + "'", "",
         "\"gpt2\" (byte-level BPE) or \"llama\" (SentencePiece BPE)");
  const bool spm = v.model == "llama";
  v.pre = f.find("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : "default";
  v.tokens = f.get_strings("tokenizer.ggml.tokens");
  if (f.find("tokenizer.ggml.token_type"))
    for (int64_t x : f.get_ints("tokenizer.ggml.token_type")) v.types.push_back((int32_t)x);
  if (!spm) v.merges = f.get_strings("tokenizer.ggml.merges");
  if (spm && f.find("tokenizer.ggml.scores"))
    for (double x : f.get_floats("tokenizer.ggml.scores")) v.scores.push_back((float)x);
  auto id = [&](const char* key) {
    const int64_t x = f.get_int(key, -1);
    if (x < -1 || x >= (int64_t)v.tokens.size())
      fail(std::string("tokenizer: ") + key + " out of range", std::to_string(x),
           "0.." + std::to_string(v.tokens.size() - 1));
    return (int32_t)x;
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.eot = id("tokenizer.ggml.eot_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  if (spm) {  // llama.cpp's SentencePiece defaults: unk 0, bos 1, eos 2
    const int32_t n = (int32_t)v.tokens.size();
    if (!f.find("tokenizer.ggml.unknown_token_id") && n > 0) v.unk = 0;
    if (!f.find("tokenizer.ggml.bos_token_id") && n > 1) v.bos = 1;
    if (!f.find("tokenizer.ggml.eos_token_id") && n > 2) v.eos = 2;
  }
  v.pad = id("tokenizer.ggml.padding_token_id");
  auto flag = [&](const char* key, bool fallback) {
    const gguf::value* x = f.find(key);
    if (!x) return fallback;
    if (x->type == gguf::value_type::BOOL) return x->b;
    if (x->is_integer()) return x->i != 0;
    fail(std::string("tokenizer: ") + key + " has the wrong type", gguf::value_type_name(x->type), "bool");
  };
  const bool llama3 = v.pre == "llama-bpe" || v.pre == "llama3" || v.pre == "llama-v3";
  v.add_bos = flag("tokenizer.ggml.add_bos_token", (llama3 || spm) && v.bos >= 0);
  v.add_space_prefix = flag("tokenizer.ggml.add_space_prefix", true);
  v.add_eos = flag("tokenizer.ggml.add_eos_token", false);
  return from_vocab(std::move(v));
}

tokenizer_vocab tokenizer_vocab_bytes(int64_t n_vocab) {
  if (n_vocab < 258 || n_vocab > INT32_MAX / 2)
    fail("byte vocabulary: size", std::to_string(n_vocab), "258 .. " + std::to_string(INT32_MAX / 2),
         "256 byte tokens and the bos and eos tokens");
  tokenizer_vocab v;
  v.pre = "default";
  v.tokens.reserve((size_t)n_vocab);
  const std::vector<uint32_t> byte_cp = make_byte_map();
  for (int b = 0; b < 256; b++) {
    std::string t;
    append_utf8(t, byte_cp[b]);
    v.tokens.push_back(std::move(t));
  }
  for (int64_t id = 256; id < n_vocab - 2; id++) v.tokens.push_back("<|filler_" + std::to_string(id) + "|>");
  v.tokens.push_back("<|begin_of_text|>");
  v.tokens.push_back("<|end_of_text|>");
  v.types.assign((size_t)n_vocab, (int32_t)token_type::normal);
  v.bos = (int32_t)n_vocab - 2;
  v.eos = (int32_t)n_vocab - 1;
  v.types[v.bos] = v.types[v.eos] = (int32_t)token_type::control;
  v.add_bos = true;
  return v;
}

void tokenizer_vocab_write(const tokenizer_vocab& v, gguf::writer& w) {
  using gguf::value;
  w.set("tokenizer.ggml.model", value::from_string(v.model));
  w.set("tokenizer.ggml.pre", value::from_string(v.pre));
  w.set("tokenizer.ggml.tokens", value::from_strings(v.tokens));
  if (!v.types.empty()) w.set("tokenizer.ggml.token_type", value::from_i32s(v.types));
  if (v.model == "llama") {
    w.set("tokenizer.ggml.scores", value::from_f32s(v.scores.empty() ? std::vector<float>(v.tokens.size(), 0.f) : v.scores));
    w.set("tokenizer.ggml.add_space_prefix", value::from_bool(v.add_space_prefix));
  } else {
    w.set("tokenizer.ggml.merges", value::from_strings(v.merges));
  }
  const std::pair<const char*, int32_t> ids[] = {{"tokenizer.ggml.bos_token_id", v.bos},
                                                 {"tokenizer.ggml.eos_token_id", v.eos},
                                                 {"tokenizer.ggml.eot_token_id", v.eot},
                                                 {"tokenizer.ggml.unknown_token_id", v.unk},
                                                 {"tokenizer.ggml.padding_token_id", v.pad}};
  for (const auto& [key, id] : ids)
    if (id >= 0) w.set(key, value::from_u32((uint32_t)id));
  w.set("tokenizer.ggml.add_bos_token", value::from_bool(v.add_bos));
  w.set("tokenizer.ggml.add_eos_token", value::from_bool(v.add_eos));
}

void tokenizer::impl::bpe_uncached(const std::string& piece, std::vector<int32_t>& out) const {
  if (pre->ignore_merges()) {
    std::string mapped;
    for (unsigned char c : piece) mapped += byte_mapped[c];
    const auto it = text_to_id.find(mapped);
    if (it != text_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct node {
    int32_t sym;
    int32_t prev, next;
  };
  const int32_t n = (int32_t)piece.size();
  std::vector<node> nodes(n);
  for (int32_t i = 0; i < n; i++) nodes[i] = {byte_sym[(unsigned char)piece[i]], i - 1, i + 1 < n ? i + 1 : -1};
  struct cand {
    int32_t rank, left, lsym, rsym;
    bool operator>(const cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<cand, std::vector<cand>, std::greater<cand>> heap;
  auto push = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = nodes[l].next;
    if (r < 0) return;
    const auto it = merges.find(key(nodes[l].sym, nodes[r].sym));
    if (it != merges.end()) heap.push({it->second.rank, l, nodes[l].sym, nodes[r].sym});
  };
  for (int32_t i = 0; i + 1 < n; i++) push(i);
  while (!heap.empty()) {
    const cand c = heap.top();
    heap.pop();
    node& l = nodes[c.left];
    if (l.sym != c.lsym || l.next < 0 || nodes[l.next].sym != c.rsym) continue;  // stale
    const int32_t r = l.next;
    l.sym = merges.at(key(c.lsym, c.rsym)).result;
    l.next = nodes[r].next;
    if (l.next >= 0) nodes[l.next].prev = c.left;
    nodes[r].sym = -1;
    push(l.prev);
    push(c.left);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = nodes[i].next) {
    const int32_t s = nodes[i].sym;
    if (s >= 0 && s < n_vocab) {
      out.push_back(s);
      continue;
    }
    // A symbol that is not a vocabulary token (or a byte missing from the vocabulary): emit the
    // single-character tokens of its text, or the unknown token.
    const std::string& text = s >= 0 ? sym_text[s] : byte_mapped[(unsigned char)piece[i]];
    for (size_t k = 0; k < text.size();) {
      size_t len = utf8_seq_len(text, k);
      if (!len) len = 1;
      const auto it = text_to_id.find(text.substr(k, len));
      if (it != text_to_id.end())
        out.push_back(it->second);
      else if (v.unk >= 0)
        out.push_back(v.unk);
      k += len;
    }
  }
}

void tokenizer::impl::bpe(const std::string& text, size_t off, size_t len, std::vector<int32_t>& out) const {
  std::string piece = text.substr(off, len);
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    const auto it = cache.find(piece);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  bpe_uncached(piece, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (piece.size() <= 256) {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() >= 200000) cache.clear();
    cache.emplace(std::move(piece), std::move(ids));
  }
}

std::vector<int32_t> tokenizer::encode(const std::string& text, bool add_special, bool parse_special) const {
  const impl& I = *p_;
  const size_t bad = utf8_find_invalid(text);
  if (bad != std::string::npos) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", (unsigned char)text[bad]);
    fail("tokenizer: invalid UTF-8 in the input at byte " + std::to_string(bad), buf, "valid UTF-8",
         "convert the text to UTF-8, or pass it through utf8_sanitize()");
  }
  std::vector<int32_t> out;
  if (add_special && I.v.add_bos) out.push_back(I.v.bos);

  // Cut special tokens out of the text, longest first; -1 marks raw text.
  struct frag {
    int32_t id;
    size_t off, len;
  };
  std::vector<frag> frags{{-1, 0, text.size()}}, next;
  for (const auto& sp : I.specials) {
    if (sp.control && !parse_special) continue;
    next.clear();
    for (const frag& f : frags) {
      if (f.id >= 0) {
        next.push_back(f);
        continue;
      }
      size_t pos = f.off, from = f.off;
      const size_t end = f.off + f.len;
      while (pos < end) {
        const size_t hit = text.find(sp.text, from);
        if (hit == std::string::npos || hit + sp.text.size() > end) break;
        // Only cut at character boundaries: a token text that starts or ends inside a UTF-8
        // sequence would leave fragments that are not UTF-8, which the regexes must not see.
        if (!char_boundary(text, hit) || !char_boundary(text, hit + sp.text.size())) {
          from = hit + 1;
          continue;
        }
        if (hit > pos) next.push_back({-1, pos, hit - pos});
        next.push_back({sp.id, hit, sp.text.size()});
        pos = from = hit + sp.text.size();
      }
      if (pos < end) next.push_back({-1, pos, end - pos});
    }
    std::swap(frags, next);
  }

  tok::match_scratch scratch;
  std::vector<std::pair<size_t, size_t>> pieces;
  bool prev_special = true;  // SentencePiece: a space before the first span and after special tokens
  for (const frag& f : frags) {
    if (f.id >= 0) {
      out.push_back(f.id);
      prev_special = true;
      continue;
    }
    if (I.spm) {
      if (f.len == 0) continue;  // the empty text: no span at all (llama.cpp)
      std::string span = I.v.add_space_prefix && prev_special ? " " : "";
      span.append(text, f.off, f.len);
      std::string esc;
      for (char c : span) esc += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
      I.spm->encode(esc, out);
      prev_special = false;
      continue;
    }
    pieces.clear();
    I.pre->split(text, f.off, f.off + f.len, pieces, scratch);
    for (const auto& [off, len] : pieces) I.bpe(text, off, len, out);
  }
  if (add_special && I.v.add_eos) out.push_back(I.v.eos);
  return out;
}

std::string tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const impl& I = *p_;
  if (id < 0 || id >= I.n_vocab)
    fail("tokenizer: token id out of range", std::to_string(id), "0.." + std::to_string(I.n_vocab - 1));
  const std::string& text = I.v.tokens[id];
  switch (I.type_of(id)) {
    case token_type::control:
    case token_type::unknown:
      return render_special ? text : std::string();
    case token_type::user_defined:
      return text;
    default:
      break;
  }
  if (I.spm) {
    const token_type tt = I.type_of(id);
    if (tt == token_type::byte && text.size() == 6 && text.compare(0, 3, "<0x") == 0)
      return std::string(1, (char)std::stoi(text.substr(3, 2), nullptr, 16));
    if (tt != token_type::normal) return {};  // unused and undefined tokens render nothing (llama.cpp)
    std::string out;
    for (size_t k = 0; k < text.size();) {
      if (text.compare(k, 3, "\xE2\x96\x81") == 0) {
        out += ' ';
        k += 3;
      } else {
        out += text[k++];
      }
    }
    return out;
  }
  std::string out;
  out.reserve(text.size());
  for (size_t k = 0; k < text.size();) {
    const size_t len = utf8_seq_len(text, k);
    if (!len) {  // not UTF-8: pass the byte through
      out += text[k++];
      continue;
    }
    const uint32_t cp = utf8_decode_at(text, k, len);
    if (cp < I.cp_byte.size() && I.cp_byte[cp] >= 0)
      out += (char)(uint8_t)I.cp_byte[cp];
    else
      out.append(text, k, len);
    k += len;
  }
  return out;
}

std::string tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) out += token_to_piece(id, render_special);
  return out;
}

int32_t tokenizer::n_vocab() const { return p_->n_vocab; }

const std::string& tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= p_->n_vocab)
    fail("tokenizer: token id out of range", std::to_string(id), "0.." + std::to_string(p_->n_vocab - 1));
  return p_->v.tokens[id];
}

token_type tokenizer::type(int32_t id) const {
  if (id < 0 || id >= p_->n_vocab)
    fail("tokenizer: token id out of range", std::to_string(id), "0.." + std::to_string(p_->n_vocab - 1));
  return p_->type_of(id);
}

int32_t tokenizer::find_token(const std::string& text) const {
  const auto it = p_->text_to_id.find(text);
  return it == p_->text_to_id.end() ? -1 : it->second;
}

int32_t tokenizer::bos() const { return p_->v.bos; }
int32_t tokenizer::eos() const { return p_->v.eos; }
bool tokenizer::add_bos() const { return p_->v.add_bos; }
bool tokenizer::is_eog(int32_t id) const { return p_->eog.count(id) != 0; }
const std::string& tokenizer::pre() const { return p_->v.pre; }

}  // namespace hashattn
