// Quantized mat-vec kernels (Highway, runtime dispatch) for decode: y = W x.
// W: [n_rows, n_cols] GGUF blocks of 32 straight from the mmap:
//   Q4_0 {fp16 d; u8 qs[16]}      w = (q - 8) * d
//   Q4_1 {fp16 d; fp16 m; u8 qs[16]}  w = q * d + m   (low nibbles: elements 0..15, high: 16..31)
//   Q8_0 {fp16 d; i8 qs[32]}      w = q * d
//   Q5_0 {fp16 d; u32 qh; u8 qs[16]}  w = (q - 16) * d, q = nibble | (bit e of qh) << 4
// x: act_i16 (int16 blocks of 32, scale d, and s = d * sum(q)). Per block the integer
// dot sum(qw * qx) is formed with widening multiply-adds (16-bit products summed into 32-bit lanes)
// and scaled by dw * dx in float; Q4_1 adds mw * s, Q4_0 subtracts 8 * dw * s.
// K-quants, super-blocks of 256 (gguf-types.cpp has the layouts), against the same act_i16 blocks:
//   Q4_K / Q5_K: 8 sub-blocks of 32, w = d*sc_j*q - dmin*m_j: per sub-block dw_j dx sum(qw qx) - dmin m_j s.
//   Q6_K: 16 sub-blocks of 16, w = d*sc_j*(q - 32): each act block of 32 is two sums of 16.
//   The 8 scales and mins of a Q4_K / Q5_K super-block are unpacked at once (kquant-scales.h) and
//   turned into (d sc_j) dx_j and the offset term in 8-lane vectors; Q6_K's 3 byte loads per 16 or 32
//   weights serve its 4 groups.
// F32 / F16 rows: float dot on x. Other types: dequantize the row, then float dot.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "cpu/kquant-scales.h"
#include "cpu/matvec.h"
#include "hashattn/error.h"

#ifndef HASHATTN_CPU_MATVEC_QUANT_TABLES
#define HASHATTN_CPU_MATVEC_QUANT_TABLES
namespace hashattn::cpu {
// Byte b of Q5_0's fifth bits expanded: lane e is 16 where bit e of b is set, else 0.
struct alignas(16) fifth_row { uint16_t v[8]; };
struct fifth_table {
  fifth_row r[256];
  constexpr fifth_table() : r{} {
    for (int b = 0; b < 256; ++b)
      for (int e = 0; e < 8; ++e) r[b].v[e] = (uint16_t)((b >> e) & 1 ? 16 : 0);
  }
  constexpr const fifth_row& operator[](uint32_t b) const { return r[b]; }
};
inline constexpr fifth_table kFifth{};

// Software prefetch of the weights: a decode step streams every matrix from memory once (Gemma 3 270M:
// 246 MB per token, 178 MB of it one output matrix), and the integer kernels issue about 15-25 instructions
// per 32 weights, so the out-of-order window alone keeps too few cache lines in flight to cover the memory
// latency, and the hardware prefetchers stop at 4 KB page boundaries. Each step of a kernel's block loop
// requests the lines kPrefetchAhead bytes past the bytes it reads (one request per 64 bytes or fewer of
// step, so every line is requested; rows follow each other, so this runs on into the next rows). A
// prefetch never faults, past the end of the matrix included.
#ifndef HASHATTN_MATVEC_PREFETCH_AHEAD
#define HASHATTN_MATVEC_PREFETCH_AHEAD 4096
#endif
inline constexpr size_t kPrefetchAhead = HASHATTN_MATVEC_PREFETCH_AHEAD;
// Requests the lines of [p + kPrefetchAhead, p + kPrefetchAhead + kBytes] (kBytes: the loop's step).
template <size_t kBytes>
inline void prefetch_ahead(const uint8_t* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) + kPrefetchAhead;  // may lie past the matrix
  for (size_t off = 0; off < kBytes; off += 64) __builtin_prefetch(reinterpret_cast<const void*>(a + off), 0, 3);
}
}  // namespace hashattn::cpu
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/matvec-quant.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace hashattn::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// 16 int16 lanes at most: on a CPU that double-pumps 512-bit integer ops wider vectors buy
// nothing, and 16 lanes keep the nibble layout simple (one vector = low or high nibbles).
using D16 = hn::CappedTag<int16_t, 16>;

