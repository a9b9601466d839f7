// The 8 (scale, min) pairs of a Q4_K / Q5_K super-block, 6 bits each in 12 bytes s (gguf-types.cpp
// has the layout; gguf::k4_scale_min reads one pair), all unpacked at once with 32-bit masks:
//   j < 4:  sc = s[j] & 63,                              mn = s[j + 4] & 63
//   j >= 4: sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4, mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4
#pragma once
#include <cstdint>
#include <cstring>

namespace hashattn::cpu {

inline void k4_scales_mins(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  uint32_t a0, a1, a2;  // bytes 0..3, 4..7, 8..11
  std::memcpy(&a0, s, 4);
  std::memcpy(&a1, s + 4, 4);
  std::memcpy(&a2, s + 8, 4);
  constexpr uint32_t k6 = 0x3F3F3F3F, k4 = 0x0F0F0F0F, k2 = 0x03030303;
  const uint32_t s_lo = a0 & k6, m_lo = a1 & k6;
  const uint32_t s_hi = (a2 & k4) | (((a0 >> 6) & k2) << 4);
  const uint32_t m_hi = ((a2 >> 4) & k4) | (((a1 >> 6) & k2) << 4);
  std::memcpy(sc, &s_lo, 4);
  std::memcpy(sc + 4, &s_hi, 4);
  std::memcpy(mn, &m_lo, 4);
  std::memcpy(mn + 4, &m_hi, 4);
}

}  // namespace hashattn::cpu
