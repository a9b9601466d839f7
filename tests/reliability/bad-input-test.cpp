// Bad inputs through the real tool (build/bin/hashattn): each must give exactly one clear line on
// stderr (what, got, expected, hint) and a non-zero exit code, never a crash. Cases that need no
// model: missing / empty / directory / truncated / corrupt GGUF files given to `hashattn info`,
// unknown flags and commands, bad option values; --help and --version still exit 0.
// Cases of `hashattn generate` that need the model are in bad-input-model-test.cpp. Also on a tiny
// model: the `train` success path, outputs refused before work starts, thread counts bounded.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>

#include "cli-runner.h"
#include "hashattn/gguf.h"
#include "hashattn/hash-file.h"

using hashattn::test::run_cli;

namespace {

class bad_input : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hashattn-bad-input-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  void write(const std::string& name, const std::vector<uint8_t>& b) const {
    std::ofstream(path(name), std::ios::binary).write((const char*)b.data(), (std::streamsize)b.size());
  }
  // A small valid GGUF: metadata of several types and two tensors (F32, Q8_0).
  static std::vector<uint8_t> valid_gguf() {
    hashattn::gguf::writer w;
    w.set("general.architecture", hashattn::gguf::value::from_string("llama"));
    w.set("llama.block_count", hashattn::gguf::value::from_u32(1));
    w.set("tokenizer.ggml.tokens", hashattn::gguf::value::from_strings({"a", "b", "c"}));
    std::vector<float> f(64 * 4, 0.25f);
    w.add_tensor("a.weight", hashattn::gguf::type::F32, {64, 4}, f.data(), f.size() * 4);
    std::vector<uint8_t> q(34 * 2 * 3, 0);
    w.add_tensor("b.weight", hashattn::gguf::type::Q8_0, {64, 3}, q.data(), q.size());
    return w.to_bytes();
  }
  // A complete tiny llama model (1 layer, embd 64, n_head = n_head_kv heads of 64, Q8_0 matrices of
  // zeros, or with seed != 0 of random int8 values x 2^-9, a byte-level vocabulary of the 256 bytes +
  // <|endoftext|>), training context n_ctx_train.
  static std::vector<uint8_t> tiny_model(int64_t n_ctx_train, int n_head, uint64_t seed = 0) {
    using namespace hashattn::gguf;
    writer w;
    const int64_t embd = 64, hd = 64, ff = 64, dim = n_head * hd;
    w.set("general.architecture", value::from_string("llama"));
    w.set("llama.context_length", value::from_u32((uint32_t)n_ctx_train));
    w.set("llama.embedding_length", value::from_u32((uint32_t)embd));
    w.set("llama.block_count", value::from_u32(1));
    w.set("llama.feed_forward_length", value::from_u32((uint32_t)ff));
    w.set("llama.attention.head_count", value::from_u32((uint32_t)n_head));
    w.set("llama.attention.head_count_kv", value::from_u32((uint32_t)n_head));
    w.set("llama.attention.key_length", value::from_u32((uint32_t)hd));
    w.set("llama.attention.layer_norm_rms_epsilon", value::from_f32(1e-5f));
    std::vector<std::string> tokens;
    int next = 256;
    for (int b = 0; b < 256; b++) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      const int cp = printable ? b : next++;
      std::string t;
      if (cp < 0x80) {
        t += (char)cp;
      } else {
        t += (char)(0xC0 | (cp >> 6));
        t += (char)(0x80 | (cp & 0x3F));
      }
      tokens.push_back(t);
    }
    tokens.push_back("<|endoftext|>");
    std::vector<int32_t> types(256, 1);
    types.push_back(3);
    w.set("tokenizer.ggml.model", value::from_string("gpt2"));
    w.set("tokenizer.ggml.pre", value::from_string("gpt2"));
    w.set("tokenizer.ggml.tokens", value::from_strings(tokens));
    w.set("tokenizer.ggml.token_type", value::from_i32s(types));
    w.set("tokenizer.ggml.merges", value::from_strings({}));
    w.set("tokenizer.ggml.eos_token_id", value::from_u32(256));
    std::mt19937_64 rng(seed);
    auto mat = [&](const std::string& name, int64_t rows, int64_t cols) {
      std::vector<uint8_t> z(row_bytes(type::Q8_0, cols) * (size_t)rows, 0);
      for (size_t b = 0; seed != 0 && b < z.size(); b += 34) {  // Q8_0 block: fp16 scale, 32 x int8
        z[b] = 0x00, z[b + 1] = 0x18;                           // 2^-9
        for (int j = 0; j < 32; j++) z[b + 2 + j] = (uint8_t)(int8_t)((int)(rng() % 255) - 127);
      }
      w.add_tensor(name, type::Q8_0, {cols, rows}, z.data(), z.size());
    };
    auto vec = [&](const std::string& name, int64_t n) {
      std::vector<float> one((size_t)n, 1.f);
      w.add_tensor(name, type::F32, {n}, one.data(), one.size() * 4);
    };
    mat("token_embd.weight", (int64_t)tokens.size(), embd);
    vec("output_norm.weight", embd);
    vec("blk.0.attn_norm.weight", embd);
    vec("blk.0.ffn_norm.weight", embd);
    mat("blk.0.attn_q.weight", dim, embd);
    mat("blk.0.attn_k.weight", dim, embd);
    mat("blk.0.attn_v.weight", dim, embd);
    mat("blk.0.attn_output.weight", embd, dim);
    mat("blk.0.ffn_gate.weight", ff, embd);
    mat("blk.0.ffn_up.weight", ff, embd);
    mat("blk.0.ffn_down.weight", embd, ff);
    return w.to_bytes();
  }
  std::string dir_;
};