// Q4 elements [c, c + N) of one block (qs: 16 bytes) as int16 in [0, 15].
HWY_INLINE hn::Vec<D16> load_q4(const uint8_t* qs, size_t c) {
  const D16 d16;
  const hn::RebindToUnsigned<D16> du16;
  const hn::Rebind<uint8_t, D16> d8;
  const auto v = hn::PromoteTo(du16, hn::LoadU(d8, qs + (c & 15)));
  const auto r = c < 16 ? hn::And(v, hn::Set(du16, 0x0F)) : hn::ShiftRight<4>(v);
  return hn::BitCast(d16, r);
}

// Bit e of a 32-bit word as lane e - c of a 16-lane vector: 16 where set, else 0 (Q5_0's fifth bit).
// Vectors of 8 or 16 lanes read each byte of the word's expansion from a table (kFifth).
HWY_INLINE hn::Vec<D16> fifth_bits(uint32_t qh, size_t c) {
  const D16 d16;
  const hn::RebindToUnsigned<D16> du16;
#if HWY_TARGET != HWY_SCALAR
  constexpr size_t N = hn::MaxLanes(D16());
  if constexpr (N == 16) {
    const hn::Half<decltype(du16)> dh;
    const auto lo = hn::Load(dh, kFifth[(qh >> c) & 0xFF].v);
    const auto hi = hn::Load(dh, kFifth[(qh >> (c + 8)) & 0xFF].v);
    return hn::BitCast(d16, hn::Combine(du16, hi, lo));
  } else if constexpr (N == 8) {
    return hn::BitCast(d16, hn::Load(du16, kFifth[(qh >> c) & 0xFF].v));
  }
#endif
  alignas(64) static constexpr uint16_t kPow2[32] = {1,     2,     4,     8,     16,    32,   64,   128,
                                                     256,   512,   1024,  2048,  4096,  8192, 16384, 32768,
                                                     1,     2,     4,     8,     16,    32,   64,   128,
                                                     256,   512,   1024,  2048,  4096,  8192, 16384, 32768};
  const auto half = hn::Set(du16, (uint16_t)(c < 16 ? qh & 0xFFFF : qh >> 16));
  const auto set = hn::Ne(hn::And(half, hn::LoadU(du16, kPow2 + c)), hn::Zero(du16));
  return hn::BitCast(d16, hn::IfThenElseZero(set, hn::Set(du16, 16)));
}

// sum over the 32 elements of one block of qw * qx, spread over int32 lanes.
template <int kType>  // 0: Q4 (unsigned nibbles), 1: Q8_0 (signed bytes), 2: Q5_0 (nibbles + fifth bit of qh)
HWY_INLINE hn::Vec<hn::Repartition<int32_t, D16>> block_dot(const uint8_t* qs, const int16_t* x,
                                                            uint32_t qh = 0) {
  const D16 d16;
  const hn::Repartition<int32_t, D16> d32;
  constexpr size_t N = hn::MaxLanes(D16());
  auto s0 = hn::Zero(d32);
  auto s1 = hn::Zero(d32);
  for (size_t c = 0; c < 32; c += N) {
    hn::Vec<D16> w;
    if constexpr (kType == 0) {
      w = load_q4(qs, c);
    } else if constexpr (kType == 2) {
#if HWY_TARGET <= HWY_AVX3
      // AVX-512: the 16 bits of qh for these lanes are a mask register that sets the fifth bit.
      static_assert(N == 16, "one 16-bit mask per vector");
      uint8_t bits[4];
      std::memcpy(bits, &qh, 4);
      const auto q4 = load_q4(qs, c);
#if HWY_ARCH_X86
      // One masked add (vpaddw merging under the mask) instead of an OR and a masked move: nibbles are < 16,
      // so adding 16 sets bit 4. 5-10% off the Q5_0 mat-vec (docs/PERFORMANCE.md, second round).
      uint16_t m16;
      std::memcpy(&m16, bits + c / 8, 2);
      w = hn::Vec<D16>{_mm256_mask_add_epi16(q4.raw, (__mmask16)m16, q4.raw, _mm256_set1_epi16(16))};
#else
      const hn::RebindToUnsigned<D16> du16;
      const auto m = hn::RebindMask(d16, hn::LoadMaskBits(du16, bits + c / 8));
      w = hn::IfThenElse(m, hn::Or(q4, hn::Set(d16, 16)), q4);
#endif
#else
      w = hn::Or(load_q4(qs, c), fifth_bits(qh, c));
#endif
    } else {
      const hn::Rebind<int8_t, D16> d8;
      w = hn::PromoteTo(d16, hn::LoadU(d8, reinterpret_cast<const int8_t*>(qs) + c));
    }
    s0 = hn::ReorderWidenMulAccumulate(d32, w, hn::LoadU(d16, x + c), s0, s1);
  }
  return hn::RearrangeToOddPlusEven(s0, s1);
}

