// dequantize_row tests on hand-built blocks. Each test draws the logical contents of a block
// (scales, mins, one quant per element) from a seeded RNG, packs them into bytes following the
// documented block layout (docs/FORMATS.md), and compares the library's output with values
// computed here in double precision from the logical contents. fp16 scales are decoded by a
// decoder written in this test (normal numbers only), independent of the library's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "hashattn/error.h"
#include "hashattn/gguf.h"

using namespace hashattn::gguf;

namespace {

struct half_val {
  uint16_t bits;
  double v;
};

// A random normal fp16 with magnitude in [2^-6, 2^2).
half_val rand_half(std::mt19937& rng) {
  const uint16_t sign = rng() & 1;
  const uint16_t exp = 9 + rng() % 8;  // 9..16
  const uint16_t man = rng() & 0x3ff;
  const double v = (sign ? -1.0 : 1.0) * (1.0 + man / 1024.0) * std::ldexp(1.0, (int)exp - 15);
  return {(uint16_t)((sign << 15) | (exp << 10) | man), v};
}

void put16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xff);
  p[1] = (uint8_t)(v >> 8);
}

void check(type t, const std::vector<uint8_t>& bytes, const std::vector<double>& want,
           const std::vector<double>& mag) {
  ASSERT_EQ(bytes.size() % type_block_bytes(t), 0u);
  const int64_t n = (int64_t)want.size();
  ASSERT_EQ(row_bytes(t, n), bytes.size());
  std::vector<float> got(n, NAN);
  dequantize_row(t, bytes.data(), got.data(), n);
  for (int64_t e = 0; e < n; e++)
    ASSERT_NEAR(got[e], want[e], 1e-6 * mag[e] + 1e-30) << type_name(t) << " element " << e;
}

constexpr int k_blocks = 3;

class dequant : public ::testing::Test {
 protected:
  void SetUp() override {
    seed = 20240601u + (uint32_t)::testing::UnitTest::GetInstance()->random_seed();
    rng.seed(seed);
    std::printf("dequant seed %u\n", seed);
  }
  uint32_t seed = 0;
  std::mt19937 rng;
  int ri(int lo, int hi) { return lo + (int)(rng() % (uint32_t)(hi - lo + 1)); }
};

}  // namespace

TEST(dequant_fixed, float_types_bit_patterns) {
  const uint16_t h[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x0000, 0x8000};
  const double hv[] = {1.0, -2.0, 65504.0, std::ldexp(1.0, -24), 341.0 / 1024.0 * 0.25 + 0.25, 0.0, -0.0};
  float out[7];
  dequantize_row(type::F16, h, out, 7);
  for (int k = 0; k < 7; k++) EXPECT_EQ(out[k], hv[k]) << k;
  const uint16_t b[] = {0x3f80, 0xc040, 0x4049, 0x0000};
  dequantize_row(type::BF16, b, out, 4);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -3.0f);
  EXPECT_EQ(out[2], 3.140625f);
  EXPECT_EQ(out[3], 0.0f);
  const float f[] = {1.5f, -7.25f};
  dequantize_row(type::F32, f, out, 2);
  EXPECT_EQ(out[1], -7.25f);
}

TEST(dequant_fixed, q4_1_one_block_by_hand) {
  // d = 0.5 (0x3800), m = -1 (0xbc00); byte j = (low j&15) | (high 15-j): element j = j, element 16+j = 15-j.
  uint8_t blk[20];
  put16(blk, 0x3800);
  put16(blk + 2, 0xbc00);
  for (int j = 0; j < 16; j++) blk[4 + j] = (uint8_t)(j | ((15 - j) << 4));
  float y[32];
  dequantize_row(type::Q4_1, blk, y, 32);
  for (int j = 0; j < 16; j++) {
    EXPECT_EQ(y[j], j * 0.5f - 1.0f) << j;
    EXPECT_EQ(y[16 + j], (15 - j) * 0.5f - 1.0f) << j;
  }
}

TEST(dequant_fixed, rejects_bad_counts_and_types) {
  float y[64];
  uint8_t x[64] = {};
  EXPECT_THROW(dequantize_row(type::Q4_0, x, y, 31), hashattn::error);
  EXPECT_THROW(dequantize_row((type)5, x, y, 32), hashattn::error);
  EXPECT_THROW(row_bytes(type::Q6_K, 128), hashattn::error);
  EXPECT_EQ(row_bytes(type::Q6_K, 512), 420u);
  EXPECT_STREQ(type_name(type::Q4_K), "Q4_K");
  EXPECT_STREQ(type_name((type)5), "?");
  EXPECT_FALSE(type_known(5));
  EXPECT_TRUE(type_dequantizable(type::Q5_K));
}

