// CUDA kernels against the float64 references, on fresh random inputs with printed seeds:
//   Select: score + histogram select vs the sort-based rule (exact lists, ties to the most recent),
//           per_head / per_group, GQA 1/4/8, budgets by density and count, tie-heavy codes, reuse.
//   Attend: split-KV flash decoding vs ref::attn_decode_ref over the same lists (and dense),
//           bf16/fp16, d 64/128, GQA 1/4/8, B 1/4, page sizes 1/16/contiguous, padded strides.
//   Encode: fused key encode + KV append (prefill batch and decode) and query encode vs ref MLP.
//   Validation: bad params are refused with hashattn::error.
#include "cuda/cuda-test-util.h"

namespace hashattn::cudatest {
namespace {

bool have_gpu() {
  static const bool ok = device_available();
  return ok;
}
#define NEED_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device"

// ---------------------------------------------------------------- select
struct select_case {
  int B, n_head, n_kv;
  gqa_mode mode;
  int bits;
  int64_t max_ctx;
  double density;
  int64_t count, sinks, window;
  int code_kind;  // 0 random, 1 ties (few distinct codes), 2 all equal
  uint64_t seed;
};

std::string name_of(const select_case& c) {
  return "B" + std::to_string(c.B) + "_h" + std::to_string(c.n_head) + "_kv" + std::to_string(c.n_kv) +
         (c.mode == gqa_mode::per_group ? "_group" : "_head") + "_bits" + std::to_string(c.bits) + "_n" +
         std::to_string(c.max_ctx) + "_kind" + std::to_string(c.code_kind);
}

void run_select_case(const select_case& c) {
  HASHATTN_SEED(c.seed);
  std::printf("[select] %s seed=%llu\n", name_of(c).c_str(), (unsigned long long)c.seed);
  std::mt19937_64 rng(c.seed);
  const int n_lists = c.mode == gqa_mode::per_group ? c.n_kv : c.n_head;
  const int qpl = c.mode == gqa_mode::per_group ? c.n_head / c.n_kv : 1;
  const int64_t row = (c.max_ctx + 3) / 4 * 4 + 4;
  // Lengths: the first sequence at max_ctx, the others random (some tiny, some odd).
  std::vector<int32_t> len(c.B);
  for (int b = 0; b < c.B; ++b) {
    if (b == 0) len[b] = (int32_t)c.max_ctx;
    else if (b == 1) len[b] = (int32_t)std::max<int64_t>(1, std::min<int64_t>(c.max_ctx, c.sinks + c.window / 2 + 1));
    else len[b] = (int32_t)std::uniform_int_distribution<int64_t>(1, c.max_ctx)(rng);
  }
  const uint32_t mask = c.bits == 32 ? 0xffffffffu : ((1u << c.bits) - 1);
  std::vector<uint32_t> codes((size_t)c.B * n_lists * row);
  uint32_t few[3] = {(uint32_t)rng() & mask, (uint32_t)rng() & mask, (uint32_t)rng() & mask};
  for (auto& x : codes) {
    x = c.code_kind == 0 ? (uint32_t)rng() & mask : c.code_kind == 1 ? few[rng() % 3] : few[0];
  }
  budget_params bp;
  bp.density = c.density;
  bp.count = c.count;
  bp.sinks = c.sinks;
  bp.window = c.window;
  const int64_t stride = budget_max_tokens(bp.density, bp.count, bp.sinks, bp.window, c.max_ctx) + 3;

  dbuf<uint32_t> d_codes, d_q;
  dbuf<int32_t> d_len, d_idx((size_t)c.B * n_lists * stride), d_cnt((size_t)c.B * n_lists);
  d_codes.upload(codes);
  d_len.upload(len);
  d_q.alloc((size_t)c.B * c.n_head);
  select_params p;
  p.qcodes = d_q.p;
  p.batch = c.B;
  p.n_head = c.n_head;
  p.n_head_kv = c.n_kv;
  p.mode = c.mode;
  p.bits = c.bits;
  p.codes.codes = d_codes.p;
  p.codes.n_enc = n_lists;
  p.codes.stride_seq = (int64_t)n_lists * row;
  p.codes.stride_enc = row;
  p.seq_len = d_len.p;
  p.max_ctx = c.max_ctx;
  p.budget = bp;
  p.idx = d_idx.p;
  p.idx_count = d_cnt.p;
  p.idx_stride = stride;
  dbuf<char> ws(select_workspace_size(p));
  workspace_clear(ws.p, ws.n, nullptr);
  for (int rep = 0; rep < 2; ++rep) {  // the second call checks that the workspace is reusable
    std::vector<uint32_t> q((size_t)c.B * c.n_head);
    for (auto& x : q) x = c.code_kind == 2 ? few[1] : (uint32_t)rng() & mask;
    d_q.upload(q);
    p.qcodes = d_q.p;
    d_idx.poison();
    d_cnt.poison();
    select_run(p, ws.p, nullptr);
    CUDA_OK(cudaDeviceSynchronize());
    const auto idx = d_idx.download();
    const auto cnt = d_cnt.download();
    for (int b = 0; b < c.B; ++b)
      for (int r = 0; r < n_lists; ++r) {
        const uint32_t* crow = codes.data() + ((size_t)b * n_lists + r) * row;
        const auto want = ref_select(bp, len[b], q.data() + (size_t)b * c.n_head + r * qpl, qpl, crow, c.bits);
        const int64_t li = (int64_t)b * n_lists + r;
        ASSERT_EQ(cnt[li], (int32_t)want.size()) << "seq " << b << " list " << r << " n " << len[b] << " rep " << rep;
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_EQ(idx[li * stride + i], want[i]) << "seq " << b << " list " << r << " n " << len[b] << " at " << i
                                                   << " rep " << rep;
      }
  }
}

class SelectTest : public testing::TestWithParam<select_case> {};
TEST_P(SelectTest, MatchesReference) {
  NEED_GPU();
  run_select_case(GetParam());
}

std::vector<select_case> select_cases() {
  std::vector<select_case> v;
  uint64_t seed = 1000;
  for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group})
    for (int g : {1, 4, 8})
      for (int B : {1, 4}) {
        v.push_back({B, 2 * g, 2, m, 32, 20000 + 13 * g, 1.0 / 16, 0, 128, 128, 0, seed++});
        v.push_back({B, 2 * g, 2, m, 8, 9000 + 3 * g, 1.0 / 8, 0, 64, 32, 1, seed++});  // heavy ties
      }
  // Long context, fixed count, odd sinks/window, all-equal scores, tiny contexts.
  v.push_back({1, 8, 2, gqa_mode::per_group, 32, 524288, 1.0 / 32, 0, 128, 128, 0, seed++});
  v.push_back({1, 8, 2, gqa_mode::per_head, 32, 524288, 1.0 / 32, 0, 128, 128, 1, seed++});
  v.push_back({4, 4, 4, gqa_mode::per_head, 32, 70001, 0, 3001, 5, 17, 0, seed++});
  v.push_back({2, 8, 1, gqa_mode::per_group, 16, 40000, 1.0 / 32, 0, 128, 128, 2, seed++});
  v.push_back({4, 4, 2, gqa_mode::per_group, 32, 300, 1.0 / 8, 0, 128, 128, 0, seed++});
  v.push_back({3, 2, 2, gqa_mode::per_head, 32, 5000, 1.0 / 16, 0, 0, 0, 1, seed++});
  return v;
}
INSTANTIATE_TEST_SUITE_P(Cuda, SelectTest, testing::ValuesIn(select_cases()),
                         [](const testing::TestParamInfo<select_case>& i) { return name_of(i.param); });