template <int kFmt>  // 0: Q4_0, 1: Q4_1, 2: Q8_0, 3: Q5_0
void rows_quant(const matvec_params& p, int64_t r0, int64_t r1) {
  const hn::Repartition<float, D16> df;
  const float* tab = fp16_table();
  constexpr size_t kBlockBytes = kFmt == 0 ? 18 : kFmt == 1 ? 20 : kFmt == 2 ? 34 : 22;
  constexpr size_t kQsOff = kFmt == 1 ? 4 : kFmt == 3 ? 6 : 2;
  constexpr int kDot = kFmt == 2 ? 1 : kFmt == 3 ? 2 : 0;
  constexpr float kOffset = kFmt == 0 ? 8.0f : kFmt == 3 ? 16.0f : 0.0f;  // w = (q - offset) * d
  auto qh_of = [](const uint8_t* blk) {
    uint32_t v = 0;
    if constexpr (kFmt == 3) std::memcpy(&v, blk + 2, 4);
    return v;
  };
  const int64_t nb = p.n_cols / 32;
  const int16_t* xq = p.xq->q.data();
  const float* xd = p.xq->d.data();
  const float* xs = p.xq->s.data();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(p.w) + (size_t)r * p.row_bytes;
    auto acc0 = hn::Zero(df);
    auto acc1 = hn::Zero(df);
    float corr = 0;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
      const uint8_t* b0 = row + (size_t)b * kBlockBytes;
      const uint8_t* b1 = b0 + kBlockBytes;
      prefetch_ahead<2 * kBlockBytes>(b0);
      uint16_t h0, h1;
      std::memcpy(&h0, b0, 2);
      std::memcpy(&h1, b1, 2);
      const float dw0 = tab[h0], dw1 = tab[h1];
      const auto i0 = block_dot<kDot>(b0 + kQsOff, xq + b * 32, qh_of(b0));
      const auto i1 = block_dot<kDot>(b1 + kQsOff, xq + b * 32 + 32, qh_of(b1));
      acc0 = hn::MulAdd(hn::ConvertTo(df, i0), hn::Set(df, dw0 * xd[b]), acc0);
      acc1 = hn::MulAdd(hn::ConvertTo(df, i1), hn::Set(df, dw1 * xd[b + 1]), acc1);
      if constexpr (kFmt == 1) {
        uint16_t m0, m1;
        std::memcpy(&m0, b0 + 2, 2);
        std::memcpy(&m1, b1 + 2, 2);
        corr += tab[m0] * xs[b] + tab[m1] * xs[b + 1];
      } else if constexpr (kFmt == 0 || kFmt == 3) {
        corr -= kOffset * (dw0 * xs[b] + dw1 * xs[b + 1]);
      }
    }
    for (; b < nb; ++b) {
      const uint8_t* b0 = row + (size_t)b * kBlockBytes;
      uint16_t h0;
      std::memcpy(&h0, b0, 2);
      const float dw0 = tab[h0];
      const auto i0 = block_dot<kDot>(b0 + kQsOff, xq + b * 32, qh_of(b0));
      acc0 = hn::MulAdd(hn::ConvertTo(df, i0), hn::Set(df, dw0 * xd[b]), acc0);
      if constexpr (kFmt == 1) {
        uint16_t m0;
        std::memcpy(&m0, b0 + 2, 2);
        corr += tab[m0] * xs[b];
      } else if constexpr (kFmt == 0 || kFmt == 3) {
        corr -= kOffset * dw0 * xs[b];
      }
    }
    p.y[r] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1))) + corr;
  }
}

