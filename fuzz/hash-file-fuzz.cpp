// Fuzz target "hash-file": parses the input as GGUF and reads it as a hash-encoder file
// (hash_file_read: architecture "hashattn", binding to a model, code width, MLP shape, tensors),
// once without expectations, once bound to a fixed model shape and a 32-bit code width, and
// describes it as `hashattn info` does. When it loads, the weights must have exactly the size
// their shape says, no more bytes than the input, and the binding must be the one asked for.
#include <memory>

#include "fuzz-entry.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/hash-file.h"

namespace hashattn::fuzz {

int hash_file_one(const uint8_t* data, size_t size) {
  std::unique_ptr<gguf::file> f;
  try {
    f = gguf::file::from_buffer(data, size);
  } catch (const hashattn::error&) {
    return 0;
  }
  try {
    const hash_file_contents c = hash_file_read(*f);
    const hash_weights& w = c.weights;
    HASHATTN_FUZZ_CHECK(w.n_layer > 0 && w.data.size() == (size_t)w.n_layer * w.layer_floats());
    HASHATTN_FUZZ_CHECK(w.data.size() * sizeof(float) <= size);  // sized from what the input holds
  } catch (const hashattn::error&) {
  }
  hash_binding b;
  b.arch = "llama";
  b.n_layer = 1;
  b.n_head = 2;
  b.n_head_kv = 1;
  b.head_dim = 4;
  b.digest = "0123456789abcdef";
  try {
    const hash_file_contents c = hash_file_read(*f, &b, 32);
    HASHATTN_FUZZ_CHECK(c.binding.arch == b.arch && c.binding.n_layer == b.n_layer && c.binding.n_head == b.n_head &&
                        c.binding.n_head_kv == b.n_head_kv && c.binding.head_dim == b.head_dim &&
                        c.binding.digest == b.digest && c.weights.bits == 32);
  } catch (const hashattn::error&) {
  }
  try {
    (void)hash_file_describe(*f);
  } catch (const hashattn::error&) {
  }
  return 0;
}

}  // namespace hashattn::fuzz