TEST_F(bad_input, valid_file_is_accepted) {
  write("ok.gguf", valid_gguf());
  const auto r = run_cli({"info", path("ok.gguf")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("a.weight"), std::string::npos);
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST_F(bad_input, missing_file_names_the_path_and_the_setup_script) {
  const auto r = run_cli({"info", path("nope.gguf")});
  EXPECT_ONE_LINE_ERROR(r, 1, "cannot open", "nope.gguf", "got No such file", "expected", "hint:", "scripts/setup");
}

TEST_F(bad_input, empty_file) {
  write("empty.gguf", {});
  EXPECT_ONE_LINE_ERROR(run_cli({"info", path("empty.gguf")}), 1, "is empty", "got 0 bytes", "expected");
}

TEST_F(bad_input, directory_instead_of_file) {
  EXPECT_ONE_LINE_ERROR(run_cli({"info", dir_}), 1, "not a regular file", "got a directory");
}

TEST_F(bad_input, not_a_gguf_file) {
  const std::string text = "this is a text file, not a model\n";
  write("text.gguf", std::vector<uint8_t>(text.begin(), text.end()));
  EXPECT_ONE_LINE_ERROR(run_cli({"info", path("text.gguf")}), 1, "bad magic", "got", "expected \"GGUF\"",
                        "hint: not a GGUF file");
}

TEST_F(bad_input, truncated_file_at_every_section) {
  const auto b = valid_gguf();
  // The end of the last tensor's data (the writer may pad the file after it).
  const auto f = hashattn::gguf::file::from_buffer(b.data(), b.size());
  size_t data_end = 0;
  for (const auto& t : f->tensors()) data_end = std::max(data_end, f->data_offset() + t.offset + t.nbytes);
  // In the header, in the metadata, in the tensor infos, in the data section, one byte short.
  for (size_t cut : {size_t(6), size_t(20), size_t(40), size_t(120), data_end - 300, data_end - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut) + " of " + std::to_string(b.size()));
    write("cut.gguf", std::vector<uint8_t>(b.begin(), b.begin() + (std::ptrdiff_t)cut));
    const auto r = run_cli({"info", path("cut.gguf")});
    EXPECT_ONE_LINE_ERROR(r, 1, "cut.gguf", "got", "expected");
    const bool says_truncated = r.err.find("truncated") != std::string::npos ||
                                r.err.find("past end of file") != std::string::npos ||
                                r.err.find("exceeds the file") != std::string::npos ||
                                r.err.find("cannot fit in the file") != std::string::npos;
    EXPECT_TRUE(says_truncated) << r.err;
  }
}

TEST_F(bad_input, corrupt_bytes_never_crash) {
  // Random single-byte corruptions of a valid file: the tool either reads it (exit 0) or says
  // what is wrong in one line (exit 1). Seed printed for reproduction.
  const uint32_t seed = 20240611;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  const auto good = valid_gguf();
  int refused = 0;
  for (int trial = 0; trial < 24; trial++) {
    auto b = good;
    const size_t at = rng() % std::min<size_t>(b.size(), 400);  // header, metadata and tensor infos
    b[at] = (uint8_t)rng();
    SCOPED_TRACE("byte " + std::to_string(at) + " = " + std::to_string(b[at]));
    write("bad.gguf", b);
    const auto r = run_cli({"info", path("bad.gguf")});
    if (r.code == 0) continue;
    refused++;
    EXPECT_ONE_LINE_ERROR(r, 1, "bad.gguf");
  }
  EXPECT_GT(refused, 0);
}

TEST_F(bad_input, missing_default_model_points_to_the_setup_script) {
  // The default model path (-m left out) as a fresh clone without scripts/setup would have it.
  const std::string env = "HASHATTN_MODEL=" + path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_ONE_LINE_ERROR(run_cli({"train", "--text", "a.txt", "-o", path("h.gguf")}, {env}), 1, "cannot open",
                        "SmolLM2-135M-Instruct.Q4_1.gguf", "got No such file", "hint:", "run scripts/setup");
}

TEST_F(bad_input, model_that_is_not_a_model) {
  // A valid GGUF without the model's metadata and tensors.
  write("ok.gguf", valid_gguf());
  EXPECT_ONE_LINE_ERROR(run_cli({"train", "-m", path("ok.gguf"), "--text", "a.txt", "-o", path("h.gguf")}), 1,
                        "llama.embedding_length", "is missing", "expected an integer", "hint:");
}

// ---- hashattn train, on a tiny model written here (no download needed) ----

// The success path: a few training steps on a random tiny model write a hash file that loads, is
// bound to that model, and drives `generate --attn hash`.
TEST_F(bad_input, train_writes_a_hash_file_bound_to_the_model) {
  const uint64_t seed = 5;
  std::printf("tiny model seed %llu\n", (unsigned long long)seed);
  write("tiny.gguf", tiny_model(512, 2, seed));
  std::string text;
  for (int i = 0; i < 200; i++) text += "Sentence " + std::to_string(i) + " of a small training text. ";
  write("t.txt", std::vector<uint8_t>(text.begin(), text.end()));
  const auto r = run_cli({"train", "-m", path("tiny.gguf"), "--text", path("t.txt"), "-o", path("h.gguf"), "--ctx",
                          "256", "--windows", "1", "--queries", "32", "--steps", "3", "--sinks", "4", "--window", "4",
                          "--val-queries", "0", "--mlp", "16", "--seed", "3", "--threads", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("train: wrote " + path("h.gguf")), std::string::npos) << r.err;
  const auto model_file = hashattn::gguf::file::open(path("tiny.gguf"));
  const hashattn::hash_binding bind = hashattn::hash_binding_for(*model_file, 1, 2, 2, 64);
  const hashattn::hash_file_contents c = hashattn::hash_file_load(path("h.gguf"), &bind, 32);
  EXPECT_EQ(c.binding.digest, hashattn::model_layout_digest(*model_file));
  EXPECT_EQ(c.weights.mlp_layers, 2);
  EXPECT_EQ(c.weights.hidden, 16);
  EXPECT_EQ(c.info.texts.size(), 1u);
  bool trained = false;  // 3 Adam steps moved the weights away from a zero or constant fill
  for (float x : c.weights.data) trained |= x != c.weights.data[0];
  EXPECT_TRUE(trained);
  const auto g = run_cli({"generate", "-m", path("tiny.gguf"), "-p", "a prompt of some forty bytes, to select from",
                          "-n", "3", "--attn", "hash", "--hash", path("h.gguf"), "--density", "1/4", "--sinks", "1",
                          "--window", "1"});
  EXPECT_EQ(g.code, 0) << g.err;
}

// The recipe options of issue 16 refuse bad values with one line naming the option and what it takes.
TEST_F(bad_input, train_recipe_options_refuse_bad_values) {
  write("tiny.gguf", tiny_model(512, 2, 5));
  write("t.txt", std::vector<uint8_t>(300, 'a'));
  const std::vector<std::string> base = {"train", "-m", path("tiny.gguf"), "--text", path("t.txt"), "-o", path("h.gguf"),
                                         "--ctx", "256", "--threads", "1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return run_cli(a);
  };
  EXPECT_ONE_LINE_ERROR(with({"--data", "bogus"}), 1, "--data", "bogus", "text, mixed or retrieval");
  EXPECT_ONE_LINE_ERROR(with({"--data", "retrieval", "--question-share", "1"}), 1, "question share", "in [0, 1)");
  EXPECT_ONE_LINE_ERROR(with({"--targets", "bogus"}), 1, "--targets", "bogus", "uniform or attention");
  EXPECT_ONE_LINE_ERROR(with({"--hard-neg", "-1"}), 1, "hard negatives", "-1", ">= 0");
  EXPECT_ONE_LINE_ERROR(with({"--targets", "attention", "--loss", "bce"}), 1, "targets", "listwise");
}

// --init (fine-tuning) refuses, before any training, a missing file and a hash file whose shape differs from
// the training settings (written here at random for the tiny model: 16 bits, MLP 16), naming the options
// that match it.
TEST_F(bad_input, train_init_refuses_missing_file_and_other_shape) {
  write("tiny.gguf", tiny_model(512, 2, 5));
  write("t.txt", std::vector<uint8_t>(300, 'a'));
  const auto model_file = hashattn::gguf::file::open(path("tiny.gguf"));
  const hashattn::hash_binding bind = hashattn::hash_binding_for(*model_file, 1, 2, 2, 64);
  hashattn::hash_weights w = hashattn::hash_weights_alloc(1, 2, 2, 64, 16, 2, 16, false);
  hashattn::hash_weights_init_random(w, 3);
  hashattn::hash_file_save(path("init.gguf"), w, bind, {});
  const std::vector<std::string> base = {"train",   "-m",    path("tiny.gguf"), "--text",    path("t.txt"), "-o",
                                         path("h.gguf"), "--ctx", "256",             "--threads", "1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return run_cli(a);
  };
  auto r = with({"--init", path("missing.gguf")});
  EXPECT_ONE_LINE_ERROR(r, 1, "missing.gguf");
  EXPECT_EQ(r.err.find("train: 1 texts"), std::string::npos) << r.err;
  r = with({"--init", path("init.gguf")});
  EXPECT_ONE_LINE_ERROR(r, 1, "--init", "got bits 16, mlp_layers 2, hidden 16", "expected bits 32, mlp_layers 3, hidden 128",
                        "hint: train with the file's --bits, --mlp and --gqa-mode");
  r = with({"--init", path("init.gguf"), "--bits", "16", "--mlp", "16", "--gqa-mode", "group"});
  EXPECT_ONE_LINE_ERROR(r, 1, "--init", "got key encoders per query head", "expected key encoders per KV head");
  EXPECT_FALSE(std::ifstream(path("h.gguf")).good());
}

// Outputs are checked before any long work: a folder that does not exist is refused before the model
// loads (no "train:" progress line), for train -o and eval --json.
TEST_F(bad_input, unwritable_outputs_are_refused_before_work_starts) {
  write("tiny.gguf", tiny_model(512, 2, 5));
  write("t.txt", std::vector<uint8_t>(300, 'a'));
  const std::string bad = path("no/such/dir/h.gguf");
  auto r = run_cli({"train", "-m", path("tiny.gguf"), "--text", path("t.txt"), "-o", bad});
  EXPECT_ONE_LINE_ERROR(r, 1, "-o", bad.c_str(), "folder", "got missing", "expected an existing folder", "hint:");
  EXPECT_EQ(r.err.find("train:"), std::string::npos) << r.err;
  r = run_cli({"train", "-m", path("tiny.gguf"), "--text", path("t.txt"), "-o", dir_});
  EXPECT_ONE_LINE_ERROR(r, 1, "-o", "got a folder", "expected a file");
  r = run_cli({"eval", "-m", path("tiny.gguf"), "--task", "ppl", "--json", path("no/such/out.json")});
  EXPECT_ONE_LINE_ERROR(r, 1, "--json", "no/such/out.json", "got missing");
  EXPECT_EQ(r.err.find("eval:"), std::string::npos) << r.err;
  r = run_cli({"eval", "--report", path("t.txt"), "--json", path("no/such/out.json")});
  EXPECT_ONE_LINE_ERROR(r, 1, "--json", "got missing");
}

// Every command that takes a thread count bounds it (0 = all cores .. 4 x the hardware threads).
TEST_F(bad_input, thread_counts_outside_the_range_are_refused) {
  write("tiny.gguf", tiny_model(64, 2));
  for (const char* t : {"1000", "-1"}) {
    SCOPED_TRACE(t);
    const std::string got = std::string("got ") + t;
    EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "-p", "hi", "-n", "1", "-t", t}), 2,
                          "--threads", got.c_str(), "expected 0 (all cores) to");
    EXPECT_ONE_LINE_ERROR(run_cli({"eval", "-m", path("tiny.gguf"), "--threads", t}), 2, "threads", t);
    EXPECT_ONE_LINE_ERROR(run_cli({"train", "-m", path("tiny.gguf"), "--threads", t}), 2, "threads", t);
  }
  EXPECT_EQ(run_cli({"generate", "-m", path("tiny.gguf"), "-p", "hi", "-n", "1", "-t", "1"}).code, 0);
}

