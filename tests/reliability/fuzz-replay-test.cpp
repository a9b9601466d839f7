// Replays the fuzz corpus through the normal build: every file under fuzz/corpus/<target>/ (the
// minimized corpus and the inputs that once crashed, kept as regressions) goes to the same entry
// function the libFuzzer target runs (fuzz/fuzz-entry.h). Errors are fine; a crash, a sanitizer
// report (in the asan build) or a broken invariant aborts the test. Like the fuzzers (-malloc_limit_mb),
// the replay bounds memory: outside sanitizer builds its address space may grow by at most 2 GiB, so an
// input that makes a reader allocate what the file does not hold fails here (std::bad_alloc).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
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

#if defined(__SANITIZE_ADDRESS__)
#define HASHATTN_REPLAY_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HASHATTN_REPLAY_SANITIZED 1
#endif
#endif

// Limits the address space to its current size + extra bytes while alive (not under ASan, which
// reserves terabytes of shadow memory and has its own allocation limit).
class address_space_limit {
 public:
  explicit address_space_limit(size_t extra) {
#ifndef HASHATTN_REPLAY_SANITIZED
    std::ifstream st("/proc/self/status");
    std::string key;
    size_t kb = 0;
    while (st >> key)
      if (key == "VmSize:" && st >> kb) break;
    if (kb == 0 || getrlimit(RLIMIT_AS, &old_) != 0) return;
    rlimit lim = old_;
    lim.rlim_cur = std::min<rlim_t>(old_.rlim_max, (rlim_t)kb * 1024 + extra);
    active_ = setrlimit(RLIMIT_AS, &lim) == 0;
#endif
  }
  ~address_space_limit() {
    if (active_) setrlimit(RLIMIT_AS, &old_);
  }

 private:
  rlimit old_{};
  bool active_ = false;
};

class fuzz_replay : public ::testing::TestWithParam<hashattn::fuzz::target> {};

TEST_P(fuzz_replay, every_corpus_file_runs_without_crashing) {
  const auto& t = GetParam();
  const auto files = corpus_files(t.name);
  // Every target keeps a corpus: an empty folder means the corpus was lost, not that all is well.
  ASSERT_GE(files.size(), 5u) << "fuzz/corpus/" << t.name << " is missing or nearly empty";
  size_t regressions = 0;
  const address_space_limit limit(size_t(2) << 30);
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    const auto bytes = read_all(f);
    const std::string name = f.filename().string();
    if (name.rfind("crash-", 0) == 0 || name.rfind("regression-", 0) == 0) regressions++;
    try {
      EXPECT_EQ(t.run(bytes.data(), bytes.size()), 0);
    } catch (const std::bad_alloc&) {
      ADD_FAILURE() << "allocation: got std::bad_alloc (over the replay's 2 GiB limit), expected the reader to size "
                    << "its allocations from what the " << bytes.size() << "-byte input holds";
    }
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
