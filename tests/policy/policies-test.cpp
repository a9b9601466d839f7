// Tests every policy against a plain float64 reference of its rule (src/ref or written here):
// hash (learned encoders; codes + selection through ref::hash_encode_ref / hash_select_ref), simhash
// (shared projections: a query equal to a key finds it), oracle (exact q.k), streaming, quest (page
// bounds), double sparsity (label cache + calibration). Inputs with small integer values make fp32
// arithmetic exact, so lists are compared exactly under the most-recent tie rule; real-valued inputs
// are checked with the tie-aware consistency helper. Keys arrive in a prefill chunk and then one by one.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "common/test-util.h"
#include "core/half.h"
#include "cpu/cpu-kernels.h"
#include "hashattn/error.h"
#include "hashattn/hash.h"
#include "hashattn/policy.h"
#include "ref/reference.h"

namespace hashattn {
namespace {
using test::dist;

struct setup {
  layer_shape shape;
  int n_layer = 2;
  int64_t n = 0;
  std::vector<float> k;  // [n, n_kv, d] per layer (same keys for every layer, different q)
  test::test_kv kv;
  std::vector<float> q;  // [n_head, d]
};

// Integer-valued inputs (exact in fp16 and in fp32 sums) when `integer`, else N(0, 1).
setup make_setup(uint64_t seed, int n_head, int n_kv, int d, int64_t n, bool integer) {
  std::mt19937_64 rng(seed);
  setup s;
  s.shape = {n_head, n_kv, d};
  s.n = n;
  s.kv = test::make_test_kv(rng, dtype::f16, n, n_kv, d, 0, integer ? dist::ties : dist::normal, dist::normal,
                            integer ? 2.f : 1.f);
  s.k = test::keys_f32(s.kv);
  s.q = test::random_vec(rng, integer ? dist::ties : dist::normal, (int64_t)n_head * d, integer ? 3.f : 1.f);
  return s;
}

void feed(attention_policy& p, const setup& s, int layer) {
  const int64_t row = (int64_t)s.shape.n_head_kv * s.shape.head_dim;
  const int64_t pre = s.n * 3 / 4;
  p.on_append(layer, s.k.data(), 0, pre);
  for (int64_t t = pre; t < s.n; t++) p.on_append(layer, s.k.data() + t * row, t, 1);
}

std::vector<int32_t> list_of(const index_lists& l, int r) {
  return std::vector<int32_t>(l.idx.begin() + r * l.stride, l.idx.begin() + r * l.stride + l.count[r]);
}

// Double-precision scores for list r of a (per head / per group) rule: sum over the list's query
// heads of f(h, t).
template <class F>
std::vector<double> list_scores(const setup& s, gqa_mode m, int r, F f) {
  const int G = s.shape.n_head / s.shape.n_head_kv;
  std::vector<double> sc(s.n, 0.0);
  const int h0 = m == gqa_mode::per_group ? r * G : r, nh = m == gqa_mode::per_group ? G : 1;
  for (int64_t t = 0; t < s.n; t++)
    for (int h = h0; h < h0 + nh; h++) sc[t] += f(h, t);
  return sc;
}

double qk(const setup& s, int h, int64_t t) {
  const int G = s.shape.n_head / s.shape.n_head_kv, d = s.shape.head_dim;
  double a = 0;
  for (int j = 0; j < d; j++) a += (double)s.q[h * d + j] * s.kv.k_at(t, h / G, j);
  return a;
}

// A hash policy config over weights w initialised from seed + 1 (biases N(0, 0.1^2)).
policy_config random_hash_config(uint64_t seed, hash_weights w, gqa_mode m, budget_params b) {
  auto sw = std::make_shared<hash_weights>(std::move(w));
  hash_weights_init_random(*sw, seed + 1, 0.1f);
  policy_config c;
  c.name = "hash";
  c.gqa = m;
  c.weights = sw;
  c.budget = b;
  return c;
}

TEST(Policy, FactoryAndNames) {
  policy_config c;
  c.budget = {1.0 / 8, 0, 4, 4};
  for (const char* n : {"dense", "simhash", "oracle", "streaming", "quest"}) {
    c.name = n;
    EXPECT_EQ(make_policy(c)->name(), std::string(n));
  }
  c.name = "hash";
  EXPECT_THROW(make_policy(c), error);  // no weights
  c.name = "double_sparsity";
  auto ds = make_policy(c);
  EXPECT_THROW(ds->begin(1, {4, 2, 16}, 10), error);  // no calibrated channels
  c.name = "nope";
  EXPECT_THROW(make_policy(c), error);
}

TEST(Policy, Streaming) {
  for (int64_t n : {1, 5, 12, 14, 40}) {
    const setup s = make_setup(20000 + n, 6, 2, 8, n, false);
    policy_config c;
    c.name = "streaming";
    c.budget = {0.5, 0, 3, 4};
    auto p = make_policy(c);
    p->begin(1, s.shape, 64);
    feed(*p, s, 0);
    index_lists l;
    p->select(0, s.q.data(), s.kv.view, l);
    ASSERT_EQ(l.n_lists(), 2);
    std::vector<int32_t> want;  // sinks 3 + window 4 at every length (streaming has no budget floor)
    for (int64_t t = 0; t < n; t++)
      if (t < 3 || t >= n - 4) want.push_back((int32_t)t);
    for (int r = 0; r < 2; r++) EXPECT_TRUE(test::same_selection(list_of(l, r), want)) << "n " << n;
  }
}

TEST(Policy, OracleExactAndTieAware) {
  uint64_t seed = 21000;
  for (bool integer : {true, false})
    for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group})
      for (int G : {1, 3, 4, 8})
        for (int64_t n : {1, 17, 300}) {
          HASHATTN_SEED(seed);
          const setup s = make_setup(seed++, 2 * G, 2, 64, n, integer);
          policy_config c;
          c.name = "oracle";
          c.gqa = m;
          c.budget = {1.0 / 8, 0, 2, 3};
          auto p = make_policy(c);
          p->begin(1, s.shape, n);
          index_lists l;
          p->select(0, s.q.data(), s.kv.view, l);
          EXPECT_EQ(p->select_extra_read_bytes(), (double)n * 2 * 64 * 2);  // all of K (fp16)
          for (int r = 0; r < l.n_lists(); r++) {
            const auto sc = list_scores(s, m, r, [&](int h, int64_t t) { return qk(s, h, t); });
            if (integer) {
              EXPECT_TRUE(test::same_selection(list_of(l, r), ref::select_rule_ref(sc.data(), n, c.budget)));
            } else {
              EXPECT_TRUE(test::selection_consistent(list_of(l, r), sc.data(), n, c.budget,
                                                     test::atol_fp32(64 * 4.0 * G, 64)));
            }
          }
        }
}

