// Decode attention over one layer's KV cache: dense (all tokens) or sparse (index lists).
// q:   [n_head, d] fp32, post-RoPE.   out: [n_head, d] fp32.
// K/V: element (t, h, j) of either lives at base + t * stride_tok + h * stride_head + j (elements),
//      fp32 or fp16 (or bf16 on CUDA). Query head qh reads KV head qh / (n_head / n_head_kv).
// Index lists: list r holds idx[r * idx_stride + 0 .. count[r]) (token positions, ascending, unique).
//   per_group = false: one list per query head (n_head lists).
//   per_group = true:  one list per KV head, shared by the group's query heads (n_head_kv lists).
// The same params struct is consumed by src/ref (float64), src/cpu and src/cuda.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hashattn {

enum class dtype : uint8_t { f32 = 0, f16 = 1, bf16 = 2 };
size_t dtype_size(dtype t);
const char* dtype_name(dtype t);

// One layer's K and V (same layout for both).
struct kv_view {
  const void* k = nullptr;
  const void* v = nullptr;
  dtype type = dtype::f32;
  int64_t n_tok = 0;        // tokens present (positions 0 .. n_tok-1)
  int n_head_kv = 0;
  int head_dim = 0;
  int64_t stride_tok = 0;   // elements between consecutive tokens
  int64_t stride_head = 0;  // elements between consecutive KV heads
};

struct attn_decode_params {
  const float* q = nullptr;  // [n_head, head_dim]
  kv_view kv;
  int n_head = 0;
  float scale = 0;           // usually 1/sqrt(head_dim)
  // Sparse selection; idx == nullptr means dense over all n_tok tokens.
  const int32_t* idx = nullptr;
  const int32_t* idx_count = nullptr;
  int64_t idx_stride = 0;
  bool per_group = false;
  float* out = nullptr;      // [n_head, head_dim]
  int n_threads = 0;         // 0 = all (OpenMP default)
};

// Checks sizes, strides, pointers and index ranges once; throws hashattn::error.
// An empty index list (count 0) is valid and gives a zero output row; so does n_tok == 0 (dense).
void attn_decode_validate(const attn_decode_params& p);
// The kv_view part of the checks (shape, dtype, pointers, strides); `who` prefixes the message.
void kv_view_validate(const kv_view& kv, const char* who);
// Element (t, h, 0) of a KV tensor as a byte address.
inline const void* kv_row(const void* base, dtype t, int64_t off_elems) {
  return (const char*)base + off_elems * (t == dtype::f32 ? 4 : 2);
}
// Optimized CPU kernel (Highway, runtime dispatch). Validates p first (attn_decode_validate).
// Numerically stable (online softmax with running max, split-KV partials merged per head).
// Dense and per-group lists process the G query heads of a group together (K/V read once per group).
void attn_decode_cpu(const attn_decode_params& p);
// Name of the SIMD target the CPU kernels dispatch to on this machine (e.g. "AVX2", "AVX3").
const char* cpu_simd_target();

}  // namespace hashattn
