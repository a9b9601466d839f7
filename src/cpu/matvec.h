// Quantized matrix-vector and matrix-matrix products for the llama-family runtime (CPU).
// Weights: [n_rows, n_cols] in a GGUF block format, row r at w + r * row_bytes (ne[0] = n_cols is
//   the contiguous axis), straight from the mmap. y[r] = sum_j W[r, j] * x[j].
// Decode (mat-vec): the activation x is quantized once to 16-bit integer blocks of 32 (act_i16:
//   value q * d per element, |q| <= 32767, plus s = d * sum(q) per block) and dotted in integers
//   against Q4_0, Q4_1 and Q8_0 rows (Highway, runtime dispatch). 16 bits rather than the usual 8:
//   the kernel widens to 16-bit lanes for its multiply-adds anyway, so it costs nothing, and it
//   keeps the activation rounding (relative 2^-16 of a block's max) far below the weights' own
//   error even for the massive outlier activations of small llamas (|x| ~ 2.5e4 next to ~1). F32 / F16 rows use a float dot; any other type the
//   GGUF reader can dequantize goes through a per-row dequantize + float dot.
// Prefill (mat-mat): Y[n, n_rows] = X[n, n_cols] * W^T with weight tiles dequantized to fp32 and
//   OpenBLAS sgemm; threads split the tokens (each thread calls a single-threaded sgemm).
// Decode of several sequences (small mat-mat, matmul_small_multi): 1 .. 16 act_i16 vectors against
//   one quantized weight in integers, each weight row unpacked once for all of them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hashattn/gguf.h"

namespace hashattn::cpu {

// fp16 -> fp32 through a 64K-entry table (built on first use; thread-safe).
const float* fp16_table();
inline float fp16_lookup(uint16_t h) { return fp16_table()[h]; }

// Largest |q| of a quantized activation. Products with Q8_0 weights (|q| <= 127), summed over a
// block of 32, stay below 2^27: no int32 overflow.
constexpr int kActQMax = 32767;

// An activation vector quantized to blocks of 32 int16 values.
struct act_i16 {
  std::vector<int16_t> q;  // [n_blocks * 32], values in [-kActQMax, kActQMax]
  std::vector<float> d;    // [n_blocks] scale amax / kActQMax
  std::vector<float> s;    // [n_blocks] d * sum(q of the block)
  int64_t n = 0;           // elements (a multiple of 32)
};
// n must be a multiple of 32.
void quantize_act_i16(const float* x, int64_t n, act_i16& out);

// True when mat-vec on this type uses the integer path (needs an act_i16).
bool matvec_uses_int(gguf::type t);
// True when this type can be multiplied at all (fast path or dequantize fallback).
bool matvec_supported(gguf::type t);

struct matvec_params {
  gguf::type type = gguf::type::F32;
  const void* w = nullptr;
  size_t row_bytes = 0;
  int64_t n_rows = 0;
  int64_t n_cols = 0;
  const float* x = nullptr;     // [n_cols] (float paths)
  const act_i16* xq = nullptr;   // quantized x (integer paths; xq->n == n_cols)
  float* y = nullptr;           // [n_rows]
};

// Rows [r0, r1) on the calling thread.
void matvec_rows(const matvec_params& p, int64_t r0, int64_t r1);
// Several independent mat-vecs whose rows are split over n_threads OpenMP threads
// (0 = OpenMP default). One parallel region for all of them.
void matvec_multi(const matvec_params* ps, int n, int n_threads);
inline void matvec(const matvec_params& p, int n_threads) { matvec_multi(&p, 1, n_threads); }

// Small-batch mat-mat (matmul-small.cpp): y_v = W x_v for n_vec vectors (continuous batching), each
// weight block read and unpacked once for all of them. Integer types take n_vec act_i16 rows
// (xq[v].n == n_cols), float and dequantized types n_vec float rows x + v * ldx. Outputs y + v * ldy.
// A vector's result does not depend on the other vectors of the batch (bit for bit). n_vec = 1 and the
// float / dequantized types run mat-vec's arithmetic (bit-equal to matvec). Integer types with n_vec >= 2
// sum each block exactly in int32 and accumulate the blocks in order in fp32 (matmul-small.cpp), where
// mat-vec keeps partial sums in vector lanes: the two differ by fp32 rounding only (each is within
// 4 (n_cols / 8 + 8) u sum |w_j x_j| of the float64 dot, u = 2^-24; tests/model/matmul-small-test.cpp).
constexpr int kMaxSmallBatch = 16;
struct matmul_small_params {
  gguf::type type = gguf::type::F32;
  const void* w = nullptr;
  size_t row_bytes = 0;
  int64_t n_rows = 0, n_cols = 0;
  int n_vec = 1;                 // 1 .. kMaxSmallBatch
  const float* x = nullptr;      // [n_vec, ldx] (float paths)
  int64_t ldx = 0;
  const act_i16* xq = nullptr;   // n_vec quantized rows (integer paths), xq[i].n == n_cols
  float* y = nullptr;            // [n_vec, ldy]
  int64_t ldy = 0;
};
// Several independent small mat-mats, rows split over n_threads OpenMP threads (0 = OpenMP default)
// in one parallel region; each weight row is read once for all n_vec vectors. Bad input (n_vec
// outside 1 .. kMaxSmallBatch, missing or short operands) throws hashattn::error.
void matmul_small_multi(const matmul_small_params* ps, int n, int n_threads);
inline void matmul_small(const matmul_small_params& p, int n_threads) { matmul_small_multi(&p, 1, n_threads); }

// Dequantizes rows [r0, r1) of a weight into dst ([r1 - r0, n_cols] fp32).
void dequantize_rows(gguf::type t, const void* w, size_t row_bytes, int64_t n_cols, int64_t r0,
                     int64_t r1, float* dst);

struct gemm_params {
  gguf::type type = gguf::type::F32;
  const void* w = nullptr;
  size_t row_bytes = 0;
  int64_t n_rows = 0;   // output features
  int64_t n_cols = 0;   // input features
  const float* x = nullptr;  // [n_tok, ldx]
  int64_t ldx = 0;
  int64_t n_tok = 0;
  float* y = nullptr;        // [n_tok, ldy], columns 0 .. n_rows-1 written
  int64_t ldy = 0;
};
// Y = X * W^T. Weight tiles are dequantized into `scratch` (grown as needed, at most
// max_tile_floats floats), then sgemm; threads split the tokens.
void gemm_wt(const gemm_params& p, std::vector<float>& scratch, int n_threads,
             int64_t max_tile_floats = int64_t(4) << 20);

// While alive, OpenBLAS runs single-threaded (our OpenMP threads call sgemm in parallel);
// the previous thread count is restored at the end of the scope.
class blas_single_thread {
 public:
  blas_single_thread();
  ~blas_single_thread();
  blas_single_thread(const blas_single_thread&) = delete;
  blas_single_thread& operator=(const blas_single_thread&) = delete;

 private:
  int prev_;
};

}  // namespace hashattn::cpu
