// Small-batch integer mat-mat (Highway, runtime dispatch): y_v = W x_v for 2 .. kMaxSmallBatch quantized
// activation vectors (act_i16) against one quantized weight, each weight row unpacked once for all of them.
// Every integer format becomes, per block b of 32 elements, int16 weights qw (K-quant sub-block scales
// folded in: q * sc, or (q - 32) * sc for Q6_K, all within int16), a float scale dw_b and a float
// offset coefficient cw_b (none for Q8_0 and Q6_K):
//   y_v = sum_b dw_b dx_vb sum(qw qx_v) + sum_b cw_b s_vb     (act_i16: x = qx dx, s = dx sum(qx))
//   Q4_0 dw = d, cw = -8 d   Q4_1 dw = d, cw = m   Q5_0 dw = d, cw = -16 d   Q8_0 dw = d
//   Q4_K / Q5_K dw = d, qw = q sc_j, cw = -dmin m_j   Q6_K dw = d, qw = (q - 32) sc (per 16)
// Vectors are lanes: the activations of 8 vectors are packed per call as int16 pairs (pack_group), each
// weight pair is broadcast and dot-accumulated against the pairs of the 8 vectors (rows_tile). Per vector,
// the block sums are exact int32 and the blocks are accumulated in order in fp32, so a vector's result is
// the same bits whatever else the batch holds. n_vec = 1, the float types and the types without an
// integer path go through mat-vec's code (matvec-quant.cpp); the entry point is at the end of this file.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "cpu/kquant-scales.h"
#include "cpu/matvec.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"

#ifndef HASHATTN_CPU_MATMUL_SMALL_TYPES
#define HASHATTN_CPU_MATMUL_SMALL_TYPES
namespace hashattn::cpu {
constexpr int kGroup = 8;  // vectors per packed group (one 8-lane int32 vector)
// The packed activations of vectors [v0, v0 + n) of a job (layout: rows_tile).
struct packed_group {
  int v0 = 0, n = 0;
  const int32_t* xt = nullptr;  // [n_blocks][16][kGroup]
  const float* dx = nullptr;    // [n_blocks][kGroup]
  const float* s = nullptr;     // [n_blocks][kGroup]
};
}  // namespace hashattn::cpu
#endif

// AVX3_DL (AVX-512 VNNI) as an extra target of this file: its int16 dot-accumulate is one instruction.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/matmul-small.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace hashattn::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// A block of 32 is one vector of 32 int16 lanes where the target has it, else 2 or 4 vectors.
using D16 = hn::CappedTag<int16_t, 32>;
using DU16 = hn::RebindToUnsigned<D16>;
using D32 = hn::Repartition<int32_t, D16>;
using DF = hn::Repartition<float, D16>;
using V16 = hn::Vec<D16>;
using VF = hn::Vec<DF>;
constexpr size_t kN = hn::MaxLanes(D16());
constexpr size_t kC = 32 / kN;  // vectors per block
static_assert(32 % kN == 0, "a block of 32 must be whole vectors");

// Elements [c, c + kN) of 32 stored as nibbles of 16 bytes (low: 0..15, high: 16..31), as int16.
template <class D = D16>
HWY_INLINE hn::Vec<D> nibbles(const uint8_t* qs, size_t c) {
  const D d16;
  const hn::RebindToUnsigned<D> du16;
  const hn::Rebind<uint8_t, D> d8;
#if HWY_TARGET != HWY_SCALAR
  if constexpr (hn::MaxLanes(D()) == 32) {
    const hn::Half<decltype(d8)> h8;
    const auto b = hn::LoadU(h8, qs);
    const auto v = hn::PromoteTo(du16, hn::Combine(d8, b, b));
    return hn::BitCast(d16, hn::IfThenElse(hn::FirstN(du16, 16), hn::And(v, hn::Set(du16, 0x0F)), hn::ShiftRight<4>(v)));
  } else
#endif
  {
    const auto v = hn::PromoteTo(du16, hn::LoadU(d8, qs + (c & 15)));
    return hn::BitCast(d16, c < 16 ? hn::And(v, hn::Set(du16, 0x0F)) : hn::ShiftRight<4>(v));
  }
}

