// Tests hash_encode_cpu (Highway mat-vec for one row, OpenBLAS sgemm for batches) against the float64
// reference MLP: codes must match bit for bit except bits whose reference pre-sign output lies within
// the fp32 error bound of zero (those may flip; we require them to be rare so the test can fail).
// Covers 1/2/3-layer MLPs, hidden 8/128, 16/32/64 bits, head dims 64/128, GQA input sharing
// (in_group), strided inputs and outputs, 1 to 1100 rows, several input distributions, every target.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/test-util.h"
#include "cpu/cpu-kernels.h"
#include "hashattn/error.h"
#include "hashattn/hash.h"
#include "ref/reference.h"

namespace hashattn {
namespace {
using test::dist;

struct enc_case {
  int n_enc = 4, in_group = 1, in_dim = 64, hidden = 128, bits = 32, layers = 3;
  int64_t rows = 1;
  dist xd = dist::normal;
  int threads = 1;
};

void run_encode(const enc_case& c, uint64_t seed) {
  HASHATTN_SEED(seed);
  SCOPED_TRACE(::testing::Message() << "enc " << c.n_enc << " in_group " << c.in_group << " in " << c.in_dim
                                    << " hidden " << c.hidden << " bits " << c.bits << " layers " << c.layers
                                    << " rows " << c.rows << " x " << test::dist_name(c.xd));
  std::mt19937_64 rng(seed);
  const int n_in_heads = c.n_enc / c.in_group;
  hash_weights w = hash_weights_alloc(1, c.n_enc, n_in_heads, c.in_dim, c.bits, c.layers, c.hidden, false);
  hash_weights_init_random(w, seed + 1, 0.1f);
  // Inputs [rows, n_in_heads, in_dim] with padding between heads and rows.
  const int64_t sh = c.in_dim + 3, sr = n_in_heads * sh + 1;
  std::vector<float> x((size_t)std::max<int64_t>(c.rows, 1) * sr, NAN);
  for (int64_t r = 0; r < c.rows; r++)
    for (int h = 0; h < n_in_heads; h++) test::fill(rng, c.xd, x.data() + r * sr + h * sh, c.in_dim);
  hash_encode_params p;
  p.mlp = w.key(0);
  p.x = x.data();
  p.n_rows = c.rows;
  p.x_stride_row = sr;
  p.x_stride_head = sh;
  p.in_group = c.in_group;
  p.code_stride_row = 1;
  p.code_stride_enc = c.rows + 2;  // encoder-major, like the code store
  p.n_threads = c.threads;
  std::vector<double> outs;
  const std::vector<uint64_t> want = ref::hash_encode_ref(p, &outs);
  test::for_each_simd_target([&](const char*) {
    std::vector<uint64_t> codes((size_t)c.n_enc * (c.rows + 2) + 1, 0xa5a5a5a5a5a5a5a5ull);
    p.codes = codes.data();
    hash_encode_cpu(p);
    int64_t ambiguous = 0, bad = 0;
    for (int64_t r = 0; r < c.rows; r++)
      for (int e = 0; e < c.n_enc; e++) {
        const uint64_t got = code_get(codes.data(), c.bits, r + e * p.code_stride_enc);
        const uint64_t ref = want[(size_t)r * c.n_enc + e];
        const double* o = outs.data() + ((size_t)r * c.n_enc + e) * c.bits;
        double mag = 0;
        for (int j = 0; j < c.bits; j++) mag = std::max(mag, std::fabs(o[j]));
        const double tol = test::atol_fp32(mag, (int64_t)c.in_dim * c.layers * 16);
        for (int j = 0; j < c.bits; j++) {
          const bool differ = ((got ^ ref) >> j) & 1;
          if (std::fabs(o[j]) <= tol) {
            ambiguous++;
          } else if (differ && bad++ < 5) {
            ADD_FAILURE() << "row " << r << " encoder " << e << " bit " << j << ": ref output " << o[j]
                          << " (tol " << tol << ")";
          }
        }
      }
    EXPECT_EQ(bad, 0);
    // Near-zero outputs must stay rare, except for degenerate inputs (all-equal rows).
    if (c.xd != dist::all_equal && c.xd != dist::ties) {
      EXPECT_LE(ambiguous, std::max<int64_t>(2, c.rows * c.n_enc * c.bits / 100));
    }
    // Nothing written outside the codes.
    EXPECT_EQ(code_get(codes.data(), c.bits, c.rows), code_get(codes.data(), c.bits, c.rows + 1));
  });
}

TEST(HashEncode, Grid) {
  uint64_t seed = 10000;
  int k = 0;
  for (int layers : {1, 2, 3})
    for (int bits : {16, 32, 64})
      for (int64_t rows : {1, 2, 7, 600}) {
        enc_case c;
        c.layers = layers;
        c.bits = bits;
        c.rows = rows;
        c.in_dim = k % 2 ? 128 : 64;
        c.hidden = k % 3 == 0 ? 8 : 128;
        c.in_group = k % 4 == 1 ? 3 : 1;
        c.n_enc = c.in_group * (1 + k % 3);
        c.xd = test::all_dists[k % 5];
        c.threads = 1 + k % 2;
        run_encode(c, seed++);
        k++;
      }
}

TEST(HashEncode, LargeBatchAndMagnitudes) {
  enc_case c;
  c.n_enc = 8;
  c.in_group = 4;
  c.in_dim = 128;
  c.rows = 1100;  // crosses the 512-row GEMM block twice
  c.threads = 2;
  run_encode(c, 11000);
  c.xd = dist::large;
  c.rows = 1;
  run_encode(c, 11001);
}

TEST(HashEncode, StoreRoundTrip) {
  // Encode appended keys straight into a code store and read them back through its view.
  std::mt19937_64 rng(12000);
  HASHATTN_SEED(12000);
  hash_weights w = hash_weights_alloc(2, 6, 2, 16, 32, 2, 32, false);
  hash_weights_init_random(w, 12001, 0.05f);
  hash_code_store st;
  st.reset(2, 6, 32, 50);
  std::vector<float> k = test::random_vec(rng, dist::normal, 50 * 2 * 16);
  int64_t pos = 0;
  for (int64_t n_new : {20, 1, 29}) {
    hash_encode_params p;
    p.mlp = w.key(1);
    p.x = k.data() + pos * 32;
    p.n_rows = n_new;
    p.x_stride_row = 32;
    p.x_stride_head = 16;
    p.in_group = 3;
    p.codes = st.row(1, pos);
    p.code_stride_row = 1;
    p.code_stride_enc = st.stride_enc();
    hash_encode_cpu(p);
    st.commit(1, pos, n_new);
    pos += n_new;
  }
  EXPECT_THROW(st.commit(1, 10, 1), error);   // not at the end
  EXPECT_THROW(st.commit(1, 50, 1), error);   // past max_ctx
  const code_view v = st.view(1);
  ASSERT_EQ(v.n_tok, 50);
  EXPECT_EQ(st.view(0).n_tok, 0);
  hash_encode_params p;
  p.mlp = w.key(1);
  p.x = k.data();
  p.n_rows = 50;
  p.x_stride_row = 32;
  p.x_stride_head = 16;
  p.in_group = 3;
  p.code_stride_enc = 1;
  std::vector<double> outs;
  const auto want = ref::hash_encode_ref(p, &outs);
  int64_t bad = 0;
  for (int64_t t = 0; t < 50; t++)
    for (int e = 0; e < 6; e++) {
      const uint64_t got = code_get(v.codes, 32, t * v.stride_tok + e * v.stride_enc);
      const uint64_t diff = got ^ want[t * 6 + e];
      for (int j = 0; j < 32; j++)
        if (((diff >> j) & 1) && std::fabs(outs[(t * 6 + e) * 32 + j]) > 1e-5) bad++;
    }
  EXPECT_EQ(bad, 0);
  st.truncate(10);
  EXPECT_EQ(st.view(1).n_tok, 10);
  EXPECT_NO_THROW(st.commit(1, 10, 5));
}

TEST(HashEncode, BadInputThrows) {
  hash_weights w = hash_weights_alloc(1, 4, 2, 8, 32, 2, 16, false);
  std::vector<float> x(64, 1.f);
  std::vector<uint32_t> codes(64);
  hash_encode_params p;
  p.mlp = w.query(0);
  p.x = x.data();
  p.n_rows = 2;
  p.x_stride_row = 32;
  p.x_stride_head = 8;
  p.codes = codes.data();
  p.code_stride_row = 4;
  p.code_stride_enc = 1;
  EXPECT_NO_THROW(hash_encode_cpu(p));
  auto b = p;
  b.in_group = 3;
  EXPECT_THROW(hash_encode_cpu(b), error);
  b = p;
  b.x = nullptr;
  EXPECT_THROW(hash_encode_cpu(b), error);
  b = p;
  b.mlp.w[1] = nullptr;
  EXPECT_THROW(hash_encode_cpu(b), error);
  b = p;
  b.mlp.bits = 8;
  EXPECT_THROW(hash_encode_cpu(b), error);
  b = p;
  b.x_stride_row = 4;
  EXPECT_THROW(hash_encode_cpu(b), error);
  EXPECT_THROW(hash_weights_alloc(1, 4, 3, 8, 32, 2, 16, false), error);
  EXPECT_THROW(hash_weights_alloc(1, 4, 2, 8, 32, 4, 16, false), error);
  EXPECT_THROW(hash_weights_alloc(1, 4, 2, 8, 12, 2, 16, false), error);
}

}  // namespace
}  // namespace hashattn
