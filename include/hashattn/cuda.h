// CUDA backend of hash-sparse decode attention: the device-side params structs and entry points.
// No CUDA types appear here: device pointers are plain pointers, a stream is passed as void*
// (a cudaStream_t; nullptr = the legacy default stream).
// Layouts (all on the device, batch index b, token t, KV head g, query head h, code head c):
//   K/V (paged):  element j of (b, t, g) at base + page_table[b * page_table_stride + t / page_size] *
//                 stride_page + (t % page_size) * stride_tok + g * stride_head + j   (bf16 or fp16)
//   key codes:    codes[b * stride_seq + c * stride_enc + t] (uint32, LSB-first sign bits)
//                 code heads: n_head (gqa_mode::per_head) or n_head_kv (gqa_mode::per_group)
//   q:            [batch, n_head, head_dim] fp32 (post-RoPE);   out: [batch, n_head, head_dim] fp32
//   query codes:  [batch, n_head] uint32
//   index lists:  idx[(b * n_lists + r) * idx_stride + i], i < idx_count[b * n_lists + r] (ascending)
//   seq_len:      [batch] int32, tokens present (the newest at seq_len - 1); read on the device, so a
//                 captured CUDA graph can be replayed after the lengths change (up to max_ctx).
// Every op: <op>_validate (throws hashattn::error), <op>_workspace_size, <op>_run. run() never
// allocates and never synchronizes the host; workspaces must be zeroed once (workspace_clear). A
// workspace serves launches of one shape (batch, heads, max_ctx / idx_stride): its regions (tickets,
// partials) are placed by the shape, and a launch of another shape would read the partials of the last
// one as tickets. Pad launches to one shape, or give each shape its own workspace.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hashattn/core.h"