// Per query head the oracle keeps the middle keys of largest q.k, i.e. of largest attention weight: no
// policy attends more of a head's attention mass at the same budget (sinks and window are common to all).
// Guards the oracle's per-head lists (each head scored with its own query over its KV head's keys, the
// list of head h used for head h) against per-group or union mix-ups. It bounds the mass, not the
// end-to-end KL of a model (docs/QUALITY.md, "Why the oracle per head can lose on KL").
TEST(Policy, OracleAttendsTheMostMassPerHead) {
  uint64_t seed = 21500;
  for (int G : {1, 3}) {
    HASHATTN_SEED(seed);
    const int64_t n = 400;
    const setup s = make_setup(seed++, 2 * G, 2, 64, n, false);
    const budget_params b{1.0 / 8, 0, 4, 4};
    // Exact attention weights per head (the cache's fp16 keys in float64).
    auto mass = [&](const index_lists& l, int h) {
      std::vector<double> lg(n);
      double mx = -1e300, z = 0, m = 0;
      for (int64_t t = 0; t < n; t++) mx = std::max(mx, lg[t] = qk(s, h, t) / 8.0);
      for (int64_t t = 0; t < n; t++) z += std::exp(lg[t] - mx);
      const int r = l.per_group ? h / G : h;
      for (int32_t t : list_of(l, r)) m += std::exp(lg[t] - mx) / z;
      return m;
    };
    auto lists = [&](policy_config c) {
      c.budget = b;
      auto p = make_policy(c);
      p->begin(1, s.shape, n);
      feed(*p, s, 0);
      index_lists l;
      p->select(0, s.q.data(), s.kv.view, l);
      return l;
    };
    policy_config oc;
    oc.name = "oracle";
    const index_lists best = lists(oc);
    std::vector<std::pair<std::string, policy_config>> others;
    for (const char* name : {"oracle", "simhash", "quest", "streaming", "double_sparsity"})
      for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group}) {
        policy_config c;
        c.name = name;
        c.gqa = m;
        c.bits = 256;
        c.seed = 5;
        c.channels = 8;
        if (c.name == "double_sparsity") c.ds_channels = double_sparsity_calibrate(s.q.data(), 1, s.k.data(), n, s.shape, 8);
        others.push_back({std::string(name) + (m == gqa_mode::per_group ? "/group" : "/head"), c});
      }
    double gap = 0;  // how much more mass the oracle keeps on average than the best other policy
    for (const auto& [name, c] : others) {
      const index_lists l = lists(c);
      for (int h = 0; h < s.shape.n_head; h++) {
        const double mo = mass(best, h), m = mass(l, h);
        EXPECT_GE(mo, m - 1e-12) << name << " head " << h;
        gap += (mo - m) / (double)(others.size() * s.shape.n_head);
      }
    }
    EXPECT_GT(gap, 0.01) << "the other policies should not all match the oracle";
  }
}

