// The core contract every backend, policy and the model share (src/core): element types, the layer
// shape, GQA modes, the paged KV view, the budget and THE selection split, packed hash-code words, the
// encoder-MLP and code views, and index lists. Host-only validation lives in src/core; the inline
// arithmetic below is also compiled into CUDA device code (HASHATTN_HD).
//
// Selection rule (written here once for every fast path; src/ref restates it independently):
//   a list for a context of n tokens keeps the sinks [0, n_sinks), the window [hi, n) and the k_mid
//   middle tokens of [lo, hi) = [n_sinks, n - n_window) with the highest scores, ties at the cutoff to
//   the most recent positions. total = count if count > 0, else floor(density * n). While the context
//   is below the budget's floor (total < sinks + window) or the budget covers it (total >= n), every
//   token is attended.
// KV layout (paged): element j of (token t, KV head h) lives at
//   base + page_table[t / page_size] * stride_page + (t % page_size) * stride_tok + h * stride_head + j
// and with page_table == nullptr (contiguous storage = one page of the whole context) at
//   base + t * stride_tok + h * stride_head + j.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__CUDACC__)
#define HASHATTN_HD __host__ __device__
#else
#define HASHATTN_HD
#endif

namespace hashattn {

// ---- element types ----
enum class dtype : uint8_t { f32 = 0, f16 = 1, bf16 = 2 };
size_t dtype_size(dtype t);
const char* dtype_name(dtype t);

// ---- layer shape and GQA ----
enum class gqa_mode : uint8_t { per_head = 0, per_group = 1 };
const char* gqa_mode_name(gqa_mode m);  // "head" | "group"

struct layer_shape {
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int group() const { return n_head_kv > 0 ? n_head / n_head_kv : 0; }
};
// n_head a positive multiple of n_head_kv, head_dim in [1, 4096]; `who` prefixes the message.
void layer_shape_validate(const layer_shape& s, const char* who);

// ---- budget and the selection split ----
struct budget_params {
  double density = 0;     // attended / context in (0, 1]; used when count == 0
  int64_t count = 0;      // fixed total attended tokens (sinks and window counted in it)
  int64_t sinks = 128;    // first tokens always kept
  int64_t window = 128;   // last positions (including the current token) always kept
};
void budget_validate(const budget_params& b);

struct select_split {
  int64_t n = 0;          // context
  int64_t n_sinks = 0;    // tokens [0, lo) kept
  int64_t lo = 0, hi = 0; // the middle [lo, hi)
  int64_t n_window = 0;   // tokens [hi, n) kept
  int64_t total = 0;      // list length: n_sinks + k_mid + n_window
  int64_t k_mid = 0;      // middle tokens chosen by score
  // Every token is attended (below the floor or a budget that covers the context).
  HASHATTN_HD bool all() const { return total >= n; }
};
// THE selection split (no validation: the host overload below validates first).
HASHATTN_HD inline select_split select_split_of(double density, int64_t count, int64_t sinks, int64_t window,
                                                int64_t n) {
  select_split r;
  if (n <= 0) return r;
  r.n = n;
  int64_t total = count > 0 ? count : (int64_t)(density * (double)n + 1e-9);
  if (total < sinks + window || total > n) total = n;  // below the floor, or covering the context
  r.total = total;
  if (total == n) {  // every token: sinks, window and the whole middle
    r.n_sinks = sinks < n ? sinks : n;
    r.n_window = window < n - r.n_sinks ? window : n - r.n_sinks;
  } else {           // here sinks + window <= total < n
    r.n_sinks = sinks;
    r.n_window = window;
  }
  r.lo = r.n_sinks;
  r.hi = n - r.n_window;
  r.k_mid = total - r.n_sinks - r.n_window;
  return r;
}
// The longest list over contexts 1 .. max_ctx, for sizing lists once (the list length is not monotonic
// in n: below the floor a list holds every token). Binary search for the last context below the floor.
HASHATTN_HD inline int64_t budget_max_tokens(double density, int64_t count, int64_t sinks, int64_t window,
                                             int64_t max_ctx) {
  int64_t m = select_split_of(density, count, sinks, window, max_ctx).total;
  if (count > 0 || max_ctx <= 0) return m;  // a count: n up to the count, then the count
  int64_t lo = 0, hi = max_ctx;              // invariant: lo is below the floor (or 0)
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if ((int64_t)(density * (double)mid + 1e-9) < sinks + window) lo = mid;
    else hi = mid - 1;
  }
  return lo > m ? lo : m;
}
// Validates the budget (budget_validate), then select_split_of.
select_split select_split_for(const budget_params& b, int64_t n);
// Tokens attended for a context of n (= select_split_for(b, n).total).
int64_t budget_tokens(const budget_params& b, int64_t n);

