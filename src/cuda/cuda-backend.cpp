// The CUDA backend's entry in the backend table (backend.h): the ops of ops.h over host memory, run by
// the CUDA kernels of cuda.h on the current device. Each call uploads its inputs (K/V rows into device
// pages, codes transposed to [code head][token]), runs the kernel on one sequence and waits for the
// result: the table's semantics, one call at a time, so that the same case list checks every backend.
// It is not the fast path (the GPU runtime keeps everything on the device; gpu.h).
// Ops the kernels do not cover refuse with the reason: score_codes and select_scores (no float-score
// or score-writing kernel), f32 K/V, codes other than 32 bits, head_dim other than 64 / 128, per-group
// codes with per-head lists (and the reverse).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda-backend.h"
#include "hashattn/cuda.h"
#include "hashattn/error.h"

namespace hashattn {
namespace cuda {
namespace {

void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail(std::string("backend 'cuda': ") + what, cudaGetErrorName(e), "cudaSuccess", cudaGetErrorString(e));
  }
}

// A device buffer of one call.
struct dmem {
  void* p = nullptr;
  explicit dmem(size_t bytes) {
    if (bytes) ok(cudaMalloc(&p, bytes), "device allocation");
  }
  ~dmem() {
    if (p) cudaFree(p);
  }
  dmem(dmem&& o) noexcept : p(o.p) { o.p = nullptr; }
  dmem(const dmem&) = delete;
  dmem& operator=(const dmem&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

template <typename T>
dmem upload(const T* h, size_t n) {
  dmem d(n * sizeof(T));
  if (n) ok(cudaMemcpy(d.p, h, n * sizeof(T), cudaMemcpyHostToDevice), "copy to the device");
  return d;
}
template <typename T>
dmem upload(const std::vector<T>& v) {
  return upload(v.data(), v.size());
}
template <typename T>
void download(T* h, const dmem& d, size_t n) {
  if (n) ok(cudaMemcpy(h, d.p, n * sizeof(T), cudaMemcpyDeviceToHost), "copy to the host");
}
void finish(const char* op) {
  ok(cudaGetLastError(), op);
  ok(cudaDeviceSynchronize(), op);
}

// One layer's K/V (host view) as device pages of 16 tokens, [page][KV head][slot][d], page i = i.
struct dev_kv {
  dmem k, v, table;
  kv_view view;
};
constexpr int kPage = 16;
std::unique_ptr<dev_kv> upload_kv(const kv_view& kv) {
  if (kv.type != dtype::f16 && kv.type != dtype::bf16)
    fail("backend 'cuda': K/V type", dtype_name(kv.type), "f16 or bf16", "the CUDA kernels read 16-bit K/V");
  const int d = kv.head_dim, G = kv.n_head_kv;
  const int64_t n_pages = std::max<int64_t>(1, (kv.n_tok + kPage - 1) / kPage);
  const size_t elems = (size_t)n_pages * kPage * G * d;
  std::vector<uint16_t> hk(elems, 0), hv(elems, 0);
  const kv_rows rows(kv);
  const uint16_t* K = static_cast<const uint16_t*>(kv.k);
  const uint16_t* V = static_cast<const uint16_t*>(kv.v);
  for (int64_t t = 0; t < kv.n_tok; ++t)
    for (int g = 0; g < G; ++g) {
      const int64_t src = rows.at(t) + g * kv.stride_head;
      const size_t dst = (((size_t)(t / kPage) * G + g) * kPage + t % kPage) * d;
      std::memcpy(&hk[dst], K + src, d * 2);
      std::memcpy(&hv[dst], V + src, d * 2);
    }
  std::vector<int32_t> table(n_pages);
  for (int64_t i = 0; i < n_pages; ++i) table[i] = (int32_t)i;
  auto r = std::make_unique<dev_kv>(dev_kv{upload(hk), upload(hv), upload(table), {}});
  kv_view& p = r->view;
  p.k = r->k.p;
  p.v = r->v.p;
  p.type = kv.type;
  p.n_head_kv = G;
  p.head_dim = d;
  p.page_size = kPage;
  p.stride_tok = d;
  p.stride_head = (int64_t)kPage * d;
  p.stride_page = (int64_t)kPage * G * d;
  p.page_table = r->table.as<const int32_t>();
  p.page_table_stride = n_pages;
  return r;
}

void attend(const attn_decode_params& p) {
  attn_decode_validate(p);
  const int64_t n = p.kv.n_tok;
  const size_t out_n = (size_t)p.n_head * p.kv.head_dim;
  if (n == 0) {  // the table's rule: no tokens, zero rows
    std::fill(p.out, p.out + out_n, 0.f);
    return;
  }
  auto kv = upload_kv(p.kv);
  const int32_t len = (int32_t)n;
  dmem d_q = upload(p.q, out_n), d_out(out_n * 4), d_len = upload(&len, 1);
  attend_params a;
  a.batch = 1;
  a.n_head = p.n_head;
  a.q = d_q.as<const float>();
  a.kv = kv->view;
  a.seq_len = d_len.as<const int32_t>();
  a.max_ctx = n;
  a.scale = p.scale;
  a.out = d_out.as<float>();
  std::unique_ptr<dmem> d_idx, d_cnt;
  if (p.idx) {
    const int lists = p.per_group ? p.kv.n_head_kv : p.n_head;
    d_idx = std::make_unique<dmem>(upload(p.idx, (size_t)lists * p.idx_stride));
    d_cnt = std::make_unique<dmem>(upload(p.idx_count, (size_t)lists));
    a.idx = d_idx->as<const int32_t>();
    a.idx_count = d_cnt->as<const int32_t>();
    a.idx_stride = p.idx_stride;
    a.per_group = p.per_group;
  }
  dmem ws(std::max<size_t>(attend_workspace_size(a), 16));
  workspace_clear(ws.p, std::max<size_t>(attend_workspace_size(a), 16), nullptr);
  attend_run(a, ws.p, nullptr);
  finish("attend");
  download(p.out, d_out, out_n);
}

// Rows of x as [n_rows][n_enc][in_dim] (encoder e reads head e / in_group), encoded as queries.
void encode(const hash_encode_params& p) {
  hash_encode_validate(p);
  const hash_mlp_view& m = p.mlp;
  if (m.bits != 32)
    fail("backend 'cuda': encode, code bits", std::to_string(m.bits), "32", "the CUDA kernels pack 32-bit codes");
  if (p.n_rows == 0) return;
  const int E = m.n_enc, din = m.in_dim;
  std::vector<float> x((size_t)p.n_rows * E * din);
  for (int64_t r = 0; r < p.n_rows; ++r)
    for (int e = 0; e < E; ++e)
      std::memcpy(&x[((size_t)r * E + e) * din], p.x + r * p.x_stride_row + (int64_t)(e / p.in_group) * p.x_stride_head,
                  din * sizeof(float));
  std::vector<std::unique_ptr<dmem>> keep;
  mlp_device md = m;
  for (int l = 0; l < m.n_layers; ++l) {
    const size_t nw = (size_t)E * m.layer_in(l) * m.layer_out(l), nb = (size_t)E * m.layer_out(l);
    keep.push_back(std::make_unique<dmem>(upload(m.w[l], nw)));
    md.w[l] = keep.back()->as<const float>();
    keep.push_back(std::make_unique<dmem>(upload(m.b[l], nb)));
    md.b[l] = keep.back()->as<const float>();
  }
  dmem d_x = upload(x), d_codes((size_t)p.n_rows * E * 4);
  encode_params e;
  e.batch = (int)p.n_rows;
  e.n_head = E;
  e.n_head_kv = 1;
  e.head_dim = din;
  e.q = d_x.as<const float>();
  e.query_mlp = md;
  e.qcodes = d_codes.as<uint32_t>();
  encode_run(e, nullptr);
  finish("encode");
  std::vector<uint32_t> codes((size_t)p.n_rows * E);
  download(codes.data(), d_codes, codes.size());
  for (int64_t r = 0; r < p.n_rows; ++r)
    for (int k = 0; k < E; ++k)
      code_set(p.codes, 32, r * p.code_stride_row + (int64_t)k * p.code_stride_enc, codes[(size_t)r * E + k]);
}

void select_codes(const hash_select_params& p) {
  hash_select_validate(p);
  if (p.keys.bits != 32)
    fail("backend 'cuda': select, code bits", std::to_string(p.keys.bits), "32", "the CUDA kernels score 32-bit codes");
  const bool per_group = p.mode == gqa_mode::per_group;
  const int want = per_group ? p.n_head_kv : p.n_head;
  if (p.keys.n_enc != want)
    fail("backend 'cuda': select, key encoders", std::to_string(p.keys.n_enc),
         std::to_string(want) + (per_group ? " (one per KV group with per-group lists)" : " (one per query head with per-head lists)"),
         "the CUDA kernels score per-head codes with per-head lists and per-group codes with per-group lists");
  const int lists = hash_select_n_lists(p);
  const int64_t n = p.keys.n_tok;
  if (n == 0) {
    std::fill(p.count, p.count + lists, 0);
    return;
  }
  const int64_t row = (n + 3) / 4 * 4;
  std::vector<uint32_t> codes((size_t)want * row, 0);
  for (int e = 0; e < want; ++e)
    for (int64_t t = 0; t < n; ++t)
      codes[(size_t)e * row + t] = (uint32_t)code_get(p.keys.codes, 32, t * p.keys.stride_tok + e * p.keys.stride_enc);
  std::vector<uint32_t> q(p.n_head);
  for (int h = 0; h < p.n_head; ++h) q[h] = (uint32_t)code_get(p.q_codes, 32, h);
  const int32_t len = (int32_t)n;
  // The kernels' lists hold the longest list of any context up to max_ctx (below the budget's floor,
  // every token); the table's only the list at n.
  const int64_t stride = std::max<int64_t>(
      p.idx_stride, budget_max_tokens(p.budget.density, p.budget.count, p.budget.sinks, p.budget.window, n));
  dmem d_codes = upload(codes), d_q = upload(q), d_len = upload(&len, 1);
  dmem d_idx((size_t)lists * stride * 4), d_cnt((size_t)lists * 4);
  select_params s;
  s.batch = 1;
  s.n_head = p.n_head;
  s.n_head_kv = p.n_head_kv;
  s.mode = p.mode;
  s.bits = 32;
  s.qcodes = d_q.as<const uint32_t>();
  s.codes.codes = d_codes.as<uint32_t>();
  s.codes.n_enc = want;
  s.codes.stride_enc = row;
  s.codes.stride_seq = row * want;
  s.seq_len = d_len.as<const int32_t>();
  s.max_ctx = n;
  s.budget = p.budget;
  s.idx = d_idx.as<int32_t>();
  s.idx_count = d_cnt.as<int32_t>();
  s.idx_stride = stride;
  const size_t wsz = std::max<size_t>(select_workspace_size(s), 16);
  dmem ws(wsz);
  workspace_clear(ws.p, wsz, nullptr);
  select_run(s, ws.p, nullptr);
  finish("select");
  download(p.count, d_cnt, lists);
  std::vector<int32_t> idx((size_t)lists * stride);
  download(idx.data(), d_idx, idx.size());
  for (int r = 0; r < lists; ++r) {
    if (p.count[r] > p.idx_stride)
      fail("backend 'cuda': select, list " + std::to_string(r), std::to_string(p.count[r]) + " tokens",
           "<= idx_stride " + std::to_string(p.idx_stride));
    std::copy(idx.begin() + (size_t)r * stride, idx.begin() + (size_t)r * stride + p.count[r],
              p.idx + (size_t)r * p.idx_stride);
  }
}

const char* target() {
  static const std::string name = device_name();
  return name.c_str();
}

}  // namespace

const backend* cuda_backend(std::string* why) {
  if (!device_available(why)) return nullptr;
  static const backend b = [] {
    backend t;
    t.name = "cuda";
    t.attend = attend;
    t.encode = encode;
    t.select_codes = select_codes;
    t.missing =
        "the CUDA kernels select over hash codes inside the decode step: there is no kernel that writes "
        "the code scores out (score_codes) or selects over float scores (select_scores; oracle, Quest, "
        "Double Sparsity run on the CPU)";
    t.target = target;
    return t;
  }();
  return &b;
}

}  // namespace cuda
}  // namespace hashattn