// ---------------------------------------------------------------- attend
struct attend_case {
  dtype type;
  int d, n_head, n_kv, B, page_size;
  int list_kind;  // 0 dense, 1 per_head lists, 2 per_group lists
  int64_t cap;
  int n_splits;   // 0 auto
  bool pad;
  float kscale;
  uint64_t seed;
  attend_impl impl = attend_impl::cuda_cores;
};

std::string name_of(const attend_case& c) {
  return std::string(type_str(c.type)) + "_d" + std::to_string(c.d) + "_h" + std::to_string(c.n_head) + "_kv" +
         std::to_string(c.n_kv) + "_B" + std::to_string(c.B) + "_p" + std::to_string(c.page_size) +
         (c.list_kind == 0 ? "_dense" : c.list_kind == 1 ? "_head" : "_group") + "_n" + std::to_string(c.cap) +
         "_s" + std::to_string(c.n_splits) + (c.pad ? "_pad" : "") +
         (c.impl == attend_impl::tensor_cores ? "_tc" : "");
}

void run_attend_case(const attend_case& c) {
  HASHATTN_SEED(c.seed);
  std::printf("[attend] %s seed=%llu\n", name_of(c).c_str(), (unsigned long long)c.seed);
  std::mt19937_64 rng(c.seed);
  const host_kv h = make_host_kv(rng, c.type, c.B, c.cap, c.n_kv, c.d, c.kscale);
  dev_paged dk;
  make_dev_paged(rng, h, c.page_size, c.pad, dk);
  std::vector<int32_t> len(c.B);
  for (int b = 0; b < c.B; ++b)
    len[b] = b == 0 ? (int32_t)c.cap : (int32_t)std::uniform_int_distribution<int64_t>(1, c.cap)(rng);
  std::vector<float> q((size_t)c.B * c.n_head * c.d);
  test::fill(rng, test::dist::normal, q.data(), (int64_t)q.size());
  const bool sparse = c.list_kind != 0;
  const int n_lists = c.list_kind == 2 ? c.n_kv : c.n_head;
  const int64_t stride = c.cap;
  std::vector<int32_t> idx((size_t)c.B * n_lists * stride, 0), cnt((size_t)c.B * n_lists, 0);
  if (sparse)
    for (int b = 0; b < c.B; ++b)
      for (int r = 0; r < n_lists; ++r) {
        const int64_t n = len[b];
        // Sizes from empty to everything; most around n/8.
        int64_t k = std::uniform_int_distribution<int64_t>(1, std::max<int64_t>(1, n / 4))(rng);
        if (r == 1) k = n;
        if (r == 2 && b == 1) k = 0;
        const auto sub = test::random_subset(rng, n, k);
        std::copy(sub.begin(), sub.end(), idx.begin() + ((int64_t)b * n_lists + r) * stride);
        cnt[(size_t)b * n_lists + r] = (int32_t)k;
      }
  dbuf<float> d_q, d_out(q.size());
  dbuf<int32_t> d_len, d_idx, d_cnt;
  d_q.upload(q);
  d_len.upload(len);
  d_idx.upload(idx);
  d_cnt.upload(cnt);
  attend_params p;
  p.batch = c.B;
  p.n_head = c.n_head;
  p.q = d_q.p;
  p.kv = dk.view;
  p.seq_len = d_len.p;
  p.max_ctx = c.cap;
  p.scale = 1.f / std::sqrt((float)c.d);
  if (sparse) {
    p.idx = d_idx.p;
    p.idx_count = d_cnt.p;
    p.idx_stride = stride;
    p.per_group = c.list_kind == 2;
  }
  p.out = d_out.p;
  p.n_splits = c.n_splits;
  p.impl = c.impl;
  dbuf<char> ws(std::max<size_t>(1, attend_workspace_size(p)));
  workspace_clear(ws.p, ws.n, nullptr);
  for (int rep = 0; rep < 2; ++rep) {
    d_out.poison(0xff);  // NaN pattern
    attend_run(p, ws.p, nullptr);
    CUDA_OK(cudaDeviceSynchronize());
  }
  const auto out = d_out.download();
  for (int b = 0; b < c.B; ++b) {
    attn_decode_params rp;
    rp.q = q.data() + (size_t)b * c.n_head * c.d;
    rp.kv = h.view(b, len[b]);
    rp.n_head = c.n_head;
    rp.scale = p.scale;
    if (sparse) {
      rp.idx = idx.data() + (size_t)b * n_lists * stride;
      rp.idx_count = cnt.data() + (size_t)b * n_lists;
      rp.idx_stride = stride;
      rp.per_group = c.list_kind == 2;
    }
    std::vector<double> ref((size_t)c.n_head * c.d);
    ref::attn_decode_ref(rp, ref.data());
    // Tolerance: logits are bounded by |q|_1 * max|k| * scale.
    double l1 = 0;
    for (int i = 0; i < c.n_head * c.d; ++i) l1 = std::max(l1, (double)std::fabs(rp.q[i]));
    const double logit_l1 = l1 * c.d * 3.0 * c.kscale * p.scale;
    const double atol = test::attn_atol(c.d, len[b], logit_l1, 1.0);
    EXPECT_TRUE(test::all_close(out.data() + (size_t)b * c.n_head * c.d, ref.data(), (int64_t)ref.size(), atol, 1e-5))
        << "sequence " << b << " n " << len[b];
  }
}

