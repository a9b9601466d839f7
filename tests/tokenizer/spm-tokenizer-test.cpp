// SentencePiece tokenizer (tokenizer.ggml.model = "llama") against llama.cpp's ids:
// tests/data/spm-goldens.json (tests/data/make-spm-goldens.py) holds two vocabularies, a subset of the
// Llama 2 / Mistral one with add_space_prefix ("llama") and the same without it plus two control tokens
// ("gemma", as Gemma 3), and llama.cpp's token ids for the string set of the BPE goldens (plus a few)
// with and without BOS and special-token parsing, and its rendering of the ids.
// The vocabularies are built here through the GGUF writer and read back as a model file would be.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "hashattn/gguf.h"
#include "hashattn/tokenizer.h"

namespace hashattn {
namespace {

using json = nlohmann::json;

const json& goldens() {
  static const json j = [] {
    std::ifstream in(std::string(HASHATTN_SOURCE_DIR) + "/tests/data/spm-goldens.json");
    return in ? json::parse(in) : json();
  }();
  return j;
}

std::unique_ptr<tokenizer> build(const json& fl) {
  tokenizer_vocab v;
  v.model = "llama";
  v.pre = "default";
  v.tokens = fl["tokens"].get<std::vector<std::string>>();
  v.scores = fl["scores"].get<std::vector<float>>();
  v.types = fl["types"].get<std::vector<int32_t>>();
  v.bos = fl["bos"];
  v.eos = fl["eos"];
  v.unk = fl["unk"];
  v.add_bos = true;
  v.add_space_prefix = fl["add_space_prefix"];
  gguf::writer w;
  w.set("general.architecture", gguf::value::from_string("llama"));
  tokenizer_vocab_write(v, w);
  const std::vector<uint8_t> bytes = w.to_bytes();
  return tokenizer::from_gguf(*gguf::file::from_buffer(bytes.data(), bytes.size()));
}

void check_flavour(const std::string& name) {
  ASSERT_TRUE(goldens().is_object()) << "tests/data/spm-goldens.json is missing";
  const json* fl = nullptr;
  for (const auto& f : goldens()["flavours"])
    if (f["name"] == name) fl = &f;
  ASSERT_NE(fl, nullptr) << name;
  auto t = build(*fl);
  EXPECT_TRUE(t->add_bos());
  int n = 0, bad = 0;
  for (const auto& c : (*fl)["cases"]) {
    const std::string text = c["text"];
    for (int add = 0; add < 2; ++add)
      for (int sp = 0; sp < 2; ++sp) {
        const std::string key = "ids_add" + std::to_string(add) + "_special" + std::to_string(sp);
        const auto want = c[key].get<std::vector<int32_t>>();
        const auto got = t->encode(text, add != 0, sp != 0);
        ++n;
        if (got != want) {
          ++bad;
          ADD_FAILURE() << name << " " << key << " of \"" << text << "\": " << testing::PrintToString(got)
                        << " vs llama.cpp " << testing::PrintToString(want);
        }
      }
    EXPECT_EQ(t->decode(c["ids_add0_special1"].get<std::vector<int32_t>>(), true), c["detok"].get<std::string>())
        << name << " rendering of \"" << text << "\"";
  }
  std::printf("spm %s: %d / %d encodings equal to llama.cpp's\n", name.c_str(), n - bad, n);
}

TEST(spm_tokenizer, llama_flavour_matches_llama_cpp) { check_flavour("llama"); }
TEST(spm_tokenizer, gemma_flavour_matches_llama_cpp) { check_flavour("gemma"); }

}  // namespace
}  // namespace hashattn