// ---- paged KV view of one layer, one sequence ----
struct kv_view {
  const void* k = nullptr;
  const void* v = nullptr;
  dtype type = dtype::f32;
  int64_t n_tok = 0;        // tokens present (positions 0 .. n_tok-1)
  int n_head_kv = 0;
  int head_dim = 0;
  int64_t stride_tok = 0;   // elements between consecutive tokens (of a page)
  int64_t stride_head = 0;  // elements between consecutive KV heads
  // Pages: nullptr = contiguous (one page). Otherwise page_size is a power of two and token t lives
  // in page page_table[t / page_size] at slot t % page_size.
  const int32_t* page_table = nullptr;
  int page_size = 0;
  int64_t stride_page = 0;  // elements between pages
  int64_t n_pages = 0;      // pages in the pool the ids index (validation: ids in [0, n_pages))
  // Batched views (the CUDA ops of cuda.h: B sequences of one layer on the device): sequence b's page
  // table starts at page_table + b * page_table_stride, and its length comes from the op's seq_len (n_tok
  // is not read). 0 for a view of one sequence.
  int64_t page_table_stride = 0;
};
// Row addressing of a view, with the page arithmetic set up once (hoist it out of token loops):
// at(t) is the element offset of token t's row (KV head 0) in K (and V: same layout).
struct kv_rows {
  const int32_t* table = nullptr;  // page table, nullptr = contiguous
  int shift = 0;                   // log2(page_size)
  int64_t mask = 0, stride_tok = 0, stride_page = 0;
  HASHATTN_HD explicit kv_rows(const kv_view& kv)
      : table(kv.page_table), stride_tok(kv.stride_tok), stride_page(kv.stride_page) {
    if (table) {
#if defined(__CUDA_ARCH__)
      shift = __ffs(kv.page_size) - 1;
#else
      shift = __builtin_ctz((unsigned)kv.page_size);
#endif
      mask = kv.page_size - 1;
    }
  }
  HASHATTN_HD int64_t at(int64_t t) const {
    return table ? (int64_t)table[t >> shift] * stride_page + (t & mask) * stride_tok : t * stride_tok;
  }
};
HASHATTN_HD inline int64_t kv_tok_offset(const kv_view& kv, int64_t t) { return kv_rows(kv).at(t); }
// Element offset of (t, h, 0).
HASHATTN_HD inline int64_t kv_offset(const kv_view& kv, int64_t t, int h) {
  return kv_tok_offset(kv, t) + (int64_t)h * kv.stride_head;
}
// Shape, dtype, pointers, strides and page table; `who` prefixes the message.
void kv_view_validate(const kv_view& kv, const char* who);

// ---- packed hash-code words (b = 16, 32 or 64 sign bits, LSB first) ----
inline bool hash_bits_valid(int bits) { return bits == 16 || bits == 32 || bits == 64; }
inline size_t hash_code_bytes(int bits) { return (size_t)bits / 8; }
inline uint64_t code_get(const void* codes, int bits, int64_t i) {
  switch (bits) {
    case 16: return ((const uint16_t*)codes)[i];
    case 32: return ((const uint32_t*)codes)[i];
    default: return ((const uint64_t*)codes)[i];
  }
}
inline void code_set(void* codes, int bits, int64_t i, uint64_t v) {
  switch (bits) {
    case 16: ((uint16_t*)codes)[i] = (uint16_t)v; return;
    case 32: ((uint32_t*)codes)[i] = (uint32_t)v; return;
    default: ((uint64_t*)codes)[i] = v; return;
  }
}

// One layer's encoders of one role for n_enc heads (fp32, non-owning): w[i] [n_enc, in_i, out_i]
// (row-major, x . W), b[i] [n_enc, out_i]; in_0 = in_dim, out_last = bits, others = hidden; SiLU
// between layers; bit j of the code = (output j > 0).
struct hash_mlp_view {
  int n_enc = 0;
  int in_dim = 0;
  int hidden = 0;
  int bits = 32;
  int n_layers = 3;  // 1..3 linear layers
  const float* w[3] = {nullptr, nullptr, nullptr};
  const float* b[3] = {nullptr, nullptr, nullptr};
  int layer_in(int i) const { return i == 0 ? in_dim : hidden; }
  int layer_out(int i) const { return i == n_layers - 1 ? bits : hidden; }
};

// Read-only view of one layer's key codes: code (t, e) is word t * stride_tok + e * stride_enc.
// Batched views (the CUDA ops of cuda.h): sequence b's codes start stride_seq words further, lengths
// come from the op's seq_len (n_tok is not read).
struct code_view {
  const void* codes = nullptr;
  int bits = 32;
  int n_enc = 0;
  int64_t n_tok = 0;
  int64_t stride_tok = 1;  // words
  int64_t stride_enc = 0;  // words
  int64_t stride_seq = 0;  // words between sequences (batched views)
};

// ---- index lists (the output of every selector) ----
struct index_lists {
  std::vector<int32_t> idx;    // [n_lists, stride]
  std::vector<int32_t> count;  // [n_lists]
  int64_t stride = 0;
  bool per_group = false;
  int n_lists() const { return (int)count.size(); }
  // Sizes n_lists lists of up to `stride` entries (counts zeroed).
  void reset(int n_lists, int64_t stride, bool per_group);
  // Tokens attended per list, on average (0 lists: 0).
  double mean_count() const;
};

}  // namespace hashattn
