// Valid params of every CUDA op (cuda.h) for the host-only tests of src/cuda/host (no device: the
// checks and the plan never dereference a pointer, so the pointers are distinct 16-byte aligned
// addresses), a device like an H200, and a helper that expects a refusal naming a field.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "cuda/host/cuda-plan.h"
#include "hashattn/cuda.h"
#include "hashattn/error.h"

namespace hashattn::cudaplan_test {
using namespace hashattn::cuda;

// A fake device address: never dereferenced.
template <class T = void>
T* addr(uintptr_t a) {
  return reinterpret_cast<T*>(a);
}

inline int ctas_per_sm_4(dtype, int, int) { return 4; }

// 132 SMs, 227 KiB of opt-in shared memory, 4 attend CTAs per SM.
inline plan::device_info h200() {
  plan::device_info d;
  d.sm_count = 132;
  d.max_smem_optin = 232448;
  d.attend_ctas_per_sm = ctas_per_sm_4;
  return d;
}

// bf16 pages of 16 tokens, 2 KV heads of 64.
inline kv_view valid_kv() {
  kv_view kv;
  kv.k = addr(0x100000);
  kv.v = addr(0x200000);
  kv.type = dtype::bf16;
  kv.n_head_kv = 2;
  kv.head_dim = 64;
  kv.page_size = 16;
  kv.stride_head = 64;
  kv.stride_tok = 128;
  kv.stride_page = 16 * 128;
  kv.page_table = addr<const int32_t>(0x300000);
  kv.page_table_stride = 8;
  return kv;
}

// 8 code heads (per_head) of rows of 128 words.
inline code_view valid_codes(int n_code_head = 8) {
  code_view c;
  c.codes = addr<uint32_t>(0x700000);
  c.n_enc = n_code_head;
  c.stride_enc = 128;
  c.stride_seq = 128 * n_code_head;
  return c;
}

// Density 1/4 with 4 sinks and 4 window tokens: the longest list up to 128 tokens is 32.
inline budget_params valid_budget() {
  budget_params b;
  b.density = 0.25;
  b.sinks = 4;
  b.window = 4;
  return b;
}

inline attend_params valid_attend() {  // dense, 8 query heads over 2 KV heads
  attend_params p;
  p.batch = 2;
  p.n_head = 8;
  p.q = addr<const float>(0x400000);
  p.kv = valid_kv();
  p.seq_len = addr<const int32_t>(0x600000);
  p.max_ctx = 128;
  p.out = addr<float>(0x500000);
  return p;
}

inline select_params valid_select() {  // per_head lists
  select_params p;
  p.batch = 2;
  p.n_head = 8;
  p.n_head_kv = 2;
  p.bits = 32;
  p.qcodes = addr<const uint32_t>(0x800000);
  p.codes = valid_codes();
  p.seq_len = addr<const int32_t>(0x600000);
  p.max_ctx = 128;
  p.budget = valid_budget();
  p.idx = addr<int32_t>(0x900000);
  p.idx_count = addr<int32_t>(0xa00000);
  p.idx_stride = 32;
  return p;
}

inline mlp_device valid_mlp(int n_enc, uintptr_t base) {  // 64 -> 128 -> 128 -> 32 bits
  mlp_device m;
  m.n_enc = n_enc;
  m.in_dim = 64;
  m.hidden = 128;
  m.bits = 32;
  m.n_layers = 3;
  for (int l = 0; l < 3; ++l) {
    m.w[l] = addr<const float>(base + 0x10000 * (2 * l));
    m.b[l] = addr<const float>(base + 0x10000 * (2 * l + 1));
  }
  return m;
}

inline encode_params valid_encode() {  // one new token per sequence (decode) and the queries
  encode_params p;
  p.batch = 2;
  p.n_head = 8;
  p.n_head_kv = 2;
  p.head_dim = 64;
  p.n_new = 1;
  p.k_new = addr(0xb00000);
  p.v_new = addr(0xc00000);
  p.seq_len = addr<const int32_t>(0x600000);
  p.kv = valid_kv();
  p.key_mlp = valid_mlp(8, 0x1000000);
  p.codes = valid_codes();
  p.q = addr<const float>(0x400000);
  p.query_mlp = valid_mlp(8, 0x2000000);
  p.qcodes = addr<uint32_t>(0x800000);
  return p;
}

inline decode_params valid_decode() {
  decode_params p;
  p.batch = 2;
  p.n_head = 8;
  p.q = addr<const float>(0x400000);
  p.k_new = addr(0xb00000);
  p.v_new = addr(0xc00000);
  p.kv = valid_kv();
  p.codes = valid_codes();
  p.key_mlp = valid_mlp(8, 0x1000000);
  p.query_mlp = valid_mlp(8, 0x2000000);
  p.seq_len = addr<const int32_t>(0x600000);
  p.max_ctx = 128;
  p.budget = valid_budget();
  p.out = addr<float>(0x500000);
  return p;
}

// Runs f, which must throw hashattn::error with `field` in its message.
template <class F>
void expect_refused(F&& f, const std::string& field) {
  try {
    f();
    ADD_FAILURE() << "accepted; expected a refusal naming '" << field << "'";
  } catch (const hashattn::error& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos)
        << "the message does not name '" << field << "': " << e.what();
  }
}

}  // namespace hashattn::cudaplan_test