// ---- hashattn generate, on a tiny model written here (no download needed) ----

TEST_F(bad_input, generate_works_on_the_tiny_model) {
  write("tiny.gguf", tiny_model(64, 2));
  const auto r = run_cli({"generate", "-m", path("tiny.gguf"), "-p", "hello", "-n", "3"});
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(bad_input, unknown_or_incomplete_attention_policy) {
  write("tiny.gguf", tiny_model(64, 2));
  for (const char* bad : {"hash-rr1", "hash-rr65", "hash-rrx", "nope"})
    EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "-p", "hello", "--attn", bad}), 1, "--attn",
                          "expected one of", "hash-rrC");
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "-p", "hello", "--attn", "hash-rr4", "--budget", "4", "--sinks", "1",
                                 "--window", "1"}),
                        1,
                        "needs --hash FILE");
}

// A density outside (0, 1] and a fixed budget that cannot hold its sinks and window are refused; a
// prompt shorter than the budget's floor is not an error: every token is attended (density 1).
TEST_F(bad_input, generate_density_outside_0_1_and_budget_below_sinks_plus_window) {
  write("tiny.gguf", tiny_model(64, 2));
  for (const char* d : {"1.5", "0", "-1"}) {
    const std::string got = std::string("got '") + d + "'";
    EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "-p", "hello", "--attn", "streaming",
                                   "--density", d}),
                          1, "--density", got.c_str(), "expected a number in (0, 1]");
  }
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "-p", "hello", "--attn", "streaming",
                                 "--budget", "3", "--sinks", "2", "--window", "2"}),
                        1, "--budget", "got 3 tokens", "expected >= sinks 2 + window 2", "hint:");
  const auto ok = run_cli({"generate", "-m", path("tiny.gguf"), "-p", "hello", "--attn", "oracle",
                                 "--density", "1/4", "--sinks", "1", "--window", "1", "-n", "3"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.err.find("density 1.0000"), std::string::npos) << ok.err;
}

