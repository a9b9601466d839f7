// Prefill mat-mat: Y[n_tok, n_rows] = X[n_tok, n_cols] * W^T for a GGUF weight W [n_rows, n_cols].
// Weight tiles of up to max_tile_floats are dequantized to fp32 (Q4_0, Q4_1, Q8_0, F16 here;
// other types through gguf::dequantize_row; F32 is used in place), then OpenBLAS sgemm.
// Threads: one OpenMP region per tile; the tile's rows are dequantized cooperatively, then each
// thread multiplies its share of the tokens (or, for few tokens, of the tile's rows) with a
// single-threaded sgemm. OpenBLAS's own thread count is set to 1 for the call and restored.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "cpu/matvec.h"
#include "hashattn/error.h"

namespace hashattn::cpu {

void dequantize_rows(gguf::type t, const void* w, size_t row_bytes, int64_t n_cols, int64_t r0,
                     int64_t r1, float* dst) {
  const float* tab = fp16_table();
  const int64_t nb = n_cols / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w) + (size_t)r * row_bytes;
    float* y = dst + (r - r0) * n_cols;
    switch (t) {
      case gguf::type::F32:
        std::memcpy(y, row, n_cols * sizeof(float));
        break;
      case gguf::type::F16:
        for (int64_t j = 0; j < n_cols; ++j) {
          uint16_t h;
          std::memcpy(&h, row + 2 * j, 2);
          y[j] = tab[h];
        }
        break;
      case gguf::type::Q4_0:
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* blk = row + b * 18;
          uint16_t h;
          std::memcpy(&h, blk, 2);
          const float d = tab[h];
          float* yb = y + b * 32;
          for (int j = 0; j < 16; ++j) {
            yb[j] = (float)((int)(blk[2 + j] & 0x0F) - 8) * d;
            yb[j + 16] = (float)((int)(blk[2 + j] >> 4) - 8) * d;
          }
        }
        break;
      case gguf::type::Q4_1:
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* blk = row + b * 20;
          uint16_t hd, hm;
          std::memcpy(&hd, blk, 2);
          std::memcpy(&hm, blk + 2, 2);
          const float d = tab[hd], m = tab[hm];
          float* yb = y + b * 32;
          for (int j = 0; j < 16; ++j) {
            yb[j] = (float)(blk[4 + j] & 0x0F) * d + m;
            yb[j + 16] = (float)(blk[4 + j] >> 4) * d + m;
          }
        }
        break;
      case gguf::type::Q8_0:
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* blk = row + b * 34;
          uint16_t h;
          std::memcpy(&h, blk, 2);
          const float d = tab[h];
          const int8_t* q = reinterpret_cast<const int8_t*>(blk + 2);
          float* yb = y + b * 32;
          for (int j = 0; j < 32; ++j) yb[j] = (float)q[j] * d;
        }
        break;
      default:
        gguf::dequantize_row(t, row, y, n_cols);
        break;
    }
  }
}

blas_single_thread::blas_single_thread() : prev_(openblas_get_num_threads()) {
  if (prev_ != 1) openblas_set_num_threads(1);
}
blas_single_thread::~blas_single_thread() {
  if (prev_ != 1) openblas_set_num_threads(prev_);
}

void gemm_wt(const gemm_params& p, std::vector<float>& scratch, int n_threads,
             int64_t max_tile_floats) {
  if (!p.w || !p.x || !p.y || p.n_rows <= 0 || p.n_cols <= 0 || p.n_tok <= 0)
    fail("gemm_wt: empty or null operand");
  if (p.ldx < p.n_cols || p.ldy < p.n_rows) fail("gemm_wt: leading dimension too small");
  if (!matvec_supported(p.type)) fail("gemm_wt: weight type", gguf::type_name(p.type));
  const bool in_place = p.type == gguf::type::F32 && p.row_bytes == (size_t)p.n_cols * 4;
  const int64_t tile_rows =
      in_place ? p.n_rows : std::max<int64_t>(1, std::min(p.n_rows, max_tile_floats / p.n_cols));
  if (!in_place && (int64_t)scratch.size() < tile_rows * p.n_cols)
    scratch.resize(tile_rows * p.n_cols);
  const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
  blas_single_thread guard;
  for (int64_t r0 = 0; r0 < p.n_rows; r0 += tile_rows) {
    const int64_t r1 = std::min(p.n_rows, r0 + tile_rows);
    const int64_t nr = r1 - r0;
    const float* wt =
        in_place ? reinterpret_cast<const float*>(static_cast<const uint8_t*>(p.w)) + r0 * p.n_cols
                 : scratch.data();
    // Few tokens: split the tile's rows among threads; otherwise split the tokens.
    const bool split_rows = p.n_tok < 8 * (int64_t)nt;
#pragma omp parallel num_threads(nt)
    {
      if (!in_place) {
#pragma omp for schedule(static)
        for (int64_t r = r0; r < r1; r += 8)
          dequantize_rows(p.type, p.w, p.row_bytes, p.n_cols, r, std::min(r1, r + 8),
                          scratch.data() + (r - r0) * p.n_cols);
      }
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      if (split_rows) {
        const int64_t a = nr * t / T, b = nr * (t + 1) / T;
        if (b > a)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p.n_tok, (int)(b - a),
                      (int)p.n_cols, 1.0f, p.x, (int)p.ldx, wt + a * p.n_cols, (int)p.n_cols, 0.0f,
                      p.y + r0 + a, (int)p.ldy);
      } else {
        const int64_t a = p.n_tok * t / T, b = p.n_tok * (t + 1) / T;
        if (b > a)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(b - a), (int)nr,
                      (int)p.n_cols, 1.0f, p.x + a * p.ldx, (int)p.ldx, wt, (int)p.n_cols, 0.0f,
                      p.y + a * p.ldy + r0, (int)p.ldy);
      }
    }
  }
}

}  // namespace hashattn::cpu