// Bit e of qh as 16 where set, for elements e in [c, c + kN) (Q5_0's fifth bit).
template <class D = D16>
HWY_INLINE hn::Vec<D> fifth_bit(uint32_t qh, size_t c) {
  const D d16;
  const hn::RebindToUnsigned<D> du16;
  alignas(64) static constexpr uint16_t kPow2[32] = {1, 2,   4,   8,   16,   32,   64,   128,  256,  512,  1024,
                                                     2048, 4096, 8192, 16384, 32768, 1,  2,    4,    8,    16,   32,
                                                     64,   128,  256,  512,   1024,  2048, 4096, 8192, 16384, 32768};
  hn::Vec<hn::RebindToUnsigned<D>> half;
  if constexpr (hn::MaxLanes(D()) == 32) {
    half = hn::IfThenElse(hn::FirstN(du16, 16), hn::Set(du16, (uint16_t)(qh & 0xFFFF)), hn::Set(du16, (uint16_t)(qh >> 16)));
  } else {
    half = hn::Set(du16, (uint16_t)(c < 16 ? qh & 0xFFFF : qh >> 16));
  }
  const auto set = hn::Ne(hn::And(half, hn::LoadU(du16, kPow2 + c)), hn::Zero(du16));
  return hn::BitCast(d16, hn::IfThenElseZero(set, hn::Set(du16, 16)));
}

// Per format: bytes per block (super-block for K-quants), blocks of 32 per block.
template <int kFmt>  // 0 Q4_0, 1 Q4_1, 2 Q8_0, 3 Q5_0, 4 Q4_K, 5 Q5_K, 6 Q6_K
struct fmt {
  static constexpr size_t bytes = kFmt == 0 ? 18 : kFmt == 1 ? 20 : kFmt == 2 ? 34 : kFmt == 3 ? 22
                                : kFmt == 4 ? 144 : kFmt == 5 ? 176 : 210;
  static constexpr int sub = kFmt >= 4 ? 8 : 1;
  static constexpr bool corr = kFmt != 2 && kFmt != 6;
};

// Per-row prologue: dw, cw for every block of 32 and the K-quant sub-block scales (two per block for
// Q6_K, one for Q4_K / Q5_K).
template <int kFmt>
void row_scales(const uint8_t* row, int64_t nb, float* dw, float* cw, int16_t* sc) {
  const float* tab = fp16_table();
  using F = fmt<kFmt>;
  for (int64_t g = 0; g < nb / F::sub; ++g) {
    const uint8_t* blk = row + (size_t)g * F::bytes;
    uint16_t h0, h1;
    std::memcpy(&h0, blk + (kFmt == 6 ? 208 : 0), 2);
    std::memcpy(&h1, blk + 2, 2);
    const float d = tab[h0];
    if constexpr (kFmt < 4) {
      dw[g] = d;
      if constexpr (kFmt == 0) cw[g] = -8.0f * d;
      if constexpr (kFmt == 1) cw[g] = tab[h1];
      if constexpr (kFmt == 3) cw[g] = -16.0f * d;
    } else if constexpr (kFmt == 6) {
      const int8_t* s = reinterpret_cast<const int8_t*>(blk + 192);
      for (int j = 0; j < 8; ++j) dw[8 * g + j] = d;
      for (int j = 0; j < 16; ++j) sc[16 * g + j] = s[j];
    } else {
      const float dmin = tab[h1];
      uint8_t s[8], m[8];
      k4_scales_mins(blk + 4, s, m);
      for (int j = 0; j < 8; ++j) {
        dw[8 * g + j] = d;
        cw[8 * g + j] = -dmin * (float)m[j];
        sc[8 * g + j] = s[j];
      }
    }
  }
}