// ---- K-quants ----
using V32 = hn::Vec<hn::Repartition<int32_t, D16>>;

// Q4_K / Q5_K weights [c, c + N) of the chunk's two sub-blocks 2ch and 2ch + 1 as int16: the low and
// high nibbles of the chunk's 32 bytes qs, and for Q5_K bits 2ch and 2ch + 1 of qh as the fifth bit.
template <bool kQ5>
HWY_INLINE void load_k4_pair(const uint8_t* qs, const uint8_t* qh, int ch, size_t c, hn::Vec<D16>& lo,
                             hn::Vec<D16>& hi) {
  const D16 d16;
  const hn::RebindToUnsigned<D16> du16;
  const hn::Rebind<uint8_t, D16> d8;
  const auto v = hn::PromoteTo(du16, hn::LoadU(d8, qs + c));
  auto l = hn::And(v, hn::Set(du16, 0x0F)), h = hn::ShiftRight<4>(v);
  if constexpr (kQ5) {
    const auto b = hn::ShiftRightSame(hn::PromoteTo(du16, hn::LoadU(d8, qh + c)), 2 * ch);
    l = hn::Or(l, hn::ShiftLeft<4>(hn::And(b, hn::Set(du16, 1))));
    h = hn::Or(h, hn::ShiftLeft<3>(hn::And(b, hn::Set(du16, 2))));
  }
  lo = hn::BitCast(d16, l);
  hi = hn::BitCast(d16, h);
}

// Scales of the 8 sub-blocks of a Q4_K / Q5_K super-block times the activation scales, (d sc_j) dx_j,
// into sx[0..8); and corr += (dmin mn_j) s_j lane-wise (the offset term, summed at the end of the row).
template <class DF8>
HWY_INLINE void k4_block_scales(const uint8_t* blk, float d, float dmin, const float* xd, const float* xs, float* sx,
                                hn::Vec<DF8>& corr) {
  const DF8 df;
  const hn::RebindToSigned<DF8> di;
  const hn::Rebind<uint8_t, DF8> du8;
  alignas(8) uint8_t sc[8], mn[8];
  k4_scales_mins(blk + 4, sc, mn);
  for (size_t j = 0; j < 8; j += hn::Lanes(df)) {
    const auto scf = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(du8, sc + j)));
    const auto mnf = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(du8, mn + j)));
    hn::StoreU(hn::Mul(hn::Mul(hn::Set(df, d), scf), hn::LoadU(df, xd + j)), df, sx + j);
    corr = hn::MulAdd(hn::Mul(hn::Set(df, dmin), mnf), hn::LoadU(df, xs + j), corr);
  }
}