TEST_F(bad_input, generate_missing_default_model) {
  const std::string env = "HASHATTN_MODEL=" + path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-p", "hello"}, {env}), 1, "model file not found",
                        "SmolLM2-135M-Instruct.Q4_1.gguf", "hint:", "run scripts/setup");
}

TEST_F(bad_input, generate_truncated_model) {
  auto b = tiny_model(64, 2);
  b.resize(b.size() - 100);
  write("cut.gguf", b);
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("cut.gguf"), "-p", "hello"}), 1, "cut.gguf",
                        "past end of file", "got", "expected");
}

TEST_F(bad_input, generate_prompt_longer_than_the_context) {
  write("tiny.gguf", tiny_model(64, 2));
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "--ctx", "8", "-p", "a prompt of many bytes"}),
                        1, "prompt longer than the context", "got 22 tokens", "expected fewer than 8", "hint:",
                        "--ctx");
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "--ctx", "100", "-p", "x"}), 1,
                        "context size", "got 100", "expected at most the model's training context 64");
}

TEST_F(bad_input, generate_empty_prompt) {
  write("tiny.gguf", tiny_model(64, 2));
  write("empty.txt", {});
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "-p", ""}), 1, "empty prompt", "expected",
                        "hint:");
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "-f", path("empty.txt")}), 1, "empty prompt");
}