namespace hashattn {
namespace cuda {

// True when a CUDA device can be used; otherwise false and *why says why.
bool device_available(std::string* why = nullptr);
// Name and multiprocessor count of the current device (throws when there is none).
std::string device_name();
int device_sm_count();

// The device views are core.h's, batched over sequences: one layer's K/V is a kv_view with a page
// table of [batch, page_table_stride] entries (bf16 or f16; page_size a power of two, 1 allowed; n_tok and
// n_pages not read: lengths come from seq_len), and its key codes a code_view of 32-bit words with
// stride_tok 1 (a row of tokens per code head), n_enc code heads stride_enc words apart and sequences
// stride_seq words apart. Code rows must be 16-byte aligned, strides multiples of 4 words, and each row
// must hold round_up(max_ctx, 4) words. Views are read-only for the readers (select, attend); the ops that
// append (encode, the model's qkv_rope_store) write through the same pointers.
// Hash encoder MLPs of one layer: hash_mlp_view (hash.h) with DEVICE pointers, fp32, stacked per
// encoder head: w[l] [n_enc, in_l, out_l], b[l] [n_enc, out_l]; SiLU between layers; bit j of the
// code = (output j > 0), LSB first. The CUDA kernels take codes of up to 32 bits (uint32 words).
using mlp_device = hash_mlp_view;

// Fused KV append + key encode (any number of new tokens: decode or prefill) and query encode,
// all heads of a layer in one launch.
struct encode_params {
  int batch = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  gqa_mode mode = gqa_mode::per_head;
  // Keys/values to append: [batch, n_new, n_head_kv, head_dim] of type kv_in_type, at positions
  // pos0[b] .. pos0[b] + n_new - 1 (pos0 == nullptr: pos0[b] = seq_len[b] - n_new).
  int n_new = 0;                 // 0: no key work
  const void* k_new = nullptr;
  const void* v_new = nullptr;
  dtype kv_in_type = dtype::f32;
  const int32_t* pos0 = nullptr;
  const int32_t* seq_len = nullptr;
  kv_view kv;                    // kv.k == nullptr: codes only, the caller writes K/V itself
  mlp_device key_mlp;            // n_enc = codes.n_enc
  code_view codes;
  // Queries to encode: [batch, n_head, head_dim] fp32 (nullptr: no query work).
  const float* q = nullptr;
  mlp_device query_mlp;          // n_enc = n_head
  uint32_t* qcodes = nullptr;    // [batch, n_head]
};
void encode_validate(const encode_params& p);
void encode_run(const encode_params& p, void* stream);

// Score every cached key against the query codes and select per list: sinks + window + the
// top (budget - sinks - window) middle tokens by score; ties at the cutoff go to the most recent.
// Score: per_head: bits - popcount(q ^ k) (b+1 levels); per_group: the sum of that over the group's
// query heads against the KV head's code (G*b+1 levels). A histogram of the levels, no sort.
struct select_params {
  int batch = 0;
  int n_head = 0;
  int n_head_kv = 0;
  gqa_mode mode = gqa_mode::per_head;
  int bits = 32;
  const uint32_t* qcodes = nullptr;  // [batch, n_head]
  code_view codes;
  const int32_t* seq_len = nullptr;
  int64_t max_ctx = 0;               // bound on seq_len (sizes the grid and the workspace)
  budget_params budget;
  int32_t* idx = nullptr;            // [batch, n_lists, idx_stride]
  int32_t* idx_count = nullptr;      // [batch, n_lists]
  int64_t idx_stride = 0;            // >= budget_tokens(budget, max_ctx)
  int only_pass = 0;                 // for timing: 1 = score/histogram kernel only, 2 = compaction only
};
int select_n_lists(const select_params& p);
void select_validate(const select_params& p);
size_t select_workspace_size(const select_params& p);
void select_run(const select_params& p, void* workspace, void* stream);

// Split-KV flash decoding over index lists (sparse) or over all seq_len tokens (idx == nullptr).
// per_group lists (and dense): one gather of a KV head serves all its query heads.
// Two kernels, the same results: dot products on CUDA cores (a token row spread over lanes) or on
// tensor cores (mma over whole gathered rows; Q and P in two 16-bit parts; faster at every measured row,
// docs/PERFORMANCE.md) where a list serves several query heads. automatic: tensor cores for dense and
// per-group lists, CUDA cores for per-head lists (one query head per list).
enum class attend_impl : int { automatic = 0, cuda_cores = 1, tensor_cores = 2 };
const char* attend_impl_name(attend_impl i);
attend_impl attend_impl_parse(const std::string& s);  // auto | cores | tensor; throws otherwise
std::vector<std::string> attend_impl_names();          // the names attend_impl_parse takes
struct attend_params {
  int batch = 0;
  int n_head = 0;
  const float* q = nullptr;          // [batch, n_head, head_dim]
  kv_view kv;
  const int32_t* seq_len = nullptr;
  int64_t max_ctx = 0;
  float scale = 0;                   // 0: 1/sqrt(head_dim)
  const int32_t* idx = nullptr;      // nullptr: dense
  const int32_t* idx_count = nullptr;
  int64_t idx_stride = 0;
  bool per_group = false;
  float* out = nullptr;              // [batch, n_head, head_dim]
  int n_splits = 0;                  // 0: chosen from the shape and the device
  attend_impl impl = attend_impl::automatic;
};
void attend_validate(const attend_params& p);
int attend_n_splits(const attend_params& p);
size_t attend_workspace_size(const attend_params& p);
void attend_run(const attend_params& p, void* workspace, void* stream);

// One layer's whole decode step for one new token per sequence: append K/V + key code of the new
// token, encode the queries, select, attend. Four kernels, capturable as a CUDA graph.
struct decode_params {
  int batch = 0;
  int n_head = 0;
  gqa_mode mode = gqa_mode::per_head;
  const float* q = nullptr;          // [batch, n_head, head_dim]
  const void* k_new = nullptr;       // [batch, n_head_kv, head_dim] (nullptr: K/V/codes present)
  const void* v_new = nullptr;
  dtype kv_in_type = dtype::f32;
  bool append_kv = true;             // false: only the key code of the new token is written
  kv_view kv;
  code_view codes;
  mlp_device key_mlp;
  mlp_device query_mlp;
  const int32_t* seq_len = nullptr;  // lengths including the new token
  int64_t max_ctx = 0;
  budget_params budget;
  float scale = 0;
  float* out = nullptr;
  attend_impl attend = attend_impl::automatic;  // the attend stage's kernel
};
size_t decode_workspace_size(const decode_params& p);
void decode_run(const decode_params& p, void* workspace, void* stream);
// The select/attend params decode_run uses (for timing the stages on their own).
encode_params decode_encode_params(const decode_params& p, void* workspace);
select_params decode_select_params(const decode_params& p, void* workspace);
attend_params decode_attend_params(const decode_params& p, void* workspace);

// Runs one stage of decode_run on its own (for timing the stages): 0 encode, 1 select, 2 attend,
// 3 select's score/histogram kernel, 4 select's compaction kernel.
void decode_stage_run(const decode_params& p, int stage, void* workspace, void* stream);

// Zeroes a workspace (once, after allocating it; kernels leave it reusable).
void workspace_clear(void* workspace, size_t bytes, void* stream);

}  // namespace cuda
}  // namespace hashattn
