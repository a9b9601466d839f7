// The CUDA backend's glue: device queries, error reporting, shared checks, workspace clearing, and
// decode_run -- one layer's decode step as four kernels (encode, select x2, attend) on one stream,
// with every intermediate (query codes, index lists, select/attend scratch) inside one workspace:
//   [qcodes: seq x n_head u32][idx_count: seq x lists][idx: seq x lists x idx_stride][select ws][attend ws]
#include "cuda/common.cuh"

namespace hashattn {
namespace cuda {
namespace detail {

void cuda_fail(cudaError_t e, const char* stmt, const char* file, int line) {
  int dev = -1;
  cudaGetDevice(&dev);
  fail(std::string("CUDA call failed on device ") + std::to_string(dev) + ": " + stmt + " at " + file + ":" +
           std::to_string(line),
       std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")", "cudaSuccess");
}

namespace {
struct dev_props {
  int sms = 0;
  int smem = 0;
};
dev_props& props() {
  static thread_local dev_props cache[64];
  int dev = 0;
  HASHATTN_CUDA_CHECK(cudaGetDevice(&dev));
  HASHATTN_ASSERT(dev >= 0 && dev < 64);
  dev_props& p = cache[dev];
  if (p.sms == 0) {
    HASHATTN_CUDA_CHECK(cudaDeviceGetAttribute(&p.sms, cudaDevAttrMultiProcessorCount, dev));
    HASHATTN_CUDA_CHECK(cudaDeviceGetAttribute(&p.smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  }
  return p;
}
}  // namespace

int sm_count() { return props().sms; }
int max_smem_optin() { return props().smem; }

void check_paged_kv(const paged_kv& kv, const char* op, int batch) {
  const std::string w = std::string(op) + ": kv.";
  if (kv.type != dtype::bf16 && kv.type != dtype::f16) fail(w + "type", type_name(kv.type), "bf16 or f16");
  if (kv.n_head_kv < 1) fail(w + "n_head_kv", std::to_string(kv.n_head_kv), ">= 1");
  if (kv.head_dim < 8 || kv.head_dim % 8) fail(w + "head_dim", std::to_string(kv.head_dim), "a multiple of 8");
  if (!is_pow2(kv.page_size) || kv.page_size > (1 << 30))
    fail(w + "page_size", std::to_string(kv.page_size), "a power of two (1 .. 2^30)");
  if (!kv.page_table) fail(w + "page_table", "null", "a device pointer");
  if (kv.page_table_stride < 1) fail(w + "page_table_stride", std::to_string(kv.page_table_stride), ">= 1");
  if (kv.stride_page % 8 || kv.stride_tok % 8 || kv.stride_head % 8 || kv.stride_head < kv.head_dim ||
      kv.stride_tok < 1 || kv.stride_page < 1)
    fail(w + "strides", std::to_string(kv.stride_page) + "/" + std::to_string(kv.stride_tok) + "/" +
                            std::to_string(kv.stride_head),
         "positive multiples of 8 elements, stride_head >= head_dim", "16-byte rows are loaded");
  if ((kv.k && (reinterpret_cast<uintptr_t>(kv.k) & 15)) || (kv.v && (reinterpret_cast<uintptr_t>(kv.v) & 15)))
    fail(w + "k/v alignment", "not 16-byte aligned", "16-byte aligned base pointers");
  (void)batch;
}

void check_code_store(const code_store& c, const char* op, int n_code_head, int64_t max_ctx) {
  const std::string w = std::string(op) + ": codes.";
  if (!c.codes) fail(w + "codes", "null", "a device pointer");
  if (reinterpret_cast<uintptr_t>(c.codes) & 15) fail(w + "codes alignment", "not 16-byte aligned", "16-byte aligned");
  if (c.n_code_head != n_code_head) fail(w + "n_code_head", std::to_string(c.n_code_head), std::to_string(n_code_head));
  const int64_t row = round_up(max_ctx, 4);
  if (c.stride_seq % 4 || c.stride_head % 4)
    fail(w + "strides", std::to_string(c.stride_seq) + "/" + std::to_string(c.stride_head), "multiples of 4 words");
  if (c.stride_head < row && n_code_head > 1)
    fail(w + "stride_head", std::to_string(c.stride_head), ">= round_up(max_ctx, 4) = " + std::to_string(row));
}

}  // namespace detail

bool device_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why) *why = e != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e) : "no CUDA device";
    cudaGetLastError();
    return false;
  }
  return true;
}

std::string device_name() {
  int dev = 0;
  HASHATTN_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  HASHATTN_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  return prop.name;
}

int device_sm_count() { return detail::sm_count(); }

void workspace_clear(void* workspace, size_t bytes, void* stream) {
  if (bytes == 0) return;
  if (!workspace) fail("workspace_clear: workspace", "null", "a device pointer");
  HASHATTN_CUDA_CHECK(cudaMemsetAsync(workspace, 0, bytes, detail::as_stream(stream)));
}

