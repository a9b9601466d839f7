// CPU hash encoders (hash.h): x -> MLP (1..3 layers, SiLU between, biases) -> sign bits -> packed codes.
// x row r of encoder e: x + r*x_stride_row + (e/in_group)*x_stride_head, [in_dim] fp32.
// W [n_enc, in, out] row-major (x . W), b [n_enc, out]; codes (r, e) at r*code_stride_row + e*code_stride_enc.
// n_rows == 1 (decode: one query or one appended key per head): Highway mat-vec chain, OpenMP over
// encoders. n_rows > 1 (prefill append): OpenMP over (block of rows, encoder) tasks, each a chain of
// single-threaded OpenBLAS sgemms with Highway bias + SiLU, then sign packing.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "hashattn/error.h"
#include "cpu/matvec.h"
#include "cpu/cpu-kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/hash-encode.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hashattn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

HWY_INLINE hn::Vec<DF> silu(DF df, hn::Vec<DF> x) {
  const auto e = hn::Exp(df, hn::Min(hn::Neg(x), hn::Set(df, 80.f)));
  return hn::Div(x, hn::Add(hn::Set(df, 1.f), e));
}

// y[rows, out] += b, then SiLU if requested (in place).
void bias_act(float* y, int64_t rows, int out, const float* b, bool act) {
  const DF df;
  const int N = (int)hn::Lanes(df);
  for (int64_t r = 0; r < rows; r++) {
    float* yr = y + r * out;
    int c = 0;
    for (; c + N <= out; c += N) {
      auto v = hn::Add(hn::LoadU(df, yr + c), hn::LoadU(df, b + c));
      if (act) v = silu(df, v);
      hn::StoreU(v, df, yr + c);
    }
    for (; c < out; c++) {
      const float v = yr[c] + b[c];
      yr[c] = act ? v / (1.f + std::exp(std::min(-v, 80.f))) : v;
    }
  }
}

// y[out] = act(x[in] . W[in, out] + b) for one row.
void matvec(const float* x, const float* W, const float* b, int in, int out, bool act, float* y) {
  const DF df;
  const int N = (int)hn::Lanes(df);
  int c = 0;
  for (; c + 4 * N <= out; c += 4 * N) {
    auto a0 = hn::LoadU(df, b + c), a1 = hn::LoadU(df, b + c + N), a2 = hn::LoadU(df, b + c + 2 * N),
         a3 = hn::LoadU(df, b + c + 3 * N);
    for (int r = 0; r < in; r++) {
      const auto xr = hn::Set(df, x[r]);
      const float* w = W + (size_t)r * out + c;
      a0 = hn::MulAdd(xr, hn::LoadU(df, w), a0);
      a1 = hn::MulAdd(xr, hn::LoadU(df, w + N), a1);
      a2 = hn::MulAdd(xr, hn::LoadU(df, w + 2 * N), a2);
      a3 = hn::MulAdd(xr, hn::LoadU(df, w + 3 * N), a3);
    }
    if (act) a0 = silu(df, a0), a1 = silu(df, a1), a2 = silu(df, a2), a3 = silu(df, a3);
    hn::StoreU(a0, df, y + c);
    hn::StoreU(a1, df, y + c + N);
    hn::StoreU(a2, df, y + c + 2 * N);
    hn::StoreU(a3, df, y + c + 3 * N);
  }
  for (; c + N <= out; c += N) {
    auto a = hn::LoadU(df, b + c);
    for (int r = 0; r < in; r++) a = hn::MulAdd(hn::Set(df, x[r]), hn::LoadU(df, W + (size_t)r * out + c), a);
    if (act) a = silu(df, a);
    hn::StoreU(a, df, y + c);
  }
  for (; c < out; c++) {
    float a = b[c];
    for (int r = 0; r < in; r++) a += x[r] * W[(size_t)r * out + c];
    y[c] = act ? a / (1.f + std::exp(std::min(-a, 80.f))) : a;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hashattn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hashattn {
HWY_EXPORT(bias_act);
HWY_EXPORT(matvec);

namespace {
uint64_t pack_signs(const float* y, int bits) {
  uint64_t c = 0;
  for (int j = 0; j < bits; j++) c |= (uint64_t)(y[j] > 0.f) << j;
  return c;
}
}  // namespace

void hash_encode_cpu(const hash_encode_params& p) {
  hash_encode_validate(p);
  const hash_mlp_view& m = p.mlp;
  if (p.n_rows == 0) return;
  const int nt = p.n_threads > 0 ? p.n_threads : omp_get_max_threads();
  int max_w = m.in_dim;
  for (int i = 0; i < m.n_layers; i++) max_w = std::max(max_w, m.layer_out(i));
  auto* mv = HWY_DYNAMIC_DISPATCH(matvec);
  auto* ba = HWY_DYNAMIC_DISPATCH(bias_act);

  if (p.n_rows == 1) {
#pragma omp parallel num_threads(std::max(1, std::min(nt, m.n_enc)))
    {
      std::vector<float> a(max_w), b(max_w);
#pragma omp for schedule(static)
      for (int e = 0; e < m.n_enc; e++) {
        const float* x = p.x + (int64_t)(e / p.in_group) * p.x_stride_head;
        const float* cur = x;
        for (int i = 0; i < m.n_layers; i++) {
          const int in = m.layer_in(i), o = m.layer_out(i);
          float* y = (i % 2 == 0) ? a.data() : b.data();
          mv(cur, m.w[i] + (size_t)e * in * o, m.b[i] + (size_t)e * o, in, o, i + 1 < m.n_layers, y);
          cur = y;
        }
        code_set(p.codes, m.bits, e * p.code_stride_enc, pack_signs(cur, m.bits));
      }
    }
    return;
  }

  // Batched: blocks of rows x encoders spread over OpenMP threads; in each task one single-threaded
  // sgemm per layer (OpenBLAS's own threads on such small products cost more than they give, and they
  // spin against the OpenMP team on few cores).
  const int64_t rb = 256;
  const int64_t n_blocks = (p.n_rows + rb - 1) / rb;
  const int64_t n_tasks = n_blocks * m.n_enc;
  cpu::blas_single_thread guard;
#pragma omp parallel num_threads(std::max<int64_t>(1, std::min<int64_t>(nt, n_tasks)))
  {
    std::vector<float> a((size_t)rb * max_w), b((size_t)rb * max_w);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < n_tasks; task++) {
      const int64_t r0 = (task / m.n_enc) * rb;
      const int e = (int)(task % m.n_enc);
      const int64_t nr = std::min(rb, p.n_rows - r0);
      const float* cur = p.x + r0 * p.x_stride_row + (int64_t)(e / p.in_group) * p.x_stride_head;
      int64_t ld = p.x_stride_row;
      if (nr == 1) ld = m.in_dim;
      for (int i = 0; i < m.n_layers; i++) {
        const int in = m.layer_in(i), o = m.layer_out(i);
        float* y = (i % 2 == 0) ? a.data() : b.data();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, o, in, 1.f, cur, (int)std::max<int64_t>(ld, in),
                    m.w[i] + (size_t)e * in * o, o, 0.f, y, o);
        ba(y, nr, o, m.b[i] + (size_t)e * o, i + 1 < m.n_layers);
        cur = y;
        ld = o;
      }
      for (int64_t r = 0; r < nr; r++)
        code_set(p.codes, m.bits, (r0 + r) * p.code_stride_row + e * p.code_stride_enc,
                 pack_signs(cur + r * m.bits, m.bits));
    }
  }
}

}  // namespace hashattn
#endif  // HWY_ONCE