TEST_F(dequant, q4_0_and_q4_1) {
  for (int with_min = 0; with_min < 2; with_min++) {
    const type t = with_min ? type::Q4_1 : type::Q4_0;
    const size_t bb = with_min ? 20 : 18;
    std::vector<uint8_t> bytes(bb * k_blocks);
    std::vector<double> want, mag;
    for (int b = 0; b < k_blocks; b++) {
      uint8_t* p = bytes.data() + b * bb;
      const half_val d = rand_half(rng), m = rand_half(rng);
      put16(p, d.bits);
      if (with_min) put16(p + 2, m.bits);
      uint8_t* qs = p + (with_min ? 4 : 2);
      int q[32];
      for (int e = 0; e < 32; e++) q[e] = ri(0, 15);
      for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
      for (int e = 0; e < 32; e++) {
        want.push_back(with_min ? q[e] * d.v + m.v : (q[e] - 8) * d.v);
        mag.push_back(std::fabs(16 * d.v) + (with_min ? std::fabs(m.v) : 0));
      }
    }
    check(t, bytes, want, mag);
  }
}

TEST_F(dequant, q5_0_and_q5_1) {
  for (int with_min = 0; with_min < 2; with_min++) {
    const type t = with_min ? type::Q5_1 : type::Q5_0;
    const size_t bb = with_min ? 24 : 22;
    std::vector<uint8_t> bytes(bb * k_blocks);
    std::vector<double> want, mag;
    for (int b = 0; b < k_blocks; b++) {
      uint8_t* p = bytes.data() + b * bb;
      const half_val d = rand_half(rng), m = rand_half(rng);
      put16(p, d.bits);
      if (with_min) put16(p + 2, m.bits);
      uint8_t* qh = p + (with_min ? 4 : 2);
      uint8_t* qs = qh + 4;
      int q[32];
      uint32_t hbits = 0;
      for (int e = 0; e < 32; e++) {
        q[e] = ri(0, 31);
        hbits |= (uint32_t)(q[e] >> 4) << e;  // bit e of qh = fifth bit of element e
      }
      for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(hbits >> (8 * k));
      for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
      for (int e = 0; e < 32; e++) {
        want.push_back(with_min ? q[e] * d.v + m.v : (q[e] - 16) * d.v);
        mag.push_back(std::fabs(32 * d.v) + (with_min ? std::fabs(m.v) : 0));
      }
    }
    check(t, bytes, want, mag);
  }
}

TEST_F(dequant, q8_0_and_q8_1) {
  for (int with_sum = 0; with_sum < 2; with_sum++) {
    const type t = with_sum ? type::Q8_1 : type::Q8_0;
    const size_t bb = with_sum ? 36 : 34;
    std::vector<uint8_t> bytes(bb * k_blocks);
    std::vector<double> want, mag;
    for (int b = 0; b < k_blocks; b++) {
      uint8_t* p = bytes.data() + b * bb;
      const half_val d = rand_half(rng), s = rand_half(rng);
      put16(p, d.bits);
      if (with_sum) put16(p + 2, s.bits);  // the sum is not used to dequantize
      int8_t* qs = (int8_t*)(p + (with_sum ? 4 : 2));
      for (int e = 0; e < 32; e++) {
        qs[e] = (int8_t)ri(-128, 127);
        want.push_back(qs[e] * d.v);
        mag.push_back(std::fabs(128 * d.v));
      }
    }
    check(t, bytes, want, mag);
  }
}

// Q2_K {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}: element e lives in sub-block e/16 (scale byte
// = sc | mn << 4); within half h = e/128, r = e%128: bit-plane p = r/32, group g = (r%32)/16,
// l = r%16 -> bits 2p..2p+1 of qs[32h + 16g + l].
TEST_F(dequant, q2_k) {
  std::vector<uint8_t> bytes(84 * k_blocks);
  std::vector<double> want, mag;
  for (int b = 0; b < k_blocks; b++) {
    uint8_t* p = bytes.data() + b * 84;
    const half_val d = rand_half(rng), dmin = rand_half(rng);
    int sc[16], mn[16];
    for (int s = 0; s < 16; s++) {
      sc[s] = ri(0, 15);
      mn[s] = ri(0, 15);
      p[s] = (uint8_t)(sc[s] | (mn[s] << 4));
    }
    for (int e = 0; e < 256; e++) {
      const int q = ri(0, 3);
      const int h = e / 128, r = e % 128, pl = r / 32, g = (r % 32) / 16, l = r % 16;
      p[16 + 32 * h + 16 * g + l] |= (uint8_t)(q << (2 * pl));
      want.push_back(d.v * sc[e / 16] * q - dmin.v * mn[e / 16]);
      mag.push_back(std::fabs(d.v * 60) + std::fabs(dmin.v * 15));
    }
    put16(p + 80, d.bits);
    put16(p + 82, dmin.bits);
  }
  check(type::Q2_K, bytes, want, mag);
}

// Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}: quant q in -4..3 stored as q+4: low 2 bits
// at the Q2_K position, third bit in hmask[16g + l] bit 4h + p. Sub-block s = e/16 has a 6-bit
// scale stored as sc+32: low 4 bits in scales[s] (s < 8) or scales[s-8] >> 4, high 2 bits in
// scales[8 + s%4] bits 2(s/4)..2(s/4)+1.
TEST_F(dequant, q3_k) {
  std::vector<uint8_t> bytes(110 * k_blocks);
  std::vector<double> want, mag;
  for (int b = 0; b < k_blocks; b++) {
    uint8_t* p = bytes.data() + b * 110;
    const half_val d = rand_half(rng);
    int sc[16];
    for (int s = 0; s < 16; s++) {
      sc[s] = ri(-32, 31);
      const int u = sc[s] + 32;
      if (s < 8)
        p[96 + s] |= (uint8_t)(u & 15);
      else
        p[96 + s - 8] |= (uint8_t)((u & 15) << 4);
      p[96 + 8 + s % 4] |= (uint8_t)((u >> 4) << (2 * (s / 4)));
    }
    for (int e = 0; e < 256; e++) {
      const int q = ri(-4, 3), u = q + 4;
      const int h = e / 128, r = e % 128, pl = r / 32, g = (r % 32) / 16, l = r % 16;
      p[32 + 32 * h + 16 * g + l] |= (uint8_t)((u & 3) << (2 * pl));
      if (u & 4) p[16 * g + l] |= (uint8_t)(1 << (4 * h + pl));
      want.push_back(d.v * sc[e / 16] * q);
      mag.push_back(std::fabs(d.v * 128));
    }
    put16(p + 108, d.bits);
  }
  check(type::Q3_K, bytes, want, mag);
}