class AttendTest : public testing::TestWithParam<attend_case> {};
TEST_P(AttendTest, MatchesReference) {
  NEED_GPU();
  run_attend_case(GetParam());
}

std::vector<attend_case> attend_cases() {
  std::vector<attend_case> v;
  uint64_t seed = 2000;
  for (dtype t : {dtype::bf16, dtype::f16})
    for (int d : {64, 128})
      for (int g : {1, 4, 8})
        for (int kind : {0, 1, 2}) {
          const int B = (g + d + kind) % 2 ? 4 : 1;
          const int ps = kind == 0 ? 16 : kind == 1 ? 1 : 4096;
          v.push_back({t, d, 2 * g, 2, B, ps, kind, 3001 + 7 * g, 0, g == 4, 1.f, seed++});
        }
  v.push_back({dtype::bf16, 128, 32, 8, 1, 16, 2, 20000, 1, false, 1.f, seed++});    // one split
  v.push_back({dtype::bf16, 128, 32, 8, 4, 16, 2, 20000, 128, false, 1.f, seed++});  // many splits
  v.push_back({dtype::bf16, 128, 32, 8, 1, 64, 0, 65536, 0, false, 4.f, seed++});   // peaked softmax
  v.push_back({dtype::f16, 64, 4, 4, 4, 2, 1, 100, 0, true, 1.f, seed++});           // tiny
  // Group sizes that are not powers of two (SmolLM2 9/3, Qwen2.5 12/2 and 28/4), dense and per group.
  for (int kind : {0, 2}) {
    v.push_back({dtype::bf16, 64, 9, 3, 4, 16, kind, 2500, 0, false, 1.f, seed++});
    v.push_back({dtype::bf16, 128, 12, 2, 1, 16, kind, 3001, 0, false, 1.f, seed++});
    v.push_back({dtype::bf16, 128, 28, 4, 4, 16, kind, 1500, 0, false, 1.f, seed++});
  }
  // Every case again on the tensor-core kernel (fresh seeds).
  const size_t n = v.size();
  for (size_t i = 0; i < n; ++i) {
    attend_case c = v[i];
    c.impl = attend_impl::tensor_cores;
    c.seed = seed++;
    v.push_back(c);
  }
  return v;
}
INSTANTIATE_TEST_SUITE_P(Cuda, AttendTest, testing::ValuesIn(attend_cases()),
                         [](const testing::TestParamInfo<attend_case>& i) { return name_of(i.param); });

