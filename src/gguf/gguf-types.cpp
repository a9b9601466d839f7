// GGUF tensor element types: the size table (elements and bytes per block) and scalar
// dequantization of one row (n elements, a multiple of the block size) into fp32.
// Block formats (little-endian, fp16 = IEEE binary16):
//   Q4_0 {f16 d; u8 qs[16]}             y = (q - 8) * d, q = low nibbles (0..15), high nibbles (16..31)
//   Q4_1 {f16 d, m; u8 qs[16]}          y = q * d + m
//   Q5_0 {f16 d; u32 qh; u8 qs[16]}     q = nibble | bit (j or j+16 of qh) << 4; y = (q - 16) * d
//   Q5_1 {f16 d, m; u32 qh; u8 qs[16]}  y = q * d + m
//   Q8_0 {f16 d; i8 qs[32]}             Q8_1 {f16 d, s; i8 qs[32]}   y = q * d
//   K-quants: 256-element super-blocks, see the functions below and docs/FORMATS.md.
#include <cstring>
#include <string>

#include "core/half.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"

namespace hashattn::gguf {

namespace {

struct type_row {
  uint32_t id;
  const char* name;
  int64_t block_elems;
  size_t block_bytes;
  bool dequant;
};

constexpr type_row k_types[] = {
    {0, "F32", 1, 4, true},       {1, "F16", 1, 2, true},        {2, "Q4_0", 32, 18, true},
    {3, "Q4_1", 32, 20, true},    {6, "Q5_0", 32, 22, true},     {7, "Q5_1", 32, 24, true},
    {8, "Q8_0", 32, 34, true},    {9, "Q8_1", 32, 36, true},     {10, "Q2_K", 256, 84, true},
    {11, "Q3_K", 256, 110, true}, {12, "Q4_K", 256, 144, true},  {13, "Q5_K", 256, 176, true},
    {14, "Q6_K", 256, 210, true}, {15, "Q8_K", 256, 292, true},  {24, "I8", 1, 1, true},
    {25, "I16", 1, 2, true},      {26, "I32", 1, 4, true},       {27, "I64", 1, 8, true},
    {28, "F64", 1, 8, true},      {30, "BF16", 1, 2, true},
};

const type_row* find_type(uint32_t t) {
  for (const auto& r : k_types)
    if (r.id == t) return &r;
  return nullptr;
}

const type_row& need_type(type t) {
  const type_row* r = find_type((uint32_t)t);
  if (!r) fail("gguf: unknown tensor type", std::to_string((uint32_t)t), "a ggml type id this library knows");
  return *r;
}

inline uint16_t rd16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
inline float h2f(const uint8_t* p) { return fp16_to_fp32(rd16(p)); }

void deq_q4_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; j++) {
    y[j] = ((int)(qs[j] & 15) - 8) * d;
    y[j + 16] = ((int)(qs[j] >> 4) - 8) * d;
  }
}

void deq_q4_1(const uint8_t* b, float* y) {
  const float d = h2f(b), m = h2f(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; j++) {
    y[j] = (qs[j] & 15) * d + m;
    y[j + 16] = (qs[j] >> 4) * d + m;
  }
}

void deq_q5_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  const uint32_t qh = rd32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; j++) {
    const int q0 = (qs[j] & 15) | (((qh >> j) & 1) << 4);
    const int q1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = (q0 - 16) * d;
    y[j + 16] = (q1 - 16) * d;
  }
}

void deq_q5_1(const uint8_t* b, float* y) {
  const float d = h2f(b), m = h2f(b + 2);
  const uint32_t qh = rd32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; j++) {
    const int q0 = (qs[j] & 15) | (((qh >> j) & 1) << 4);
    const int q1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = q0 * d + m;
    y[j + 16] = q1 * d + m;
  }
}

void deq_q8_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  for (int j = 0; j < 32; j++) y[j] = (int8_t)b[2 + j] * d;
}

void deq_q8_1(const uint8_t* b, float* y) {
  const float d = h2f(b);
  for (int j = 0; j < 32; j++) y[j] = (int8_t)b[4 + j] * d;
}

