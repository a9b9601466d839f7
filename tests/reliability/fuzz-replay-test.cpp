// Replays the fuzz corpus through the normal build: every file under fuzz/corpus/<target>/ (the
// minimized corpus and the inputs that once crashed, kept as regressions) goes to the same entry
// function the libFuzzer target runs (fuzz/fuzz-entry.h). Errors are fine; a crash, a sanitizer
// report (in the asan build) or a broken invariant aborts the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz-entry.h"

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> corpus_files(const std::string& target) {
  const fs::path dir = fs::path(HASHATTN_SOURCE_DIR) / "fuzz" / "corpus" / target;
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class fuzz_replay : public ::testing::TestWithParam<hashattn::fuzz::target> {};

TEST_P(fuzz_replay, every_corpus_file_runs_without_crashing) {
  const auto& t = GetParam();
  const auto files = corpus_files(t.name);
  // Every target keeps a corpus: an empty folder means the corpus was lost, not that all is well.
  ASSERT_GE(files.size(), 5u) << "fuzz/corpus/" << t.name << " is missing or nearly empty";
  size_t regressions = 0;
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    const auto bytes = read_all(f);
    const std::string name = f.filename().string();
    if (name.rfind("crash-", 0) == 0 || name.rfind("regression-", 0) == 0) regressions++;
    EXPECT_EQ(t.run(bytes.data(), bytes.size()), 0);
  }
  std::printf("[ replay   ] %s: %zu files (%zu regression inputs)\n", t.name, files.size(), regressions);
}

INSTANTIATE_TEST_SUITE_P(corpus, fuzz_replay, ::testing::ValuesIn(hashattn::fuzz::k_targets),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
