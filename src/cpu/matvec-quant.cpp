// Quantized mat-vec kernels (Highway, runtime dispatch) for decode: y = W x.
// W: [n_rows, n_cols] GGUF blocks of 32 straight from the mmap:
//   Q4_0 {fp16 d; u8 qs[16]}      w = (q - 8) * d
//   Q4_1 {fp16 d; fp16 m; u8 qs[16]}  w = q * d + m   (low nibbles: elements 0..15, high: 16..31)
//   Q8_0 {fp16 d; i8 qs[32]}      w = q * d
// x: act_i16 (int16 blocks of 32, scale d, and s = d * sum(q)). Per block the integer
// dot sum(qw * qx) is formed with widening multiply-adds (16-bit products summed into 32-bit lanes)
// and scaled by dw * dx in float; Q4_1 adds mw * s, Q4_0 subtracts 8 * dw * s.
// F32 / F16 rows: float dot on x. Other types: dequantize the row, then float dot.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "cpu/matvec.h"
#include "hashattn/error.h"

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

// sum over the 32 elements of one block of qw * qx, spread over int32 lanes.
template <int kType>  // 0: Q4 (unsigned nibbles), 1: Q8_0 (signed bytes)
HWY_INLINE hn::Vec<hn::Repartition<int32_t, D16>> block_dot(const uint8_t* qs, const int16_t* x) {
  const D16 d16;
  const hn::Repartition<int32_t, D16> d32;
  constexpr size_t N = hn::MaxLanes(D16());
  auto s0 = hn::Zero(d32);
  auto s1 = hn::Zero(d32);
  for (size_t c = 0; c < 32; c += N) {
    hn::Vec<D16> w;
    if constexpr (kType == 0) {
      w = load_q4(qs, c);
    } else {
      const hn::Rebind<int8_t, D16> d8;
      w = hn::PromoteTo(d16, hn::LoadU(d8, reinterpret_cast<const int8_t*>(qs) + c));
    }
    s0 = hn::ReorderWidenMulAccumulate(d32, w, hn::LoadU(d16, x + c), s0, s1);
  }
  return hn::RearrangeToOddPlusEven(s0, s1);
}

template <int kFmt>  // 0: Q4_0, 1: Q4_1, 2: Q8_0
void rows_quant(const matvec_params& p, int64_t r0, int64_t r1) {
  const hn::Repartition<float, D16> df;
  const float* tab = fp16_table();
  constexpr size_t kBlockBytes = kFmt == 0 ? 18 : kFmt == 1 ? 20 : 34;
  constexpr size_t kQsOff = kFmt == 1 ? 4 : 2;
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
      uint16_t h0, h1;
      std::memcpy(&h0, b0, 2);
      std::memcpy(&h1, b1, 2);
      const float dw0 = tab[h0], dw1 = tab[h1];
      const auto i0 = block_dot<kFmt == 2 ? 1 : 0>(b0 + kQsOff, xq + b * 32);
      const auto i1 = block_dot<kFmt == 2 ? 1 : 0>(b1 + kQsOff, xq + b * 32 + 32);
      acc0 = hn::MulAdd(hn::ConvertTo(df, i0), hn::Set(df, dw0 * xd[b]), acc0);
      acc1 = hn::MulAdd(hn::ConvertTo(df, i1), hn::Set(df, dw1 * xd[b + 1]), acc1);
      if constexpr (kFmt == 1) {
        uint16_t m0, m1;
        std::memcpy(&m0, b0 + 2, 2);
        std::memcpy(&m1, b1 + 2, 2);
        corr += tab[m0] * xs[b] + tab[m1] * xs[b + 1];
      } else if constexpr (kFmt == 0) {
        corr -= 8.0f * (dw0 * xs[b] + dw1 * xs[b + 1]);
      }
    }
    for (; b < nb; ++b) {
      const uint8_t* b0 = row + (size_t)b * kBlockBytes;
      uint16_t h0;
      std::memcpy(&h0, b0, 2);
      const float dw0 = tab[h0];
      const auto i0 = block_dot<kFmt == 2 ? 1 : 0>(b0 + kQsOff, xq + b * 32);
      acc0 = hn::MulAdd(hn::ConvertTo(df, i0), hn::Set(df, dw0 * xd[b]), acc0);
      if constexpr (kFmt == 1) {
        uint16_t m0;
        std::memcpy(&m0, b0 + 2, 2);
        corr += tab[m0] * xs[b];
      } else if constexpr (kFmt == 0) {
        corr -= 8.0f * dw0 * xs[b];
      }
    }
    p.y[r] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1))) + corr;
  }
}

// Float dot of n elements; T = float or fp16 bits (uint16_t).
template <typename T>
HWY_INLINE float dot_float(const T* w, const float* x, int64_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df);
  int64_t i = 0;
  auto load_w = [&](int64_t k) {
    if constexpr (sizeof(T) == 4) {
      return hn::LoadU(df, reinterpret_cast<const float*>(w) + k);
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
      wi = fp16_lookup(h);
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
  return t == gguf::type::Q4_0 || t == gguf::type::Q4_1 || t == gguf::type::Q8_0;
}

static bool fast_type(gguf::type t) {
  return matvec_uses_int(t) || t == gguf::type::F32 || t == gguf::type::F16;
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