TEST(Policy, HashMatchesReference) {
  uint64_t seed = 22000;
  for (bool kpg : {false, true})
    for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group})
      for (int G : {1, 3, 4})
        for (int bits : {16, 32, 64}) {
          HASHATTN_SEED(seed);
          const int64_t n = 200 + bits;
          const setup s = make_setup(seed, 2 * G, 2, 64, n, false);
          policy_config c = random_hash_config(seed++, hash_weights_alloc(2, 2 * G, 2, 64, bits, 3, 32, kpg), m,
                                               {1.0 / 8, 0, 4, 4});
          auto w = c.weights;
          auto p = make_policy(c);
          EXPECT_EQ(p->aux_bits_per_token_head(), bits);
          EXPECT_EQ(p->aux_bits_per_token_kv_head(), kpg ? bits : bits * G);
          p->begin(2, s.shape, n + 10);
          feed(*p, s, 1);
          index_lists l;
          EXPECT_THROW(p->select(0, s.q.data(), s.kv.view, l), error);  // layer 0 has no codes
          p->select(1, s.q.data(), s.kv.view, l);
          // Reference: codes of keys and queries in float64, then the reference selection.
          hash_encode_params ek;
          ek.mlp = w->key(1);
          ek.x = s.k.data();
          ek.n_rows = n;
          ek.x_stride_row = 2 * 64;
          ek.x_stride_head = 64;
          ek.in_group = kpg ? 1 : G;
          ek.code_stride_row = 1;
          ek.code_stride_enc = 1;
          std::vector<double> ko, qo;
          const auto kc = ref::hash_encode_ref(ek, &ko);
          hash_encode_params eq = ek;
          eq.mlp = w->query(1);
          eq.x = s.q.data();
          eq.n_rows = 1;
          eq.x_stride_row = 2 * G * 64;
          eq.in_group = 1;
          const auto qc = ref::hash_encode_ref(eq, &qo);
          // Codes from the CPU encoder (tested bit-exact outside the fp32 band in hash-encode-test);
          // they must agree with the float64 codes there, and drive the reference selection.
          const int n_enc = w->n_key_enc();
          std::vector<uint64_t> kstore((size_t)n * n_enc + 1), qstore(2 * G);
          ek.codes = kstore.data();
          ek.code_stride_enc = n;
          hash_encode_cpu(ek);
          eq.codes = qstore.data();
          eq.code_stride_enc = 1;
          hash_encode_cpu(eq);
          int bad = 0;
          for (int64_t t = 0; t < n; t++)
            for (int e = 0; e < n_enc; e++)
              for (int j = 0; j < bits; j++)
                bad += (((code_get(kstore.data(), bits, t + e * n) ^ kc[t * n_enc + e]) >> j) & 1) &&
                       std::fabs(ko[(t * n_enc + e) * bits + j]) > 1e-4;
          for (int h = 0; h < 2 * G; h++)
            for (int j = 0; j < bits; j++)
              bad += (((code_get(qstore.data(), bits, h) ^ qc[h]) >> j) & 1) && std::fabs(qo[h * bits + j]) > 1e-4;
          EXPECT_EQ(bad, 0);
          hash_select_params sp;
          sp.keys = {kstore.data(), bits, n_enc, n, 1, n};
          sp.q_codes = qstore.data();
          sp.n_head = 2 * G;
          sp.n_head_kv = 2;
          sp.mode = m;
          sp.budget = c.budget;
          const auto want = ref::hash_select_ref(sp);
          const auto sc = ref::hash_scores_ref(sp);
          ASSERT_EQ(l.n_lists(), (int)want.size());
          EXPECT_EQ(l.per_group, m == gqa_mode::per_group);
          for (int r = 0; r < l.n_lists(); r++) {
            std::vector<double> d(sc.begin() + r * n, sc.begin() + (r + 1) * n);
            EXPECT_TRUE(test::same_selection(list_of(l, r), want[r]));
            EXPECT_TRUE(test::selection_consistent(list_of(l, r), d.data(), n, c.budget));
          }
          // Truncate and re-append: same result.
          p->truncate(n - 5);
          for (int64_t t = n - 5; t < n; t++) p->on_append(1, s.k.data() + t * 2 * 64, t, 1);
          index_lists l2;
          p->select(1, s.q.data(), s.kv.view, l2);
          EXPECT_EQ(l2.idx, l.idx);
          EXPECT_EQ(l2.count, l.count);
        }
}

