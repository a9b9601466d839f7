// `hashattn make-model` through the real tool (build/bin/hashattn):
//   - --dry-run of llama3.1-8b prints the shape, the tensor count and the ~16 GB size and writes nothing;
//   - the tiny preset with --hash-out writes a model that `info` reads and `generate` runs, with the
//     hash policy of the hash file written next to it; the same flags and seed write the same bytes
//     whatever the thread count;
//   - bad flags, unwritable outputs and a missing -o each give one clear error line, before any work
//     (no file written).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cli-runner.h"

using hashattn::test::run_cli;

namespace {

class make_model : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hashattn-make-model-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  size_t n_files() const {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) n += e.is_regular_file();
    return n;
  }
  std::string dir_;
};

std::string slurp_file(const std::string& p) { return hashattn::test::slurp(p); }

TEST_F(make_model, dry_run_of_llama31_8b_prints_shape_and_size_and_writes_nothing) {
  const auto r = run_cli({"make-model", "--dry-run", "-o", path("m.gguf")});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* want : {"llama3.1-8b", "32 layers", "n_embd 4096", "n_ff 14336", "heads 32/8 x 128", "vocab 128256",
                           "context 131072", "rope base 500000", "Llama 3.1 scaling x8", "BF16", "292 tensors",
                           "8030261312 parameters", "16.06 GB", "dry run, nothing written"})
    EXPECT_NE(r.out.find(want), std::string::npos) << "missing '" << want << "' in: " << r.out;
  EXPECT_EQ(n_files(), 0u);
  // Overrides change the plan: 16 layers in F16.
  const auto h = run_cli({"make-model", "--dry-run", "--layers", "16", "--type", "f16"});
  ASSERT_EQ(h.code, 0) << h.err;
  EXPECT_NE(h.out.find("16 layers"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("F16"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("148 tensors"), std::string::npos) << h.out;
}

TEST_F(make_model, tiny_model_and_hash_file_are_written_and_run) {
  const auto r = run_cli({"make-model", "--preset", "tiny", "-o", path("tiny.gguf"), "--hash-out", path("h.gguf"),
                          "--seed", "7", "-t", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("wrote " + path("tiny.gguf")), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("loads as llama: 2 layers"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrote " + path("h.gguf")), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("make-model: 100%"), std::string::npos) << r.err;
  const auto info = run_cli({"info", path("tiny.gguf"), "--no-tensors"});
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_NE(info.out.find("synthetic tiny"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("tokenizer.ggml.tokens"), std::string::npos) << info.out;
  const auto hinfo = run_cli({"info", path("h.gguf"), "--no-tensors"});
  ASSERT_EQ(hinfo.code, 0) << hinfo.err;
  EXPECT_NE(hinfo.out.find("hash encoders: 32 bits"), std::string::npos) << hinfo.out;
  EXPECT_NE(hinfo.out.find("untrained"), std::string::npos) << hinfo.out;
  std::string ids;
  for (int i = 0; i < 300; i++) ids += std::to_string((i * 7) % 500) + " ";
  std::ofstream(path("ids.txt")) << ids;
  const auto g = run_cli({"generate", "-m", path("tiny.gguf"), "--token-ids", path("ids.txt"), "-n", "4", "--attn",
                          "hash", "--hash", path("h.gguf"), "--density", "1/8", "--ignore-eos", "-t", "1"});
  EXPECT_EQ(g.code, 0) << g.err;
  EXPECT_NE(g.err.find("density 0.1"), std::string::npos) << g.err;  // sparse: about 1/8 attended
  // The same seed writes the same bytes with 2 threads; the hash file follows the seed too.
  const auto r2 = run_cli({"make-model", "--preset", "tiny", "-o", path("tiny2.gguf"), "--hash-out", path("h2.gguf"),
                           "--seed", "7", "-t", "2"});
  ASSERT_EQ(r2.code, 0) << r2.err;
  EXPECT_TRUE(slurp_file(path("tiny2.gguf")) == slurp_file(path("tiny.gguf")));
  EXPECT_TRUE(slurp_file(path("h2.gguf")) == slurp_file(path("h.gguf")));
  // Group-mode encoders of another shape: --hash-mlp and --hash-gqa-mode reach the file.
  const auto r3 = run_cli({"make-model", "--preset", "tiny", "--layers", "3", "-o", path("t3.gguf"), "--hash-out",
                           path("h3.gguf"), "--hash-bits", "16", "--hash-mlp", "linear", "--hash-gqa-mode", "group"});
  ASSERT_EQ(r3.code, 0) << r3.err;
  const auto hinfo3 = run_cli({"info", path("h3.gguf"), "--no-tensors"});
  EXPECT_NE(hinfo3.out.find("16 bits per token per KV head"), std::string::npos) << hinfo3.out;
  EXPECT_NE(hinfo3.out.find("MLP 64-16 (1 linear layer"), std::string::npos) << hinfo3.out;
  // A hash file made for the 3-layer model is refused with the 2-layer one.
  const auto bad = run_cli({"generate", "-m", path("tiny.gguf"), "-p", "hi", "-n", "1", "--attn", "hash", "--hash",
                            path("h3.gguf")});
  EXPECT_ONE_LINE_ERROR(bad, 1, "another model", "layers 3 (file) vs 2 (model)");
}

TEST_F(make_model, bad_flags_are_refused_with_one_line) {
  struct bad_case {
    std::vector<std::string> args;
    int code;
    std::vector<const char*> needles;
  };
  const std::vector<bad_case> cases = {
      {{"--kv-heads", "3"}, 1, {"heads / KV heads", "32 / 3", "multiple"}},
      {{"--embd", "4001"}, 1, {"--embd / --heads", "4001 / 32", "or give --head-dim"}},
      {{"--head-dim", "64"}, 1, {"heads x head dim", "32 x 64 = 2048", "4096"}},
      {{"--head-dim", "127", "--heads", "32", "--embd", "4064"}, 1, {"head dim", "127", "even"}},
      {{"--vocab", "100"}, 1, {"vocabulary", "100", "258"}},
      {{"--layers", "0"}, 1, {"layers", "got 0"}},
      {{"--ff", "-5"}, 1, {"feed-forward length", "-5"}},
      {{"--ctx", "0"}, 1, {"context length", "got 0"}},
      {{"--rope-base", "0.5"}, 1, {"RoPE base", "0.5"}},
      {{"--kv-heads", "0"}, 1, {"KV heads", "got 0"}},
      {{"--type", "q4_0"}, 2, {"--type", "q4_0"}},
      {{"--preset", "llama-70b"}, 2, {"--preset", "llama-70b"}},
      {{"--layers", "two"}, 2, {"--layers", "two"}},
      {{"--hash-out", "h.gguf", "--hash-bits", "12"}, 1, {"bits", "12", "16, 32 or 64"}},
      {{"--hash-out", "h.gguf", "--hash-mlp", "64,32"}, 1, {"--hash-mlp", "equal hidden sizes"}},
      {{"--hash-out", "h.gguf", "--hash-gqa-mode", "pair"}, 1, {"--hash-gqa-mode", "pair", "head or group"}},
      {{"-t", "100000"}, 2, {"--threads", "100000"}},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"make-model", "--dry-run"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    SCOPED_TRACE(joined);
    const auto r = run_cli(args);
    const std::string line = hashattn::test::last_line(r.err);
    EXPECT_EQ(r.code, c.code) << r.err;
    EXPECT_EQ(hashattn::test::count_error_lines(r.err), 1) << r.err;
    for (const char* n : c.needles) EXPECT_NE(line.find(n), std::string::npos) << "missing '" << n << "' in: " << line;
  }
  EXPECT_EQ(n_files(), 0u);
}

TEST_F(make_model, unwritable_outputs_are_refused_before_any_work) {
  const std::string missing_dir = path("no/such/dir/m.gguf");
  auto r = run_cli({"make-model", "--preset", "tiny", "-o", missing_dir});
  EXPECT_ONE_LINE_ERROR(r, 1, "-o", "no/such/dir", "got missing", "expected an existing folder");
  r = run_cli({"make-model", "--preset", "tiny", "-o", dir_});
  EXPECT_ONE_LINE_ERROR(r, 1, "-o", "got a folder", "expected a file");
  r = run_cli({"make-model", "--preset", "tiny"});
  EXPECT_ONE_LINE_ERROR(r, 1, "-o", "missing");
  // An unwritable --hash-out stops the command before the model is written.
  r = run_cli({"make-model", "--preset", "tiny", "-o", path("m.gguf"), "--hash-out", path("no/h.gguf")});
  EXPECT_ONE_LINE_ERROR(r, 1, "--hash-out", "got missing");
  r = run_cli({"make-model", "--preset", "tiny", "-o", path("m.gguf"), "--hash-out", path("./m.gguf")});
  EXPECT_ONE_LINE_ERROR(r, 1, "--hash-out", "a file other than -o");
  EXPECT_EQ(r.err.find("make-model: "), std::string::npos) << r.err;  // no progress: nothing was generated
  EXPECT_EQ(n_files(), 0u);
}

}  // namespace
