// Tests hash scoring (XOR + popcount) and selection (histogram + compaction) against the float64 /
// plain-loop reference: exact scores, and exact lists under the deterministic most-recent tie rule
// (also checked with the tie-aware consistency helper). Covers 16/32/64-bit codes, per-head and
// per-group code layouts, both GQA modes, G = 1/3/4/8, budgets by density and count, sinks/window
// edge cases (n < S + W, budget > n, n = 1), code distributions with heavy ties, every SIMD target.
#include <gtest/gtest.h>

#include <random>

#include "common/test-util.h"
#include "cpu/cpu-kernels.h"
#include "hashattn/error.h"
#include "hashattn/hash.h"
#include "ref/reference.h"

namespace hashattn {
namespace {

enum class code_dist { uniform, ties, all_equal, biased };
const char* code_dist_name(code_dist d) {
  switch (d) {
    case code_dist::uniform: return "uniform";
    case code_dist::ties: return "ties";
    case code_dist::all_equal: return "all_equal";
    case code_dist::biased: return "biased";
  }
  return "?";
}

uint64_t random_code(std::mt19937_64& rng, code_dist d, int bits, const uint64_t* pool) {
  const uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
  switch (d) {
    case code_dist::uniform: return rng() & mask;
    case code_dist::ties: return pool[rng() % 3] & mask;
    case code_dist::all_equal: return pool[0] & mask;
    case code_dist::biased: return (rng() & rng() & rng()) & mask;  // bits set with p = 1/8
  }
  return 0;
}

struct select_case {
  int n_head = 4, n_kv = 1, bits = 32;
  int64_t n = 100;
  bool codes_per_head = true;
  gqa_mode mode = gqa_mode::per_head;
  budget_params budget;
  code_dist cd = code_dist::uniform;
  bool row_major = false;  // codes [n_tok, n_enc] (scalar path) instead of [n_enc, n_tok]
  int threads = 1;
};

void run_select(const select_case& c, uint64_t seed) {
  HASHATTN_SEED(seed);
  SCOPED_TRACE(::testing::Message() << "heads " << c.n_head << "/" << c.n_kv << " bits " << c.bits << " n " << c.n
                                    << (c.codes_per_head ? " codes/head" : " codes/group")
                                    << (c.mode == gqa_mode::per_head ? " select/head" : " select/group")
                                    << " density " << c.budget.density << " count " << c.budget.count << " sinks "
                                    << c.budget.sinks << " window " << c.budget.window << " codes "
                                    << code_dist_name(c.cd) << (c.row_major ? " row-major" : ""));
  std::mt19937_64 rng(seed);
  const uint64_t pool[3] = {rng(), rng(), rng()};
  const int n_enc = c.codes_per_head ? c.n_head : c.n_kv;
  const int64_t pad = 5;
  std::vector<uint64_t> store((size_t)n_enc * (c.n + pad) + 1);  // big enough for any word size
  code_view kv;
  kv.codes = store.data();
  kv.bits = c.bits;
  kv.n_enc = n_enc;
  kv.n_tok = c.n;
  kv.stride_tok = c.row_major ? n_enc : 1;
  kv.stride_enc = c.row_major ? 1 : c.n + pad;
  for (int e = 0; e < n_enc; e++)
    for (int64_t t = 0; t < c.n; t++)
      code_set(store.data(), c.bits, t * kv.stride_tok + e * kv.stride_enc, random_code(rng, c.cd, c.bits, pool));
  std::vector<uint64_t> qbuf(c.n_head);
  for (int h = 0; h < c.n_head; h++)
    code_set(qbuf.data(), c.bits, h, random_code(rng, c.cd == code_dist::all_equal ? code_dist::uniform : c.cd, c.bits, pool));

  hash_select_params p;
  p.keys = kv;
  p.q_codes = qbuf.data();
  p.n_head = c.n_head;
  p.n_head_kv = c.n_kv;
  p.mode = c.mode;
  p.budget = c.budget;
  p.n_threads = c.threads;
  const int n_lists = hash_select_n_lists(p);
  const int64_t total = budget_tokens(c.budget, c.n);
  p.idx_stride = total + 3;
  std::vector<int32_t> idx((size_t)n_lists * p.idx_stride, -1), cnt(n_lists, -1);
  p.idx = idx.data();
  p.count = cnt.data();

  const std::vector<int> ref_scores = ref::hash_scores_ref(p);
  const auto ref_lists = ref::hash_select_ref(p);
  test::for_each_simd_target([&](const char*) {
    std::vector<uint16_t> sc((size_t)n_lists * c.n, 0xffff);
    hash_score_cpu(p, sc.data());
    for (size_t i = 0; i < sc.size(); i++)
      if (sc[i] != ref_scores[i]) {
        ADD_FAILURE() << "score of list " << i / c.n << " token " << i % c.n << ": got " << sc[i] << ", want "
                      << ref_scores[i];
        break;
      }
    std::fill(idx.begin(), idx.end(), -1);
    hash_select_cpu(p);
    std::vector<double> s(c.n);
    for (int r = 0; r < n_lists; r++) {
      SCOPED_TRACE(::testing::Message() << "list " << r);
      ASSERT_EQ(cnt[r], (int32_t)total);
      std::vector<int32_t> got(idx.begin() + r * p.idx_stride, idx.begin() + r * p.idx_stride + cnt[r]);
      EXPECT_TRUE(test::same_selection(got, ref_lists[r]));
      for (int64_t t = 0; t < c.n; t++) s[t] = ref_scores[(size_t)r * c.n + t];
      EXPECT_TRUE(test::selection_consistent(got, s.data(), c.n, c.budget));
      EXPECT_EQ(idx[r * p.idx_stride + total], -1) << "wrote past the list";
    }
  });
}

TEST(HashSelect, Grid) {
  uint64_t seed = 7000;
  int k = 0;
  const int gs[] = {1, 3, 4, 8};
  const int bitss[] = {16, 32, 64};
  const int64_t ns[] = {1, 2, 9, 100, 257, 1000};
  const code_dist cds[] = {code_dist::uniform, code_dist::ties, code_dist::all_equal, code_dist::biased};
  for (int G : gs)
    for (int bits : bitss)
      for (int64_t n : ns)
        for (int variant = 0; variant < 4; variant++) {
          select_case c;
          c.n_kv = 1 + k % 2;
          c.n_head = c.n_kv * G;
          c.bits = bits;
          c.n = n;
          c.codes_per_head = variant % 2 == 0;
          c.mode = variant / 2 == 0 ? gqa_mode::per_head : gqa_mode::per_group;
          c.cd = cds[k % 4];
          switch (k % 5) {
            case 0: c.budget = {1.0 / 8, 0, 4, 4}; break;
            case 1: c.budget = {1.0 / 32, 0, 0, 0}; break;
            case 2: c.budget = {0, 37, 3, 8}; break;
            case 3: c.budget = {1.0 / 16, 0, 128, 128}; break;  // n < S + W for most n here
            default: c.budget = {0.5, 0, 1, 0}; break;
          }
          c.row_major = k % 7 == 3;
          c.threads = 1 + k % 2;
          run_select(c, seed++);
          k++;
        }
}

TEST(HashSelect, EdgeBudgets) {
  uint64_t seed = 8000;
  const budget_params budgets[] = {
      {1.0, 0, 0, 0},        // everything
      {0, 100000, 2, 2},     // count above n
      {0, 1, 0, 0},          // a single token
      {0, 5, 5, 0},          // sinks only
      {0, 5, 0, 5},          // window only
      {1.0 / 32, 0, 0, 1},   // window of one (the current token)
      {0, 10, 4, 4},         // k_mid = 2
  };
  for (const budget_params& b : budgets)
    for (int64_t n : {1, 3, 8, 9, 10, 11, 64, 300}) {
      select_case c;
      c.n_head = 6;
      c.n_kv = 2;
      c.n = n;
      c.budget = b;
      c.cd = code_dist::ties;
      c.mode = n % 2 ? gqa_mode::per_group : gqa_mode::per_head;
      run_select(c, seed++);
    }
}

TEST(HashSelect, LargeContexts) {
  select_case c;
  c.n_head = 32;
  c.n_kv = 8;
  c.n = 65536;
  c.budget = {1.0 / 32, 0, 128, 128};
  c.threads = 2;
  run_select(c, 9000);
  c.mode = gqa_mode::per_group;
  c.codes_per_head = false;
  c.cd = code_dist::biased;
  run_select(c, 9001);
  c.n_head = 9;
  c.n_kv = 3;
  c.n = 100000;
  c.bits = 64;
  c.budget = {1.0 / 16, 0, 16, 64};
  c.cd = code_dist::ties;
  run_select(c, 9002);
}

TEST(HashSelect, BadInputThrows) {
  std::vector<uint32_t> codes(100, 0), q(4, 0);
  std::vector<int32_t> idx(400), cnt(4);
  hash_select_params p;
  p.keys.codes = codes.data();
  p.keys.bits = 32;
  p.keys.n_enc = 4;
  p.keys.n_tok = 20;
  p.keys.stride_tok = 1;
  p.keys.stride_enc = 25;
  p.q_codes = q.data();
  p.n_head = 4;
  p.n_head_kv = 2;
  p.budget = {0.5, 0, 2, 2};
  p.idx = idx.data();
  p.count = cnt.data();
  p.idx_stride = 100;
  EXPECT_NO_THROW(hash_select_cpu(p));
  auto bad = [&](hash_select_params b, const char* what) {
    EXPECT_THROW(hash_select_cpu(b), error) << what;
  };
  auto b = p;
  b.keys.bits = 24;
  bad(b, "bits");
  b = p;
  b.keys.n_enc = 3;
  bad(b, "n_enc");
  b = p;
  b.idx_stride = 5;
  bad(b, "idx_stride below budget");
  b = p;
  b.budget.density = 0;
  bad(b, "zero density");
  b = p;
  b.q_codes = nullptr;
  bad(b, "null q");
  b = p;
  b.n_head = 5;
  bad(b, "GQA");
}

TEST(SelectSplit, Cases) {
  const select_split a = select_split_for({1.0 / 32, 0, 128, 128}, 65536);
  EXPECT_EQ(a.total, 2048);
  EXPECT_EQ(a.lo, 128);
  EXPECT_EQ(a.hi, 65536 - 128);
  EXPECT_EQ(a.k_mid, 2048 - 256);
  const select_split b = select_split_for({1.0 / 32, 0, 128, 128}, 200);
  EXPECT_EQ(b.total, 200);
  EXPECT_EQ(b.lo, 128);
  EXPECT_EQ(b.hi, 128);
  EXPECT_EQ(b.n_window, 72);
  EXPECT_EQ(b.k_mid, 0);
  const select_split c = select_split_for({0.5, 0, 0, 0}, 1);
  EXPECT_EQ(c.total, 0);  // floor(0.5) with no sinks or window
  const select_split d = select_split_for({0.5, 0, 0, 1}, 1);
  EXPECT_EQ(d.total, 1);
  EXPECT_EQ(d.hi, 0);
}

}  // namespace
}  // namespace hashattn
