// Held-out texts for evaluation: normalization (paragraphs, blanks, KJV verse labels), sentence
// splitting for haystacks, WordNet word lists for synthetic keys, and the corpus loader.
// Text layout after normalization: paragraphs separated by "\n\n", single spaces inside.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "hashattn/error.h"
#include "hashattn/eval.h"

namespace hashattn {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("eval: cannot open text file '" + path + "' (hint: run scripts/setup --texts)");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "Ge1:1 ", "1Jo2:3 ", "Re22:21 ": book abbreviation, chapter, colon, verse, blank.
size_t verse_label_length(const std::string& line) {
  size_t i = 0;
  if (i < line.size() && std::isdigit((unsigned char)line[i])) ++i;
  size_t letters = 0;
  while (i < line.size() && std::isalpha((unsigned char)line[i])) ++i, ++letters;
  if (letters == 0 || letters > 4) return 0;
  size_t d1 = 0;
  while (i < line.size() && std::isdigit((unsigned char)line[i])) ++i, ++d1;
  if (d1 == 0 || i >= line.size() || line[i] != ':') return 0;
  ++i;
  size_t d2 = 0;
  while (i < line.size() && std::isdigit((unsigned char)line[i])) ++i, ++d2;
  if (d2 == 0 || i >= line.size() || line[i] != ' ') return 0;
  return i + 1;
}

std::string collapse_blanks(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  bool blank = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\r') {
      blank = true;
      continue;
    }
    if (blank && !out.empty()) out += ' ';
    blank = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string eval_text_normalize(const std::string& raw) {
  std::string out;
  out.reserve(raw.size());
  std::string para;
  auto flush = [&]() {
    std::string p = collapse_blanks(para);
    para.clear();
    if (p.empty()) return;
    if (!out.empty()) out += "\n\n";
    out += p;
  };
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t nl = raw.find('\n', pos);
    if (nl == std::string::npos) nl = raw.size();
    std::string line = raw.substr(pos, nl - pos);
    pos = nl + 1;
    size_t v = verse_label_length(line);
    if (v > 0) {  // a verse: its own paragraph
      flush();
      para = line.substr(v);
      flush();
      continue;
    }
    bool empty = line.find_first_not_of(" \t\r") == std::string::npos;
    if (empty) {
      flush();
      continue;
    }
    if (!para.empty()) para += ' ';
    para += line;
    if (nl == raw.size()) break;
  }
  flush();
  return out;
}

std::vector<std::string> eval_split_sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  auto push = [&]() {
    size_t a = cur.find_first_not_of(" \n");
    size_t b = cur.find_last_not_of(" \n");
    if (a != std::string::npos) {
      std::string s = cur.substr(a, b - a + 1);
      for (char& c : s)
        if (c == '\n') c = ' ';
      // collapse the "  " a paragraph break leaves
      out.push_back(collapse_blanks(s));
    }
    cur.clear();
  };
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    char c = text[i];
    cur += c;
    if (c == '.' || c == '!' || c == '?') {
      size_t j = i + 1;
      while (j < n && (text[j] == '"' || text[j] == '\'' || text[j] == ')')) cur += text[j++];
      if (j >= n || text[j] == ' ' || text[j] == '\n') {
        i = j - 1;
        push();
      } else {
        i = j - 1;
      }
    } else if (c == '\n' && i + 1 < n && text[i + 1] == '\n') {
      push();  // a paragraph without final punctuation (headings) ends its sentence
      ++i;
    }
  }
  push();
  // Drop fragments that carry no words (page numbers, lone punctuation).
  std::vector<std::string> kept;
  kept.reserve(out.size());
  for (auto& s : out) {
    int letters = 0;
    for (char c : s) letters += std::isalpha((unsigned char)c) ? 1 : 0;
    if (letters >= 3) kept.push_back(std::move(s));
  }
  return kept;
}

std::vector<std::string> eval_load_wordnet(const std::string& path) {
  std::string raw = read_file(path);
  std::vector<std::string> words;
  std::istringstream in(raw);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == ' ') continue;  // license header lines start with blanks
    size_t sp = line.find(' ');
    std::string w = line.substr(0, sp);
    if (w.size() < 3 || w.size() > 12) continue;
    bool ok = std::all_of(w.begin(), w.end(), [](char c) { return c >= 'a' && c <= 'z'; });
    if (ok) words.push_back(w);
  }
  if (words.size() < 100)
    fail("eval: word list '" + path + "': got " + std::to_string(words.size()) +
         " usable words, expected a WordNet index with thousands (hint: install wordnet-base)");
  return words;
}

eval_corpus eval_corpus_load(const std::vector<std::string>& text_paths, const std::string& wordnet_dir) {
  eval_corpus c;
  for (const auto& p : text_paths) {
    std::string name = p;
    size_t sl = name.find_last_of('/');
    if (sl != std::string::npos) name = name.substr(sl + 1);
    size_t dot = name.find('.');
    if (dot != std::string::npos) name = name.substr(0, dot);
    std::string t = eval_text_normalize(read_file(p));
    auto sents = eval_split_sentences(t);
    if (t.size() < 20000 || sents.size() < 200)
      fail("eval: text '" + p + "': got " + std::to_string(t.size()) + " bytes and " +
           std::to_string(sents.size()) + " sentences, expected a long text (>= 20000 bytes, 200 sentences)");
    c.names.push_back(name);
    c.texts.push_back(std::move(t));
    c.sentences.push_back(std::move(sents));
  }
  if (!wordnet_dir.empty()) {
    c.nouns = eval_load_wordnet(wordnet_dir + "/index.noun");
    c.adjectives = eval_load_wordnet(wordnet_dir + "/index.adj");
  }
  return c;
}

}  // namespace hashattn
