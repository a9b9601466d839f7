// `hashattn generate --device cuda`: the decode loop on the GPU runtime (gpu.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hashattn/cuda.h"

namespace hashattn {
class model;
class tokenizer;
struct hash_weights;
}  // namespace hashattn

namespace hashattn::cli {

struct gpu_generate_args {
  std::vector<int32_t> prompt;
  int n_predict = 128;
  int64_t n_ctx = 0;          // 0: prompt + n_predict
  int64_t budget_ctx = 0;     // context of the budget's auto sinks / window
  float temp = 0;
  uint64_t seed = 0;
  bool ignore_eos = false;
  bool verbose = false;
  int threads = 0;
  std::string policy = "dense";
  std::string attend = cuda::attend_impl_name(cuda::attend_impl::automatic);  // gpu.h session_params::attend
  std::shared_ptr<const hash_weights> hash;
};

// False (and why) when this build has no CUDA backend or no device is present.
bool gpu_generate_available(std::string* why);
// Streams the generated text to stdout and a closing line to stderr, as the CPU path does.
int gpu_generate(const model& m, const tokenizer& tok, const gpu_generate_args& a);

}  // namespace hashattn::cli
