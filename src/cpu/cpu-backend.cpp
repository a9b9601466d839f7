// The CPU backend's table (ops.h): every op, host memory.
#include "cpu/cpu-kernels.h"

namespace hashattn {

const backend& cpu_backend() {
  static const backend b = [] {
    backend t;
    t.name = "cpu";
    t.attend = attn_decode_cpu;
    t.encode = hash_encode_cpu;
    t.select_codes = hash_select_cpu;
    t.score_codes = hash_score_cpu;
    t.select_scores = score_select_cpu;
    t.target = cpu_simd_target;
    return t;
  }();
  return b;
}

}  // namespace hashattn
