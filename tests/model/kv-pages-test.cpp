// KV pages of several sequences (src/model/kv-pages.h): reference counts, forks that share the full
// prompt pages and copy the partial one, views whose rows are the rows written, and misuse refused
// with an error (a page freed twice, a full pool, a sequence used after release, shrinking pages in use).
#include <gtest/gtest.h>

#include "hashattn/error.h"
#include "model/kv-pages.h"

namespace hashattn {
namespace {

void write(kv_seq& s, int layers, int kvd, int64_t pos, uint16_t tag) {
  for (int l = 0; l < layers; l++)
    for (int j = 0; j < kvd; j++) {
      s.k_row(l, pos)[j] = (uint16_t)(tag + l * 7 + j);
      s.v_row(l, pos)[j] = (uint16_t)(tag + l * 7 + j + 1);
    }
}
uint16_t k_at(const kv_view& kv, int64_t t, int j) { return ((const uint16_t*)kv.k)[kv_offset(kv, t, 0) + j]; }

TEST(KvPages, ForkSharesFullPagesAndCopiesThePartialOne) {
  const int L = 2, H = 1, d = 4, ps = 4;
  kv_pages pool(L, H, d, ps, 8);
  kv_seq a(pool);
  a.reserve(10);  // 3 pages
  EXPECT_EQ(pool.n_free(), 5);
  for (int64_t t = 0; t < 10; t++) write(a, L, H * d, t, (uint16_t)(100 * t));
  a.set_length(10);
  kv_seq b = a.fork();  // pages 0, 1 shared; the third (2 rows) copied
  EXPECT_EQ(pool.n_free(), 4);
  EXPECT_EQ(b.table()[0], a.table()[0]);
  EXPECT_EQ(b.table()[1], a.table()[1]);
  EXPECT_NE(b.table()[2], a.table()[2]);
  EXPECT_EQ(pool.refs(a.table()[0]), 2);
  EXPECT_EQ(pool.refs(a.table()[2]), 1);
  b.reserve(13);
  write(b, L, H * d, 10, 9000);  // b's own row; a's page 2 is untouched
  write(a, L, H * d, 10, 5000);
  b.set_length(11);
  a.set_length(11);
  for (int l = 0; l < L; l++) {
    const kv_view va = a.view(l, 11), vb = b.view(l, 11);
    kv_view_validate(va, "a");
    kv_view_validate(vb, "b");
    for (int64_t t = 0; t < 10; t++) EXPECT_EQ(k_at(va, t, 1), k_at(vb, t, 1)) << "t " << t;
    EXPECT_EQ(k_at(va, 10, 0), 5000 + l * 7);
    EXPECT_EQ(k_at(vb, 10, 0), 9000 + l * 7);
    EXPECT_EQ(k_at(vb, 9, 3), 900 + l * 7 + 3);
  }
  b.release();
  EXPECT_EQ(pool.refs(a.table()[0]), 1);
  EXPECT_THROW(b.release(), error);  // a sequence freed twice
  EXPECT_THROW(b.fork(), error);
  a.release();
  EXPECT_EQ(pool.n_free(), 8);
}

TEST(KvPages, MisuseIsRefused) {
  kv_pages pool(1, 2, 8, 2, 2);
  EXPECT_THROW(kv_pages(1, 2, 8, 3, 2), error);  // page size not a power of two
  kv_seq s(pool);
  s.reserve(4);
  EXPECT_THROW(s.reserve(5), error);  // the pool is full
  EXPECT_THROW(s.set_length(5), error);
  EXPECT_THROW(s.k_row(0, 4), error);
  EXPECT_THROW(s.view(1, 2), error);  // no such layer
  EXPECT_THROW(pool.unref(7), error);  // no such page
  EXPECT_THROW(pool.shrink(1), error);  // page 1 is in use
  const int32_t p = s.table()[1];
  pool.unref(p);                        // freed behind the sequence's back ...
  EXPECT_THROW(pool.unref(p), error);   // ... then freed twice
  EXPECT_THROW(pool.ref(p), error);
  pool.grow(3);
  EXPECT_EQ(pool.n_pages(), 5);
  EXPECT_EQ(pool.n_free(), 4);
  pool.shrink(2);
  EXPECT_EQ(pool.n_pages(), 2);
  EXPECT_EQ(pool.n_free(), 1);
}

}  // namespace
}  // namespace hashattn
