// Hash-encoder files: GGUF with general.architecture = "hashattn" holding a model's hash_weights and
// the metadata that binds them to that model (docs/FORMATS.md, "Hash-encoder files").
// Tensors per layer l and role r in {q, k}, MLP layer i: "blk.<l>.hash_<r>.weight.<i>" [n_enc, in_i, out_i]
// (GGUF ne = {out_i, in_i, n_enc}) and "blk.<l>.hash_<r>.bias.<i>" [n_enc, out_i] (ne = {out_i, n_enc}),
// F32. n_enc = n_head for queries; n_head (per query head) or n_head_kv (key_per_group) for keys.
// Loading checks the binding (architecture, layers, heads, KV heads, head dim, tensor-layout digest)
// and the code width, and refuses a mismatch with a message that lists every difference.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hashattn/hash.h"

namespace hashattn {

namespace gguf {
class file;
}

// What ties a hash file to a model.
struct hash_binding {
  std::string arch;        // general.architecture of the model
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  std::string digest;      // model_layout_digest of the model file
  std::string model_name;  // general.name of the model (informative, not checked)
};
// FNV-1a 64 (hex) over every tensor's name, type and shape, in file order.
std::string model_layout_digest(const gguf::file& model_file);
// Binding of a model file with the given shape (the loader's hyperparameters).
hash_binding hash_binding_for(const gguf::file& model_file, int n_layer, int n_head, int n_head_kv, int head_dim);

// How the encoders were trained (stored, shown by `hashattn info`; not checked).
struct hash_train_info {
  std::vector<std::string> texts;
  int64_t tokens = 0;
  std::string settings;            // "key=value ..." (train_settings_string)
  std::vector<int> layers, heads;  // trained layers / units (empty: all)
  double seconds = 0;
};

void hash_file_save(const std::string& path, const hash_weights& w, const hash_binding& b, const hash_train_info& info);
std::vector<uint8_t> hash_file_bytes(const hash_weights& w, const hash_binding& b, const hash_train_info& info);

struct hash_file_contents {
  hash_weights weights;
  hash_binding binding;
  hash_train_info info;
};
// Reads a hash file. expect: the model it must match (nullptr: no check); expect_bits: the code width
// asked for (0: any). Throws hashattn::error naming the file and what differs.
hash_file_contents hash_file_load(const std::string& path, const hash_binding* expect = nullptr, int expect_bits = 0);
hash_file_contents hash_file_read(const gguf::file& f, const hash_binding* expect = nullptr, int expect_bits = 0);
// One paragraph describing a hash file (for `hashattn info`); empty if f is not a hash file.
std::string hash_file_describe(const gguf::file& f);

}  // namespace hashattn