template <int kFmt>  // 3: Q4_K, 4: Q5_K, 5: Q6_K
void rows_kquant(const matvec_params& p, int64_t r0, int64_t r1) {
  const D16 d16;
  const hn::RebindToUnsigned<D16> du16;
  const hn::Rebind<uint8_t, D16> d8;
  const hn::Repartition<int32_t, D16> d32;
  const hn::Repartition<float, D16> df;
  using DF8 = hn::CappedTag<float, 8>;
  const DF8 df8;
  constexpr size_t N = hn::MaxLanes(D16());
  static_assert(16 % N == 0, "a Q6_K half-group of 16 must be whole vectors");
  const float* tab = fp16_table();
  constexpr size_t kBlockBytes = kFmt == 3 ? 144 : kFmt == 4 ? 176 : 210;
  const int64_t nsb = p.n_cols / 256;
  const int16_t* xq = p.xq->q.data();
  const float* xd = p.xq->d.data();
  const float* xs = p.xq->s.data();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(p.w) + (size_t)r * p.row_bytes;
    auto acc = hn::Zero(df), acc2 = hn::Zero(df);
    auto corr = hn::Zero(df8);
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* blk = row + (size_t)sb * kBlockBytes;
      prefetch_ahead<kBlockBytes>(blk);
      const int64_t ab0 = sb * 8;  // first act block of the super-block
      if constexpr (kFmt == 3 || kFmt == 4) {
        uint16_t hd, hm;
        std::memcpy(&hd, blk, 2);
        std::memcpy(&hm, blk + 2, 2);
        alignas(32) float sx[8];
        k4_block_scales<DF8>(blk, tab[hd], tab[hm], xd + ab0, xs + ab0, sx, corr);
        const uint8_t* qh = blk + 16;
        const uint8_t* qs = blk + (kFmt == 3 ? 16 : 48);
        for (int ch = 0; ch < 4; ++ch) {  // sub-blocks 2ch (low nibbles) and 2ch + 1 (high nibbles)
          const int64_t ab = ab0 + 2 * ch;
          const int16_t* x0 = xq + ab * 32;
          V32 a0 = hn::Zero(d32), a1 = hn::Zero(d32), b0 = hn::Zero(d32), b1 = hn::Zero(d32);
          for (size_t c = 0; c < 32; c += N) {
            hn::Vec<D16> lo, hi;
            load_k4_pair<kFmt == 4>(qs + 32 * ch, qh, ch, c, lo, hi);
            a0 = hn::ReorderWidenMulAccumulate(d32, lo, hn::LoadU(d16, x0 + c), a0, a1);
            b0 = hn::ReorderWidenMulAccumulate(d32, hi, hn::LoadU(d16, x0 + 32 + c), b0, b1);
          }
          acc = hn::MulAdd(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(a0, a1)), hn::Set(df, sx[2 * ch]), acc);
          acc2 = hn::MulAdd(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(b0, b1)), hn::Set(df, sx[2 * ch + 1]), acc2);
        }
      } else {
        // Q6_K: per half h of 128, group k (0..3) = act block ab0 + 4h + k: low 4 bits from ql (+32 bytes
        // for odd k; the high nibble for k >= 2), 2 high bits from qh bits 2k, 2k+1; minus 32. The three
        // byte loads serve all four groups. A scale per 16: sc[8h + 2k + half].
        uint16_t hd;
        std::memcpy(&hd, blk + 208, 2);
        const float d = tab[hd];
        // The 16 scales (d sc_i) dx_(i/2) in vectors (the same roundings as one at a time).
        alignas(64) float sx[16];
        {
          const hn::RebindToSigned<DF8> di;
          const hn::Rebind<int8_t, DF8> di8;
          alignas(64) float xd2[16];
          for (int i = 0; i < 16; ++i) xd2[i] = xd[ab0 + i / 2];
          for (size_t i = 0; i < 16; i += hn::Lanes(df8)) {
            const auto scf = hn::ConvertTo(df8, hn::PromoteTo(di, hn::LoadU(di8, reinterpret_cast<const int8_t*>(blk + 192) + i)));
            hn::Store(hn::Mul(hn::Mul(hn::Set(df8, d), scf), hn::Load(df8, xd2 + i)), df8, sx + i);
          }
        }
        for (int h = 0; h < 2; ++h) {
          const uint8_t* ql = blk + 64 * h;
          const uint8_t* qhp = blk + 128 + 32 * h;
          const int16_t* x = xq + (ab0 + 4 * h) * 32;
          for (int half = 0; half < 2; ++half) {
            V32 s0[4], s1[4];
            for (int k = 0; k < 4; ++k) s0[k] = hn::Zero(d32), s1[k] = hn::Zero(d32);
            for (size_t c = 16 * half; c < 16 * (size_t)half + 16; c += N) {
              const auto l0 = hn::PromoteTo(du16, hn::LoadU(d8, ql + c));
              const auto l1 = hn::PromoteTo(du16, hn::LoadU(d8, ql + 32 + c));
              const auto hb = hn::PromoteTo(du16, hn::LoadU(d8, qhp + c));
              const auto m4 = hn::Set(du16, 0x0F), m2 = hn::Set(du16, 0x30);
              const hn::Vec<decltype(du16)> u[4] = {
                  hn::Or(hn::And(l0, m4), hn::And(hn::ShiftLeft<4>(hb), m2)),
                  hn::Or(hn::And(l1, m4), hn::And(hn::ShiftLeft<2>(hb), m2)),
                  hn::Or(hn::ShiftRight<4>(l0), hn::And(hb, m2)),
                  hn::Or(hn::ShiftRight<4>(l1), hn::And(hn::ShiftRight<2>(hb), m2))};
              for (int k = 0; k < 4; ++k)
                s0[k] = hn::ReorderWidenMulAccumulate(d32, hn::Sub(hn::BitCast(d16, u[k]), hn::Set(d16, 32)),
                                                      hn::LoadU(d16, x + 32 * k + c), s0[k], s1[k]);
            }
            auto& a = half ? acc2 : acc;
            for (int k = 0; k < 4; ++k)
              a = hn::MulAdd(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(s0[k], s1[k])),
                             hn::Set(df, sx[8 * h + 2 * k + half]), a);
          }
        }
      }
    }
    p.y[r] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc, acc2))) - hn::GetLane(hn::SumOfLanes(df8, corr));
  }
}

