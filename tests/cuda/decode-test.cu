// One layer's whole decode step on the GPU (encode -> select -> attend, decode_run) against the
// float64 references, and captured as a CUDA graph: capture, replay, compare bitwise with the
// direct run; then advance every sequence by one token on the device and replay the same graph.
// Also: 512K-token contexts (select + attend vs the references) and the small case that
// scripts/gpu-check runs under compute-sanitizer (CudaSmall.*).
#include <string>
#include <thread>

#include "cuda/cuda-test-util.h"

namespace hashattn::cudatest {
namespace {

bool have_gpu() {
  static const bool ok = device_available();
  return ok;
}
#define NEED_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device"

struct decode_case {
  int B, n_head, n_kv, d;
  gqa_mode mode;
  int64_t n0;      // prompt length of sequence 0 (the others are shorter)
  int page_size;
  double density;
  int64_t sinks, window;
  bool graph;
  uint64_t seed;
  attend_impl attend = attend_impl::cuda_cores;
};

// Checks the device codes of one decode step against the reference encoder on the same inputs (every
// cached key and every query; bits whose float64 output is within `margin` of zero may differ), then
// the lists against the reference rule on those codes and the outputs against the reference attention.
void check_codes(const decode_case& c, const host_kv& h, const std::vector<int32_t>& len, const std::vector<float>& q,
                 const host_mlp& km, const host_mlp& qm, const std::vector<uint32_t>& codes,
                 const std::vector<uint32_t>& qc, int n_code, int64_t row, std::vector<int64_t>& keys_checked,
                 const char* when) {
  const double margin = 1e-3;
  const int G = c.n_head / c.n_kv;
  // Key codes: one host thread per sequence (millions of float64 encoder runs in the large cases);
  // each thread keeps its sequence's first mismatch, reported after the join.
  std::vector<std::string> key_err(c.B);
  std::vector<std::thread> pool;
  for (int b = 0; b < c.B; ++b)
    pool.emplace_back([&, b] {
      std::vector<double> xk(c.d);
      for (int64_t t = keys_checked[b]; t < len[b]; ++t)  // key codes are written once: each checked once
        for (int e = 0; e < n_code; ++e) {
          const int g = c.mode == gqa_mode::per_group ? e : e / G;
          for (int j = 0; j < c.d; ++j) xk[j] = from_bits(h.type, h.k[h.off(b, t, g) + j]);
          uint32_t unc;
          const uint32_t want = code_of(ref_mlp(km, e, xk.data()), margin, &unc);
          const uint32_t got = codes[((size_t)b * n_code + e) * row + t];
          if ((got & ~unc) != (want & ~unc)) {
            key_err[b] = std::string(when) + ": key code seq " + std::to_string(b) + " token " + std::to_string(t) +
                         " head " + std::to_string(e) + ": got " + std::to_string(got & ~unc) + ", reference " +
                         std::to_string(want & ~unc) + " (uncertain bits masked)";
            return;
          }
        }
    });
  for (auto& th : pool) th.join();
  for (int b = 0; b < c.B; ++b) ASSERT_TRUE(key_err[b].empty()) << key_err[b];
  std::vector<double> x(c.d);
  for (int b = 0; b < c.B; ++b) {
    keys_checked[b] = std::max<int64_t>(keys_checked[b], len[b]);
    for (int hq = 0; hq < c.n_head; ++hq) {
      for (int j = 0; j < c.d; ++j) x[j] = q[((size_t)b * c.n_head + hq) * c.d + j];
      uint32_t unc;
      const uint32_t want = code_of(ref_mlp(qm, hq, x.data()), margin, &unc);
      ASSERT_EQ(qc[(size_t)b * c.n_head + hq] & ~unc, want & ~unc) << when << ": query code seq " << b << " head " << hq;
    }
  }
}

void check_step(const decode_case& c, const host_kv& h, const std::vector<int32_t>& len, const std::vector<float>& q,
                const host_mlp& km, const host_mlp& qm, std::vector<int64_t>& keys_checked, const decode_params& p, void* ws,
                const std::vector<float>& out, int64_t row, const char* when) {
  const select_params sp = decode_select_params(p, ws);
  const int n_lists = select_n_lists(sp);
  const int n_code = n_lists;
  const int qpl = c.mode == gqa_mode::per_group ? c.n_head / c.n_kv : 1;
  std::vector<uint32_t> codes((size_t)c.B * n_code * row), qc((size_t)c.B * c.n_head);
  CUDA_OK(cudaMemcpy(codes.data(), p.codes.codes, codes.size() * 4, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(qc.data(), sp.qcodes, qc.size() * 4, cudaMemcpyDeviceToHost));
  check_codes(c, h, len, q, km, qm, codes, qc, n_code, row, keys_checked, when);
  if (::testing::Test::HasFatalFailure()) return;
  std::vector<int32_t> idx((size_t)c.B * n_lists * sp.idx_stride), cnt((size_t)c.B * n_lists);
  CUDA_OK(cudaMemcpy(idx.data(), sp.idx, idx.size() * 4, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(cnt.data(), sp.idx_count, cnt.size() * 4, cudaMemcpyDeviceToHost));
  for (int b = 0; b < c.B; ++b) {
    for (int r = 0; r < n_lists; ++r) {
      const auto want = ref_select(p.budget, len[b], qc.data() + (size_t)b * c.n_head + r * qpl, qpl,
                                   codes.data() + ((size_t)b * n_code + r) * row, p.query_mlp.bits);
      const size_t li = (size_t)b * n_lists + r;
      ASSERT_EQ(cnt[li], (int32_t)want.size()) << when << ": seq " << b << " list " << r;
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(idx[li * sp.idx_stride + i], want[i]) << when << ": seq " << b << " list " << r << " at " << i;
    }
    attn_decode_params rp;
    rp.q = q.data() + (size_t)b * c.n_head * c.d;
    rp.kv = h.view(b, len[b]);
    rp.n_head = c.n_head;
    rp.scale = 1.f / std::sqrt((float)c.d);
    rp.idx = idx.data() + (size_t)b * n_lists * sp.idx_stride;
    rp.idx_count = cnt.data() + (size_t)b * n_lists;
    rp.idx_stride = sp.idx_stride;
    rp.per_group = c.mode == gqa_mode::per_group;
    std::vector<double> ref((size_t)c.n_head * c.d);
    ref::attn_decode_ref(rp, ref.data());
    double qmax = 0;
    for (int i = 0; i < c.n_head * c.d; ++i) qmax = std::max(qmax, (double)std::fabs(rp.q[i]));
    const double atol = test::attn_atol(c.d, len[b], qmax * c.d * 3.0 * rp.scale, 1.0);
    EXPECT_TRUE(test::all_close(out.data() + (size_t)b * c.n_head * c.d, ref.data(), (int64_t)ref.size(), atol, 1e-5))
        << when << ": sequence " << b;
  }
}

void run_decode_case(const decode_case& c) {
  HASHATTN_SEED(c.seed);
  std::printf("[decode] B%d h%d kv%d d%d %s n%lld graph=%d seed=%llu\n", c.B, c.n_head, c.n_kv, c.d,
              c.mode == gqa_mode::per_group ? "per_group" : "per_head", (long long)c.n0, (int)c.graph,
              (unsigned long long)c.seed);
  std::mt19937_64 rng(c.seed);
  const int steps = 3;
  const int64_t cap = c.n0 + steps;
  const int n_code = c.mode == gqa_mode::per_group ? c.n_kv : c.n_head;
  host_kv h = make_host_kv(rng, dtype::bf16, c.B, cap, c.n_kv, c.d);
  dev_paged dk;
  make_dev_paged(rng, h, c.page_size, false, dk);
  CUDA_OK(cudaMemset(dk.k.p, 0xff, dk.k.n * 2));  // the cache is filled by the prefill below
  CUDA_OK(cudaMemset(dk.v.p, 0xff, dk.v.n * 2));
  const host_mlp km = make_host_mlp(rng, n_code, 3, c.d, 128, 32);
  const host_mlp qm = make_host_mlp(rng, c.n_head, 3, c.d, 128, 32);
  dev_mlp dkm, dqm;
  upload_mlp(km, dkm);
  upload_mlp(qm, dqm);
  const int64_t row = (cap + 3) / 4 * 4;
  dbuf<uint32_t> d_codes((size_t)c.B * n_code * row);
  d_codes.poison(0x33);
  code_view cs;
  cs.codes = d_codes.p;
  cs.n_enc = n_code;
  cs.stride_seq = (int64_t)n_code * row;
  cs.stride_enc = row;

  // Prefill: the first n0 tokens of every sequence, K/V appended and keys encoded in one launch.
  {
    std::vector<uint16_t> kp((size_t)c.B * c.n0 * c.n_kv * c.d), vp(kp.size());
    for (int b = 0; b < c.B; ++b) {
      std::copy_n(h.k.begin() + h.off(b, 0, 0), (size_t)c.n0 * c.n_kv * c.d, kp.begin() + (size_t)b * c.n0 * c.n_kv * c.d);
      std::copy_n(h.v.begin() + h.off(b, 0, 0), (size_t)c.n0 * c.n_kv * c.d, vp.begin() + (size_t)b * c.n0 * c.n_kv * c.d);
    }
    dbuf<uint16_t> d_kp, d_vp;
    dbuf<int32_t> d_pos(c.B);
    d_kp.upload(kp);
    d_vp.upload(vp);
    CUDA_OK(cudaMemset(d_pos.p, 0, c.B * 4));
    encode_params e;
    e.batch = c.B;
    e.n_head = c.n_head;
    e.n_head_kv = c.n_kv;
    e.head_dim = c.d;
    e.mode = c.mode;
    e.n_new = (int)c.n0;
    e.k_new = d_kp.p;
    e.v_new = d_vp.p;
    e.kv_in_type = dtype::bf16;
    e.pos0 = d_pos.p;
    e.kv = dk.view;
    e.key_mlp = dkm.view;
    e.codes = cs;
    encode_run(e, nullptr);
    CUDA_OK(cudaDeviceSynchronize());
  }
  // Lengths after the first decode token: sequence b is n0 - 37 b (+1 for the new token).
  std::vector<int32_t> len(c.B);
  for (int b = 0; b < c.B; ++b) len[b] = (int32_t)(c.n0 - 37 * b + 1);
  dbuf<int32_t> d_len;
  d_len.upload(len);
  dbuf<float> d_q((size_t)c.B * c.n_head * c.d), d_out((size_t)c.B * c.n_head * c.d);
  dbuf<uint16_t> d_knew((size_t)c.B * c.n_kv * c.d), d_vnew((size_t)c.B * c.n_kv * c.d);
  auto set_step = [&](std::vector<float>& q) {
    q.resize((size_t)c.B * c.n_head * c.d);
    test::fill(rng, test::dist::normal, q.data(), (int64_t)q.size());
    d_q.upload(q);
    std::vector<uint16_t> kn(d_knew.n), vn(d_vnew.n);
    for (int b = 0; b < c.B; ++b) {
      std::copy_n(h.k.begin() + h.off(b, len[b] - 1, 0), c.n_kv * c.d, kn.begin() + (size_t)b * c.n_kv * c.d);
      std::copy_n(h.v.begin() + h.off(b, len[b] - 1, 0), c.n_kv * c.d, vn.begin() + (size_t)b * c.n_kv * c.d);
    }
    d_knew.upload(kn);
    d_vnew.upload(vn);
    d_len.upload(len);
  };
  decode_params p;
  p.batch = c.B;
  p.n_head = c.n_head;
  p.mode = c.mode;
  p.q = d_q.p;
  p.k_new = d_knew.p;
  p.v_new = d_vnew.p;
  p.kv_in_type = dtype::bf16;
  p.append_kv = true;
  p.kv = dk.view;
  p.codes = cs;
  p.key_mlp = dkm.view;
  p.query_mlp = dqm.view;
  p.seq_len = d_len.p;
  p.max_ctx = cap;
  p.budget.density = c.density;
  p.budget.sinks = c.sinks;
  p.budget.window = c.window;
  p.out = d_out.p;
  p.attend = c.attend;
  dbuf<char> ws(decode_workspace_size(p));
  workspace_clear(ws.p, ws.n, nullptr);
  std::vector<float> q;
  std::vector<int64_t> keys_checked(c.B, 0);
  set_step(q);
  d_out.poison(0xff);
  decode_run(p, ws.p, nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  const auto out_direct = d_out.download();
  check_step(c, h, len, q, km, qm, keys_checked, p, ws.p, out_direct, row, "direct");
  if (!c.graph) return;

  cudaStream_t s;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  decode_run(p, ws.p, s);
  CUDA_OK(cudaStreamEndCapture(s, &g));
  CUDA_OK(cudaGraphInstantiate(&ge, g, 0));
  size_t n_nodes = 0;
  CUDA_OK(cudaGraphGetNodes(g, nullptr, &n_nodes));
  EXPECT_LE(n_nodes, 4u) << "one layer's decode should be at most four kernels";
  d_out.poison(0xff);
  CUDA_OK(cudaGraphLaunch(ge, s));
  CUDA_OK(cudaStreamSynchronize(s));
  const auto out_graph = d_out.download();
  ASSERT_EQ(out_graph.size(), out_direct.size());
  EXPECT_EQ(0, std::memcmp(out_graph.data(), out_direct.data(), out_graph.size() * 4))
      << "graph replay differs from the direct run";
  // Advance every sequence on the device and replay the same graph.
  for (int step = 1; step < steps; ++step) {
    for (auto& l : len) l += 1;
    set_step(q);
    d_out.poison(0xff);
    CUDA_OK(cudaGraphLaunch(ge, s));
    CUDA_OK(cudaStreamSynchronize(s));
    check_step(c, h, len, q, km, qm, keys_checked, p, ws.p, d_out.download(), row, "replay");
  }
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
}

TEST(CudaDecode, GraphPerHeadGqa4) {
  NEED_GPU();
  run_decode_case({2, 8, 2, 128, gqa_mode::per_head, 5000, 16, 1.0 / 16, 64, 64, true, 4001});
}
TEST(CudaDecode, GraphPerGroupGqa4) {
  NEED_GPU();
  run_decode_case({2, 8, 2, 128, gqa_mode::per_group, 5000, 16, 1.0 / 16, 64, 64, true, 4002});
}
TEST(CudaDecode, GraphPerGroupGqa8Page1) {
  NEED_GPU();
  run_decode_case({4, 16, 2, 64, gqa_mode::per_group, 3000, 1, 1.0 / 8, 16, 16, true, 4003});
}
TEST(CudaDecode, LlamaShapeB1) {
  NEED_GPU();
  run_decode_case({1, 32, 8, 128, gqa_mode::per_group, 20000, 16, 1.0 / 32, 128, 128, true, 4004});
}

TEST(CudaDecode, LlamaShapeB1TensorCores) {
  NEED_GPU();
  run_decode_case({1, 32, 8, 128, gqa_mode::per_group, 20000, 16, 1.0 / 32, 128, 128, true, 4005,
                   attend_impl::tensor_cores});
}

TEST(CudaDecode, PerHeadB8TensorCores) {  // many lists and splits: the workspace plan must match the run
  NEED_GPU();
  run_decode_case({8, 32, 8, 128, gqa_mode::per_head, 30000, 16, 1.0 / 32, 128, 128, true, 4006,
                   attend_impl::tensor_cores});
}

// The case scripts/gpu-check runs under compute-sanitizer: every kernel, small sizes.
TEST(CudaSmall, DecodeBothModes) {
  NEED_GPU();
  run_decode_case({2, 4, 2, 64, gqa_mode::per_head, 700, 16, 1.0 / 8, 16, 16, true, 5001});
  run_decode_case({2, 8, 2, 128, gqa_mode::per_group, 900, 4, 1.0 / 8, 16, 16, true, 5002});
  run_decode_case({2, 8, 2, 128, gqa_mode::per_group, 900, 4, 1.0 / 8, 16, 16, true, 5003, attend_impl::tensor_cores});
  run_decode_case({2, 4, 2, 64, gqa_mode::per_head, 700, 16, 1.0 / 8, 16, 16, true, 5004, attend_impl::tensor_cores});
}

// ---------------------------------------------------------------- 512K tokens
void run_long(gqa_mode mode, int64_t n, uint64_t seed) {
  HASHATTN_SEED(seed);
  std::printf("[long] %s n=%lld seed=%llu\n", mode == gqa_mode::per_group ? "per_group" : "per_head", (long long)n,
              (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  const int B = 1, n_head = 8, n_kv = 2, d = 128;
  const host_kv h = make_host_kv(rng, dtype::bf16, B, n, n_kv, d);
  dev_paged dk;
  make_dev_paged(rng, h, 256, false, dk);
  const int n_lists = mode == gqa_mode::per_group ? n_kv : n_head;
  const int qpl = mode == gqa_mode::per_group ? n_head / n_kv : 1;
  const int64_t row = (n + 3) / 4 * 4;
  std::vector<uint32_t> codes((size_t)n_lists * row), qc(n_head);
  for (auto& x : codes) x = (uint32_t)rng();
  for (auto& x : qc) x = (uint32_t)rng();
  std::vector<float> q((size_t)n_head * d);
  test::fill(rng, test::dist::normal, q.data(), (int64_t)q.size());
  dbuf<uint32_t> d_codes, d_qc;
  dbuf<float> d_q, d_out(q.size());
  dbuf<int32_t> d_len;
  d_codes.upload(codes);
  d_qc.upload(qc);
  d_q.upload(q);
  d_len.upload(std::vector<int32_t>{(int32_t)n});
  budget_params bp;
  bp.density = 1.0 / 32;
  const int64_t stride = budget_max_tokens(bp.density, bp.count, bp.sinks, bp.window, n);
  dbuf<int32_t> d_idx((size_t)n_lists * stride), d_cnt(n_lists);
  select_params sp;
  sp.batch = B;
  sp.n_head = n_head;
  sp.n_head_kv = n_kv;
  sp.mode = mode;
  sp.bits = 32;
  sp.qcodes = d_qc.p;
  sp.codes.codes = d_codes.p;
  sp.codes.n_enc = n_lists;
  sp.codes.stride_seq = (int64_t)n_lists * row;
  sp.codes.stride_enc = row;
  sp.seq_len = d_len.p;
  sp.max_ctx = n;
  sp.budget = bp;
  sp.idx = d_idx.p;
  sp.idx_count = d_cnt.p;
  sp.idx_stride = stride;
  attend_params ap;
  ap.batch = B;
  ap.n_head = n_head;
  ap.q = d_q.p;
  ap.kv = dk.view;
  ap.seq_len = d_len.p;
  ap.max_ctx = n;
  ap.idx = d_idx.p;
  ap.idx_count = d_cnt.p;
  ap.idx_stride = stride;
  ap.per_group = mode == gqa_mode::per_group;
  ap.out = d_out.p;
  dbuf<char> ws_s(select_workspace_size(sp)), ws_a(std::max<size_t>(1, attend_workspace_size(ap)));
  workspace_clear(ws_s.p, ws_s.n, nullptr);
  workspace_clear(ws_a.p, ws_a.n, nullptr);
  d_out.poison(0xff);
  select_run(sp, ws_s.p, nullptr);
  attend_run(ap, ws_a.p, nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  const auto idx = d_idx.download();
  const auto cnt = d_cnt.download();
  for (int r = 0; r < n_lists; ++r) {
    const auto want = ref_select(bp, n, qc.data() + r * qpl, qpl, codes.data() + (size_t)r * row, 32);
    ASSERT_EQ(cnt[r], (int32_t)want.size()) << "list " << r;
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(idx[(size_t)r * stride + i], want[i]) << "list " << r << " at " << i;
  }
  attn_decode_params rp;
  rp.q = q.data();
  rp.kv = h.view(0, n);
  rp.n_head = n_head;
  rp.scale = 1.f / std::sqrt((float)d);
  rp.idx = idx.data();
  rp.idx_count = cnt.data();
  rp.idx_stride = stride;
  rp.per_group = mode == gqa_mode::per_group;
  std::vector<double> ref((size_t)n_head * d);
  ref::attn_decode_ref(rp, ref.data());
  double qmax = 0;
  for (float x : q) qmax = std::max(qmax, (double)std::fabs(x));
  const auto out = d_out.download();
  EXPECT_TRUE(test::all_close(out.data(), ref.data(), (int64_t)ref.size(),
                              test::attn_atol(d, stride, qmax * d * 3.0 * rp.scale, 1.0), 1e-5));
}

TEST(CudaLong, Select512KPerGroup) {
  NEED_GPU();
  run_long(gqa_mode::per_group, 524288, 6001);
}
TEST(CudaLong, Select512KPerHeadOdd) {
  NEED_GPU();
  run_long(gqa_mode::per_head, 524288 - 5, 6002);
}

}  // namespace
}  // namespace hashattn::cudatest