// Weights [c, c + kN) of block b (of 32) of a row, as int16 with sub-block scales folded in.
template <int kFmt>
HWY_INLINE V16 load_w(const uint8_t* row, int64_t b, size_t c, const int16_t* sc) {
  const D16 d16;
  const DU16 du16;
  const hn::Rebind<uint8_t, D16> d8;
  using F = fmt<kFmt>;
  if constexpr (kFmt < 4) {
    const uint8_t* blk = row + (size_t)b * F::bytes;
    if constexpr (kFmt == 2) {
      const hn::Rebind<int8_t, D16> di8;
      return hn::PromoteTo(d16, hn::LoadU(di8, reinterpret_cast<const int8_t*>(blk + 2) + c));
    } else if constexpr (kFmt == 3) {
      uint32_t qh;
      std::memcpy(&qh, blk + 2, 4);
      return hn::Or(nibbles(blk + 6, c), fifth_bit(qh, c));
    } else {
      return nibbles(blk + (kFmt == 1 ? 4 : 2), c);
    }
  } else {
    const uint8_t* blk = row + (size_t)(b / 8) * F::bytes;
    const int j = (int)(b % 8);
    if constexpr (kFmt == 6) {  // low 4 bits from ql, 2 high bits from qh, minus 32; a scale per 16
      const int h = j / 4, k = j % 4;
      auto lo = hn::PromoteTo(du16, hn::LoadU(d8, blk + 64 * h + (k & 1) * 32 + c));
      lo = k >= 2 ? hn::ShiftRight<4>(lo) : hn::And(lo, hn::Set(du16, 0x0F));
      const auto hi = hn::And(hn::ShiftRightSame(hn::PromoteTo(du16, hn::LoadU(d8, blk + 128 + 32 * h + c)), 2 * k),
                              hn::Set(du16, 3));
      const auto q = hn::Sub(hn::BitCast(d16, hn::Or(lo, hn::ShiftLeft<4>(hi))), hn::Set(d16, 32));
      const int16_t* s = sc + 2 * b;
      return hn::Mul(q, kN == 32 ? hn::IfThenElse(hn::FirstN(d16, 16), hn::Set(d16, s[0]), hn::Set(d16, s[1]))
                                 : hn::Set(d16, s[c / 16]));
    } else {  // Q4_K / Q5_K: sub-block j is the low (even j) or high (odd j) nibbles of 32 bytes
      const uint8_t* qs = blk + (kFmt == 4 ? 16 : 48) + 32 * (j / 2);
      const auto v = hn::PromoteTo(du16, hn::LoadU(d8, qs + c));
      auto q = (j & 1) ? hn::ShiftRight<4>(v) : hn::And(v, hn::Set(du16, 0x0F));
      if constexpr (kFmt == 5) {
        const auto bit = hn::And(hn::ShiftRightSame(hn::PromoteTo(du16, hn::LoadU(d8, blk + 16 + c)), j), hn::Set(du16, 1));
        q = hn::Or(q, hn::ShiftLeft<4>(bit));
      }
      return hn::Mul(hn::BitCast(d16, q), hn::Set(d16, sc[b]));
    }
  }
}

// Scratch of one thread for one row: block scales, offsets, sub-block scales, the unpacked weights.
struct row_scratch {
  std::vector<float> dw, cw;
  std::vector<int16_t> sc;
  std::vector<int32_t> w;  // int16 weights, as pairs
};

