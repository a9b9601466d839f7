// Float64 reference kernels: the oracle every optimized kernel is tested against.
// Deliberately simple loops in double precision; not optimized, not used at runtime.
//   attn_decode_ref: q [n_head, d], K/V via kv_view, out [n_head, d] (double); dense or index lists.
//   hash_*_ref: MLP encoder forward, code packing, bit scores, the selection rule (see hash.h).
#pragma once
#include <cstdint>
#include <vector>

#include "hashattn/attention.h"

namespace hashattn::ref {

// One K or V element as double (f32 / f16 / bf16 storage).
double kv_elem(const void* base, dtype t, int64_t off);

// Dense or sparse decode attention in float64; same params (and validation) as attn_decode_cpu.
// Writes out[n_head * head_dim]; an empty list gives zeros.
void attn_decode_ref(const attn_decode_params& p, double* out);

}  // namespace hashattn::ref
