// The CUDA kernels of the model's own layers (the GPU runtime, src/gpu, strings them into a decode step)
// and the device plumbing it needs: memory, streams, CUDA graphs, events, and bf16 GEMMs through cuBLAS.
// No CUDA types appear here (streams, graphs, handles are void*). Every kernel runs asynchronously on
// the given stream, allocates nothing and reads lengths/tokens from device memory, so a decode step
// made of them can be captured once as a CUDA graph and replayed.
// Layouts (row-major, token rows): activations x [n, dim] fp32; GEMM inputs bf16; weights W [out, in]
// bf16 (row r = output feature r, `in` contiguous), y = x W^T.
#pragma once
#include <cstddef>
#include <cstdint>

#include "hashattn/cuda.h"

namespace hashattn {
namespace cuda {

// ---- device plumbing ----
void* dev_alloc(size_t bytes, const char* what);  // throws naming `what` and the free memory
void dev_free(void* p);
void copy_h2d(void* dst, const void* src, size_t bytes, void* stream);  // async on stream
void copy_d2h(void* dst, const void* src, size_t bytes, void* stream);  // async on stream
void copy_d2d(void* dst, const void* src, size_t bytes, void* stream);
void mem_zero(void* p, size_t bytes, void* stream);
void* stream_create();
void stream_destroy(void* s);
void stream_sync(void* s);
void device_mem_info(size_t* free_bytes, size_t* total_bytes);
// Graphs: capture everything launched on `stream` between begin and end into an executable graph.
void graph_begin(void* stream);
void* graph_end(void* stream);  // the executable graph
void graph_launch(void* exec, void* stream);
void graph_destroy(void* exec);
// Events (timing).
void* event_create();
void event_destroy(void* e);
void event_record(void* e, void* stream);
float event_ms(void* start, void* stop);  // waits for stop

// ---- GEMM (cuBLAS) ----
// A handle bound to a stream, with its own workspace (so that a graph capture allocates nothing).
void* blas_create(void* stream);
void blas_destroy(void* h);
// y[n, n_out] (fp32, row stride ldy) = x[n, n_in] (bf16) . W[n_out, n_in]^T (bf16) + beta * y.
void gemm_bf16(void* blas, int64_t n, int64_t n_out, int64_t n_in, const void* w, const void* x, float* y,
               int64_t ldy, float beta);

// Few rows (n <= gemv_max_rows, the decode steps of small batches): a matrix-vector kernel that streams W
// once with 16-byte loads and reuses each load for the n rows of x (cuBLAS runs these near 60% of the copy
// bandwidth). Same contract as gemm_bf16; needs n_in % 8 == 0 and 16-byte aligned rows. False (nothing
// launched) when the shape is not one it takes.
constexpr int gemv_max_rows = 8;
bool gemv_bf16(int64_t n, int64_t n_out, int64_t n_in, const void* w, const void* x, float* y, int64_t ldy, float beta,
               void* stream);

// ---- the model's layers ----
// x[i] = table[ids[i]] (bf16 rows of `dim`) as fp32, i < n. advance != nullptr: also advance[i] += 1
// (a decode step's sequence lengths, counted before the layers read them).
void embed_rows(const void* table, int64_t n_vocab, int dim, const int32_t* ids, int64_t n, float* x,
                int32_t* advance, void* stream);
// y (bf16) = x / sqrt(mean(x^2) + eps) * w, row by row.
void rms_norm(const float* x, const float* w, int64_t n, int dim, float eps, void* y, void* stream);
// y (bf16) = x (fp32), count elements.
void to_bf16(const float* x, int64_t count, void* y, void* stream);
// h (bf16) [n, n_ff] = silu(gu[:, :n_ff]) * gu[:, n_ff:]   (gu [n, 2 n_ff] fp32: gate then up).
void swiglu(const float* gu, int64_t n, int n_ff, void* h, void* stream);

// After the q/k/v projection (one GEMM over [wq; wk; wv]): bias, RoPE, q and k out as fp32, K and V
// rows into the paged cache (bf16).
struct qkv_params {
  int64_t n = 0;                  // token rows
  int n_head = 0, n_head_kv = 0, head_dim = 0;
  const float* qkv = nullptr;     // [n, (n_head + 2 n_head_kv) head_dim]
  const float* bias = nullptr;    // [(n_head + 2 n_head_kv) head_dim] or null
  // Positions: seq_len != null (decode): row t is sequence t at position seq_len[t] - 1;
  // otherwise (prefill) row t is sequence `seq` at position pos0 + t.
  const int32_t* seq_len = nullptr;
  int seq = 0;
  int64_t pos0 = 0;
  int rope_dims = 0;              // rotated dims per head (even, <= head_dim)
  bool neox = false;              // pairs (i, i + rope_dims/2); else adjacent (2i, 2i+1)
  float rope_base = 10000.f;
  const float* freq_factors = nullptr;  // device [rope_dims / 2] or null: angle / factor
  float* q_out = nullptr;         // [n, n_head, head_dim]
  float* k_out = nullptr;         // [n, n_head_kv, head_dim] or null: the keys as stored (rounded to kv.type)
  kv_view kv;                     // K/V written at the rows' positions (kv.type bf16 or f16)
};
void qkv_rope_store(const qkv_params& p, void* stream);

// Streaming lists: per (sequence, KV head) the sinks [0, min(sinks, n)) and the window
// [n - min(window, n - s), n) of n = seq_len[b] tokens (ascending).
void window_lists(const int32_t* seq_len, int batch, int n_lists, int64_t sinks, int64_t window, int32_t* idx,
                  int32_t* idx_count, int64_t idx_stride, void* stream);

// Sampling, one row of logits [n_vocab] per sequence: temp <= 0: argmax (lowest id on ties); else the
// Gumbel-max draw of softmax(logits / temp) with noise from (seed, sequence, seq_len[b]) (a counter-based
// hash: the same seed and lengths give the same tokens). out[b] = the token; feed (nullable): feed[b] too.
void sample_tokens(const float* logits, int batch, int64_t n_vocab, float temp, uint64_t seed,
                   const int32_t* seq_len, int32_t* out, int32_t* feed, void* stream);

// Synthetic contents (benchmarks): uniform values in [-scale, scale] as bf16 or f16 / random words, from seed.
void fill_random_half(void* p, dtype type, int64_t count, uint64_t seed, float scale, void* stream);
void fill_random_u32(uint32_t* p, int64_t count, uint64_t seed, void* stream);
void fill_i32(int32_t* p, int64_t count, int32_t value, void* stream);

}  // namespace cuda
}  // namespace hashattn