// ---------------------------------------------------------------- encode
struct encode_case {
  gqa_mode mode;
  int n_head, n_kv, d, n_layer, hidden, bits, B, n_new;
  dtype in_type, kv_type;
  uint64_t seed;
};

std::string name_of(const encode_case& c) {
  return std::string(c.mode == gqa_mode::per_group ? "group" : "head") + "_h" + std::to_string(c.n_head) + "_kv" +
         std::to_string(c.n_kv) + "_d" + std::to_string(c.d) + "_L" + std::to_string(c.n_layer) + "_w" +
         std::to_string(c.hidden) + "_b" + std::to_string(c.bits) + "_B" + std::to_string(c.B) + "_new" +
         std::to_string(c.n_new) + "_" + type_str(c.in_type);
}

void run_encode_case(const encode_case& c) {
  HASHATTN_SEED(c.seed);
  std::printf("[encode] %s seed=%llu\n", name_of(c).c_str(), (unsigned long long)c.seed);
  std::mt19937_64 rng(c.seed);
  const int n_code = c.mode == gqa_mode::per_group ? c.n_kv : c.n_head;
  const int G = c.n_head / c.n_kv;
  const host_mlp km = make_host_mlp(rng, n_code, c.n_layer, c.d, c.hidden, c.bits);
  const host_mlp qm = make_host_mlp(rng, c.n_head, c.n_layer, c.d, c.hidden, c.bits);
  dev_mlp dkm, dqm;
  upload_mlp(km, dkm);
  upload_mlp(qm, dqm);
  const int64_t cap = c.n_new + 37;
  // Existing KV (garbage is fine: only the appended rows are checked), empty host mirror.
  host_kv h = make_host_kv(rng, c.kv_type, c.B, cap, c.n_kv, c.d);
  dev_paged dk;
  make_dev_paged(rng, h, 16, false, dk);
  std::vector<int32_t> pos0(c.B);
  for (int b = 0; b < c.B; ++b) pos0[b] = (int32_t)std::uniform_int_distribution<int>(0, 37)(rng);
  // New keys/values as floats rounded to the input type, and queries.
  const size_t nkv = (size_t)c.B * c.n_new * c.n_kv * c.d;
  std::vector<float> kf(nkv), vf(nkv), q((size_t)c.B * c.n_head * c.d);
  test::fill(rng, test::dist::normal, kf.data(), (int64_t)nkv);
  test::fill(rng, test::dist::normal, vf.data(), (int64_t)nkv);
  test::fill(rng, test::dist::normal, q.data(), (int64_t)q.size());
  std::vector<uint16_t> kh(nkv), vh(nkv);
  for (size_t i = 0; i < nkv; ++i) {
    if (c.in_type != dtype::f32) {
      kh[i] = to_bits(c.in_type, kf[i]);
      vh[i] = to_bits(c.in_type, vf[i]);
      kf[i] = from_bits(c.in_type, kh[i]);
      vf[i] = from_bits(c.in_type, vh[i]);
    }
  }
  dbuf<float> d_kf, d_vf, d_q;
  dbuf<uint16_t> d_kh, d_vh;
  dbuf<int32_t> d_pos;
  d_q.upload(q);
  d_pos.upload(pos0);
  if (c.in_type == dtype::f32) {
    d_kf.upload(kf);
    d_vf.upload(vf);
  } else {
    d_kh.upload(kh);
    d_vh.upload(vh);
  }
  const int64_t row = (cap + 3) / 4 * 4;
  dbuf<uint32_t> d_codes((size_t)c.B * n_code * row), d_qc((size_t)c.B * c.n_head);
  d_codes.poison(0x5a);
  d_qc.poison(0x5a);
  encode_params p;
  p.batch = c.B;
  p.n_head = c.n_head;
  p.n_head_kv = c.n_kv;
  p.head_dim = c.d;
  p.mode = c.mode;
  p.n_new = c.n_new;
  p.k_new = c.in_type == dtype::f32 ? (const void*)d_kf.p : (const void*)d_kh.p;
  p.v_new = c.in_type == dtype::f32 ? (const void*)d_vf.p : (const void*)d_vh.p;
  p.kv_in_type = c.in_type;
  p.pos0 = d_pos.p;
  p.kv = dk.view;
  p.key_mlp = dkm.view;
  p.codes.codes = d_codes.p;
  p.codes.n_enc = n_code;
  p.codes.stride_seq = (int64_t)n_code * row;
  p.codes.stride_enc = row;
  p.q = d_q.p;
  p.query_mlp = dqm.view;
  p.qcodes = d_qc.p;
  encode_run(p, nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  const auto codes = d_codes.download();
  const auto qc = d_qc.download();
  const double margin = 1e-3;
  int64_t checked_bits = 0, uncertain_bits = 0;
  std::vector<double> x(c.d);
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.n_new; ++i)
      for (int e = 0; e < n_code; ++e) {
        const int g = c.mode == gqa_mode::per_group ? e : e / G;
        for (int j = 0; j < c.d; ++j) x[j] = kf[(((size_t)b * c.n_new + i) * c.n_kv + g) * c.d + j];
        uint32_t unc;
        const uint32_t want = code_of(ref_mlp(km, e, x.data()), margin, &unc);
        const uint32_t got = codes[((size_t)b * n_code + e) * row + pos0[b] + i];
        ASSERT_EQ(got & ~unc, want & ~unc) << "key code seq " << b << " token " << i << " head " << e;
        checked_bits += c.bits - __builtin_popcount(unc);
        uncertain_bits += __builtin_popcount(unc);
      }
  for (int b = 0; b < c.B; ++b)
    for (int h2 = 0; h2 < c.n_head; ++h2) {
      for (int j = 0; j < c.d; ++j) x[j] = q[((size_t)b * c.n_head + h2) * c.d + j];
      uint32_t unc;
      const uint32_t want = code_of(ref_mlp(qm, h2, x.data()), margin, &unc);
      ASSERT_EQ(qc[(size_t)b * c.n_head + h2] & ~unc, want & ~unc) << "query code seq " << b << " head " << h2;
    }
  EXPECT_LT(uncertain_bits * 100, checked_bits + uncertain_bits) << "too many bits too close to zero to check";
  // The appended K/V rows, read back through the page table.
  const auto pk = dk.k.download(), pv = dk.v.download();
  const auto pt = dk.pt.download();
  const kv_view& w = dk.view;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.n_new; ++i)
      for (int g = 0; g < c.n_kv; ++g)
        for (int j = 0; j < c.d; ++j) {
          const int64_t t = pos0[b] + i;
          const int64_t off = (int64_t)pt[b * w.page_table_stride + t / w.page_size] * w.stride_page +
                              (t % w.page_size) * w.stride_tok + g * w.stride_head + j;
          const size_t src = (((size_t)b * c.n_new + i) * c.n_kv + g) * c.d + j;
          ASSERT_EQ(pk[off], to_bits(c.kv_type, kf[src])) << "K seq " << b << " token " << t;
          ASSERT_EQ(pv[off], to_bits(c.kv_type, vf[src])) << "V seq " << b << " token " << t;
        }
}

