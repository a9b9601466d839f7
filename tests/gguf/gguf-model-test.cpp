// Opens the default model (models/SmolLM2-135M-Instruct.Q4_1.gguf) and checks its layout and
// dequantized rows against tests/data/gguf-model-golden.json, written by the `gguf` Python package
// (tests/data/make-gguf-goldens.py).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hashattn/gguf.h"

using namespace hashattn::gguf;

namespace {

const std::string k_model = std::string(HASHATTN_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

nlohmann::json golden() {
  std::ifstream in(std::string(HASHATTN_SOURCE_DIR) + "/tests/data/gguf-model-golden.json");
  return nlohmann::json::parse(in);
}

}  // namespace

TEST(gguf_model, layout_and_metadata) {
  auto f = file::open(k_model);
  const auto g = golden();
  EXPECT_EQ(f->size(), g["file_size"].get<size_t>());
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->metadata().size(), g["n_kv"].get<size_t>());
  EXPECT_EQ(f->tensors().size(), 272u);
  EXPECT_EQ(f->tensors().size(), g["n_tensors"].get<size_t>());
  EXPECT_EQ(f->data_offset(), g["data_offset"].get<size_t>());
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count"), 30);
  EXPECT_EQ(f->get_int("llama.embedding_length"), 576);
  EXPECT_EQ(f->get_int("llama.attention.head_count"), 9);
  EXPECT_EQ(f->get_int("llama.attention.head_count_kv"), 3);
  EXPECT_NEAR(f->get_float("llama.rope.freq_base"), 100000.0, 1e-6);
  EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f->get_strings("tokenizer.ggml.tokens").size(), 49152u);
  std::map<std::string, int> counts;
  for (const auto& t : f->tensors()) {
    counts[std::string(type_name(t.type)) + "/" + std::to_string(t.ne.size())]++;
    if (t.name.rfind("blk.", 0) == 0 && t.ne.size() == 2) {
      EXPECT_EQ(t.type, type::Q4_1) << t.name;
    }
    if (t.name.find("norm") != std::string::npos) {
      EXPECT_EQ(t.type, type::F32) << t.name;
    }
  }
  for (const auto& [k, v] : g["type_counts"].items()) EXPECT_EQ(counts[k], v.get<int>()) << k;
  EXPECT_EQ(f->tensor("token_embd.weight").type, type::Q8_0);
  for (int l = 0; l < 30; l++) EXPECT_NE(f->find_tensor("blk." + std::to_string(l) + ".attn_q.weight"), nullptr);
  for (const auto& ti : g["tensors"]) {
    const auto& t = f->tensor(ti["name"]);
    SCOPED_TRACE(t.name);
    EXPECT_STREQ(type_name(t.type), ti["type"].get<std::string>().c_str());
    EXPECT_EQ(t.ne, ti["ne"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.offset, ti["offset"].get<uint64_t>());
    EXPECT_EQ(t.nbytes, ti["nbytes"].get<size_t>());
  }
}

TEST(gguf_model, dequantized_rows_match_python_gguf) {
  auto f = file::open(k_model);
  const auto g = golden();
  int n_rows = 0;
  for (const auto& r : g["rows"]) {
    const auto& t = f->tensor(r["tensor"]);
    const int64_t row = r["row"];
    SCOPED_TRACE(t.name + " row " + std::to_string(row));
    const size_t rb = row_bytes(t.type, t.ne[0]);
    std::vector<float> y(t.ne[0]);
    if (row >= 0) {
      dequantize_row(t.type, t.data + row * rb, y.data(), t.ne[0]);
      const auto& want = r["values"];
      ASSERT_EQ(want.size(), y.size());
      for (int64_t e = 0; e < t.ne[0]; e++) ASSERT_EQ(y[e], want[e].get<float>()) << "element " << e;
      n_rows++;
    } else {  // whole tensor: sum and sum of squares
      double s = 0, s2 = 0;
      for (int64_t k = 0; k < t.n_rows(); k++) {
        dequantize_row(t.type, t.data + k * rb, y.data(), t.ne[0]);
        for (float v : y) s += v, s2 += (double)v * v;
      }
      EXPECT_NEAR(s, r["sum"].get<double>(), 1e-9 * r["sumsq"].get<double>() + 1e-9);
      EXPECT_NEAR(s2, r["sumsq"].get<double>(), 1e-9 * r["sumsq"].get<double>());
    }
  }
  EXPECT_EQ(n_rows, 9);
}