namespace {

struct decode_layout {
  int n_lists;
  int64_t idx_stride;
  size_t off_qcodes, off_count, off_idx, off_sel, off_att, bytes;
};

int64_t decode_idx_stride(const decode_params& p) {
  return detail::round_up(budget_max_tokens(p.budget.density, p.budget.count, p.budget.sinks, p.budget.window,
                                            std::max<int64_t>(p.max_ctx, 1)),
                          4);
}

select_params select_of(const decode_params& p, char* ws, const decode_layout* l);
attend_params attend_of(const decode_params& p, char* ws, const decode_layout* l);

decode_layout layout_of(const decode_params& p) {
  decode_layout l{};
  if (p.batch < 1 || p.n_head < 1 || p.kv.n_head_kv < 1)
    fail("decode: shape", "batch " + std::to_string(p.batch) + ", n_head " + std::to_string(p.n_head) +
                              ", n_head_kv " + std::to_string(p.kv.n_head_kv), "all >= 1");
  l.n_lists = p.mode == gqa_mode::per_group ? p.kv.n_head_kv : p.n_head;
  l.idx_stride = decode_idx_stride(p);
  size_t off = 0;
  l.off_qcodes = off;
  off = detail::align_up(off + (size_t)p.batch * p.n_head * sizeof(uint32_t));
  l.off_count = off;
  off = detail::align_up(off + (size_t)p.batch * l.n_lists * sizeof(int32_t));
  l.off_idx = off;
  off = detail::align_up(off + (size_t)p.batch * l.n_lists * l.idx_stride * sizeof(int32_t));
  l.off_sel = off;
  off = detail::align_up(off + select_workspace_size(select_of(p, nullptr, &l)));
  l.off_att = off;
  off = detail::align_up(off + attend_workspace_size(attend_of(p, nullptr, &l)));
  l.bytes = off;
  return l;
}

select_params select_of(const decode_params& p, char* ws, const decode_layout* l) {
  select_params s;
  s.batch = p.batch;
  s.n_head = p.n_head;
  s.n_head_kv = p.kv.n_head_kv;
  s.mode = p.mode;
  s.bits = p.query_mlp.bits;
  s.qcodes = ws ? reinterpret_cast<uint32_t*>(ws + l->off_qcodes) : reinterpret_cast<uint32_t*>(uintptr_t(256));
  s.codes = p.codes;
  s.seq_len = p.seq_len;
  s.max_ctx = p.max_ctx;
  s.budget = p.budget;
  s.idx = ws ? reinterpret_cast<int32_t*>(ws + l->off_idx) : reinterpret_cast<int32_t*>(uintptr_t(256));
  s.idx_count = ws ? reinterpret_cast<int32_t*>(ws + l->off_count) : reinterpret_cast<int32_t*>(uintptr_t(256));
  s.idx_stride = l->idx_stride;
  return s;
}

attend_params attend_of(const decode_params& p, char* ws, const decode_layout* l) {
  const select_params s = select_of(p, ws, l);
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
  return a;
}

}  // namespace

size_t decode_workspace_size(const decode_params& p) { return layout_of(p).bytes; }

encode_params decode_encode_params(const decode_params& p, void* workspace) {
  const decode_layout l = layout_of(p);
  char* ws = static_cast<char*>(workspace);
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

select_params decode_select_params(const decode_params& p, void* workspace) {
  const decode_layout l = layout_of(p);
  return select_of(p, static_cast<char*>(workspace), &l);
}

attend_params decode_attend_params(const decode_params& p, void* workspace) {
  const decode_layout l = layout_of(p);
  char* ws = static_cast<char*>(workspace);
  attend_params a = attend_of(p, ws, &l);
  return a;
}

void decode_stage_run(const decode_params& p, int stage, void* workspace, void* stream) {
  if (!workspace) fail("decode: workspace", "null", "decode_workspace_size() bytes, zeroed once");
  if (stage < 0 || stage > 4)
    fail("decode_stage_run: stage", std::to_string(stage), "0 encode, 1 select, 2 attend, 3/4 select's passes");
  const decode_layout l = layout_of(p);
  char* ws = static_cast<char*>(workspace);
  if (stage == 0) encode_run(decode_encode_params(p, workspace), stream);
  if (stage == 1 || stage >= 3) {
    select_params sp = select_of(p, ws, &l);
    sp.only_pass = stage >= 3 ? stage - 2 : 0;
    select_run(sp, ws + l.off_sel, stream);
  }
  if (stage == 2) attend_run(attend_of(p, ws, &l), ws + l.off_att, stream);
}

void decode_run(const decode_params& p, void* workspace, void* stream) {
  if (!workspace) fail("decode: workspace", "null", "decode_workspace_size() bytes, zeroed once");
  const decode_layout l = layout_of(p);
  char* ws = static_cast<char*>(workspace);
  encode_run(decode_encode_params(p, workspace), stream);
  select_run(select_of(p, ws, &l), ws + l.off_sel, stream);
  attend_run(attend_of(p, ws, &l), ws + l.off_att, stream);
}

}  // namespace cuda
}  // namespace hashattn
