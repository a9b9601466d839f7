// Fuzz target "tokenizer": encode / decode with
//   - a tiny synthetic byte-level BPE vocabulary built in-process (256 byte tokens, a few merges
//     with and without their result in the vocabulary, control / user-defined / unknown tokens),
//     one per pre-tokenizer family;
//   - the same vocabulary plus up to 7 tokens taken from the input (any type, any bytes);
//   - the real SmolLM2 vocabulary, loaded once from models/ (HASHATTN_MODEL overrides the path;
//     skipped, falling back to the synthetic one, when the model is absent).
// Input: byte 0 = flags (bits 0-2 vocabulary: 0-4 synthetic with pre-tokenizer k, 5 real, 6-7
// custom; bit 3 add_special, 4 parse_special, 5 render_special, 6 decode mode, 7 sanitize first).
// Custom: byte 1 = pre-tokenizer (bits 0-2, mod 5) and token count (bits 3-5), then per token
// [type byte][length byte][bytes]. The rest is the text (encode) or 3-byte ids (decode).
// Invariants: encode fails iff the text is not UTF-8; ids are in range; decode(encode(text)) is the
// text (plus rendered BOS/EOS) whenever every byte has its token and no token text is repeated.
#include <memory>
#include <string>
#include <vector>

#include "fuzz-entry.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/tokenizer.h"

namespace hashattn::fuzz {

namespace {

const char* const k_pres[] = {"smollm", "llama-bpe", "qwen2", "gpt2", "default"};

std::string byte_mapped(unsigned b) {
  // GPT-2 byte map: printable bytes stand for themselves, the others map to U+0100.. in order.
  unsigned cp = b, next = 256;
  auto printable = [](unsigned x) { return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174; };
  if (!printable(b)) {
    for (unsigned x = 0; x < b; x++)
      if (!printable(x)) next++;
    cp = next;
  }
  std::string s;
  if (cp < 0x80) {
    s += (char)cp;
  } else {
    s += (char)(0xC0 | (cp >> 6));
    s += (char)(0x80 | (cp & 0x3F));
  }
  return s;
}

tokenizer_vocab synthetic_vocab(const char* pre) {
  tokenizer_vocab v;
  v.pre = pre;
  for (unsigned b = 0; b < 256; b++) v.tokens.push_back(byte_mapped(b));
  v.types.assign(256, (int32_t)token_type::normal);
  const std::string sp = byte_mapped(' ');  // "Ġ"
  // Merges by rank; "in"+"g" -> "ing" and "Ġt"+"o" -> "Ġto" are left out of the vocabulary so
  // that BPE reaches symbols that are not tokens.
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"t", "h"}, {sp, "t"}, {"th", "e"}, {sp + "t", "he"}, {"i", "n"}, {"e", "r"}, {sp, "a"},
      {"o", "n"}, {"in", "g"}, {sp + "t", "o"}, {"1", "2"}, {"12", "3"}, {"Ã", "©"}, {"a", "b"},
      {"ab", "ab"}, {"abab", "abab"}, {sp, sp}, {sp + sp, sp + sp}};
  for (const auto& [l, r] : merges) {
    v.merges.push_back(l + " " + r);
    const std::string res = l + r;
    if (res == "ing" || res == sp + "to") continue;
    bool have = false;
    for (const auto& t : v.tokens) have = have || t == res;
    if (!have) {
      v.tokens.push_back(res);
      v.types.push_back((int32_t)token_type::normal);
    }
  }
  auto add = [&](const std::string& text, token_type t) {
    v.tokens.push_back(text);
    v.types.push_back((int32_t)t);
    return (int32_t)v.tokens.size() - 1;
  };
  v.eos = add("<|endoftext|>", token_type::control);
  v.bos = v.eos;
  add("<|im_start|>", token_type::control);
  v.eot = add("<|im_end|>", token_type::control);
  v.unk = add("<unk>", token_type::unknown);
  add("<tool>", token_type::user_defined);
  add("<tool_call>", token_type::user_defined);
  add("", token_type::unused);
  v.add_bos = std::string(pre) == "llama-bpe";
  return v;
}

struct vocab_slot {
  std::unique_ptr<tokenizer> tok;
  bool roundtrip = false;  // every byte has its token and no token text repeats
};

bool roundtrip_ok(const tokenizer& t) {
  for (unsigned b = 0; b < 256; b++) {
    const int32_t id = t.find_token(byte_mapped(b));
    if (id < 0 || t.type(id) != token_type::normal) return false;
  }
  return true;
}

const std::vector<vocab_slot>& synthetic() {
  static const std::vector<vocab_slot> s = [] {
    std::vector<vocab_slot> r;
    for (const char* pre : k_pres) {
      vocab_slot v;
      v.tok = tokenizer::from_vocab(synthetic_vocab(pre));
      v.roundtrip = roundtrip_ok(*v.tok);
      r.push_back(std::move(v));
    }
    return r;
  }();
  return s;
}

