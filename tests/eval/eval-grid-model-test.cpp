// scripts/eval-grid end to end on the default model (label model): a tiny grid (2 tasks x 1 context of
// 512 tokens x 2 samples in shards of 1, dense + streaming at 1/4) on 2 processes; the merged records
// pool both shards (2 samples each), a second call finds every shard done and runs nothing, and the
// merged value equals the mean of the shards' values.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/model-files.h"

namespace {

std::string read(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(EvalGrid, ShardsRunInParallelAndPool) {
  const std::string root = HASHATTN_SOURCE_DIR;
  ASSERT_NO_FATAL_FAILURE(hashattn::test::require_file(hashattn::test::model_path()));
  const std::string out = std::filesystem::temp_directory_path() / "hashattn-eval-grid-test";
  std::filesystem::remove_all(out);
  const std::string cmd = root + "/scripts/eval-grid --jobs 2 --samples 2 --shard 1 --contexts 512 --tasks "
                                 "passkey_noise,ppl --bin " HASHATTN_CLI " --out " + out +
                          " -- --attn dense,streaming --density 1/4 --sparse-tail 16 --ppl-tokens 8 > " + out +
                          ".log 2>&1";
  std::filesystem::create_directories(out);
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read(out + ".log");
  const auto all = nlohmann::json::parse(read(out + "/all.json"));
  int pooled = 0;
  for (const auto& r : all["records"]) {
    if (r["task"] == "average") continue;
    EXPECT_EQ(r["samples"].get<int>(), 2) << r.dump();
    EXPECT_EQ(r["context"].get<int>(), 512);
    if (r["task"] == "passkey_noise" && r["policy"] == "streaming") {
      double sum = 0;
      for (int first : {0, 1}) {
        const auto s = nlohmann::json::parse(read(out + "/shards/passkey_noise-512-" + std::to_string(first) + ".json"));
        for (const auto& q : s["records"])
          if (q["task"] == "passkey_noise" && q["policy"] == "streaming" && q["metric"] == "score")
            sum += q["value"].get<double>();
      }
      EXPECT_DOUBLE_EQ(r["value"].get<double>(), sum / 2);
    }
    ++pooled;
  }
  EXPECT_EQ(pooled, 2 * 1 + 2 * 2);  // passkey_noise: score x 2 settings; ppl: ppl, kl x 2 settings
  // Resume: nothing left to run.
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read(out + ".log");
  EXPECT_NE(read(out + ".log").find("4 already done, 0 to run"), std::string::npos) << read(out + ".log");
  std::filesystem::remove_all(out);
  std::filesystem::remove(out + ".log");
}

}  // namespace
