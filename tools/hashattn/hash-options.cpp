// Hash-encoder shape options (hash-options.h).
#include "hash-options.h"

#include <stdexcept>
#include <vector>

#include "hashattn/error.h"

namespace hashattn::cli {

mlp_shape parse_mlp_option(const std::string& s, const std::string& option) {
  if (s == "linear" || s == "none" || s.empty()) return {1, 0};
  std::vector<int> h;
  for (size_t i = 0; i <= s.size();) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    try {
      size_t used = 0;
      h.push_back(std::stoi(s.substr(i, j - i), &used));
      if (used != j - i || h.back() <= 0) throw std::invalid_argument(s);
    } catch (const std::exception&) {
      fail(option, "'" + s + "'", "hidden sizes like 128,128 (3 layers), 128 (2 layers) or 'linear'");
    }
    i = j + 1;
  }
  if (h.size() > 2) fail(option, std::to_string(h.size()) + " hidden layers", "at most 2 (an MLP of 1..3 layers)");
  if (h.size() == 2 && h[0] != h[1]) fail(option, s, "equal hidden sizes", "the hash-file format has one hidden size");
  return {(int)h.size() + 1, h[0]};
}

std::string mlp_option_string(int layers, int hidden) {
  if (layers <= 1) return "linear";
  const std::string h = std::to_string(hidden);
  std::string s = h;
  for (int i = 2; i < layers; i++) s.append(1, ',').append(h);
  return s;
}

gqa_mode parse_gqa_option(const std::string& s, const std::string& option) {
  if (s == "head") return gqa_mode::per_head;
  if (s == "group") return gqa_mode::per_group;
  fail(option, s, "head or group");
}

}  // namespace hashattn::cli
