// The files that label-model tests read (fetched by `scripts/setup --texts`): the default model
// (HASHATTN_MODEL overrides its path, as for the tool) and the texts of data/texts/ (HASHATTN_TEXTS). Model tests
// open them inside each test (or in SetUp), never in SetUpTestSuite, and check them with
// ASSERT_NO_FATAL_FAILURE(require_file(p)): a missing file or a loader error FAILS the test. A
// skip would let a loader regression pass (scripts/ctest-check refuses unexpected skips).
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace hashattn::test {

inline std::string model_path() {
  if (const char* e = std::getenv("HASHATTN_MODEL")) return e;
  return std::string(HASHATTN_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// HASHATTN_TEXTS overrides the folder (binaries carried to another machine).
inline std::string text_path(const std::string& name) {
  if (const char* e = std::getenv("HASHATTN_TEXTS")) return std::string(e) + "/" + name;
  return std::string(HASHATTN_SOURCE_DIR) + "/data/texts/" + name;
}

// Fails the calling test (fatal) unless `path` is a regular file.
inline void require_file(const std::string& path) {
  ASSERT_TRUE(std::filesystem::is_regular_file(path))
      << "input file of a model test: got nothing at " << path
      << ", expected the file (hint: run `scripts/setup --texts`; a model test fails, never skips, without it)";
}

}  // namespace hashattn::test