// ---- vectors as lanes ----
// The activations of a group of up to kGroup vectors are packed once per call (pack_group):
// xt[b][q][l] = the int16 pair (x[32b + 2q], x[32b + 2q + 1]) of vector l as one int32; dx[b][l]; s[b][l].
// A weight row is unpacked to int16, then each pair of weights is broadcast and multiplied against the
// pairs of all vectors at once: lane l sums sum(qw qx_l) over a block exactly in int32 (at most 32
// products |qw qx| <= 1953 * 32767, or for Q6_K 16 products <= 4096 * 32767: below 2^31).
using DL32 = hn::CappedTag<int32_t, kGroup>;
using DL16 = hn::Repartition<int16_t, DL32>;
using DLF = hn::Repartition<float, DL32>;
constexpr size_t kL = hn::MaxLanes(DL32());

#if HWY_TARGET != HWY_SCALAR
// s[..] += the pairwise products of w and x, lane-aligned: lane l of the sum of s[0 .. kChains) gets
// w[2l] x[2l] + w[2l+1] x[2l+1]. Where the target has a one-instruction dot-accumulate (VNNI), kK picks
// one of two independent chains (four rows at once hide its latency); elsewhere Highway's widening
// multiply-add.
constexpr int kChains = 2;  // independent accumulators per row
template <int kK>
HWY_INLINE void dot_step(hn::Vec<DL16> w, hn::Vec<DL16> x, hn::Vec<DL32>* s) {
#if HWY_TARGET == HWY_AVX3_DL
  // EVEX form written out: the compiler's choice of the VEX form (AVX-VNNI) confines it to 16 registers.
  __m256i acc = s[kK % kChains].raw;
  asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(w.raw), "v"(x.raw));
  s[kK % kChains] = hn::Vec<DL32>{acc};
#else
  s[0] = hn::ReorderWidenMulAccumulate(DL32(), w, x, s[0], s[1]);
#endif
}
#endif

// Unpacks blocks [b0, b0 + nbc) of row r (b0 a multiple of 8): their scales and offsets, and their
// weights as int16 (32 per block).
template <int kFmt>
HWY_INLINE void unpack_row(const matmul_small_params& p, int64_t r, int64_t b0, int64_t nbc, float* dw, float* cw,
                           int16_t* sc, int32_t* w) {
  using F = fmt<kFmt>;
  const D16 d16;
  const uint8_t* row = static_cast<const uint8_t*>(p.w) + (size_t)r * p.row_bytes + (size_t)(b0 / F::sub) * F::bytes;
  row_scales<kFmt>(row, nbc, dw, cw, sc);
  int16_t* w16 = reinterpret_cast<int16_t*>(w);  // written by vector stores (may alias), read as pairs
  for (int64_t b = 0; b < nbc; ++b)
    for (size_t c = 0; c < kC; ++c) hn::StoreU(load_w<kFmt>(row, b, c * kN, sc), d16, w16 + b * 32 + c * kN);
}