class EncodeTest : public testing::TestWithParam<encode_case> {};
TEST_P(EncodeTest, MatchesReference) {
  NEED_GPU();
  run_encode_case(GetParam());
}

std::vector<encode_case> encode_cases() {
  uint64_t seed = 3000;
  std::vector<encode_case> v;
  v.push_back({gqa_mode::per_head, 8, 2, 128, 3, 128, 32, 1, 1, dtype::bf16, dtype::bf16, seed++});
  v.push_back({gqa_mode::per_group, 8, 2, 128, 3, 128, 32, 4, 1, dtype::f32, dtype::bf16, seed++});
  v.push_back({gqa_mode::per_head, 4, 4, 64, 2, 64, 16, 4, 1, dtype::f16, dtype::f16, seed++});
  v.push_back({gqa_mode::per_group, 32, 4, 64, 1, 0, 32, 1, 1, dtype::f32, dtype::f16, seed++});
  v.push_back({gqa_mode::per_head, 8, 1, 128, 3, 128, 32, 1, 333, dtype::bf16, dtype::bf16, seed++});  // prefill
  v.push_back({gqa_mode::per_group, 16, 2, 128, 3, 96, 20, 3, 50, dtype::f32, dtype::bf16, seed++});
  return v;
}
INSTANTIATE_TEST_SUITE_P(Cuda, EncodeTest, testing::ValuesIn(encode_cases()),
                         [](const testing::TestParamInfo<encode_case>& i) { return name_of(i.param); });