// Re-rank: the candidates are the plain hash policy's lists at C x the middle budget (tested against the
// reference above); the reference keeps sinks, window and the k_mid candidates of highest exact q.k
// (per head, or the group's summed query), ties to the most recent. Integer inputs: exact comparison.
TEST(Policy, HashRerankKeepsBestCandidates) {
  uint64_t seed = 22500;
  for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group})
    for (int G : {1, 3})
      for (int C : {2, 4, 64})
        for (int64_t n : {40, 333}) {
          HASHATTN_SEED(seed);
          const setup s = make_setup(seed, 2 * G, 2, 64, n, true);
          policy_config c = random_hash_config(seed++, hash_weights_alloc(1, 2 * G, 2, 64, 32, 2, 16, false), m,
                                               {1.0 / 16, 0, 2, 3});
          c.rerank = C;
          const select_split sp = select_split_for(c.budget, n);
          policy_config cc = c;  // the candidates
          cc.rerank = 0;
          cc.budget = {0, sp.n_sinks + sp.n_window + std::min<int64_t>(sp.k_mid * C, sp.hi - sp.lo), 2, 3};
          auto p = make_policy(c), pc = make_policy(cc);
          for (auto* q : {p.get(), pc.get()}) {
            q->begin(1, s.shape, n);
            feed(*q, s, 0);
          }
          index_lists l, lc;
          p->select(0, s.q.data(), s.kv.view, l);
          pc->select(0, s.q.data(), s.kv.view, lc);
          ASSERT_EQ(l.n_lists(), lc.n_lists());
          for (int r = 0; r < l.n_lists(); r++) {
            auto sc = list_scores(s, m, r, [&](int h, int64_t t) { return qk(s, h, t); });
            std::vector<double> masked(n, -1e300);
            for (int32_t t : list_of(lc, r)) masked[t] = sc[t];
            EXPECT_TRUE(test::same_selection(list_of(l, r), ref::select_rule_ref(masked.data(), n, c.budget)))
                << "list " << r;
            EXPECT_EQ(l.count[r], sp.total);
            if (sp.k_mid * C >= sp.hi - sp.lo)  // every middle token is a candidate: the oracle's rule
              EXPECT_TRUE(test::same_selection(list_of(l, r), ref::select_rule_ref(sc.data(), n, c.budget)));
          }
          // Extra read: keys of candidates not kept, once per KV head over the union of its lists.
          double rows = 0;
          const int per_kv = m == gqa_mode::per_group ? 1 : G;
          for (int hk = 0; hk < 2; hk++) {
            std::set<int32_t> cu, ku;
            for (int r = hk * per_kv; r < (hk + 1) * per_kv; r++) {
              for (int32_t t : list_of(lc, r)) cu.insert(t);
              for (int32_t t : list_of(l, r)) ku.insert(t);
            }
            rows += (double)cu.size() - (double)ku.size();
          }
          const bool active = sp.k_mid > 0 && sp.k_mid < sp.hi - sp.lo;
          EXPECT_EQ(p->select_extra_read_bytes(), active ? rows * 64 * 2 : 0.0);
        }
  policy_config c;
  c.name = "hash";
  c.weights = std::make_shared<hash_weights>(hash_weights_alloc(1, 2, 2, 64, 32, 1, 0, false));
  c.rerank = 65;
  EXPECT_THROW(make_policy(c), error);
  c.rerank = -1;
  EXPECT_THROW(make_policy(c), error);
}

