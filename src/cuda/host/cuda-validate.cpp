// Checks of the CUDA ops' params (cuda.h), host-only: every refusal of the CUDA backend is here.
#include <algorithm>
#include <string>

#include "cuda/host/cuda-plan.h"
#include "hashattn/error.h"

namespace hashattn {
namespace cuda {
namespace plan {

const char* type_name(dtype t) {
  return t == dtype::f32 ? "f32" : t == dtype::f16 ? "f16" : t == dtype::bf16 ? "bf16" : "unknown";
}

void check_kv_view(const kv_view& kv, const char* op) {
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
}

void check_code_view(const code_view& c, const char* op, int n_code_head, int64_t max_ctx) {
  const std::string w = std::string(op) + ": codes.";
  if (!c.codes) fail(w + "codes", "null", "a device pointer");
  if (reinterpret_cast<uintptr_t>(c.codes) & 15) fail(w + "codes alignment", "not 16-byte aligned", "16-byte aligned");
  if (c.bits != 32) fail(w + "bits", std::to_string(c.bits), "32", "the CUDA kernels store codes in uint32 words");
  if (c.stride_tok != 1)
    fail(w + "stride_tok", std::to_string(c.stride_tok), "1", "a code head's tokens are one row of words");
  if (c.n_enc != n_code_head) fail(w + "n_enc", std::to_string(c.n_enc), std::to_string(n_code_head));
  const int64_t row = round_up(max_ctx, 4);
  if (c.stride_seq % 4 || c.stride_enc % 4)
    fail(w + "strides", std::to_string(c.stride_seq) + "/" + std::to_string(c.stride_enc), "multiples of 4 words");
  if (c.stride_enc < row && n_code_head > 1)
    fail(w + "stride_enc", std::to_string(c.stride_enc), ">= round_up(max_ctx, 4) = " + std::to_string(row));
}

void check_grid(const char* op, const char* what, int64_t n, int64_t max) {
  if (n > max)
    fail(std::string(op) + ": " + what, std::to_string(n), "<= " + std::to_string(max),
         "a dimension of the kernel's launch grid");
}

namespace {

void check_mlp(const mlp_device& m, const char* which, int n_enc, int head_dim) {
  const std::string w = std::string("encode: ") + which;
  if (m.n_layers < 1 || m.n_layers > 3)
    fail(w + " n_layers", std::to_string(m.n_layers), "1, 2 or 3");
  if (m.n_enc != n_enc)
    fail(w + " n_enc", std::to_string(m.n_enc), std::to_string(n_enc),
         "one encoder per code head (per_head: n_head, per_group: n_head_kv) or per query head");
  if (m.in_dim != head_dim) fail(w + " input width", std::to_string(m.in_dim), std::to_string(head_dim));
  if (m.bits < 1 || m.bits > 32)
    fail(w + " bits", std::to_string(m.bits), "1 .. 32", "the CUDA backend packs codes into uint32 words");
  if (m.n_layers > 1 && (m.hidden < 1 || m.hidden > 1024))
    fail(w + " hidden width", std::to_string(m.hidden), "1 .. 1024");
  for (int l = 0; l < m.n_layers; ++l)
    if (!m.w[l] || !m.b[l]) fail(w + " weights of layer " + std::to_string(l), "null", "device pointers");
}

}  // namespace

void check_encode(const encode_params& p, const device_info& dev) {
  if (p.batch < 1) fail("encode: batch", std::to_string(p.batch), ">= 1");
  if (p.n_head < 1 || p.n_head_kv < 1 || p.n_head % p.n_head_kv != 0)
    fail("encode: heads", std::to_string(p.n_head) + " query / " + std::to_string(p.n_head_kv) + " KV",
         "n_head a positive multiple of n_head_kv");
  if (p.head_dim < 1 || p.head_dim > 1024) fail("encode: head_dim", std::to_string(p.head_dim), "1 .. 1024");
  const int n_code_head = p.mode == gqa_mode::per_group ? p.n_head_kv : p.n_head;
  int bits = 0;
  if (p.n_new > 0) {
    if (!p.k_new) fail("encode: k_new", "null", "a device pointer when n_new > 0");
    if (!p.pos0 && !p.seq_len) fail("encode: positions", "pos0 and seq_len both null", "one of them");
    check_mlp(p.key_mlp, "key_mlp", n_code_head, p.head_dim);
    bits = p.key_mlp.bits;
    check_code_view(p.codes, "encode", n_code_head, 0);  // rows: the positions written are not bounded here
    if (p.kv.k != nullptr) {
      if (!p.v_new) fail("encode: v_new", "null", "a device pointer when K/V are appended");
      check_kv_view(p.kv, "encode");
      if (p.kv.n_head_kv != p.n_head_kv || p.kv.head_dim != p.head_dim)
        fail("encode: kv shape", std::to_string(p.kv.n_head_kv) + "x" + std::to_string(p.kv.head_dim),
             std::to_string(p.n_head_kv) + "x" + std::to_string(p.head_dim));
    }
    if (p.kv_in_type != dtype::f32 && p.kv_in_type != dtype::f16 && p.kv_in_type != dtype::bf16)
      fail("encode: kv_in_type", std::to_string((int)p.kv_in_type), "f32, f16 or bf16");
  }
  if (p.q) {
    check_mlp(p.query_mlp, "query_mlp", p.n_head, p.head_dim);
    if (!p.qcodes) fail("encode: qcodes", "null", "a device pointer when q is given");
    if (bits && p.query_mlp.bits != bits)
      fail("encode: query bits", std::to_string(p.query_mlp.bits), std::to_string(bits), "key and query codes must have the same width");
  }
  // One job per (code head, tile of new tokens) and per (query head, tile of sequences), in one row.
  const int64_t key_jobs = p.n_new > 0 ? ceil_div((int64_t)p.batch * p.n_new, ENC_TT) * n_code_head : 0;
  const int64_t q_jobs = p.q ? ceil_div(p.batch, ENC_TT) * p.n_head : 0;
  check_grid("encode", "jobs (code heads x tiles of new tokens + query heads x tiles of sequences)",
             key_jobs + q_jobs, GRID_X_MAX);
  const size_t smem = encode_layout_of(p).smem;
  if ((int64_t)smem > dev.max_smem_optin)
    fail("encode: encoder weights per head in shared memory", std::to_string(smem) + " bytes",
         "<= " + std::to_string(dev.max_smem_optin), "use a narrower hidden layer");
}

void check_select(const select_params& p) {
  if (p.batch < 1) fail("select: batch", std::to_string(p.batch), ">= 1");
  if (p.n_head < 1 || p.n_head_kv < 1 || p.n_head % p.n_head_kv != 0)
    fail("select: heads", std::to_string(p.n_head) + " query / " + std::to_string(p.n_head_kv) + " KV",
         "n_head a positive multiple of n_head_kv");
  const bool pg = p.mode == gqa_mode::per_group;
  const int qpl = pg ? p.n_head / p.n_head_kv : 1;
  if (qpl > MAX_QPL)
    fail("select: query heads per KV group in per_group mode", std::to_string(qpl), "<= 8");
  check_grid("select", "batch", p.batch, GRID_YZ_MAX);
  check_grid("select", "lists per sequence", select_lists(p), GRID_YZ_MAX);
  if (p.bits < 1 || p.bits > 32) fail("select: bits", std::to_string(p.bits), "1 .. 32");
  if (!p.qcodes || !p.seq_len || !p.idx || !p.idx_count)
    fail("select: device pointers", "null qcodes/seq_len/idx/idx_count", "all set");
  if (p.max_ctx < 1 || p.max_ctx > INT32_MAX)
    fail("select: max_ctx", std::to_string(p.max_ctx), "1 .. 2^31-1");
  check_code_view(p.codes, "select", select_lists(p), p.max_ctx);
  budget_validate(p.budget);
  const int64_t need = budget_max_tokens(p.budget.density, p.budget.count, p.budget.sinks, p.budget.window,
                                         p.max_ctx);
  if (p.idx_stride < need)
    fail("select: idx_stride", std::to_string(p.idx_stride), ">= " + std::to_string(need),
         "the longest list over contexts up to max_ctx (below the budget's floor a list holds every token)");
}

void check_attend(const attend_params& p) {
  if (p.batch < 1) fail("attend: batch", std::to_string(p.batch), ">= 1");
  check_kv_view(p.kv, "attend");
  if (!p.kv.k || !p.kv.v) fail("attend: kv.k/kv.v", "null", "device pointers");
  if (p.n_head < 1 || p.n_head % p.kv.n_head_kv != 0)
    fail("attend: n_head", std::to_string(p.n_head), "a positive multiple of n_head_kv = " + std::to_string(p.kv.n_head_kv));
  if (p.kv.head_dim != 64 && p.kv.head_dim != 128)
    fail("attend: head_dim", std::to_string(p.kv.head_dim), "64 or 128", "the CUDA kernel is specialized for these");
  if (p.kv.type != dtype::bf16 && p.kv.type != dtype::f16)
    fail("attend: KV dtype", type_name(p.kv.type), "bf16 or f16");
  const int g = p.n_head / p.kv.n_head_kv;
  const bool grouped = p.idx == nullptr || p.per_group;
  if (grouped && (g < 1 || g > 8 || g == 5))
    fail("attend: query heads per KV head", std::to_string(g), "1, 2, 3, 4, 6, 7 or 8 for dense and per_group lists",
         "use per_head lists for other ratios");
  check_grid("attend", "batch", p.batch, GRID_YZ_MAX);
  check_grid("attend", "lists per sequence", grouped ? p.kv.n_head_kv : p.n_head, GRID_YZ_MAX);
  if (!p.q || !p.out || !p.seq_len) fail("attend: q/out/seq_len", "null", "device pointers");
  if (p.max_ctx < 1 || p.max_ctx > INT32_MAX) fail("attend: max_ctx", std::to_string(p.max_ctx), "1 .. 2^31-1");
  if (p.idx && (!p.idx_count || p.idx_stride < 1))
    fail("attend: index lists", "idx without idx_count or idx_stride < 1", "idx_count set and idx_stride >= 1");
  if ((int)p.impl < 0 || (int)p.impl > 2) fail("attend: impl", std::to_string((int)p.impl), "automatic, cuda_cores or tensor_cores");
  if (p.n_splits < 0 || p.n_splits > MAX_SPLITS)
    fail("attend: n_splits", std::to_string(p.n_splits), "0 (auto) .. " + std::to_string(MAX_SPLITS));
  if ((reinterpret_cast<uintptr_t>(p.q) & 15) || (reinterpret_cast<uintptr_t>(p.out) & 15))
    fail("attend: q/out alignment", "not 16-byte aligned", "16-byte aligned device pointers");
}

}  // namespace plan

const char* attend_impl_name(attend_impl i) {
  switch (i) {
    case attend_impl::automatic: return "auto";
    case attend_impl::cuda_cores: return "cores";
    case attend_impl::tensor_cores: return "tensor";
  }
  return "?";
}

namespace {
constexpr attend_impl kAttendImpls[] = {attend_impl::automatic, attend_impl::cuda_cores, attend_impl::tensor_cores};
}

std::vector<std::string> attend_impl_names() {
  std::vector<std::string> names;
  for (attend_impl i : kAttendImpls) names.push_back(attend_impl_name(i));
  return names;
}

attend_impl attend_impl_parse(const std::string& s) {
  for (attend_impl i : kAttendImpls)
    if (s == attend_impl_name(i)) return i;
  fail("attention kernel", "'" + s + "'", "auto, cores (CUDA cores) or tensor (tensor cores)");
}

}  // namespace cuda
}  // namespace hashattn
