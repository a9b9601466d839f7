// Regex pre-tokenizers (see tokenizer-pre.h). The regex sequences follow the pre-tokenizer names
// written by llama.cpp's converters into tokenizer.ggml.pre:
//   smollm (= starcoder, refact, command-r, codeshell, exaone, minerva): every digit alone, then GPT-2
//   llama-bpe (= llama3, llama-v3, falcon3, pixtral): the Llama-3 regex; whole-token pieces skip BPE
//   qwen2: the Llama-3 regex with single digits
//   gpt-2 (= gpt2, mpt, olmo, jais): the GPT-2 regex
//   default: punctuation runs, GPT-2, digit runs, groups of three ASCII digits
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer-pre.h"

#include <pcre2.h>

#include <map>
#include <new>

#include "hashattn/error.h"

namespace hashattn::tok {

namespace {

const char* k_gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char* k_llama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* k_qwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct family {
  std::vector<const char*> regexes;
  bool ignore_merges;
};

const std::map<std::string, family>& families() {
  static const std::map<std::string, family> m = [] {
    std::map<std::string, family> r;
    const family smollm{{"\\p{N}", k_gpt2}, false};
    for (const char* n : {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}) r[n] = smollm;
    const family llama3{{k_llama3}, true};
    for (const char* n : {"llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral"}) r[n] = llama3;
    r["qwen2"] = family{{k_qwen2}, false};
    const family gpt2{{k_gpt2}, false};
    for (const char* n : {"gpt-2", "gpt2", "mpt", "olmo", "jais"}) r[n] = gpt2;
    r["default"] = family{{"[\\p{P}\\$\\+<=>\\^~\\|]+", k_gpt2, "\\p{N}+", "[0-9][0-9][0-9]"}, false};
    return r;
  }();
  return m;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return std::string((const char*)buf);
}

}  // namespace

std::vector<std::string> pre_tokenizer::known_names() {
  std::vector<std::string> out;
  for (const auto& [k, v] : families()) out.push_back(k);
  return out;
}

pre_tokenizer::pre_tokenizer(const std::string& name) {
  const auto& fams = families();
  const auto it = fams.find(name);
  if (it == fams.end()) {
    std::string known;
    for (const auto& [k, v] : fams) known += (known.empty() ? "" : ", ") + k;
    fail("tokenizer: unknown pre-tokenizer '" + name + "'", "", "one of " + known,
         "this model's tokenizer.ggml.pre is not supported yet");
  }
  ignore_merges_ = it->second.ignore_merges;
  for (const char* rx : it->second.regexes) {
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code* c = pcre2_compile((PCRE2_SPTR)rx, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    if (!c) {
      for (void* p : codes_) pcre2_code_free((pcre2_code*)p);
      fail("tokenizer: cannot compile pre-tokenizer regex", pcre2_message(err) + " at offset " + std::to_string(off));
    }
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
    codes_.push_back(c);
  }
}

pre_tokenizer::~pre_tokenizer() {
  for (void* p : codes_) pcre2_code_free((pcre2_code*)p);
}

match_scratch::match_scratch() {
  md = pcre2_match_data_create(4, nullptr);
  mc = pcre2_match_context_create(nullptr);
  js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  if (!md || !mc || !js) {
    this->~match_scratch();
    throw std::bad_alloc();
  }
  pcre2_jit_stack_assign((pcre2_match_context*)mc, nullptr, js);
}

match_scratch::~match_scratch() {
  if (md) pcre2_match_data_free((pcre2_match_data*)md);
  if (mc) pcre2_match_context_free((pcre2_match_context*)mc);
  if (js) pcre2_jit_stack_free((pcre2_jit_stack*)js);
  md = mc = js = nullptr;
}

void pre_tokenizer::split(const std::string& text, size_t begin, size_t end,
                          std::vector<std::pair<size_t, size_t>>& out, match_scratch& scratch) const {
  if (end <= begin) return;
  std::vector<std::pair<size_t, size_t>> cur{{begin, end - begin}}, next;
  pcre2_match_data* md = (pcre2_match_data*)scratch.md;
  pcre2_match_context* mc = (pcre2_match_context*)scratch.mc;
  for (void* cp : codes_) {
    const pcre2_code* code = (const pcre2_code*)cp;
    next.clear();
    for (const auto& [off, len] : cur) {
      // Each fragment is its own subject: lookaheads stop at the fragment's end.
      const PCRE2_SPTR subj = (PCRE2_SPTR)(text.data() + off);
      size_t pos = 0, last = 0;
      while (pos < len) {
        const int rc = pcre2_match(code, subj, len, pos, PCRE2_NO_UTF_CHECK, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) fail("tokenizer: pre-tokenizer regex failed", pcre2_message(rc), "", "the input may be too long; split it");
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t ms = ov[0], me = ov[1];
        if (me == ms) {  // empty match: step over one code point
          pos = ms + 1;
          while (pos < len && (text[off + pos] & 0xC0) == 0x80) pos++;
          continue;
        }
        if (ms > last) next.emplace_back(off + last, ms - last);
        next.emplace_back(off + ms, me - ms);
        last = pos = me;
      }
      if (last < len) next.emplace_back(off + last, len - last);
    }
    std::swap(cur, next);
  }
  out.insert(out.end(), cur.begin(), cur.end());
}

}  // namespace hashattn::tok