// SimHash tests: query head h becomes (a positive multiple of) a key of its KV head, so their codes are
// equal. Per head: key base + h; per group: all of group r copy key base + r (the group score's maximum).
int copy_target(const setup& s, gqa_mode m, int h, int base = 100) {
  const int G = s.shape.n_head / s.shape.n_head_kv;
  return base + (m == gqa_mode::per_head ? h : h / G);
}
void plant_query_copies(setup& s, gqa_mode m) {
  const int G = s.shape.n_head / s.shape.n_head_kv, d = s.shape.head_dim;
  for (int h = 0; h < s.shape.n_head; h++)
    for (int j = 0; j < d; j++) s.q[h * d + j] = 2.f * s.kv.k_at(copy_target(s, m, h), h / G, j);
}
// A SimHash policy of `bits` over all keys of s (layer 0), keeping `total` tokens (4 sinks, 4 recent).
std::unique_ptr<attention_policy> fed_simhash(const setup& s, gqa_mode m, int bits, int64_t total, uint64_t seed) {
  policy_config c;
  c.name = "simhash";
  c.gqa = m;
  c.bits = bits;
  c.seed = seed;
  c.budget = {0, total, 4, 4};
  auto p = make_policy(c);
  EXPECT_EQ(p->aux_bits_per_token_head(), bits);
  p->begin(1, s.shape, s.n);
  feed(*p, s, 0);
  return p;
}
// Every list holds `total` tokens and the key copied by each of its query heads.
void expect_lists_find_copies(const setup& s, gqa_mode m, const index_lists& l, int64_t total) {
  const int nh = m == gqa_mode::per_group ? s.shape.n_head / s.shape.n_head_kv : 1;
  for (int r = 0; r < l.n_lists(); r++) {
    const auto v = list_of(l, r);
    EXPECT_EQ((int64_t)v.size(), total);
    for (int h = r * nh; h < (r + 1) * nh; h++)
      EXPECT_TRUE(std::binary_search(v.begin(), v.end(), copy_target(s, m, h)))
          << "list " << r << " misses key " << copy_target(s, m, h);
  }
}

TEST(Policy, SimhashFindsEqualKeys) {
  for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group}) {
    const uint64_t seed = 23000 + (int)m;
    HASHATTN_SEED(seed);
    setup s = make_setup(seed, 8, 2, 64, 500, false);
    plant_query_copies(s, m);
    auto p = fed_simhash(s, m, 64, 40, 5);
    index_lists l;
    p->select(0, s.q.data(), s.kv.view, l);
    expect_lists_find_copies(s, m, l, 40);
    // Another seed gives other projections and (almost surely) other lists.
    auto p2 = fed_simhash(s, m, 64, 40, 6);
    index_lists l2;
    std::mt19937_64 rq(seed);
    s.q = test::random_vec(rq, dist::normal, 8 * 64);
    p->select(0, s.q.data(), s.kv.view, l);
    p2->select(0, s.q.data(), s.kv.view, l2);
    EXPECT_NE(l.idx, l2.idx);
  }
}

