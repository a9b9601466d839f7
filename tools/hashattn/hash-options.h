// Hash-encoder shape options shared by `hashattn train` and `hashattn make-model`: the MLP of an
// encoder and the GQA mode of the key encoders, as text.
#pragma once
#include <string>

#include "hashattn/core.h"

namespace hashattn::cli {

struct mlp_shape {
  int layers = 3;   // linear layers, 1..3
  int hidden = 0;   // hidden width (0 for one layer)
};
// "128,128" (3 layers of hidden width 128), "128" (2 layers), "linear" / "none" / "" (1 layer); throws
// hashattn::error naming `option` otherwise (the hash-file format has one hidden width: equal sizes).
mlp_shape parse_mlp_option(const std::string& s, const std::string& option);
// The text parse_mlp_option reads back as this shape (for defaults).
std::string mlp_option_string(int layers, int hidden);
// "head" (key encoders per query head) or "group" (per KV head); throws naming `option` otherwise.
gqa_mode parse_gqa_option(const std::string& s, const std::string& option);

}  // namespace hashattn::cli