// Rows [r, r + R), blocks [b0, b0 + nbc), for the vectors of G packed groups (each weight pair
// broadcast once for all of them). Per vector: acc = fma(float(I_b) * dw_b, dx_b, acc) over the blocks
// in order (Q6_K: once per half of 16), corr = fma(cw_b, s_b, corr), y = acc + corr: the same
// operations for a vector whatever R, G and its lane. acc and corr carry over block ranges in st
// ([R][G][2][kGroup]); y is written after the last range.
template <int kFmt, int R, int G>
void rows_tile(const matmul_small_params& p, const packed_group* g, int64_t r, int64_t b0, int64_t nbc, float* st,
               row_scratch& s) {
  using F = fmt<kFmt>;
  constexpr int kHalves = kFmt == 6 ? 2 : 1;
  constexpr int kPairs = 16 / kHalves;
  const bool first = b0 == 0, last = b0 + nbc == p.n_cols / 32;
  for (int i = 0; i < R; ++i)
    unpack_row<kFmt>(p, r + i, b0, nbc, s.dw.data() + i * nbc, s.cw.data() + i * nbc, s.sc.data() + 2 * i * nbc,
                     s.w.data() + 16 * i * nbc);
  auto state = [&](int i, int k, int c) { return st + ((i * G + k) * 2 + c) * kGroup; };
#if HWY_TARGET == HWY_SCALAR
  for (int k = 0; k < G; ++k)
    for (int i = 0; i < R; ++i) {
      const float* dw = s.dw.data() + i * nbc;
      const float* cw = s.cw.data() + i * nbc;
      const int32_t* wr = s.w.data() + 16 * i * nbc;
      for (int l = 0; l < g[k].n; ++l) {
        float acc = first ? 0.f : state(i, k, 0)[l], corr = first ? 0.f : state(i, k, 1)[l];
        for (int64_t b = 0; b < nbc; ++b) {
          const float dx = g[k].dx[(b0 + b) * kGroup + l];
          for (int h = 0; h < kHalves; ++h) {
            int32_t sum = 0;
            for (int e = 2 * kPairs * h; e < 2 * kPairs * (h + 1); ++e) {
              uint32_t pr;
              std::memcpy(&pr, g[k].xt + ((b0 + b) * 16 + e / 2) * kGroup + l, 4);
              const uint32_t wp = (uint32_t)wr[b * 16 + e / 2];
              sum += (int32_t)(int16_t)(e % 2 ? wp >> 16 : wp & 0xFFFF) * (int32_t)(int16_t)(e % 2 ? pr >> 16 : pr & 0xFFFF);
            }
            acc = std::fma((float)sum * dw[b], dx, acc);
          }
          if constexpr (F::corr) corr = std::fma(cw[b], g[k].s[(b0 + b) * kGroup + l], corr);
        }
        state(i, k, 0)[l] = acc;
        state(i, k, 1)[l] = corr;
        if (last) p.y[(size_t)(g[k].v0 + l) * p.ldy + r + i] = acc + corr;
      }
    }
#else
  const DL32 d32;
  const DL16 dl16;
  const DLF df;
  int n_max = 0;
  for (int k = 0; k < G; ++k) n_max = std::max(n_max, g[k].n);
  for (int l0 = 0; l0 < n_max; l0 += (int)kL) {
    hn::Vec<DLF> acc[G][R], corr[G][R];
    for (int k = 0; k < G; ++k)
      for (int i = 0; i < R; ++i) {
        acc[k][i] = first ? hn::Zero(df) : hn::LoadU(df, state(i, k, 0) + l0);
        corr[k][i] = first ? hn::Zero(df) : hn::LoadU(df, state(i, k, 1) + l0);
      }
    for (int64_t b = 0; b < nbc; ++b) {
      const int64_t ab = b0 + b;
      for (int h = 0; h < kHalves; ++h) {
        hn::Vec<DL32> sum[G][R][kChains];
        for (int k = 0; k < G; ++k)
          for (int i = 0; i < R; ++i)
            for (int c = 0; c < kChains; ++c) sum[k][i][c] = hn::Zero(d32);
        for (int q = kPairs * h; q < kPairs * (h + 1); q += 2) {
          hn::Vec<DL16> x0[G], x1[G];
          for (int k = 0; k < G; ++k) {
            const int32_t* xt = g[k].xt + (ab * 16 + q) * kGroup + l0;
            x0[k] = hn::BitCast(dl16, hn::LoadU(d32, xt));
            x1[k] = hn::BitCast(dl16, hn::LoadU(d32, xt + kGroup));
          }
          for (int i = 0; i < R; ++i) {
            const int32_t* w = s.w.data() + 16 * (i * nbc + b) + q;  // weight pairs
            const auto w0 = hn::BitCast(dl16, hn::Set(d32, w[0])), w1 = hn::BitCast(dl16, hn::Set(d32, w[1]));
            for (int k = 0; k < G; ++k) {
              dot_step<0>(w0, x0[k], sum[k][i]);
              dot_step<1>(w1, x1[k], sum[k][i]);
            }
          }
        }
        for (int k = 0; k < G; ++k) {
          const auto dx = hn::LoadU(df, g[k].dx + ab * kGroup + l0);
          for (int i = 0; i < R; ++i) {
            auto is = sum[k][i][0];
            for (int c = 1; c < kChains; ++c) is = hn::Add(is, sum[k][i][c]);
            // (float(I) * dw_b) * dx_b, then into the accumulator
            acc[k][i] = hn::MulAdd(hn::Mul(hn::ConvertTo(df, is), hn::Set(df, s.dw[i * nbc + b])), dx, acc[k][i]);
          }
        }
      }
      if constexpr (F::corr) {
        for (int k = 0; k < G; ++k) {
          const auto sb = hn::LoadU(df, g[k].s + ab * kGroup + l0);
          for (int i = 0; i < R; ++i) corr[k][i] = hn::MulAdd(hn::Set(df, s.cw[i * nbc + b]), sb, corr[k][i]);
        }
      }
    }
    for (int k = 0; k < G; ++k)
      for (int i = 0; i < R; ++i) {
        hn::StoreU(acc[k][i], df, state(i, k, 0) + l0);
        hn::StoreU(corr[k][i], df, state(i, k, 1) + l0);
        if (!last) continue;
        alignas(64) float out[kL];
        hn::Store(hn::Add(acc[k][i], corr[k][i]), df, out);
        for (int l = l0; l < std::min(g[k].n, l0 + (int)kL); ++l) p.y[(size_t)(g[k].v0 + l) * p.ldy + r + i] = out[l - l0];
      }
  }
#endif
}

