// The host-only part of the CUDA backend: the checks of the params of cuda.h (the <op>_validate) and the
// launch planning (job and grid sizes, split and chunk counts, workspace layouts). Plain C++ over core.h
// and cuda.h types, no CUDA header: it is compiled in every build (the CPU build too) and unit-tested
// there (tests/cuda/*-test.cpp); the .cu files call it and add only what needs the device. What the
// plan needs to know about the device comes in as a device_info, so each function below depends on its
// arguments alone (and on what dev.attend_ctas_per_sm answers).
// Workspace layouts: each region starts at a multiple of 256 bytes; `bytes` is the total to allocate.
#pragma once
#include <cstddef>
#include <cstdint>

#include "hashattn/core.h"
#include "hashattn/cuda.h"

namespace hashattn {
namespace cuda {
namespace plan {

// ---- kernel constants the plan depends on (the kernels use these same names) ----
constexpr int ENC_TT = 16;                  // encode: tokens (keys) or sequences (queries) per job
constexpr int ENC_THREADS = 512;            // encode: threads per job
constexpr int SEL_THREADS = 256;            // select: threads per CTA
constexpr int SEL_TILE = SEL_THREADS * 16;  // select: tokens per compaction tile (chunks are whole tiles)
constexpr int MAX_QPL = 8;                  // select: query heads per list (per_group)
constexpr int MAX_SPLITS = 128;             // attend: splits per list
constexpr int MIN_PER_SPLIT = 128;          // attend: tokens per split when the plan picks the count
constexpr int64_t GRID_X_MAX = 2147483647;  // CUDA's launch limits: gridDim.x, gridDim.y and .z
constexpr int64_t GRID_YZ_MAX = 65535;

// What the plan needs to know about the device.
struct device_info {
  int sm_count = 0;        // streaming multiprocessors
  int max_smem_optin = 0;  // bytes of shared memory one block may opt into
  // CTAs of the attend kernel for (KV type, head_dim, query heads per list) resident on one SM;
  // asked only when attend picks its own split count (attend_params::n_splits == 0).
  int (*attend_ctas_per_sm)(dtype type, int head_dim, int nq) = nullptr;
  // The same for the tensor-core kernel (attend_impl::tensor_cores); nullptr: the one above answers.
  int (*attend_tc_ctas_per_sm)(dtype type, int head_dim) = nullptr;
};

// The attend kernel for lists of nq query heads each: automatic picks tensor cores where a list serves
// several query heads (dense, per-group lists: faster at every measured row on an H100) and CUDA cores for
// one query head per list (per-head lists: the mma tile's other 15 rows are padding; 1.9x slower at B=8
// 32K there). docs/PERFORMANCE.md, "GPU run of 2026-12-05, second round".
inline bool uses_tensor_cores(attend_impl i, int nq) {
  return i == attend_impl::tensor_cores || (i == attend_impl::automatic && nq > 1);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
inline size_t align_up(size_t a) { return (a + 255) & ~size_t(255); }
inline bool is_pow2(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }
inline int log2_int(int64_t x) {
  int s = 0;
  while ((int64_t(1) << s) < x) ++s;
  return s;
}
const char* type_name(dtype t);

// ---- checks (throw hashattn::error naming the field; `op` prefixes the message) ----
void check_kv_view(const kv_view& kv, const char* op);
// A grid dimension: what (a count of the params) must be <= max, else "<op>: <what>" is refused.
void check_grid(const char* op, const char* what, int64_t n, int64_t max);
void check_code_view(const code_view& c, const char* op, int n_code_head, int64_t max_ctx);

// ---- encode ----
// One head's MLP as the kernel reads it: dims[0] = input, dims[n_layer] = bits.
struct mlp_args {
  const float* w[3];
  const float* b[3];
  int n_layer;
  int dims[4];
};
mlp_args to_args(const mlp_device& m);
// Floats of shared memory a head's weights take (each segment rounded up to 4 floats).
HASHATTN_HD inline int64_t weight_floats(const mlp_args& m) {
  int64_t f = 0;
  for (int l = 0; l < m.n_layer; ++l) {
    f += ((int64_t)m.dims[l] * m.dims[l + 1] + 3) / 4 * 4;
    f += (m.dims[l + 1] + 3) / 4 * 4;
  }
  return f;
}
// Jobs (one CTA each): key jobs (code head, tile of ENC_TT of the batch x n_new new tokens) first,
// then query jobs (query head, tile of ENC_TT sequences). Shared memory: the larger head's weights,
// two activation tiles of max_dim floats per token and ENC_THREADS partial sums.
struct encode_layout {
  int n_code_head = 0;
  int64_t n_key_tok = 0;  // batch * n_new (0: no key work)
  int key_tiles = 0, q_tiles = 0, n_key_jobs = 0, n_q_jobs = 0, jobs = 0;
  int max_dim = 0;        // widest activation of a token
  size_t smem = 0;        // dynamic shared memory bytes per job
};
// encode_validate: the shape, pointers and MLPs, the jobs (one grid dimension), and the shared memory
// against dev.max_smem_optin.
void check_encode(const encode_params& p, const device_info& dev);
encode_layout encode_layout_of(const encode_params& p);  // p must be valid

// ---- select ----
// grid (n_chunks, n_lists, batch); each chunk is `chunk` tokens, a multiple of SEL_TILE, and the
// chunks cover max_ctx. Workspace: ticket [lists] u32, tot [lists][levels] i32, lp [lists] int4,
// meta [lists][n_chunks] int2, cum [lists][n_chunks][levels] i32 (lists = batch x n_lists).
struct select_layout {
  int n_lists = 0, qpl = 0, levels = 0, n_chunks = 0;
  int64_t chunk = 0;
  size_t off_ticket = 0, off_tot = 0, off_lp = 0, off_meta = 0, off_cum = 0, bytes = 0;
};
inline int select_lists(const select_params& p) {  // per_head: n_head lists, per_group: n_head_kv
  return p.mode == gqa_mode::per_group ? p.n_head_kv : p.n_head;
}
// select_validate: shape (grid (chunks, lists, batch)), bits, pointers, the code store, the budget,
// idx_stride (>= the longest list).
void check_select(const select_params& p);
select_layout select_layout_of(const select_params& p, const device_info& dev);  // p must be valid

// ---- attend ----
// grid (n_splits, n_lists, batch); a list serves nq query heads. With one split no workspace (bytes 0);
// otherwise ticket [lists] u32, ml [batch][n_head][n_splits] float2, o [batch][n_head][n_splits][head_dim]
// f32. The plan's own split count (n_splits == 0) is at most MAX_SPLITS and ceil(longest list /
// MIN_PER_SPLIT), and does not decrease as the longest list grows.
struct attend_layout {
  int n_lists = 0, nq = 0, n_splits = 0;
  size_t off_ticket = 0, off_ml = 0, off_o = 0, bytes = 0;
};
// attend_validate: the KV pages, head_dim 64/128, the group size of grouped lists, pointers, n_splits,
// the grid (splits, lists, batch).
void check_attend(const attend_params& p);
attend_layout attend_layout_of(const attend_params& p, const device_info& dev);  // p must be valid

// ---- decode: one workspace for every intermediate ----
//   [qcodes: batch x n_head u32][idx_count: batch x lists][idx: batch x lists x idx_stride][select][attend]
struct decode_layout {
  int n_lists = 0;
  int64_t idx_stride = 0;  // the longest list up to max_ctx, rounded up to 4
  size_t off_qcodes = 0, off_count = 0, off_idx = 0, off_sel = 0, off_att = 0, bytes = 0;
};
// Checks the shape, and the select and attend params that decode derives (their messages).
decode_layout decode_layout_of(const decode_params& p, const device_info& dev);
// The params of each stage inside a workspace laid out by l (ws == nullptr: placeholder pointers,
// enough for validation and sizing).
encode_params decode_encode_of(const decode_params& p, char* ws, const decode_layout& l);
select_params decode_select_of(const decode_params& p, char* ws, const decode_layout& l);
attend_params decode_attend_of(const decode_params& p, char* ws, const decode_layout& l);

}  // namespace plan
}  // namespace cuda
}  // namespace hashattn