// Float dot of n elements; T = float, fp16 bits (uint16_t) or bf16 bits (kBf16).
template <typename T, bool kBf16 = false>
HWY_INLINE float dot_float(const T* w, const float* x, int64_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df);
  int64_t i = 0;
  auto load_w = [&](int64_t k) {
    if constexpr (sizeof(T) == 4) {
      return hn::LoadU(df, reinterpret_cast<const float*>(w) + k);
    } else if constexpr (kBf16) {  // bf16 is the high half of an fp32
      const hn::RebindToUnsigned<decltype(df)> du32;
      const hn::Rebind<uint16_t, decltype(df)> du16;
      return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(w) + k))));
    } else {
      const hn::Rebind<hwy::float16_t, decltype(df)> dh;
      return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(w) + k));
    }
  };
  for (; i + 2 * (int64_t)N <= n; i += 2 * N) {
    a0 = hn::MulAdd(load_w(i), hn::LoadU(df, x + i), a0);
    a1 = hn::MulAdd(load_w(i + N), hn::LoadU(df, x + i + N), a1);
  }
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, a1)));
  for (; i < n; ++i) {
    float wi;
    if constexpr (sizeof(T) == 4) {
      wi = reinterpret_cast<const float*>(w)[i];
    } else {
      uint16_t h;
      std::memcpy(&h, reinterpret_cast<const uint16_t*>(w) + i, 2);
      if constexpr (kBf16) {
        const uint32_t u = (uint32_t)h << 16;
        std::memcpy(&wi, &u, 4);
      } else {
        wi = fp16_lookup(h);
      }
    }
    s += wi * x[i];
  }
  return s;
}

float dot_f32(const float* w, const float* x, int64_t n) { return dot_float<float>(w, x, n); }

void rows_fast(const matvec_params& p, int64_t r0, int64_t r1) {
  switch (p.type) {
    case gguf::type::Q4_0: return rows_quant<0>(p, r0, r1);
    case gguf::type::Q4_1: return rows_quant<1>(p, r0, r1);
    case gguf::type::Q8_0: return rows_quant<2>(p, r0, r1);
    case gguf::type::Q5_0: return rows_quant<3>(p, r0, r1);
    case gguf::type::Q4_K: return rows_kquant<3>(p, r0, r1);
    case gguf::type::Q5_K: return rows_kquant<4>(p, r0, r1);
    case gguf::type::Q6_K: return rows_kquant<5>(p, r0, r1);
    case gguf::type::F32:
      for (int64_t r = r0; r < r1; ++r)
        p.y[r] = dot_float<float>(
            reinterpret_cast<const float*>(static_cast<const uint8_t*>(p.w) + r * p.row_bytes),
            p.x, p.n_cols);
      return;
    case gguf::type::F16:
      for (int64_t r = r0; r < r1; ++r)
        p.y[r] = dot_float<uint16_t>(
            reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(p.w) + r * p.row_bytes),
            p.x, p.n_cols);
      return;
    case gguf::type::BF16:
      for (int64_t r = r0; r < r1; ++r)
        p.y[r] = dot_float<uint16_t, true>(
            reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(p.w) + r * p.row_bytes),
            p.x, p.n_cols);
      return;
    default:
      HASHATTN_ASSERT(false && "rows_fast: unsupported type");
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hashattn::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hashattn::cpu {
HWY_EXPORT(rows_fast);
HWY_EXPORT(dot_f32);

const float* fp16_table() {
  static const std::vector<float> tab = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = fp16_to_fp32((uint16_t)i);
    return t;
  }();
  return tab.data();
}