namespace {
// Packs 8 six-bit scales and mins into the 12 bytes used by Q4_K and Q5_K:
// sub-block j < 4: scale in bytes[j] bits 0-5, min in bytes[j+4] bits 0-5;
// sub-block j >= 4: low 4 bits of scale in bytes[j+4] bits 0-3, low 4 bits of min in bytes[j+4]
// bits 4-7, high 2 bits of scale in bytes[j-4] bits 6-7, high 2 bits of min in bytes[j] bits 6-7.
void pack_k4_scales(const int* sc, const int* mn, uint8_t* out) {
  std::memset(out, 0, 12);
  for (int j = 0; j < 4; j++) {
    out[j] = (uint8_t)sc[j];
    out[j + 4] = (uint8_t)mn[j];
  }
  for (int j = 4; j < 8; j++) {
    out[j + 4] = (uint8_t)((sc[j] & 15) | ((mn[j] & 15) << 4));
    out[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
    out[j] |= (uint8_t)((mn[j] >> 4) << 6);
  }
}
}  // namespace

// Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}: element e in sub-block s = e/32; chunk c = e/64,
// r = e%64: byte qs[32c + r%32], low nibble when r < 32, high nibble otherwise.
// Q5_K adds qh[32] after the scales: the fifth bit of element e is bit s of qh[e%32].
TEST_F(dequant, q4_k_and_q5_k) {
  for (int five = 0; five < 2; five++) {
    const type t = five ? type::Q5_K : type::Q4_K;
    const size_t bb = five ? 176 : 144;
    std::vector<uint8_t> bytes(bb * k_blocks);
    std::vector<double> want, mag;
    for (int b = 0; b < k_blocks; b++) {
      uint8_t* p = bytes.data() + b * bb;
      const half_val d = rand_half(rng), dmin = rand_half(rng);
      put16(p, d.bits);
      put16(p + 2, dmin.bits);
      int sc[8], mn[8];
      for (int s = 0; s < 8; s++) {
        sc[s] = ri(0, 63);
        mn[s] = ri(0, 63);
      }
      if (b == 0) sc[5] = 63, mn[6] = 63;  // exercise the high bits
      pack_k4_scales(sc, mn, p + 4);
      uint8_t* qh = p + 16;
      uint8_t* qs = p + (five ? 48 : 16);
      for (int e = 0; e < 256; e++) {
        const int q = five ? ri(0, 31) : ri(0, 15);
        const int s = e / 32, c = e / 64, r = e % 64;
        qs[32 * c + r % 32] |= (uint8_t)(r < 32 ? (q & 15) : ((q & 15) << 4));
        if (five) qh[e % 32] |= (uint8_t)((q >> 4) << s);
        want.push_back(d.v * sc[s] * q - dmin.v * mn[s]);
        mag.push_back(std::fabs(d.v * 63 * 31) + std::fabs(dmin.v * 63));
      }
    }
    check(t, bytes, want, mag);
  }
}

// Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: element e, half h = e/128, r = e%128,
// group k = r/32, l = r%32; 6-bit q (stored q+32): low 4 bits in ql[64h + l + 32(k&1)], low
// nibble for k < 2, high nibble for k >= 2; high 2 bits in qh[32h + l] bits 2k..2k+1;
// scale scales[e/16].
TEST_F(dequant, q6_k) {
  std::vector<uint8_t> bytes(210 * k_blocks);
  std::vector<double> want, mag;
  for (int b = 0; b < k_blocks; b++) {
    uint8_t* p = bytes.data() + b * 210;
    const half_val d = rand_half(rng);
    int8_t sc[16];
    for (int s = 0; s < 16; s++) sc[s] = (int8_t)ri(-128, 127);
    std::memcpy(p + 192, sc, 16);
    put16(p + 208, d.bits);
    for (int e = 0; e < 256; e++) {
      const int q = ri(-32, 31), u = q + 32;
      const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
      p[64 * h + l + 32 * (k & 1)] |= (uint8_t)(k < 2 ? (u & 15) : ((u & 15) << 4));
      p[128 + 32 * h + l] |= (uint8_t)((u >> 4) << (2 * k));
      want.push_back(d.v * sc[e / 16] * q);
      mag.push_back(std::fabs(d.v * 128 * 32));
    }
  }
  check(type::Q6_K, bytes, want, mag);
}

TEST_F(dequant, q8_k) {
  std::vector<uint8_t> bytes(292 * k_blocks);
  std::vector<double> want, mag;
  for (int b = 0; b < k_blocks; b++) {
    uint8_t* p = bytes.data() + b * 292;
    const float d = (float)rand_half(rng).v * 0.001f;
    std::memcpy(p, &d, 4);
    for (int e = 0; e < 256; e++) {
      const int q = ri(-128, 127);
      p[4 + e] = (uint8_t)(int8_t)q;
      want.push_back((double)d * q);
      mag.push_back(std::fabs(d * 128.0));
    }
  }
  check(type::Q8_K, bytes, want, mag);
}

TEST_F(dequant, integer_and_f64_types) {
  const int8_t i8[] = {-128, 0, 127};
  const int16_t i16[] = {-32768, 5, 32767};
  const int32_t i32[] = {-100000, 7, 100000};
  const double f64[] = {1.5, -2.25, 1e10};
  float y[3];
  dequantize_row(type::I8, i8, y, 3);
  EXPECT_EQ(y[0], -128.f);
  dequantize_row(type::I16, i16, y, 3);
  EXPECT_EQ(y[2], 32767.f);
  dequantize_row(type::I32, i32, y, 3);
  EXPECT_EQ(y[0], -100000.f);
  dequantize_row(type::F64, f64, y, 3);
  EXPECT_EQ(y[1], -2.25f);
  EXPECT_EQ(y[2], 1e10f);
}

// Random blocks dequantized by the `gguf` Python package (tests/data/make-gguf-goldens.py).
TEST(dequant_golden, matches_python_gguf_package) {
  const std::string path = std::string(HASHATTN_SOURCE_DIR) + "/tests/data/dequant-golden.json";
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << "missing " << path;
  const nlohmann::json g = nlohmann::json::parse(in);
  std::printf("dequant golden seed %d\n", g["seed"].get<int>());
  int n_cases = 0;
  for (const auto& c : g["cases"]) {
    const std::string name = c["type"];
    SCOPED_TRACE(name);
    const type t = (type)c["type_id"].get<uint32_t>();
    ASSERT_STREQ(type_name(t), name.c_str());
    const std::string hex = c["hex"];
    std::vector<uint8_t> bytes(hex.size() / 2);
    for (size_t k = 0; k < bytes.size(); k++) bytes[k] = (uint8_t)std::stoi(hex.substr(2 * k, 2), nullptr, 16);
    const int64_t n = c["n"];
    ASSERT_EQ(row_bytes(t, n), bytes.size());
    std::vector<float> y(n);
    dequantize_row(t, bytes.data(), y.data(), n);
    const auto& want = c["values"];
    double scale = 0;
    for (const auto& v : want) scale = std::max(scale, std::fabs(v.get<double>()));
    for (int64_t e = 0; e < n; e++) ASSERT_NEAR(y[e], want[e].get<double>(), 1e-6 * scale) << "element " << e;
    n_cases++;
  }
  EXPECT_EQ(n_cases, 10);
}