constexpr int kTile = 4;          // rows per tile: the activations loaded once for all of them
constexpr int64_t kColBlocks = 32;  // blocks per column range: its packed activations (16 KB) stay in L1

template <int kFmt>
void rows_fmt(const matmul_small_params& p, const packed_group* gs, int n_groups, int64_t r0, int64_t r1) {
  thread_local row_scratch s;
  thread_local std::vector<float> st;
  const int64_t nb = p.n_cols / 32;
  s.dw.resize(kTile * kColBlocks);
  s.cw.resize(kTile * kColBlocks);
  s.sc.resize(2 * kTile * kColBlocks);
  s.w.resize(16 * kTile * kColBlocks);
  st.resize((size_t)(r1 - r0) * 2 * 2 * kGroup);
  // Two groups (9 .. 16 vectors) at once where the target has 32 vector registers, two rows at a time.
  const bool both = n_groups == 2 && HWY_TARGET <= HWY_AVX3;
  for (int i = 0; i < n_groups; i += both ? 2 : 1)
    for (int64_t b0 = 0; b0 < nb; b0 += kColBlocks) {
      const int64_t nbc = std::min(kColBlocks, nb - b0);
      int64_t r = r0;
      if (both) {
        for (; r + 2 <= r1; r += 2) rows_tile<kFmt, 2, 2>(p, gs, r, b0, nbc, st.data() + (r - r0) * 4 * kGroup, s);
        for (; r < r1; ++r) rows_tile<kFmt, 1, 2>(p, gs, r, b0, nbc, st.data() + (r - r0) * 4 * kGroup, s);
      } else {
        for (; r + kTile <= r1; r += kTile) rows_tile<kFmt, kTile, 1>(p, gs + i, r, b0, nbc, st.data() + (r - r0) * 2 * kGroup, s);
        for (; r < r1; ++r) rows_tile<kFmt, 1, 1>(p, gs + i, r, b0, nbc, st.data() + (r - r0) * 2 * kGroup, s);
      }
    }
}

