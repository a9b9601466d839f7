// Random weight rows in GGUF block formats (quant-rows.h).
#include "common/quant-rows.h"

#include <cstring>

#include "core/half.h"

namespace hashattn::test {

std::vector<uint8_t> random_rows(gguf::type t, int64_t rows, int64_t cols, std::mt19937_64& rng) {
  const size_t bb = gguf::type_block_bytes(t), rb = gguf::row_bytes(t, cols);
  std::vector<uint8_t> w(rb * rows);
  for (auto& b : w) b = (uint8_t)rng();
  std::uniform_real_distribution<float> ud(0.0005f, 0.01f);
  std::normal_distribution<float> nd(0.f, 0.1f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / gguf::type_block_elems(t); ++b) {
      uint8_t* blk = w.data() + r * rb + b * bb;
      const uint16_t d = fp32_to_fp16(ud(rng) * (rng() % 2 ? 1 : -1)), m = fp32_to_fp16(ud(rng) * (rng() % 2 ? 1 : -1));
      if (t == gguf::type::F32) {
        const float v = nd(rng);
        std::memcpy(blk, &v, 4);
      } else if (t == gguf::type::F16) {
        const uint16_t h = fp32_to_fp16(nd(rng));
        std::memcpy(blk, &h, 2);
      } else if (t == gguf::type::BF16) {
        const float v = nd(rng);
        uint32_t u;
        std::memcpy(&u, &v, 4);
        const uint16_t h = (uint16_t)(u >> 16);
        std::memcpy(blk, &h, 2);
      } else if (t == gguf::type::Q6_K) {
        std::memcpy(blk + 208, &d, 2);
      } else if (t == gguf::type::Q3_K) {
        std::memcpy(blk + 108, &d, 2);
      } else {
        std::memcpy(blk, &d, 2);
        if (t == gguf::type::Q4_1 || t == gguf::type::Q4_K || t == gguf::type::Q5_K) std::memcpy(blk + 2, &m, 2);
      }
    }
  return w;
}

}  // namespace hashattn::test
