// Launch planning of the CUDA ops, host-only: jobs, chunk and split counts, workspace layouts.
#include "cuda/host/cuda-plan.h"

#include <algorithm>
#include <string>

#include "hashattn/error.h"

namespace hashattn {
namespace cuda {
namespace plan {

namespace {

// The count c in [1, cap] with the fewest waves of `resident` CTAs per unit of work, for `lists`
// lists of c CTAs each (no nearly empty last wave); the smallest such c.
int64_t fewest_waves(int64_t lists, int64_t resident, int64_t cap) {
  int64_t best_c = 1;
  double best = 1e300;
  for (int64_t c = 1; c <= cap; ++c) {
    const double cost = (double)ceil_div(lists * c, resident) / (double)c;
    if (cost < best * 0.999) {
      best = cost;
      best_c = c;
    }
  }
  return best_c;
}

// The next region of a workspace: returns its offset and moves `off` past it (256-byte aligned).
size_t region(size_t& off, size_t bytes) {
  const size_t at = off;
  off = align_up(off + bytes);
  return at;
}

}  // namespace

mlp_args to_args(const mlp_device& m) {
  mlp_args r{};
  r.n_layer = m.n_layers;
  r.dims[0] = m.in_dim;
  for (int l = 1; l < m.n_layers; ++l) r.dims[l] = m.hidden;
  r.dims[m.n_layers] = m.bits;
  for (int l = 0; l < 3; ++l) {
    r.w[l] = m.w[l];
    r.b[l] = m.b[l];
  }
  return r;
}

encode_layout encode_layout_of(const encode_params& p) {
  encode_layout l;
  const bool keys = p.n_new > 0, queries = p.q != nullptr;
  l.n_code_head = p.mode == gqa_mode::per_group ? p.n_head_kv : p.n_head;
  l.n_key_tok = keys ? (int64_t)p.batch * p.n_new : 0;
  l.key_tiles = (int)ceil_div(l.n_key_tok, ENC_TT);
  l.q_tiles = queries ? (int)ceil_div(p.batch, ENC_TT) : 0;
  l.n_key_jobs = keys ? l.key_tiles * l.n_code_head : 0;
  l.n_q_jobs = queries ? l.q_tiles * p.n_head : 0;
  l.jobs = l.n_key_jobs + l.n_q_jobs;
  int64_t wf = 0;
  l.max_dim = p.head_dim;
  if (keys) {
    const mlp_args km = to_args(p.key_mlp);
    l.max_dim = std::max({l.max_dim, km.dims[1], km.dims[km.n_layer]});
    wf = weight_floats(km);
  }
  if (queries) {
    const mlp_args qm = to_args(p.query_mlp);
    l.max_dim = std::max({l.max_dim, qm.dims[1], qm.dims[qm.n_layer]});
    wf = std::max<int64_t>(wf, weight_floats(qm));
  }
  l.smem = (size_t)(wf + 2 * ENC_TT * (int64_t)l.max_dim + ENC_THREADS) * sizeof(float);
  return l;
}

select_layout select_layout_of(const select_params& p, const device_info& dev) {
  HASHATTN_ASSERT(dev.sm_count >= 1);
  select_layout l;
  const bool pg = p.mode == gqa_mode::per_group;
  l.n_lists = select_lists(p);
  l.qpl = pg ? p.n_head / p.n_head_kv : 1;
  l.levels = l.qpl * p.bits + 1;
  // Chunks per list: the fewest waves (8 resident CTAs per SM), each chunk at least one compaction tile.
  const int64_t max_chunks = std::max<int64_t>(1, ceil_div(p.max_ctx, SEL_TILE));
  const int64_t lists = (int64_t)p.batch * l.n_lists, resident = 8 * (int64_t)dev.sm_count;
  const int64_t nc = fewest_waves(lists, resident, std::min<int64_t>(max_chunks, 1024));
  l.chunk = round_up(ceil_div(std::max<int64_t>(p.max_ctx, 1), nc), SEL_TILE);
  l.n_chunks = (int)ceil_div(std::max<int64_t>(p.max_ctx, 1), l.chunk);
  size_t off = 0;
  l.off_ticket = region(off, lists * sizeof(uint32_t));
  l.off_tot = region(off, lists * l.levels * sizeof(int32_t));
  l.off_lp = region(off, lists * 4 * sizeof(int32_t));
  l.off_meta = region(off, lists * l.n_chunks * 2 * sizeof(int32_t));
  l.off_cum = region(off, lists * l.n_chunks * (size_t)l.levels * sizeof(int32_t));
  l.bytes = off;
  return l;
}

attend_layout attend_layout_of(const attend_params& p, const device_info& dev) {
  attend_layout l;
  const int g = p.n_head / p.kv.n_head_kv;
  const bool grouped = p.idx == nullptr || p.per_group;
  l.n_lists = grouped ? p.kv.n_head_kv : p.n_head;
  l.nq = grouped ? g : 1;
  const int64_t lists = (int64_t)p.batch * l.n_lists;
  if (p.n_splits > 0) {
    l.n_splits = p.n_splits;
  } else {
    HASHATTN_ASSERT(dev.sm_count >= 1 && dev.attend_ctas_per_sm != nullptr);
    const int per_sm = uses_tensor_cores(p.impl, l.nq) && dev.attend_tc_ctas_per_sm
                           ? dev.attend_tc_ctas_per_sm(p.kv.type, p.kv.head_dim)
                           : dev.attend_ctas_per_sm(p.kv.type, p.kv.head_dim, l.nq);
    HASHATTN_ASSERT(per_sm >= 1);
    const int64_t max_count = p.idx ? p.idx_stride : p.max_ctx;
    const int64_t cap = std::min<int64_t>(MAX_SPLITS, std::max<int64_t>(1, ceil_div(max_count, MIN_PER_SPLIT)));
    l.n_splits = (int)fewest_waves(lists, (int64_t)dev.sm_count * per_sm, cap);
  }
  const int64_t rows = (int64_t)p.batch * p.n_head * l.n_splits;
  size_t off = 0;
  l.off_ticket = region(off, lists * sizeof(uint32_t));
  l.off_ml = region(off, rows * 2 * sizeof(float));
  l.off_o = region(off, rows * p.kv.head_dim * sizeof(float));
  l.bytes = l.n_splits > 1 ? off : 0;
  return l;
}

decode_layout decode_layout_of(const decode_params& p, const device_info& dev) {
  decode_layout l;
  if (p.batch < 1 || p.n_head < 1 || p.kv.n_head_kv < 1)
    fail("decode: shape", "batch " + std::to_string(p.batch) + ", n_head " + std::to_string(p.n_head) +
                              ", n_head_kv " + std::to_string(p.kv.n_head_kv), "all >= 1");
  l.n_lists = p.mode == gqa_mode::per_group ? p.kv.n_head_kv : p.n_head;
  l.idx_stride = round_up(budget_max_tokens(p.budget.density, p.budget.count, p.budget.sinks, p.budget.window,
                                            std::max<int64_t>(p.max_ctx, 1)),
                          4);
  size_t off = 0;
  l.off_qcodes = region(off, (size_t)p.batch * p.n_head * sizeof(uint32_t));
  l.off_count = region(off, (size_t)p.batch * l.n_lists * sizeof(int32_t));
  l.off_idx = region(off, (size_t)p.batch * l.n_lists * l.idx_stride * sizeof(int32_t));
  const select_params s = decode_select_of(p, nullptr, l);
  check_select(s);
  l.off_sel = region(off, select_layout_of(s, dev).bytes);
  const attend_params a = decode_attend_of(p, nullptr, l);
  check_attend(a);
  l.off_att = region(off, attend_layout_of(a, dev).bytes);
  l.bytes = off;
  return l;
}

encode_params decode_encode_of(const decode_params& p, char* ws, const decode_layout& l) {
  encode_params e;
  e.batch = p.batch;
  e.n_head = p.n_head;
  e.n_head_kv = p.kv.n_head_kv;
  e.head_dim = p.kv.head_dim;
  e.mode = p.mode;
  e.n_new = p.k_new ? 1 : 0;
  e.k_new = p.k_new;
  e.v_new = p.v_new;
  e.kv_in_type = p.kv_in_type;
  e.pos0 = nullptr;
  e.seq_len = p.seq_len;
  e.kv = p.kv;
  if (!p.append_kv) {
    e.kv.k = nullptr;
    e.kv.v = nullptr;
  }
  e.key_mlp = p.key_mlp;
  e.codes = p.codes;
  e.q = p.q;
  e.query_mlp = p.query_mlp;
  e.qcodes = ws ? reinterpret_cast<uint32_t*>(ws + l.off_qcodes) : nullptr;
  return e;
}

select_params decode_select_of(const decode_params& p, char* ws, const decode_layout& l) {
  // Without a workspace: aligned placeholders, so that the params validate and size.
  char* const placeholder = reinterpret_cast<char*>(uintptr_t(256));
  select_params s;
  s.batch = p.batch;
  s.n_head = p.n_head;
  s.n_head_kv = p.kv.n_head_kv;
  s.mode = p.mode;
  s.bits = p.query_mlp.bits;
  s.qcodes = reinterpret_cast<uint32_t*>(ws ? ws + l.off_qcodes : placeholder);
  s.codes = p.codes;
  s.seq_len = p.seq_len;
  s.max_ctx = p.max_ctx;
  s.budget = p.budget;
  s.idx = reinterpret_cast<int32_t*>(ws ? ws + l.off_idx : placeholder);
  s.idx_count = reinterpret_cast<int32_t*>(ws ? ws + l.off_count : placeholder);
  s.idx_stride = l.idx_stride;
  return s;
}

attend_params decode_attend_of(const decode_params& p, char* ws, const decode_layout& l) {
  const select_params s = decode_select_of(p, ws, l);
  attend_params a;
  a.batch = p.batch;
  a.n_head = p.n_head;
  a.q = p.q;
  a.kv = p.kv;
  a.seq_len = p.seq_len;
  a.max_ctx = p.max_ctx;
  a.scale = p.scale;
  a.idx = s.idx;
  a.idx_count = s.idx_count;
  a.idx_stride = s.idx_stride;
  a.per_group = p.mode == gqa_mode::per_group;
  a.out = p.out;
  a.impl = p.attend;
  return a;
}

}  // namespace plan
}  // namespace cuda
}  // namespace hashattn
