// Regex pre-tokenizers of byte-level BPE vocabularies, on PCRE2 (UTF + UCP, JIT when available).
// A pre-tokenizer is a sequence of regexes; each one splits every current fragment into its
// matches and the unmatched text between them (both kept), so every byte of the input ends up
// in exactly one piece. Lookaheads never see past the fragment being split.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace hashattn::tok {

// PCRE2 match data, match context and JIT stack; create one per encode call (not thread-safe).
class match_scratch {
 public:
  match_scratch();
  ~match_scratch();
  match_scratch(const match_scratch&) = delete;
  match_scratch& operator=(const match_scratch&) = delete;
  void* md = nullptr;
  void* mc = nullptr;
  void* js = nullptr;
};

class pre_tokenizer {
 public:
  explicit pre_tokenizer(const std::string& name);  // throws for unknown names
  ~pre_tokenizer();
  pre_tokenizer(const pre_tokenizer&) = delete;
  pre_tokenizer& operator=(const pre_tokenizer&) = delete;

  // Splits text[begin, end) (valid UTF-8) and appends (offset, length) pieces to out.
  void split(const std::string& text, size_t begin, size_t end, std::vector<std::pair<size_t, size_t>>& out,
             match_scratch& scratch) const;
  // True when a piece that is itself a vocabulary token skips BPE (llama3-style vocabularies).
  bool ignore_merges() const { return ignore_merges_; }
  static std::vector<std::string> known_names();

 private:
  std::vector<void*> codes_;  // pcre2_code_8*
  bool ignore_merges_ = false;
};

}  // namespace hashattn::tok