void rows_small_int(const matmul_small_params& p, const packed_group* gs, int n_groups, int64_t r0, int64_t r1) {
  switch (p.type) {
    case gguf::type::Q4_0: return rows_fmt<0>(p, gs, n_groups, r0, r1);
    case gguf::type::Q4_1: return rows_fmt<1>(p, gs, n_groups, r0, r1);
    case gguf::type::Q8_0: return rows_fmt<2>(p, gs, n_groups, r0, r1);
    case gguf::type::Q5_0: return rows_fmt<3>(p, gs, n_groups, r0, r1);
    case gguf::type::Q4_K: return rows_fmt<4>(p, gs, n_groups, r0, r1);
    case gguf::type::Q5_K: return rows_fmt<5>(p, gs, n_groups, r0, r1);
    case gguf::type::Q6_K: return rows_fmt<6>(p, gs, n_groups, r0, r1);
    default: HASHATTN_ASSERT(false && "rows_small_int: not an integer type");
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hashattn::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hashattn::cpu {
HWY_EXPORT(rows_small_int);

namespace {

// The mat-vec of vector v of a float or dequantized job (the same arithmetic as matvec's).
matvec_params vec_params(const matmul_small_params& p, int v) {
  matvec_params m;
  m.type = p.type;
  m.w = p.w;
  m.row_bytes = p.row_bytes;
  m.n_rows = p.n_rows;
  m.n_cols = p.n_cols;
  m.x = p.x + (size_t)v * p.ldx;
  m.y = p.y + (size_t)v * p.ldy;
  return m;
}

void check(const matmul_small_params& p, int i) {
  const std::string what = "matmul_small (job " + std::to_string(i) + "): ";
  if (p.n_vec < 1 || p.n_vec > kMaxSmallBatch)
    fail(what + "vector count n_vec", std::to_string(p.n_vec), "1 .. " + std::to_string(kMaxSmallBatch),
         "split larger batches into several jobs or use gemm_wt");
  if (!p.w || !p.y || p.n_rows <= 0 || p.n_cols <= 0)
    fail(what + "empty or null operand", "rows=" + std::to_string(p.n_rows) + " cols=" + std::to_string(p.n_cols));
  if (!matvec_supported(p.type))
    fail(what + "weight type", gguf::type_name(p.type), "a type the GGUF reader can dequantize");
  if (p.row_bytes < gguf::row_bytes(p.type, p.n_cols))
    fail(what + "row_bytes", std::to_string(p.row_bytes), ">= " + std::to_string(gguf::row_bytes(p.type, p.n_cols)));
  if (p.ldy < p.n_rows) fail(what + "ldy", std::to_string(p.ldy), ">= n_rows = " + std::to_string(p.n_rows));
  if (matvec_uses_int(p.type)) {
    if (!p.xq) fail(what + "quantized activations xq missing for type", gguf::type_name(p.type));
    for (int v = 0; v < p.n_vec; ++v)
      if (p.xq[v].n != p.n_cols)
        fail(what + "quantized activation " + std::to_string(v) + " length", std::to_string(p.xq[v].n),
             std::to_string(p.n_cols));
  } else {
    if (!p.x) fail(what + "float activations x missing for type", gguf::type_name(p.type));
    if (p.n_vec > 1 && p.ldx < p.n_cols)
      fail(what + "ldx", std::to_string(p.ldx), ">= n_cols = " + std::to_string(p.n_cols));
  }
}

// The activations of vectors [v0, v0 + n) of an integer job packed for rows_tile; zero lanes past n.
packed_group pack_group(const matmul_small_params& p, int v0, int n, std::vector<int32_t>& xt, std::vector<float>& ds) {
  const int64_t nb = p.n_cols / 32;
  xt.assign((size_t)nb * 16 * kGroup, 0);
  ds.assign((size_t)nb * 2 * kGroup, 0.0f);
  for (int l = 0; l < n; ++l) {
    const act_i16& a = p.xq[v0 + l];
    for (int64_t b = 0; b < nb; ++b) {
      for (int q = 0; q < 16; ++q) std::memcpy(&xt[((size_t)b * 16 + q) * kGroup + l], a.q.data() + b * 32 + 2 * q, 4);
      ds[(size_t)b * kGroup + l] = a.d[b];
      ds[(size_t)(nb + b) * kGroup + l] = a.s[b];
    }
  }
  packed_group g;
  g.v0 = v0;
  g.n = n;
  g.xt = xt.data();
  g.dx = ds.data();
  g.s = ds.data() + (size_t)nb * kGroup;
  return g;
}

// Rows [r0, r1) of a float or dequantize-fallback job, or of an integer job of one vector (mat-vec).
void rows_other(const matmul_small_params& p, int64_t r0, int64_t r1) {
  if (matvec_uses_int(p.type)) {  // n_vec == 1
    matvec_params m = vec_params(p, 0);
    m.x = nullptr;
    m.xq = p.xq;
    matvec_rows(m, r0, r1);
    return;
  }
  if (p.type == gguf::type::F32 || p.type == gguf::type::F16 || p.type == gguf::type::BF16) {
    // Rows stay in cache between the vectors.
    for (int v = 0; v < p.n_vec; ++v) matvec_rows(vec_params(p, v), r0, r1);
    return;
  }
  // Any other type: each row dequantized once, then matvec's F32 dot per vector.
  thread_local std::vector<float> row;
  row.resize(p.n_cols);
  for (int64_t r = r0; r < r1; ++r) {
    gguf::dequantize_row(p.type, static_cast<const uint8_t*>(p.w) + (size_t)r * p.row_bytes, row.data(), p.n_cols);
    for (int v = 0; v < p.n_vec; ++v) {
      matvec_params m = vec_params(p, v);
      m.type = gguf::type::F32;
      m.w = row.data();
      m.row_bytes = (size_t)p.n_cols * 4;
      m.n_rows = 1;
      m.y += r;
      matvec_rows(m, 0, 1);
    }
  }
}

}  // namespace

void matmul_small_multi(const matmul_small_params* ps, int n, int n_threads) {
  constexpr int kMaxJobs = 8;
  if (n < 1 || n > kMaxJobs || !ps)
    fail("matmul_small_multi: job count", std::to_string(n), "1 .. " + std::to_string(kMaxJobs));
  for (int i = 0; i < n; ++i) check(ps[i], i);
  // Integer jobs of several vectors: their activations packed once, on the calling thread.
  constexpr int kMaxGroups = kMaxSmallBatch / kGroup;
  thread_local std::vector<int32_t> xt[kMaxJobs][kMaxGroups];
  thread_local std::vector<float> ds[kMaxJobs][kMaxGroups];
  packed_group groups[kMaxJobs][kMaxGroups];
  int n_groups[kMaxJobs] = {};
  for (int i = 0; i < n; ++i) {
    if (!matvec_uses_int(ps[i].type) || ps[i].n_vec == 1) continue;
    for (int v0 = 0; v0 < ps[i].n_vec; v0 += kGroup, ++n_groups[i])
      groups[i][n_groups[i]] =
          pack_group(ps[i], v0, std::min(kGroup, ps[i].n_vec - v0), xt[i][n_groups[i]], ds[i][n_groups[i]]);
  }
  constexpr int64_t kRows = 32;  // rows per work unit
  int64_t units[kMaxJobs];
  int64_t total = 0;
  for (int i = 0; i < n; ++i) total += units[i] = (ps[i].n_rows + kRows - 1) / kRows;
  const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
  auto run_unit = [&](int64_t u) {
    int i = 0;
    while (u >= units[i]) u -= units[i++];
    const int64_t r0 = u * kRows, r1 = std::min(ps[i].n_rows, r0 + kRows);
    if (n_groups[i] > 0) {
      HWY_DYNAMIC_DISPATCH(rows_small_int)(ps[i], groups[i], n_groups[i], r0, r1);
    } else {
      rows_other(ps[i], r0, r1);
    }
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
