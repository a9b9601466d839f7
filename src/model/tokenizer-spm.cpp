// SentencePiece BPE (model/tokenizer-spm.h); the steps of llama.cpp's llm_tokenizer_spm_session.
#include "model/tokenizer-spm.h"

#include <cstdio>
#include <queue>

namespace hashattn::tok {

spm::spm(const std::unordered_map<std::string, int32_t>* text_to_id, const std::vector<float>* scores, int32_t unk)
    : t2i_(text_to_id), scores_(scores), unk_(unk) {
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    auto it = t2i_->find(hex);
    if (it == t2i_->end()) it = t2i_->find(std::string(1, (char)b));
    byte_tok_[b] = it == t2i_->end() ? -1 : it->second;
  }
}

int32_t spm::byte_token(uint8_t b) const { return byte_tok_[b]; }

namespace {

struct symbol {
  int prev, next;
  size_t off, n;
};

struct bigram {
  int left, right;
  float score;
  size_t size;
};

struct lower {  // the queue's top: highest score, then leftmost
  bool operator()(const bigram& l, const bigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

size_t utf8_len(unsigned char c) {
  static const size_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[c >> 4];
}

}  // namespace

void spm::encode(const std::string& text, std::vector<int32_t>& out) const {
  std::vector<symbol> sym;
  for (size_t off = 0; off < text.size();) {
    const size_t n = std::min(utf8_len((unsigned char)text[off]), text.size() - off);
    const int i = (int)sym.size();
    sym.push_back({i - 1, off + n == text.size() ? -1 : i + 1, off, n});
    off += n;
  }
  std::priority_queue<bigram, std::vector<bigram>, lower> q;
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    std::string s = text.substr(sym[l].off, sym[l].n + sym[r].n);
    const auto it = t2i_->find(s);
    if (it == t2i_->end() || it->second < 0 || (size_t)it->second >= scores_->size()) return;
    q.push({l, r, (*scores_)[it->second], s.size()});
  };
  for (int i = 1; i < (int)sym.size(); ++i) try_add(i - 1, i);
  while (!q.empty()) {
    const bigram b = q.top();
    q.pop();
    symbol& L = sym[b.left];
    symbol& R = sym[b.right];
    if (L.n == 0 || R.n == 0 || L.n + R.n != b.size) continue;
    L.n += R.n;
    R.n = 0;
    L.next = R.next;
    if (R.next >= 0) sym[R.next].prev = b.left;
    try_add(L.prev, b.left);
    try_add(b.left, L.next);
  }
  // Each final symbol: its token, else (a character that is no token: merges only make tokens, so
  // llama.cpp's split along the merges never applies) its byte-fallback tokens.
  for (int i = sym.empty() ? -1 : 0; i != -1; i = sym[i].next) {
    const auto it = t2i_->find(text.substr(sym[i].off, sym[i].n));
    if (it != t2i_->end()) {
      out.push_back(it->second);
      continue;
    }
    for (size_t k = 0; k < sym[i].n; ++k) {
      const int32_t t = byte_tok_[(uint8_t)text[sym[i].off + k]];
      out.push_back(t >= 0 ? t : unk_);
    }
  }
}

}  // namespace hashattn::tok