// ---------------------------------------------------------------- validation
// Every check is tested field by field on the CPU (tests/cuda/cuda-validate-test.cpp); here, that the
// public entry points reach them, and the encode check sees this device's shared memory.
TEST(CudaValidate, EntryPointsUseTheHostChecks) {
  NEED_GPU();
  dbuf<uint16_t> kv(1024);
  dbuf<int32_t> pt(16), len(4);
  dbuf<float> q(1024), out(1024);
  attend_params p;
  p.batch = 1;
  p.n_head = 4;
  p.q = q.p;
  p.out = out.p;
  p.seq_len = len.p;
  p.max_ctx = 16;
  p.kv.k = kv.p;
  p.kv.v = kv.p;
  p.kv.type = dtype::bf16;
  p.kv.n_head_kv = 2;
  p.kv.head_dim = 64;
  p.kv.page_size = 4;
  p.kv.stride_page = 4 * 128;
  p.kv.stride_tok = 128;
  p.kv.stride_head = 64;
  p.kv.page_table = pt.p;
  p.kv.page_table_stride = 4;
  EXPECT_NO_THROW(attend_validate(p));
  EXPECT_GE(attend_n_splits(p), 1);
  attend_params b = p;
  b.kv.page_size = 3;
  try {
    attend_validate(b);
    ADD_FAILURE() << "page size 3 accepted";
  } catch (const hashattn::error& e) {
    EXPECT_NE(std::string(e.what()).find("page_size"), std::string::npos) << e.what();
  }
  EXPECT_THROW(attend_workspace_size(b), hashattn::error);
  select_params s;
  dbuf<uint32_t> codes(64), qc(8);
  dbuf<int32_t> idx(64), cnt(4);
  s.batch = 1;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.bits = 32;
  s.qcodes = qc.p;
  s.codes.codes = codes.p;
  s.codes.n_enc = 4;
  s.codes.stride_enc = 16;
  s.codes.stride_seq = 64;
  s.seq_len = len.p;
  s.max_ctx = 16;
  s.budget.density = 0.5;
  s.budget.sinks = 2;
  s.budget.window = 2;
  s.idx = idx.p;
  s.idx_count = cnt.p;
  s.idx_stride = 8;
  EXPECT_NO_THROW(select_validate(s));
  EXPECT_GT(select_workspace_size(s), 0u);
  s.idx_stride = 7;
  EXPECT_THROW(select_validate(s), hashattn::error);
  EXPECT_THROW(select_workspace_size(s), hashattn::error);
  // Encoder weights of hidden width 1024 do not fit any device's shared memory.
  dbuf<float> w(16);
  encode_params e;
  e.batch = 1;
  e.n_head = 4;
  e.n_head_kv = 2;
  e.head_dim = 64;
  e.q = q.p;
  e.qcodes = qc.p;
  e.query_mlp.n_enc = 4;
  e.query_mlp.in_dim = 64;
  e.query_mlp.hidden = 64;
  for (int l = 0; l < 3; ++l) e.query_mlp.w[l] = e.query_mlp.b[l] = w.p;
  EXPECT_NO_THROW(encode_validate(e));
  e.query_mlp.hidden = 1024;
  EXPECT_THROW(encode_validate(e), hashattn::error);
}

}  // namespace
}  // namespace hashattn::cudatest