TEST_F(bad_input, generate_invalid_utf8_prompt) {
  write("tiny.gguf", tiny_model(64, 2));
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("tiny.gguf"), "-p", "ok \xFF\xFE"}), 1, "invalid UTF-8",
                        "byte 3", "got 0xff", "expected valid UTF-8", "hint:");
}

TEST_F(bad_input, generate_kv_cache_that_does_not_fit_is_refused_up_front) {
  // 2^24 tokens x 256 KV heads x 64 x K,V x fp16 = 1 TiB in one layer: more than any machine here.
  write("huge-ctx.gguf", tiny_model(int64_t(1) << 24, 256));
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "-m", path("huge-ctx.gguf"), "-p", "hi"}), 1,
                        "KV cache does not fit in memory", "got 1024.00 GiB", "16777216 tokens",
                        "expected at most the", "GiB of memory available", "hint:", "--ctx", "tokens fit");
}

TEST_F(bad_input, unknown_flag) {
  write("ok.gguf", valid_gguf());
  EXPECT_ONE_LINE_ERROR(run_cli({"info", "--frobnicate", path("ok.gguf")}), 2, "unknown argument",
                        "got '--frobnicate'", "expected the options of 'hashattn info'", "hint: see 'hashattn info --help'");
}

TEST_F(bad_input, unknown_command) {
  EXPECT_ONE_LINE_ERROR(run_cli({"frobnicate"}), 2, "unknown command", "got 'frobnicate'", "expected one of",
                        "info", "hint:");
  EXPECT_ONE_LINE_ERROR(run_cli({"--frobnicate"}), 2, "got '--frobnicate'", "expected a command", "info", "hint:");
}

