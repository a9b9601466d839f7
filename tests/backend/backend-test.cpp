// One case list, every backend of this build (backend_names(): "cuda" where a device can be used), against
// the float64 reference (src/ref): attend (dense and over lists, contiguous and paged KV), encode,
// select_codes and score_codes (per query head and per KV group, per-head and per-group codes),
// select_scores. An op a backend lacks must refuse with its reason, and so must a case outside a
// backend's documented limits (backend.h: CUDA takes 32-bit codes and codes of the lists' own mode).
// Then the registry and the table refuse bad use: an unknown backend, "cuda" without a device, an op a
// backend lacks.
// Seeds are fixed and printed (HASHATTN_SEED).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "common/test-util.h"
#include "hashattn/backend.h"
#include "hashattn/error.h"
#include "hashattn/hash.h"
#include "ref/reference.h"

namespace hashattn {
namespace {

class Backends : public ::testing::TestWithParam<std::string> {
 protected:
  const backend& be() const { return backend_get(GetParam()); }
  // True (and the refusal checked) when the backend lacks `op`.
  bool lacks(backend_op op) const {
    if (be().has(op)) return false;
    try {
      be().require(op);
      ADD_FAILURE() << "a missing op passed require()";
    } catch (const error& e) {
      EXPECT_NE(std::string(e.what()).find(be().missing), std::string::npos) << e.what();
    }
    return true;
  }
  // Runs f; where `outside` (a case beyond the backend's documented limits) it must refuse naming the
  // backend instead, and false is returned.
  template <class F>
  bool run_within_limits(bool outside, F f) const {
    if (!outside) {
      f();
      return true;
    }
    try {
      f();
      ADD_FAILURE() << "backend " << be().name << " ran a case outside its documented limits";
    } catch (const error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("backend '") + be().name + "'"), std::string::npos) << e.what();
    }
    return false;
  }
  bool is_cuda() const { return GetParam() == "cuda"; }
};

// attend: shapes x (dense, lists per head, lists per group) x (contiguous, paged).
TEST_P(Backends, AttendMatchesReference) {
  const uint64_t seed = 7101;
  HASHATTN_SEED(seed);
  std::mt19937_64 rng(seed);
  struct shape { int n_head, n_kv, d; int64_t n; };
  for (const shape c : {shape{4, 1, 64, 1}, shape{8, 8, 64, 200}, shape{12, 4, 128, 333}, shape{16, 2, 64, 1500}})
    for (int mode = 0; mode < 3; mode++)
      for (int paged = 0; paged < 2; paged++) {
        SCOPED_TRACE(::testing::Message() << c.n_head << "/" << c.n_kv << " d " << c.d << " n " << c.n << " mode "
                                          << mode << (paged ? " paged" : ""));
        test::test_kv kv = test::make_test_kv(rng, dtype::f16, c.n, c.n_kv, c.d, 0, test::dist::normal,
                                              test::dist::normal);
        // paged: the same rows behind a page table that maps page i to i (pages of 8 tokens)
        std::vector<int32_t> table((size_t)(c.n + 7) / 8);
        std::iota(table.begin(), table.end(), 0);
        if (paged) {
          kv.view.page_table = table.data();
          kv.view.page_size = 8;
          kv.view.stride_page = 8 * kv.view.stride_tok;
          kv.view.n_pages = (int64_t)table.size();
        }
        std::vector<float> q = test::random_vec(rng, test::dist::normal, (int64_t)c.n_head * c.d);
        attn_decode_params p;
        p.q = q.data();
        p.kv = kv.view;
        p.n_head = c.n_head;
        p.scale = 1.f / std::sqrt((float)c.d);
        std::vector<int32_t> idx, cnt;
        if (mode > 0) {
          const int lists = mode == 2 ? c.n_kv : c.n_head;
          const int64_t k = std::max<int64_t>(1, c.n / 7);
          idx.assign((size_t)lists * k, 0);
          cnt.assign(lists, (int32_t)k);
          for (int r = 0; r < lists; r++) {
            auto s = test::random_subset(rng, c.n, k);
            std::copy(s.begin(), s.end(), idx.begin() + (size_t)r * k);
          }
          p.idx = idx.data();
          p.idx_count = cnt.data();
          p.idx_stride = k;
          p.per_group = mode == 2;
        }
        std::vector<double> ref((size_t)c.n_head * c.d);
        ref::attn_decode_ref(p, ref.data());
        const test::attn_tolerance tol = test::attn_tolerance_for(q.data(), c.n_head, p.scale, kv);
        std::vector<float> out((size_t)c.n_head * c.d, NAN);
        p.out = out.data();
        be().call_attend(p);
        EXPECT_TRUE(test::all_close(out.data(), ref.data(), (int64_t)out.size(), tol.atol, 0, tol.nmse));
      }
}