// Wide SimHash (256 bits, multi-word codes, float-score selection): a query equal to a key finds it,
// a query opposite to a key (0 matching bits) never picks it, and the chosen middle keys are closer in
// angle than the rest (the codes estimate the angle); truncate + re-append gives the same lists.
TEST(Policy, WideSimhashRanksByAngle) {
  for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group}) {
    const uint64_t seed = 23100 + (int)m;
    HASHATTN_SEED(seed);
    setup s = make_setup(seed, 8, 2, 64, 600, false);
    plant_query_copies(s, m);
    auto opposite = [&](int h) { return copy_target(s, m, h, 300); };
    for (int h = 0; h < 8; h++)
      for (int j = 0; j < 64; j++) {
        const float v = -0.5f * s.q[h * 64 + j];  // key exactly opposite to the query
        ((uint16_t*)s.kv.kbuf.data())[opposite(h) * s.kv.view.stride_tok + (h / 4) * s.kv.view.stride_head + j] =
            fp32_to_fp16(v);
      }
    s.k = test::keys_f32(s.kv);
    auto p = fed_simhash(s, m, 256, 60, 5);
    index_lists l;
    p->select(0, s.q.data(), s.kv.view, l);
    expect_lists_find_copies(s, m, l, 60);
    const int nh = m == gqa_mode::per_group ? 4 : 1;
    for (int r = 0; r < l.n_lists(); r++) {
      const auto v = list_of(l, r);
      for (int h = r * nh; h < (r + 1) * nh; h++)
        EXPECT_FALSE(std::binary_search(v.begin(), v.end(), opposite(h))) << "list " << r << " took the opposite key";
      // Mean cosine (summed over the list's heads) of chosen vs not chosen middle keys.
      auto cosine = [&](int64_t t) {
        double sum = 0;
        for (int h = r * nh; h < (r + 1) * nh; h++) {
          double qq = 0, kk = 0, a = 0;
          for (int j = 0; j < 64; j++) {
            const double x = s.q[h * 64 + j], y = s.kv.k_at(t, h / 4, j);
            a += x * y, qq += x * x, kk += y * y;
          }
          sum += a / std::sqrt(qq * kk);
        }
        return sum;
      };
      double in = 0, out = 0;
      int n_in = 0, n_out = 0;
      for (int64_t t = 4; t < 600 - 4; t++) {
        if (std::binary_search(v.begin(), v.end(), (int32_t)t)) in += cosine(t), n_in++;
        else out += cosine(t), n_out++;
      }
      EXPECT_GT(in / n_in, out / n_out + 0.1 * nh) << "list " << r;
    }
    p->truncate(450);
    const int64_t row = (int64_t)s.shape.n_head_kv * s.shape.head_dim;
    p->on_append(0, s.k.data() + 450 * row, 450, 150);
    index_lists l2;
    p->select(0, s.q.data(), s.kv.view, l2);
    EXPECT_EQ(l.count, l2.count);
    EXPECT_EQ(l.idx, l2.idx);
  }
  policy_config bad;
  bad.name = "simhash";
  bad.bits = 100;
  EXPECT_THROW(make_policy(bad), error);
}

TEST(Policy, QuestMatchesReference) {
  uint64_t seed = 24000;
  for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group})
    for (int P : {1, 4, 16})
      for (int64_t n : {3, 50, 333}) {
        HASHATTN_SEED(seed);
        const setup s = make_setup(seed++, 6, 2, 16, n, true);
        policy_config c;
        c.name = "quest";
        c.gqa = m;
        c.page_size = P;
        c.budget = {0.25, 0, 2, 3};
        auto p = make_policy(c);
        EXPECT_DOUBLE_EQ(p->aux_bits_per_token_head(), 0);  // before begin: shape unknown
        p->begin(1, s.shape, n);
        EXPECT_DOUBLE_EQ(p->aux_bits_per_token_head(), 2.0 * 32 * 16 / P);
        feed(*p, s, 0);
        index_lists l;
        p->select(0, s.q.data(), s.kv.view, l);
        const select_split sp = select_split_for(c.budget, n);
        const int G = 3;
        for (int r = 0; r < l.n_lists(); r++) {
          // Reference: page upper bounds in double, greedy by (score desc, page desc).
          const int hk = m == gqa_mode::per_group ? r : r / G;
          const int h0 = m == gqa_mode::per_group ? r * G : r, nh = m == gqa_mode::per_group ? G : 1;
          std::vector<std::pair<double, int64_t>> pages;
          for (int64_t pg = sp.lo / P; pg * P < sp.hi; pg++) {
            double sc = 0;
            for (int h = h0; h < h0 + nh; h++)
              for (int j = 0; j < 16; j++) {
                double mn = INFINITY, mx = -INFINITY;
                for (int64_t t = pg * P; t < std::min<int64_t>((pg + 1) * P, n); t++)
                  mn = std::min<double>(mn, s.kv.k_at(t, hk, j)), mx = std::max<double>(mx, s.kv.k_at(t, hk, j));
                sc += std::max(s.q[h * 16 + j] * mn, s.q[h * 16 + j] * mx);
              }
            pages.push_back({sc, pg});
          }
          std::sort(pages.begin(), pages.end(), [](auto a, auto b) { return a.first != b.first ? a.first > b.first : a.second > b.second; });
          std::vector<char> take(n, 0);
          int64_t left = sp.k_mid;
          for (auto& [sc, pg] : pages) {
            const int64_t a = std::max(pg * P, sp.lo), b = std::min((pg + 1) * P, sp.hi);
            if (left > 0 && b - a <= left) {
              for (int64_t t = a; t < b; t++) take[t] = 1;
              left -= b - a;
            }
          }
          std::vector<int32_t> want;
          for (int64_t t = 0; t < n; t++)
            if (t < sp.lo || t >= sp.hi || take[t]) want.push_back((int32_t)t);
          EXPECT_TRUE(test::same_selection(list_of(l, r), want));
          EXPECT_LE(l.count[r], sp.total);
        }
      }
}