// Q2_K {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}: 16 sub-blocks of 16; scale byte = sc | mn << 4.
// Element order: two halves of 128; in each, 4 bit-planes (shift 0,2,4,6) x 2 groups of 16 bytes.
void deq_q2_k(const uint8_t* b, float* y) {
  const uint8_t* sc = b;
  const uint8_t* q = b + 16;
  const float d = h2f(b + 80), dmin = h2f(b + 82);
  int is = 0;
  for (int half = 0; half < 2; half++) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int g = 0; g < 2; g++) {
        const uint8_t s = sc[is++];
        const float dl = d * (s & 15), ml = dmin * (s >> 4);
        for (int l = 0; l < 16; l++) *y++ = dl * ((q[16 * g + l] >> shift) & 3) - ml;
      }
    }
    q += 32;
  }
}

// Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}: 16 sub-blocks of 16 with 6-bit signed
// scales (stored + 32): low 4 bits in scales[i] (i < 8) or scales[i-8] >> 4, high 2 bits in
// scales[8 + i % 4] >> (2 * (i / 4)). q = 2 low bits from qs minus 4 when the hmask bit is clear.
void deq_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const uint8_t* s = b + 96;
  const float d = h2f(b + 108);
  int scale[16];
  for (int i = 0; i < 16; i++) {
    const int lo = i < 8 ? (s[i] & 15) : (s[i - 8] >> 4);
    const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    scale[i] = (lo | (hi << 4)) - 32;
  }
  int is = 0;
  uint8_t m = 1;
  for (int half = 0; half < 2; half++) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int g = 0; g < 2; g++) {
        const float dl = d * scale[is++];
        for (int l = 0; l < 16; l++) {
          const int lo = (q[16 * g + l] >> shift) & 3;
          *y++ = dl * (lo - ((hm[16 * g + l] & m) ? 0 : 4));
        }
      }
      m <<= 1;
    }
    q += 32;
  }
}

// Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}: 4 chunks of 64 elements; chunk c uses
// qs[32c .. 32c+32): low nibbles are sub-block 2c, high nibbles sub-block 2c+1; y = d*sc*q - dmin*mn.
void deq_q4_k(const uint8_t* b, float* y) {
  const float d = h2f(b), dmin = h2f(b + 2);
  const uint8_t* s = b + 4;
  const uint8_t* q = b + 16;
  for (int c = 0; c < 4; c++) {
    int sc0, mn0, sc1, mn1;
    k4_scale_min(2 * c, s, &sc0, &mn0);
    k4_scale_min(2 * c + 1, s, &sc1, &mn1);
    const float d0 = d * sc0, m0 = dmin * mn0, d1 = d * sc1, m1 = dmin * mn1;
    for (int l = 0; l < 32; l++) y[l] = d0 * (q[l] & 15) - m0;
    for (int l = 0; l < 32; l++) y[32 + l] = d1 * (q[l] >> 4) - m1;
    q += 32;
    y += 64;
  }
}

// Q5_K {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as Q4_K, plus a fifth bit from
// qh[l]: bit 2c for sub-block 2c, bit 2c+1 for sub-block 2c+1.
void deq_q5_k(const uint8_t* b, float* y) {
  const float d = h2f(b), dmin = h2f(b + 2);
  const uint8_t* s = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* q = b + 48;
  for (int c = 0; c < 4; c++) {
    int sc0, mn0, sc1, mn1;
    k4_scale_min(2 * c, s, &sc0, &mn0);
    k4_scale_min(2 * c + 1, s, &sc1, &mn1);
    const float d0 = d * sc0, m0 = dmin * mn0, d1 = d * sc1, m1 = dmin * mn1;
    for (int l = 0; l < 32; l++) y[l] = d0 * ((q[l] & 15) | (((qh[l] >> (2 * c)) & 1) << 4)) - m0;
    for (int l = 0; l < 32; l++)
      y[32 + l] = d1 * ((q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) - m1;
    q += 32;
    y += 64;
  }
}

// Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: two halves of 128; in half h, for l in
// 0..31 the four elements l, l+32, l+64, l+96 take low 4 bits from ql[64h+l] & 15,
// ql[64h+l+32] & 15, ql[64h+l] >> 4, ql[64h+l+32] >> 4 and high 2 bits from qh[32h+l] bits
// 0-1, 2-3, 4-5, 6-7; y = d * scales[8h + l/16 + 2k] * (q - 32) for element group k.
void deq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = (const int8_t*)(b + 192);
  const float d = h2f(b + 208);
  for (int h = 0; h < 2; h++) {
    for (int l = 0; l < 32; l++) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    ql += 64;
    qh += 32;
    sc += 8;
    y += 128;
  }
}

// Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}: y = d * q.
void deq_q8_k(const uint8_t* b, float* y) {
  float d;
  std::memcpy(&d, b, 4);
  for (int j = 0; j < 256; j++) y[j] = d * (int8_t)b[4 + j];
}

}  // namespace

const char* type_name(type t) {
  const type_row* r = find_type((uint32_t)t);
  return r ? r->name : "?";
}

const char* value_type_name(value_type t) {
  switch (t) {
    case value_type::UINT8: return "u8";
    case value_type::INT8: return "i8";
    case value_type::UINT16: return "u16";
    case value_type::INT16: return "i16";
    case value_type::UINT32: return "u32";
    case value_type::INT32: return "i32";
    case value_type::FLOAT32: return "f32";
    case value_type::BOOL: return "bool";
    case value_type::STRING: return "str";
    case value_type::ARRAY: return "arr";
    case value_type::UINT64: return "u64";
    case value_type::INT64: return "i64";
    case value_type::FLOAT64: return "f64";
  }
  return "?";
}

bool type_known(uint32_t t) { return find_type(t) != nullptr; }

// Q4_K / Q5_K: 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min packed in 12 bytes:
// sub-blocks 0..3: scale = s[j] & 63, min = s[j+4] & 63;
// sub-blocks 4..7: scale = (s[j+4] & 15) | (s[j-4] >> 6) << 4, min = (s[j+4] >> 4) | (s[j] >> 6) << 4.
void k4_scale_min(int j, const uint8_t* s, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

bool type_dequantizable(type t) {
  const type_row* r = find_type((uint32_t)t);
  return r && r->dequant;
}

int64_t type_block_elems(type t) { return need_type(t).block_elems; }
size_t type_block_bytes(type t) { return need_type(t).block_bytes; }

size_t row_bytes(type t, int64_t n) {
  const type_row& r = need_type(t);
  if (n < 0 || n % r.block_elems != 0)
    fail(std::string("gguf: element count of a ") + r.name + " row is not a multiple of the block size",
         std::to_string(n), "a multiple of " + std::to_string(r.block_elems));
  return (size_t)(n / r.block_elems) * r.block_bytes;
}

void dequantize_row(type t, const void* src, float* dst, int64_t n) {
  const type_row& r = need_type(t);
  if (n < 0 || n % r.block_elems != 0)
    fail(std::string("gguf: dequantize_row element count for ") + r.name + " is not a multiple of the block size",
         std::to_string(n), "a multiple of " + std::to_string(r.block_elems));
  const uint8_t* p = static_cast<const uint8_t*>(src);
  const int64_t nb = n / r.block_elems;
  auto each_block = [&](void (*f)(const uint8_t*, float*)) {
    for (int64_t i = 0; i < nb; i++) f(p + i * r.block_bytes, dst + i * r.block_elems);
  };
  switch (t) {
    case type::F32: std::memcpy(dst, p, (size_t)n * 4); return;
    case type::F16:
      for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_fp32(rd16(p + 2 * i));
      return;
    case type::BF16:
      for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(rd16(p + 2 * i));
      return;
    case type::F64:
      for (int64_t i = 0; i < n; i++) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        dst[i] = (float)v;
      }
      return;
    case type::I8:
      for (int64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)p[i];
      return;
    case type::I16:
      for (int64_t i = 0; i < n; i++) dst[i] = (float)(int16_t)rd16(p + 2 * i);
      return;
    case type::I32:
      for (int64_t i = 0; i < n; i++) dst[i] = (float)(int32_t)rd32(p + 4 * i);
      return;
    case type::I64:
      for (int64_t i = 0; i < n; i++) {
        int64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        dst[i] = (float)v;
      }
      return;
    case type::Q4_0: each_block(deq_q4_0); return;
    case type::Q4_1: each_block(deq_q4_1); return;
    case type::Q5_0: each_block(deq_q5_0); return;
    case type::Q5_1: each_block(deq_q5_1); return;
    case type::Q8_0: each_block(deq_q8_0); return;
    case type::Q8_1: each_block(deq_q8_1); return;
    case type::Q2_K: each_block(deq_q2_k); return;
    case type::Q3_K: each_block(deq_q3_k); return;
    case type::Q4_K: each_block(deq_q4_k); return;
    case type::Q5_K: each_block(deq_q5_k); return;
    case type::Q6_K: each_block(deq_q6_k); return;
    case type::Q8_K: each_block(deq_q8_k); return;
  }
  fail(std::string("gguf: dequantize_row does not support type ") + r.name);
}

}  // namespace hashattn::gguf