// encode: every bit whose float64 output is clearly away from zero matches the reference.
TEST_P(Backends, EncodeMatchesReference) {
  const uint64_t seed = 7102;
  HASHATTN_SEED(seed);
  std::mt19937_64 rng(seed);
  for (int bits : {16, 32, 64})
    for (int rows : {1, 37}) {
      hash_weights w = hash_weights_alloc(1, 8, 2, 64, bits, 3, 64, false);
      hash_weights_init_random(w, rng(), 0.1f);
      std::vector<float> x = test::random_vec(rng, test::dist::normal, (int64_t)rows * 2 * 64);
      hash_encode_params p;
      p.mlp = w.key(0);
      p.x = x.data();
      p.n_rows = rows;
      p.x_stride_row = 2 * 64;
      p.x_stride_head = 64;
      p.in_group = 4;
      std::vector<uint64_t> words((size_t)rows * 8, 0);
      std::vector<uint8_t> codes((size_t)rows * 8 * bits / 8);
      p.codes = codes.data();
      p.code_stride_row = 8;
      p.code_stride_enc = 1;
      if (!run_within_limits(is_cuda() && bits != 32, [&] { be().call_encode(p); })) continue;
      std::vector<double> outs;
      const std::vector<uint64_t> want = ref::hash_encode_ref(p, &outs);
      for (int64_t i = 0; i < (int64_t)rows * 8; i++) {
        uint64_t sure = 0;
        for (int j = 0; j < bits; j++)
          if (std::fabs(outs[(size_t)i * bits + j]) > 1e-4) sure |= 1ull << j;
        EXPECT_EQ(code_get(codes.data(), bits, i) & sure, want[i] & sure) << "bits " << bits << " code " << i;
      }
    }
}

// select_codes and score_codes: exact lists and scores under the most-recent tie rule.
TEST_P(Backends, SelectCodesMatchesReference) {
  const uint64_t seed = 7103;
  HASHATTN_SEED(seed);
  std::mt19937_64 rng(seed);
  for (gqa_mode mode : {gqa_mode::per_head, gqa_mode::per_group})
    for (int per_group_codes = 0; per_group_codes < 2; per_group_codes++)
      for (int64_t n : {1, 9, 300, 2000})
        for (double density : {1.0 / 4, 1.0 / 32}) {
          const int H = 8, Hk = 2, E = per_group_codes ? Hk : H;
          std::vector<uint32_t> keys((size_t)E * n), qc(H);
          for (auto& k : keys) k = (uint32_t)(rng() & rng());  // biased bits: many score ties
          for (auto& v : qc) v = (uint32_t)rng();
          hash_select_params p;
          p.keys.codes = keys.data();
          p.keys.bits = 32;
          p.keys.n_enc = E;
          p.keys.n_tok = n;
          p.keys.stride_tok = 1;
          p.keys.stride_enc = n;
          p.q_codes = qc.data();
          p.n_head = H;
          p.n_head_kv = Hk;
          p.mode = mode;
          p.budget.density = density;
          p.budget.sinks = 4;
          p.budget.window = 8;
          const int lists = hash_select_n_lists(p);
          const int64_t stride = std::max<int64_t>(1, budget_tokens(p.budget, n));
          std::vector<int32_t> idx((size_t)lists * stride), cnt(lists);
          p.idx = idx.data();
          p.count = cnt.data();
          p.idx_stride = stride;
          const bool mixed = per_group_codes != (mode == gqa_mode::per_group);
          if (run_within_limits(is_cuda() && mixed, [&] { be().call_select_codes(p); })) {
            const auto want = ref::hash_select_ref(p);
            for (int r = 0; r < lists; r++) {
              std::vector<int32_t> got(idx.begin() + (size_t)r * stride, idx.begin() + (size_t)r * stride + cnt[r]);
              EXPECT_EQ(got, want[r]) << "n " << n << " density " << density << " list " << r << " codes per "
                                      << (per_group_codes ? "group" : "head");
            }
          }
          if (lacks(backend_op::score_codes)) continue;
          std::vector<uint16_t> sc((size_t)lists * n);
          be().call_score_codes(p, sc.data());
          const std::vector<int> want_sc = ref::hash_scores_ref(p);
          for (size_t i = 0; i < sc.size(); i++) ASSERT_EQ((int)sc[i], want_sc[i]) << "score " << i;
        }
}