TEST(Policy, DoubleSparsity) {
  uint64_t seed = 25000;
  // Calibration picks the channels with the largest mean |q_i| * mean |k_i|.
  {
    std::vector<float> q(10 * 4 * 8, 0.1f), k(20 * 2 * 8, 0.1f);
    for (int i = 0; i < 10; i++)
      for (int h = 0; h < 4; h++) q[(i * 4 + h) * 8 + (h < 2 ? 5 : 1)] = 3.f;  // group 0 -> ch 5, group 1 -> ch 1
    for (int i = 0; i < 20; i++) k[(i * 2 + 0) * 8 + 2] = 2.f, k[(i * 2 + 1) * 8 + 6] = 2.f;
    const auto ch = double_sparsity_calibrate(q.data(), 10, k.data(), 20, {4, 2, 8}, 2);
    EXPECT_EQ(ch, (std::vector<int32_t>{2, 5, 1, 6}));
    EXPECT_THROW(double_sparsity_calibrate(q.data(), 10, k.data(), 20, {4, 2, 8}, 9), error);
  }
  for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group})
    for (int64_t n : {5, 100, 700}) {
      HASHATTN_SEED(seed);
      const setup s = make_setup(seed++, 8, 2, 32, n, true);
      policy_config c;
      c.name = "double_sparsity";
      c.gqa = m;
      c.channels = 4;
      c.budget = {1.0 / 8, 0, 2, 2};
      std::mt19937_64 rng(seed);
      for (int l = 0; l < 2; l++)
        for (int h = 0; h < 2; h++) {
          auto sub = test::random_subset(rng, 32, 4);
          c.ds_channels.insert(c.ds_channels.end(), sub.begin(), sub.end());
        }
      auto p = make_policy(c);
      EXPECT_EQ(p->aux_bits_per_token_head(), 64);
      p->begin(2, s.shape, n);
      feed(*p, s, 1);
      index_lists l;
      p->select(1, s.q.data(), s.kv.view, l);
      for (int r = 0; r < l.n_lists(); r++) {
        const auto sc = list_scores(s, m, r, [&](int h, int64_t t) {
          const int hk = h / 4;
          double a = 0;
          for (int cc = 0; cc < 4; cc++) {
            const int j = c.ds_channels[(1 * 2 + hk) * 4 + cc];
            a += (double)s.q[h * 32 + j] * s.kv.k_at(t, hk, j);
          }
          return a;
        });
        EXPECT_TRUE(test::same_selection(list_of(l, r), ref::select_rule_ref(sc.data(), n, c.budget)));
      }
    }
}

TEST(Policy, ListsDriveAttention) {
  // End to end: a policy's lists fed to attn_decode_cpu equal the reference attention over them.
  const uint64_t seed = 26000;
  HASHATTN_SEED(seed);
  const setup s = make_setup(seed, 8, 2, 64, 1000, false);
  for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group}) {
    policy_config c;
    c.name = "simhash";
    c.gqa = m;
    c.budget = {1.0 / 16, 0, 8, 8};
    auto p = make_policy(c);
    p->begin(1, s.shape, 1000);
    feed(*p, s, 0);
    index_lists l;
    p->select(0, s.q.data(), s.kv.view, l);
    attn_decode_params a;
    a.q = s.q.data();
    a.kv = s.kv.view;
    a.n_head = 8;
    a.scale = 0.125f;
    attn_params_set_lists(a, l);
    std::vector<float> out(8 * 64);
    a.out = out.data();
    attn_decode_cpu(a);
    std::vector<double> ref(8 * 64);
    ref::attn_decode_ref(a, ref.data());
    EXPECT_TRUE(test::all_close(out.data(), ref.data(), 8 * 64, test::attn_atol(64, 62, 20, 4), 0));
  }
}

}  // namespace
}  // namespace hashattn
