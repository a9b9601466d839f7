// A GPU session's state (gpu.h): the KV pages and codes of B sequences, activation buffers sized for
// the larger of a decode step (B rows) and a prefill chunk, the attention workspaces, the graph.
// Pages: sequence b owns pages [b * pages_per_seq, (b + 1) * pages_per_seq) through its page-table row
// (the kernels address K/V only through the table). Code store of a layer: [B, n_code_head, code_row].
#pragma once
#include <string>
#include <vector>

#include "gpu/gpu-impl.h"
#include "hashattn/policy.h"

namespace hashattn {
namespace gpu {

enum class attn_method { dense, hash, streaming };

struct session::impl {
  std::shared_ptr<const device_model> dm;
  const device_model::impl* m = nullptr;
  session_params p;
  policy_spec spec;
  attn_method method = attn_method::dense;
  gqa_mode mode = gqa_mode::per_head;
  budget_params budget;
  device_hash hash;

  int B = 0;
  int64_t n_ctx = 0, rows = 0;  // rows: activation rows (max of B and the prefill chunk)
  int64_t pages_per_seq = 0;
  int n_code_head = 0;
  int64_t code_row = 0;
  int64_t idx_stride = 0;
  cuda::attend_impl attend = cuda::attend_impl::automatic;
  int attn_rows = 64;  // queries per prefill attention launch (session_params.prefill_attn_rows)

  void* stream = nullptr;
  void* blas = nullptr;
  void* graph = nullptr;
  bool stepped_eagerly = false;

  dbuf k_pages, v_pages;  // per layer: [B * pages_per_seq * page_size, n_head_kv, head_dim] bf16
  dbuf codes;             // per layer: [B, n_code_head, code_row] u32
  dbuf page_table;        // [B, pages_per_seq]
  dbuf prefill_table;     // [attn_rows, pages_per_seq]: one sequence's row repeated
  dbuf x, xb, qkv, q, k, att, gu, logits;
  dbuf tok, next, len, prefill_len, pos0;
  dbuf lists, list_count;  // streaming lists [B, n_head_kv, idx_stride]
  // Attention workspaces, each zeroed once: the decode step's (hash: the select scratch must stay zero
  // between steps) and the prefill's (other layouts and partials).
  dbuf ws, ws_prefill;
  std::vector<int64_t> h_len;

  void init();
  size_t layer_kv_elems() const;
  kv_view kv(int layer, bool prefill) const;
  code_view layer_codes(int layer) const;
  // The layers over `n` rows already embedded in x. decode: rows are sequences (lengths in len).
  void layers(int64_t n, bool decode, int seq, int64_t pos0);
  // y [n, n_out] (+)= x [n, n_in] W^T: the matrix-vector kernel for a few rows, else cuBLAS.
  void linear(int64_t n, int64_t n_out, int64_t n_in, const void* w, const void* xin, float* y, int64_t ldy, float beta);
  cuda::decode_params hash_decode(int layer) const;  // a layer's hash decode step (sized at init, run per step)
  void attend_decode(int layer);
  void attend_prefill(int layer, int seq, int64_t pos0, int64_t n);
  void logits_rows(const float* x_rows, int64_t n);  // norm + output GEMM into logits
  void decode_body();                                // one step on the stream (graph body)
  void check_room(int64_t n) const;
};

}  // namespace gpu
}  // namespace hashattn