TEST_F(bad_input, no_command) {
  EXPECT_ONE_LINE_ERROR(run_cli({}), 2, "no command given", "expected one of", "info", "hint: see 'hashattn --help'");
}

TEST_F(bad_input, missing_required_argument) {
  EXPECT_ONE_LINE_ERROR(run_cli({"info"}), 2, "file", "required", "hint: see 'hashattn info --help'");
}

TEST_F(bad_input, option_value_of_the_wrong_type) {
  write("ok.gguf", valid_gguf());
  EXPECT_ONE_LINE_ERROR(run_cli({"info", "--max-items", "many", path("ok.gguf")}), 2, "--max-items", "many",
                        "hint:");
}

TEST_F(bad_input, negative_count_is_refused) {
  write("ok.gguf", valid_gguf());
  EXPECT_ONE_LINE_ERROR(run_cli({"info", "--max-items", "-3", path("ok.gguf")}), 2, "--max-items", "-3", "range");
}

TEST_F(bad_input, device_cuda_without_a_gpu_says_why) {
  // A CPU build says it has no CUDA backend; a CUDA build on a machine without a GPU says no CUDA device.
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "--device", "cuda", "-p", "hi"}), 1, "--device cuda", "CUDA", "hint:");
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "--device", "tpu", "-p", "hi"}), 2, "--device", "tpu");
  // The GPU's attention kernel: a CPU run refuses the flag, an unknown kernel is a usage error.
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "--attend-kernel", "tensor", "-p", "hi"}), 1, "--attend-kernel", "--device cuda");
  EXPECT_ONE_LINE_ERROR(run_cli({"generate", "--attend-kernel", "bogus", "-p", "hi"}), 2, "--attend-kernel", "bogus");
}

TEST_F(bad_input, help_and_version_exit_zero) {
  auto r = run_cli({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("info"), std::string::npos);
  r = run_cli({"info", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--max-items"), std::string::npos);
  r = run_cli({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("hashattn"), std::string::npos);
}

}  // namespace
