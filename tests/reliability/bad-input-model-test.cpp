// Bad inputs through the real tool that need the default model (label model): a truncated model,
// a hash file made for another model, a density outside (0, 1], text that is not UTF-8, an empty
// text. Each must end in one clear error line and exit code 1. The commands are `hashattn train`
// (and `train --eval --hash`), which read these inputs before any heavy work starts.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli-runner.h"
#include "common/model-files.h"
#include "hashattn/gguf.h"
#include "hashattn/hash-file.h"
#include "hashattn/hash.h"

using hashattn::test::run_cli;

namespace {

const std::string k_model = hashattn::test::model_path();

class bad_input_model : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(hashattn::test::require_file(k_model));
    char tmpl[] = "/tmp/hashattn-bad-model-XXXXXX";
    dir_ = mkdtemp(tmpl);
    write_text("ok.txt", "The quick brown fox jumps over the lazy dog. It was a bright cold day in April.\n");
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  void write_text(const std::string& name, const std::string& s) const {
    std::ofstream(path(name), std::ios::binary) << s;
  }
  std::string dir_;
};

TEST_F(bad_input_model, truncated_model) {
  // The first 8 MiB of the model: the header and tensor infos are whole, the data is not.
  std::ifstream in(k_model, std::ios::binary);
  std::vector<char> head(8 << 20);
  in.read(head.data(), (std::streamsize)head.size());
  std::ofstream(path("cut.gguf"), std::ios::binary).write(head.data(), in.gcount());
  const auto r = run_cli({"train", "-m", path("cut.gguf"), "--text", path("ok.txt"), "-o", path("h.gguf")});
  EXPECT_ONE_LINE_ERROR(r, 1, "cut.gguf", "past end of file", "got", "expected");
}

TEST_F(bad_input_model, hash_file_for_another_model) {
  // Encoders bound to a 2-layer model of another layout.
  hashattn::hash_binding other;
  other.arch = "llama";
  other.n_layer = 2;
  other.n_head = 9;
  other.n_head_kv = 3;
  other.head_dim = 64;
  other.digest = "0000000000000000";
  other.model_name = "another model";
  const hashattn::hash_weights w = hashattn::hash_weights_alloc(2, 9, 3, 64, 32, 1, 0, false);
  hashattn::hash_file_save(path("other.gguf"), w, other, {});
  const auto r = run_cli({"train", "--eval", "--hash", path("other.gguf"), "--text", path("ok.txt")},
                         {"HASHATTN_MODEL=" + k_model});
  EXPECT_ONE_LINE_ERROR(r, 1, "other.gguf", "trained for another model", "got", "layers 2 (file) vs 30 (model)",
                        "tensor layout digest", "expected", "hint:", "hashattn train");
}

TEST_F(bad_input_model, model_file_given_as_hash_file) {
  const auto r = run_cli({"train", "--eval", "--hash", k_model, "--text", path("ok.txt")}, {"HASHATTN_MODEL=" + k_model});
  EXPECT_ONE_LINE_ERROR(r, 1, "general.architecture", "got llama", "expected hashattn", "hint:");
}

TEST_F(bad_input_model, density_outside_0_1) {
  for (const char* d : {"0", "1.5", "-0.1", "1/0", "nan", "half"}) {
    SCOPED_TRACE(d);
    const auto r = run_cli({"train", "--text", path("ok.txt"), "-o", path("h.gguf"), "--density", d},
                           {"HASHATTN_MODEL=" + k_model});
    EXPECT_ONE_LINE_ERROR(r, 1, "density", "got", d, "expected a number in (0, 1]");
  }
}

TEST_F(bad_input_model, invalid_utf8_text) {
  write_text("bad.txt", std::string("valid start, then \xC3\x28 an invalid pair"));
  const auto r = run_cli({"train", "--text", path("bad.txt"), "-o", path("h.gguf")}, {"HASHATTN_MODEL=" + k_model});
  EXPECT_ONE_LINE_ERROR(r, 1, "invalid UTF-8", "byte 18", "got 0xc3", "expected valid UTF-8");
}

TEST_F(bad_input_model, empty_text) {
  write_text("empty.txt", "");
  const auto r = run_cli({"train", "--text", path("empty.txt"), "-o", path("h.gguf")}, {"HASHATTN_MODEL=" + k_model});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(hashattn::test::count_error_lines(r.err), 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(path("h.gguf")));
}

}  // namespace