const vocab_slot* real_vocab() {
  static const vocab_slot* r = []() -> const vocab_slot* {
    std::string path;
    if (const char* env = std::getenv("HASHATTN_MODEL"))
      path = env;
    else
      path = std::string(HASHATTN_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    try {
      auto f = gguf::file::open(path);
      auto* v = new vocab_slot();
      v->tok = tokenizer::from_gguf(*f);
      v->roundtrip = roundtrip_ok(*v->tok);
      return v;
    } catch (const hashattn::error&) {
      return nullptr;  // no model: the synthetic vocabulary stands in
    }
  }();
  return r;
}

std::string escaped(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    char buf[8];
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      o += (char)c;
    } else {
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      o += buf;
    }
  }
  return o;
}

void check_encode(const tokenizer& tok, bool roundtrip, const std::string& text, bool add_special,
                  bool parse_special) {
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(text, add_special, parse_special);
  } catch (const hashattn::error&) {
    HASHATTN_FUZZ_CHECK(utf8_find_invalid(text) != std::string::npos);
    return;
  }
  HASHATTN_FUZZ_CHECK(utf8_find_invalid(text) == std::string::npos);
  for (int32_t id : ids) HASHATTN_FUZZ_CHECK(id >= 0 && id < tok.n_vocab());
  const std::string back = tok.decode(ids, true);
  if (!roundtrip) return;
  std::string expect = text;
  if (add_special && tok.add_bos()) expect = tok.token_to_piece(tok.bos(), true) + expect;
  if (back != expect) {
    std::fprintf(stderr, "round trip differs\n  text:    %s\n  decoded: %s\n  ids:", escaped(expect).c_str(),
                 escaped(back).c_str());
    for (int32_t id : ids) std::fprintf(stderr, " %d", id);
    std::fprintf(stderr, "\n");
  }
  HASHATTN_FUZZ_CHECK(back == expect);
}

void check_decode(const tokenizer& tok, const uint8_t* d, size_t n, bool render_special) {
  std::vector<int32_t> ids;
  for (size_t k = 0; k + 3 <= n; k += 3) ids.push_back((int32_t)(d[k] | d[k + 1] << 8 | d[k + 2] << 16) - 16);
  std::string s;
  try {
    s = tok.decode(ids, render_special);
  } catch (const hashattn::error&) {
    bool bad = false;
    for (int32_t id : ids) bad = bad || id < 0 || id >= tok.n_vocab();
    HASHATTN_FUZZ_CHECK(bad);
    return;
  }
  // The streaming helpers on arbitrary bytes.
  const size_t p = utf8_complete_prefix(s);
  HASHATTN_FUZZ_CHECK(p <= s.size() && s.size() - p <= 3);
  const std::string clean = utf8_sanitize(s);
  HASHATTN_FUZZ_CHECK(utf8_find_invalid(clean) == std::string::npos);
  if (utf8_find_invalid(s) == std::string::npos) HASHATTN_FUZZ_CHECK(clean == s);
}

}  // namespace

int tokenizer_one(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const bool add_special = flags & 8, parse_special = flags & 16, render_special = flags & 32;
  const bool decode_mode = flags & 64, sanitize = flags & 128;
  size_t pos = 1;
  const unsigned which = flags & 7;
  std::unique_ptr<tokenizer> custom;
  const tokenizer* tok = nullptr;
  bool roundtrip = false;
  if (which <= 4) {
    tok = synthetic()[which].tok.get();
    roundtrip = synthetic()[which].roundtrip;
  } else if (which == 5) {
    const vocab_slot* r = real_vocab();
    const vocab_slot& s = r ? *r : synthetic()[0];
    tok = s.tok.get();
    roundtrip = s.roundtrip;
  } else {
    if (size < 2) return 0;
    const uint8_t b = data[1];
    pos = 2;
    tokenizer_vocab v = synthetic_vocab(k_pres[(b & 7) % 5]);
    const unsigned n_extra = (b >> 3) & 7;
    bool repeated = false;
    for (unsigned k = 0; k < n_extra; k++) {
      if (pos + 2 > size) return 0;
      const int32_t type = data[pos] % 8;  // 7 is not a token type: from_vocab must refuse it
      const size_t len = data[pos + 1] % 16;
      pos += 2;
      if (pos + len > size) return 0;
      std::string text((const char*)data + pos, len);
      pos += len;
      for (const auto& t : v.tokens) repeated = repeated || t == text;
      v.tokens.push_back(text);
      v.types.push_back(type);
    }
    try {
      custom = tokenizer::from_vocab(std::move(v));
    } catch (const hashattn::error&) {
      return 0;
    }
    tok = custom.get();
    roundtrip = !repeated && roundtrip_ok(*custom);
  }
  if (decode_mode) {
    check_decode(*tok, data + pos, size - pos, render_special);
    return 0;
  }
  std::string text((const char*)data + pos, size - pos);
  if (sanitize) text = utf8_sanitize(text);
  check_encode(*tok, roundtrip, text, add_special, parse_special);
  return 0;
}

}  // namespace hashattn::fuzz
