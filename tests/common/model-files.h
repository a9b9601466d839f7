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

// The second architecture, Gemma 3 270M Q4_K_M (fetched by `scripts/setup --models gemma3`, not by the
// default setup): read only by the label-gemma tests, which `make test` leaves out (`make test-gemma`
// runs them); HASHATTN_GEMMA_MODEL overrides the path. Missing, they fail like the model tests.
inline std::string gemma_model_path() {
  if (const char* e = std::getenv("HASHATTN_GEMMA_MODEL")) return e;
  return std::string(HASHATTN_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf";
}

// HASHATTN_TEXTS overrides the folder (binaries carried to another machine).
inline std::string text_path(const std::string& name) {
  if (const char* e = std::getenv("HASHATTN_TEXTS")) return std::string(e) + "/" + name;
  return std::string(HASHATTN_SOURCE_DIR) + "/data/texts/" + name;
}

// Fails the calling test (fatal) unless `path` is a regular file.
inline void require_file(const std::string& path, const char* setup = "scripts/setup --texts") {
  ASSERT_TRUE(std::filesystem::is_regular_file(path))
      << "input file of a model test: got nothing at " << path << ", expected the file (hint: run `" << setup
      << "`; a model test fails, never skips, without it)";
}

}  // namespace hashattn::test
