// Entry functions of the fuzz targets. Each takes one input (bytes), runs it through a part of the
// library that reads untrusted data, and returns 0. Errors the library reports (hashattn::error,
// CLI11 parse errors) are expected and swallowed; anything else -- a crash, a sanitizer report,
// another exception escaping, a broken invariant (HASHATTN_FUZZ_CHECK) -- is a finding.
// The same functions run under libFuzzer (fuzz-main.cpp, HASHATTN_FUZZ=ON) and in the corpus
// replay test of the normal build (tests/reliability/fuzz-replay-test.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace hashattn::fuzz {

int gguf_one(const uint8_t* data, size_t size);           // gguf::file::from_buffer and getters
int tokenizer_one(const uint8_t* data, size_t size);      // encode / decode (synthetic + real vocab)
int chat_template_one(const uint8_t* data, size_t size);  // chat_template_detect + apply
int args_one(const uint8_t* data, size_t size);           // the CLI11 app of the hashattn tool
int hash_file_one(const uint8_t* data, size_t size);      // hash_file_read (hash-encoder GGUF files)

struct target {
  const char* name;  // also the folder name under fuzz/corpus/
  int (*run)(const uint8_t*, size_t);
};
inline constexpr target k_targets[] = {
    {"gguf", gguf_one}, {"tokenizer", tokenizer_one}, {"chat-template", chat_template_one}, {"args", args_one},
    {"hash-file", hash_file_one}};

}  // namespace hashattn::fuzz

#define HASHATTN_FUZZ_CHECK(cond)                                                               \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "fuzz invariant failed: %s at %s:%d\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)