// select_scores: float scores with ties, NaN lowest.
TEST_P(Backends, SelectScoresMatchesReference) {
  if (lacks(backend_op::select_scores)) return;  // the refusal, with its reason, is what is checked
  const uint64_t seed = 7104;
  HASHATTN_SEED(seed);
  std::mt19937_64 rng(seed);
  for (int64_t n : {1, 40, 999})
    for (int64_t count : {0, 64}) {
      const int lists = 3;
      std::vector<float> s((size_t)lists * n);
      for (auto& v : s) v = rng() % 50 == 0 ? NAN : (float)(rng() % 9);
      score_select_params p;
      p.score = s.data();
      p.n_tok = n;
      p.n_lists = lists;
      p.score_stride = n;
      p.budget.density = 1.0 / 8;
      p.budget.count = count;
      p.budget.sinks = 2;
      p.budget.window = 6;
      const int64_t stride = std::max<int64_t>(1, budget_tokens(p.budget, n));
      std::vector<int32_t> idx((size_t)lists * stride), cnt(lists);
      p.idx = idx.data();
      p.count = cnt.data();
      p.idx_stride = stride;
      p.n_threads = 2;
      be().call_select_scores(p);
      for (int r = 0; r < lists; r++) {
        std::vector<double> d(n);
        for (int64_t t = 0; t < n; t++) {
          const float v = s[(size_t)r * n + t];
          d[t] = std::isnan(v) ? -INFINITY : v;
        }
        std::vector<int32_t> got(idx.begin() + (size_t)r * stride, idx.begin() + (size_t)r * stride + cnt[r]);
        EXPECT_EQ(got, ref::select_rule_ref(d.data(), n, p.budget)) << "n " << n << " count " << count << " list " << r;
      }
    }
}

INSTANTIATE_TEST_SUITE_P(EveryBackend, Backends, ::testing::ValuesIn(backend_names()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(BackendRegistry, NamesAndRefusals) {
  const auto names = backend_names();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names[0], "cpu");
  EXPECT_EQ(std::string(backend_default().name), "cpu");
  EXPECT_STREQ(backend_get("cpu").name, "cpu");
  for (int op = 0; op < backend_op_count; op++) EXPECT_TRUE(backend_get("cpu").has((backend_op)op));
  EXPECT_NE(backend_get("cpu").target(), nullptr);
  try {
    backend_get("tpu");
    FAIL() << "an unknown backend was accepted";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("one of: cpu"), std::string::npos) << e.what();
  }
  if (std::find(names.begin(), names.end(), "cuda") == names.end()) {
    try {
      backend_get("cuda");
      FAIL() << "cuda was given without a usable device (or in a build without it)";
    } catch (const error& e) {
      EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
    }
  } else {
    const backend& c = backend_get("cuda");
    EXPECT_TRUE(c.has(backend_op::attend) && c.has(backend_op::encode) && c.has(backend_op::select_codes));
    EXPECT_FALSE(c.has(backend_op::score_codes) || c.has(backend_op::select_scores));
    EXPECT_NE(std::string(c.missing), "");
  }
}

TEST(BackendRegistry, MissingOpSaysWhy) {
  backend b;
  b.name = "partial";
  b.missing = "no selection kernels on this device";
  hash_select_params p;
  EXPECT_FALSE(b.has(backend_op::select_codes));
  try {
    b.call_select_codes(p);
    FAIL() << "a missing op ran";
  } catch (const error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("backend 'partial' cannot run op select_codes"), std::string::npos) << m;
    EXPECT_NE(m.find("no selection kernels on this device"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace hashattn