void quantize_act_i16(const float* x, int64_t n, act_i16& out) {
  if (n % 32 != 0) fail("quantize_act_i16: length", std::to_string(n), "a multiple of 32");
  const int64_t nb = n / 32;
  out.n = n;
  out.q.resize(n);
  out.d.resize(nb);
  out.s.resize(nb);
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / (float)kActQMax;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    int16_t* q = out.q.data() + b * 32;
    for (int j = 0; j < 32; ++j) {
      const int v = (int)std::nearbyint(xb[j] * id);
      q[j] = (int16_t)v;
      sum += v;
    }
    // Scales stay in fp32 (an fp16 block sum overflows for large activations).
    out.d[b] = d;
    out.s[b] = d * (float)sum;
  }
}

bool matvec_uses_int(gguf::type t) {
  return t == gguf::type::Q4_0 || t == gguf::type::Q4_1 || t == gguf::type::Q8_0 || t == gguf::type::Q5_0 ||
         t == gguf::type::Q4_K || t == gguf::type::Q5_K || t == gguf::type::Q6_K;
}

static bool fast_type(gguf::type t) {
  return matvec_uses_int(t) || t == gguf::type::F32 || t == gguf::type::F16 || t == gguf::type::BF16;
}

bool matvec_supported(gguf::type t) { return fast_type(t) || gguf::type_dequantizable(t); }

void matvec_rows(const matvec_params& p, int64_t r0, int64_t r1) {
  if (r1 <= r0) return;
  if (fast_type(p.type)) {
    HWY_DYNAMIC_DISPATCH(rows_fast)(p, r0, r1);
    return;
  }
  thread_local std::vector<float> row;
  row.resize(p.n_cols);
  for (int64_t r = r0; r < r1; ++r) {
    gguf::dequantize_row(p.type, static_cast<const uint8_t*>(p.w) + (size_t)r * p.row_bytes,
                         row.data(), p.n_cols);
    p.y[r] = HWY_DYNAMIC_DISPATCH(dot_f32)(row.data(), p.x, p.n_cols);
  }
}

static void matvec_check(const matvec_params& p) {
  if (!p.w || !p.y || p.n_rows <= 0 || p.n_cols <= 0)
    fail("matvec: empty or null operand", "rows=" + std::to_string(p.n_rows) +
                                              " cols=" + std::to_string(p.n_cols));
  if (!matvec_supported(p.type))
    fail("matvec: weight type", gguf::type_name(p.type), "a type the GGUF reader can dequantize");
  if (matvec_uses_int(p.type)) {
    if (!p.xq || p.xq->n != p.n_cols)
      fail("matvec: quantized activation length", p.xq ? std::to_string(p.xq->n) : "none",
           std::to_string(p.n_cols));
  } else if (!p.x) {
    fail("matvec: float activation missing for type", gguf::type_name(p.type));
  }
}

void matvec_multi(const matvec_params* ps, int n, int n_threads) {
  constexpr int64_t kChunk = 16;  // rows per work unit
  int64_t units[8];
  HASHATTN_ASSERT(n >= 1 && n <= 8);
  int64_t total = 0;
  for (int i = 0; i < n; ++i) {
    matvec_check(ps[i]);
    units[i] = (ps[i].n_rows + kChunk - 1) / kChunk;
    total += units[i];
  }
  const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
  auto run_unit = [&](int64_t u) {
    int i = 0;
    while (u >= units[i]) u -= units[i++];
    const int64_t r0 = u * kChunk;
    matvec_rows(ps[i], r0, std::min(ps[i].n_rows, r0 + kChunk));
  };
  if (nt <= 1 || total < 2) {
    for (int64_t u = 0; u < total; ++u) run_unit(u);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t u = 0; u < total; ++u) run_unit(u);
}

}  // namespace hashattn::cpu
#endif  // HWY_ONCE
