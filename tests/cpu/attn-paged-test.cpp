// Decode attention over a PAGED kv_view (core.h): the rows of a random cache scattered over a pool of
// pages in random order (page sizes 1, 4, 16; unused pages in between). The CPU kernel on the paged
// view is checked against the float64 reference on the contiguous original (the reference restates
// the page addressing on its own), dense and over index lists; a page id out of range is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "common/test-util.h"
#include "cpu/cpu-kernels.h"
#include "hashattn/error.h"
#include "ref/reference.h"

namespace hashattn {
namespace {

struct paged_copy {
  std::vector<uint8_t> k, v;
  std::vector<int32_t> table;
  kv_view view;
};

// Copies a contiguous [t][h][d] cache into pages of `ps` tokens at shuffled ids of a pool twice as large.
paged_copy scatter(std::mt19937_64& rng, const test::test_kv& src, int ps) {
  const kv_view& c = src.view;
  const size_t es = dtype_size(c.type), row = (size_t)c.n_head_kv * c.head_dim;
  const int64_t pages = (c.n_tok + ps - 1) / ps, pool = 2 * pages + 1;
  std::vector<int32_t> ids((size_t)pool);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  paged_copy p;
  p.table.assign(ids.begin(), ids.begin() + pages);
  p.k.assign((size_t)pool * ps * row * es, 0xFF);  // NaN-ish filler where no page is
  p.v.assign((size_t)pool * ps * row * es, 0xFF);
  for (int64_t t = 0; t < c.n_tok; t++) {
    const size_t dst = ((size_t)p.table[t / ps] * ps + t % ps) * row * es, from = (size_t)t * c.stride_tok * es;
    std::memcpy(p.k.data() + dst, src.kbuf.data() + from, row * es);
    std::memcpy(p.v.data() + dst, src.vbuf.data() + from, row * es);
  }
  p.view = c;
  p.view.k = p.k.data();
  p.view.v = p.v.data();
  p.view.stride_tok = (int64_t)row;
  p.view.stride_head = c.head_dim;
  p.view.page_table = p.table.data();
  p.view.page_size = ps;
  p.view.stride_page = (int64_t)ps * row;
  p.view.n_pages = pool;
  return p;
}

TEST(AttnPaged, MatchesReferenceOnContiguousCopy) {
  const uint64_t seed = 4242;
  HASHATTN_SEED(seed);
  std::mt19937_64 rng(seed);
  struct shape { int n_head, n_kv, d; int64_t n; };
  for (const shape c : {shape{4, 4, 64, 37}, shape{8, 2, 128, 300}, shape{24, 3, 64, 1000}})
    for (int ps : {1, 4, 16})
      for (dtype ty : {dtype::f32, dtype::f16}) {
        SCOPED_TRACE(::testing::Message() << c.n_head << "/" << c.n_kv << " d " << c.d << " n " << c.n << " page " << ps
                                          << " " << dtype_name(ty));
        test::test_kv kv = test::make_test_kv(rng, ty, c.n, c.n_kv, c.d, 0, test::dist::normal, test::dist::normal);
        paged_copy pg = scatter(rng, kv, ps);
        std::vector<float> q = test::random_vec(rng, test::dist::normal, (int64_t)c.n_head * c.d);
        for (int mode = 0; mode < 2; mode++) {  // dense, then lists per query head
          attn_decode_params p;
          p.q = q.data();
          p.kv = kv.view;
          p.n_head = c.n_head;
          p.scale = 1.0f / std::sqrt((float)c.d);
          std::vector<int32_t> idx, cnt;
          if (mode == 1) {
            const int64_t k = std::max<int64_t>(1, c.n / 5);
            idx.assign((size_t)c.n_head * k, 0);
            cnt.assign(c.n_head, (int32_t)k);
            for (int h = 0; h < c.n_head; h++) {
              auto s = test::random_subset(rng, c.n, k);
              std::copy(s.begin(), s.end(), idx.begin() + (size_t)h * k);
            }
            p.idx = idx.data();
            p.idx_count = cnt.data();
            p.idx_stride = k;
          }
          std::vector<double> ref((size_t)c.n_head * c.d), ref_paged(ref.size());
          ref::attn_decode_ref(p, ref.data());  // on the contiguous original
          attn_decode_params pp = p;
          pp.kv = pg.view;
          ref::attn_decode_ref(pp, ref_paged.data());
          ASSERT_EQ(ref, ref_paged) << "the reference's own page addressing";
          // Tolerance from the problem's conditioning (tests/common), as for contiguous caches.
          const test::attn_tolerance tol = test::attn_tolerance_for(q.data(), c.n_head, p.scale, kv);
          test::for_each_simd_target([&](const char*) {
            std::vector<float> out((size_t)c.n_head * c.d, NAN);
            pp.out = out.data();
            attn_decode_cpu(pp);
            EXPECT_TRUE(test::all_close(out.data(), ref.data(), (int64_t)out.size(), tol.atol, 0, tol.nmse));
          });
        }
      }
}

TEST(AttnPaged, BadPageTableIsRefused) {
  std::mt19937_64 rng(1);
  test::test_kv kv = test::make_test_kv(rng, dtype::f16, 40, 2, 64, 0, test::dist::normal, test::dist::normal);
  paged_copy pg = scatter(rng, kv, 8);
  std::vector<float> q(4 * 64, 0.5f), out(4 * 64);
  attn_decode_params p;
  p.q = q.data();
  p.kv = pg.view;
  p.n_head = 4;
  p.scale = 0.125f;
  p.out = out.data();
  attn_decode_cpu(p);  // fine as it is
  pg.table[2] = (int32_t)pg.view.n_pages;  // out of the pool
  EXPECT_THROW(attn_decode_cpu(p), error);
  pg.table[2] = -1;
  EXPECT_THROW(attn_decode_cpu(p), error);
  pg.table[2] = 0;
  p.kv.page_size = 6;  // not a power of two
  EXPECT_THROW(attn_decode_cpu(p), error);
}

}  // namespace
}  // namespace hashattn
