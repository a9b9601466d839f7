// Hash-encoder GGUF files: round trip of weights, binding and training info (both key layouts, 1..3
// MLP layers, 16/32/64 bits); refusal of a file for another model (each difference named), of another
// code width than asked, of a model file, of a file with a missing or misshapen tensor; the layout digest
// changes with a tensor's name, type or shape.
#include <gtest/gtest.h>

#include <random>

#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/hash-file.h"

namespace hashattn {
namespace {

#define SEED_TRACE(seed) SCOPED_TRACE(::testing::Message() << "seed " << (seed))

hash_binding test_binding() {
  hash_binding b;
  b.arch = "llama";
  b.model_name = "test model";
  b.n_layer = 3;
  b.n_head = 6;
  b.n_head_kv = 2;
  b.head_dim = 16;
  b.digest = "0123456789abcdef";
  return b;
}

hash_train_info test_info() {
  hash_train_info i;
  i.texts = {"a.txt", "b.txt"};
  i.tokens = 12345;
  i.settings = "bits=32 seed=7";
  i.layers = {0, 2};
  i.heads = {1};
  i.seconds = 12.5;
  return i;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HashFile, RoundTrip) {
  for (int bits : {16, 32, 64})
    for (int L : {1, 2, 3})
      for (bool kpg : {false, true}) {
        const uint64_t seed = bits * 100 + L * 10 + kpg;
        SEED_TRACE(seed);
        const hash_binding b = test_binding();
        hash_weights w = hash_weights_alloc(b.n_layer, b.n_head, b.n_head_kv, b.head_dim, bits, L, 24, kpg);
        hash_weights_init_random(w, seed, 0.5f);
        const std::vector<uint8_t> bytes = hash_file_bytes(w, b, test_info());
        auto f = gguf::file::from_buffer(bytes.data(), bytes.size());
        const hash_file_contents c = hash_file_read(*f, &b, bits);
        EXPECT_EQ(c.weights.bits, bits);
        EXPECT_EQ(c.weights.mlp_layers, L);
        EXPECT_EQ(c.weights.hidden, w.hidden);
        EXPECT_EQ(c.weights.key_per_group, kpg);
        ASSERT_EQ(c.weights.data.size(), w.data.size());
        for (size_t i = 0; i < w.data.size(); i++) ASSERT_EQ(c.weights.data[i], w.data[i]) << i;
        EXPECT_EQ(c.binding.arch, b.arch);
        EXPECT_EQ(c.binding.model_name, b.model_name);
        EXPECT_EQ(c.binding.digest, b.digest);
        EXPECT_EQ(c.binding.n_layer, b.n_layer);
        EXPECT_EQ(c.binding.n_head_kv, b.n_head_kv);
        EXPECT_EQ(c.info.texts, test_info().texts);
        EXPECT_EQ(c.info.tokens, 12345);
        EXPECT_EQ(c.info.settings, "bits=32 seed=7");
        EXPECT_EQ(c.info.layers, (std::vector<int>{0, 2}));
        EXPECT_EQ(c.info.heads, (std::vector<int>{1}));
        EXPECT_NEAR(c.info.seconds, 12.5, 1e-6);
        const std::string desc = hash_file_describe(*f);
        EXPECT_NE(desc.find(std::to_string(bits) + " bits"), std::string::npos) << desc;
        EXPECT_NE(desc.find("a.txt, b.txt"), std::string::npos) << desc;
      }
}

TEST(HashFile, SaveLoadThroughDisk) {
  const hash_binding b = test_binding();
  hash_weights w = hash_weights_alloc(b.n_layer, b.n_head, b.n_head_kv, b.head_dim, 32, 3, 8, false);
  hash_weights_init_random(w, 5, 0.f);
  const std::string path = ::testing::TempDir() + "hash-file-test.gguf";
  hash_file_save(path, w, b, test_info());
  const hash_file_contents c = hash_file_load(path, &b, 32);
  EXPECT_EQ(c.weights.data, w.data);
  std::remove(path.c_str());
}

TEST(HashFile, RefusesAnotherModel) {
  const hash_binding b = test_binding();
  hash_weights w = hash_weights_alloc(b.n_layer, b.n_head, b.n_head_kv, b.head_dim, 32, 2, 8, false);
  const std::vector<uint8_t> bytes = hash_file_bytes(w, b, test_info());
  auto f = gguf::file::from_buffer(bytes.data(), bytes.size());
  hash_binding other = b;
  other.n_layer = 30;
  other.digest = "fedcba9876543210";
  std::string msg = message_of([&] { hash_file_read(*f, &other, 0); });
  EXPECT_NE(msg.find("another model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layers 3 (file) vs 30 (model)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("digest 0123456789abcdef (file) vs fedcba9876543210 (model)"), std::string::npos) << msg;
  other = b;
  other.arch = "qwen2";
  other.head_dim = 64;
  msg = message_of([&] { hash_file_read(*f, &other, 0); });
  EXPECT_NE(msg.find("architecture llama (file) vs qwen2 (model)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("head dim 16 (file) vs 64 (model)"), std::string::npos) << msg;
  other = b;
  other.n_head_kv = 3;
  msg = message_of([&] { hash_file_read(*f, &other, 0); });
  EXPECT_NE(msg.find("KV heads 2 (file) vs 3 (model)"), std::string::npos) << msg;
  // Another code width than asked.
  msg = message_of([&] { hash_file_read(*f, &b, 64); });
  EXPECT_NE(msg.find("code width: got 32 bits, expected 64 bits"), std::string::npos) << msg;
  // The matching model and width load.
  EXPECT_NO_THROW(hash_file_read(*f, &b, 32));
}

TEST(HashFile, RefusesBrokenFiles) {
  // A model file (another architecture).
  {
    gguf::writer wr;
    wr.set("general.architecture", gguf::value::from_string("llama"));
    const auto bytes = wr.to_bytes();
    auto f = gguf::file::from_buffer(bytes.data(), bytes.size());
    const std::string msg = message_of([&] { hash_file_read(*f); });
    EXPECT_NE(msg.find("general.architecture: got llama, expected hashattn"), std::string::npos) << msg;
    EXPECT_EQ(hash_file_describe(*f), "");
  }
  const hash_binding b = test_binding();
  hash_weights w = hash_weights_alloc(b.n_layer, b.n_head, b.n_head_kv, b.head_dim, 32, 2, 8, true);
  const auto good = hash_file_bytes(w, b, test_info());
  auto f = gguf::file::from_buffer(good.data(), good.size());
  // Rebuild with one tensor missing, then with one misshapen.
  for (int variant = 0; variant < 2; variant++) {
    gguf::writer wr;
    for (const auto& kv : f->metadata()) wr.set(kv.key, kv.val);
    for (const auto& t : f->tensors()) {
      if (t.name == "blk.1.hash_k.weight.1") {
        if (variant == 0) continue;
        std::vector<int64_t> ne = t.ne;
        ne[2] = 1;  // 1 encoder instead of 2
        wr.add_tensor(t.name, t.type, ne, t.data, t.nbytes / 2);
        continue;
      }
      wr.add_tensor(t.name, t.type, t.ne, t.data, t.nbytes);
    }
    const auto bytes = wr.to_bytes();
    auto g = gguf::file::from_buffer(bytes.data(), bytes.size());
    const std::string msg = message_of([&] { hash_file_read(*g, &b, 32); });
    EXPECT_NE(msg.find("blk.1.hash_k.weight.1"), std::string::npos) << msg;
    EXPECT_NE(msg.find(variant == 0 ? "missing" : "shape: got 32 x 8 x 1, expected 32 x 8 x 2"), std::string::npos) << msg;
  }
}

TEST(HashFile, LayoutDigestSeesNamesTypesShapes) {
  auto digest = [](const std::string& name, gguf::type t, int64_t rows) {
    gguf::writer wr;
    wr.set("general.architecture", gguf::value::from_string("llama"));
    std::vector<uint8_t> data(gguf::row_bytes(t, 64) * rows, 0);
    wr.add_tensor(name, t, {64, rows}, data.data(), data.size());
    wr.add_tensor("other", gguf::type::F32, {4}, data.data(), 16);
    const auto bytes = wr.to_bytes();
    return model_layout_digest(*gguf::file::from_buffer(bytes.data(), bytes.size()));
  };
  const std::string base = digest("blk.0.attn_q.weight", gguf::type::F32, 2);
  EXPECT_EQ(base.size(), 16u);
  EXPECT_EQ(base, digest("blk.0.attn_q.weight", gguf::type::F32, 2));
  EXPECT_NE(base, digest("blk.0.attn_k.weight", gguf::type::F32, 2));
  EXPECT_NE(base, digest("blk.0.attn_q.weight", gguf::type::F16, 2));
  EXPECT_NE(base, digest("blk.0.attn_q.weight", gguf::type::F32, 3));
}

}  // namespace
}  // namespace hashattn
