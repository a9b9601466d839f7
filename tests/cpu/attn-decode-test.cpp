// Tests attn_decode_cpu against the float64 reference (src/ref): dense, per-head and per-group index
// lists; f32 / f16 / bf16 KV; three memory layouts; GQA 1/3/4/8/16; head dims 64, 128 and odd sizes;
// n from 1 to 100,000; five input distributions; every SIMD target; 1 and 2 threads; bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/test-util.h"
#include "cpu/cpu-kernels.h"
#include "hashattn/error.h"
#include "ref/reference.h"

namespace hashattn {
namespace {
using test::dist;

struct attn_case {
  int n_head = 4, n_kv = 1, d = 64;
  int64_t n = 10;
  dtype type = dtype::f32;
  int layout = 0;
  int mode = 0;  // 0 dense, 1 per query head lists, 2 per KV group lists
  dist qd = dist::normal, kd = dist::normal, vd = dist::normal;
  int threads = 1;
};

std::string describe(const attn_case& c) {
  std::ostringstream os;
  os << "heads " << c.n_head << "/" << c.n_kv << " d " << c.d << " n " << c.n << " " << dtype_name(c.type)
     << " layout " << c.layout << " mode " << c.mode << " q/k/v " << test::dist_name(c.qd) << "/"
     << test::dist_name(c.kd) << "/" << test::dist_name(c.vd) << " threads " << c.threads;
  return os.str();
}

void run_case(const attn_case& c, uint64_t seed) {
  HASHATTN_SEED(seed);
  SCOPED_TRACE(describe(c));
  std::mt19937_64 rng(seed);
  test::test_kv kv = test::make_test_kv(rng, c.type, c.n, c.n_kv, c.d, c.layout, c.kd, c.vd);
  std::vector<float> q = test::random_vec(rng, c.qd, (int64_t)c.n_head * c.d);
  std::vector<int32_t> idx, cnt;
  attn_decode_params p;
  p.q = q.data();
  p.kv = kv.view;
  p.n_head = c.n_head;
  p.scale = 1.f / std::sqrt((float)c.d);
  p.n_threads = c.threads;
  if (c.mode != 0) {
    const int n_lists = c.mode == 1 ? c.n_head : c.n_kv;
    const int64_t stride = c.n + 3;
    idx.assign((size_t)n_lists * stride, -7);
    cnt.assign(n_lists, 0);
    for (int r = 0; r < n_lists; r++) {
      int64_t k;
      switch (r % 4) {
        case 0: k = c.n; break;
        case 1: k = std::uniform_int_distribution<int64_t>(0, c.n)(rng); break;
        case 2: k = std::min<int64_t>(c.n, 1); break;
        default: k = std::max<int64_t>(0, c.n / 16); break;
      }
      std::vector<int32_t> s = test::random_subset(rng, c.n, k);
      std::copy(s.begin(), s.end(), idx.begin() + r * stride);
      cnt[r] = (int32_t)s.size();
    }
    p.idx = idx.data();
    p.idx_count = cnt.data();
    p.idx_stride = stride;
    p.per_group = c.mode == 2;
  }
  std::vector<double> ref((size_t)c.n_head * c.d);
  ref::attn_decode_ref(p, ref.data());

  // Tolerance from the problem's conditioning (see tests/common).
  const test::attn_tolerance tol = test::attn_tolerance_for(q.data(), c.n_head, p.scale, kv);
  const double atol = tol.atol, nmse = tol.nmse;

  test::for_each_simd_target([&](const char*) {
    std::vector<float> out((size_t)c.n_head * c.d, NAN);
    p.out = out.data();
    attn_decode_cpu(p);
    EXPECT_TRUE(test::all_close(out.data(), ref.data(), (int64_t)out.size(), atol, 0, nmse));
  });
}

TEST(AttnDecode, SmallGrid) {
  const int gs[] = {1, 3, 4, 8};
  const int ds[] = {64, 128};
  const dtype ts[] = {dtype::f32, dtype::f16, dtype::bf16};
  const int64_t ns[] = {1, 7, 33, 300};
  uint64_t seed = 1000;
  int k = 0;
  for (int G : gs)
    for (int d : ds)
      for (dtype t : ts)
        for (int mode = 0; mode < 3; mode++)
          for (int64_t n : ns) {
            attn_case c;
            c.n_kv = 1 + (k % 2);
            c.n_head = c.n_kv * G;
            c.d = d;
            c.n = n;
            c.type = t;
            c.mode = mode;
            c.layout = k % 3;
            c.qd = test::all_dists[k % 5];
            c.kd = test::all_dists[(k / 5) % 5];
            c.vd = test::all_dists[(k / 3) % 5];
            c.threads = 1 + (k % 2);
            run_case(c, seed++);
            k++;
          }
}

TEST(AttnDecode, OddHeadDims) {
  uint64_t seed = 2000;
  for (int d : {1, 3, 17, 40, 72, 96, 130})
    for (int mode = 0; mode < 3; mode++) {
      attn_case c;
      c.n_kv = 2;
      c.n_head = 6;
      c.d = d;
      c.n = 45;
      c.type = mode == 1 ? dtype::f16 : dtype::f32;
      c.mode = mode;
      c.layout = 2;
      c.threads = 2;
      run_case(c, seed++);
    }
}

TEST(AttnDecode, LargeGroupsAndSplits) {
  uint64_t seed = 3000;
  // G = 16 (two sub-jobs per KV head), and contexts long enough to split across threads.
  for (int mode = 0; mode < 3; mode++) {
    attn_case c;
    c.n_kv = 1;
    c.n_head = 16;
    c.d = 64;
    c.n = 3000;
    c.type = dtype::f16;
    c.mode = mode;
    c.threads = 2;
    run_case(c, seed++);
  }
  for (dist dd : test::all_dists) {
    attn_case c;
    c.n_kv = 2;
    c.n_head = 8;
    c.d = 128;
    c.n = 5000;
    c.type = dtype::f16;
    c.kd = dd;
    c.qd = dd;
    c.vd = dist::normal;
    c.threads = 2;
    run_case(c, seed++);
  }
}

TEST(AttnDecode, LongContexts) {
  // A few large cases (n up to 100,000); the reference is O(n d) per head.
  attn_case c;
  c.n_kv = 3;
  c.n_head = 9;
  c.d = 64;
  c.n = 100000;
  c.type = dtype::f16;
  c.threads = 2;
  run_case(c, 4000);
  c.mode = 2;
  run_case(c, 4001);
  c.n_kv = 2;
  c.n_head = 8;
  c.d = 128;
  c.n = 30000;
  c.mode = 1;
  c.threads = 1;
  run_case(c, 4002);
}

TEST(AttnDecode, EmptyListsGiveZeros) {
  std::mt19937_64 rng(5000);
  HASHATTN_SEED(5000);
  test::test_kv kv = test::make_test_kv(rng, dtype::f32, 10, 1, 8, 0, dist::normal, dist::normal);
  std::vector<float> q = test::random_vec(rng, dist::normal, 2 * 8), out(16, NAN);
  std::vector<int32_t> idx(20, 0), cnt = {0, 3};
  idx[10] = 1, idx[11] = 4, idx[12] = 9;
  attn_decode_params p;
  p.q = q.data();
  p.kv = kv.view;
  p.n_head = 2;
  p.scale = 0.3f;
  p.idx = idx.data();
  p.idx_count = cnt.data();
  p.idx_stride = 10;
  p.out = out.data();
  attn_decode_cpu(p);
  for (int j = 0; j < 8; j++) EXPECT_EQ(out[j], 0.f);
  std::vector<double> ref(16);
  ref::attn_decode_ref(p, ref.data());
  EXPECT_TRUE(test::all_close(out.data(), ref.data(), 16, 1e-6, 1e-6));
}

TEST(AttnDecode, BadInputThrows) {
  std::mt19937_64 rng(6000);
  test::test_kv kv = test::make_test_kv(rng, dtype::f16, 10, 2, 8, 0, dist::normal, dist::normal);
  std::vector<float> q(4 * 8, 0.5f), out(4 * 8);
  std::vector<int32_t> idx(4 * 10, 0), cnt(4, 1);
  auto base = [&] {
    attn_decode_params p;
    p.q = q.data();
    p.kv = kv.view;
    p.n_head = 4;
    p.scale = 0.3f;
    p.out = out.data();
    return p;
  };
  EXPECT_NO_THROW(attn_decode_cpu(base()));
  auto expect_error = [&](attn_decode_params p, const char* what) {
    SCOPED_TRACE(what);
    try {
      attn_decode_cpu(p);
      ADD_FAILURE() << "no error for " << what;
    } catch (const error& e) {
      EXPECT_NE(std::string(e.what()).find("expected"), std::string::npos) << e.what();
    }
  };
  auto p = base();
  p.n_head = 3;
  expect_error(p, "n_head not a multiple");
  p = base();
  p.q = nullptr;
  expect_error(p, "null q");
  p = base();
  p.kv.k = nullptr;
  expect_error(p, "null k");
  p = base();
  p.scale = 0;
  expect_error(p, "zero scale");
  p = base();
  p.kv.head_dim = 0;
  expect_error(p, "head_dim 0");
  p = base();
  p.idx = idx.data();
  expect_error(p, "idx without counts");
  p = base();
  p.idx = idx.data();
  p.idx_count = cnt.data();
  p.idx_stride = 10;
  idx[10] = 10;  // list 1 entry 0 out of range
  expect_error(p, "index out of range");
  idx[10] = -1;
  expect_error(p, "negative index");
  idx[10] = 0;
  cnt[2] = 3;
  idx[20] = 5, idx[21] = 5, idx[22] = 6;
  expect_error(p, "duplicate index");
  idx[21] = 4;
  expect_error(p, "descending index");
  cnt[2] = 11;
  expect_error(p, "count above stride");
  cnt[2] = 1;
  EXPECT_NO_THROW(attn_decode_cpu(p));
  p.kv.type = (dtype)7;
  expect_error(p, "bad dtype");
}

TEST(Dtype, SizesAndNames) {
  EXPECT_EQ(dtype_size(dtype::f32), 4u);
  EXPECT_EQ(dtype_size(dtype::f16), 2u);
  EXPECT_EQ(dtype_size(dtype::bf16), 2u);
  EXPECT_STREQ(dtype_name(dtype::f16), "f16");
  EXPECT_STREQ(dtype_name(dtype::bf16), "bf16");
  EXPECT_STREQ(dtype_name(dtype::f32), "f32");
  EXPECT_THROW(dtype_size((dtype)9), error);
  EXPECT_NE(std::string(cpu_simd_target()), "");
}

}  // namespace
}  // namespace hashattn
