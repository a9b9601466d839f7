// SentencePiece BPE (GGUF tokenizer.ggml.model = "llama"), as llama.cpp's SPM tokenizer does it:
// the text (spaces already written as U+2581 "▁") starts as one symbol per UTF-8 character; the
// adjacent pair whose concatenation is a vocabulary token with the highest score is merged first
// (leftmost on ties), until no pair forms a token; each final symbol is its token, and a character
// that is no token becomes byte-fallback tokens <0xXX> (or the token of the single byte; else unk).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace hashattn::tok {

class spm {
 public:
  // text_to_id: every token's text -> id; scores: per token.
  spm(const std::unordered_map<std::string, int32_t>* text_to_id, const std::vector<float>* scores, int32_t unk);
  void encode(const std::string& text, std::vector<int32_t>& out) const;
  // The token of byte b: "<0xXX>", else the one-byte text; -1 when neither exists.
  int32_t byte_token(uint8_t b) const;

 private:
  const std::unordered_map<std::string, int32_t>* t2i_;
  const std::vector<float>* scores_;
  int32_t unk_;
  int32_t byte_tok_[256];
};

}  // namespace hashattn::tok
