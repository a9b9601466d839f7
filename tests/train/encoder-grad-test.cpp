// Training math of the hash encoders: finite-difference check of the whole encoder pair (query MLPs and
// key MLP through the soft bit score and the loss) in float64, the fp32 path against it, the MLP forward
// against the float64 inference reference (same weight layout as hash_weights), and Adam against a
// scalar float64 update. Seeds are fixed and printed.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/test-util.h"
#include "hashattn/hash.h"
#include "ref/reference.h"
#include "train/encoder-math.h"

namespace hashattn::train_detail {
namespace {

#define SEED_TRACE(seed) SCOPED_TRACE(::testing::Message() << "seed " << (seed))

// A unit: G query encoders + 1 key encoder, all in one flat parameter vector of T.
template <class T>
struct unit {
  int G = 1, n_layers = 3, d = 6, hidden = 5, bits = 4;
  std::vector<T> q, k;  // role blocks (n_enc = G for queries, 1 for keys)
  size_t role_size(int n_enc) const {
    size_t n = 0;
    for (int i = 0; i < n_layers; i++) {
      const int in = i == 0 ? d : hidden, out = i == n_layers - 1 ? bits : hidden;
      n += (size_t)n_enc * ((size_t)in * out + out);
    }
    return n;
  }
  enc_tensors<T> qenc(std::vector<T>& base, int g) const { return enc_slice<T>(base.data(), G, g, n_layers, d, hidden, bits); }
  enc_tensors<T> kenc(std::vector<T>& base) const { return enc_slice<T>(base.data(), 1, 0, n_layers, d, hidden, bits); }
};

struct problem {
  int64_t nq = 4, nk = 7;
  std::vector<double> xq;  // [G, nq, d]
  std::vector<double> xk;  // [nk, d]
  pair_batch<double> batch;
};

// Loss of the unit on the problem; with grads: gq, gk (role layout) filled.
template <class T>
double unit_loss(unit<T>& u, const problem& pr, const loss_params& lp, std::vector<T>* gq, std::vector<T>* gk) {
  const int G = u.G, B = u.bits, d = u.d;
  std::vector<T> xq(pr.xq.begin(), pr.xq.end()), xk(pr.xk.begin(), pr.xk.end());
  pair_batch<T> b;
  b.n_q = pr.batch.n_q;
  b.n_k = pr.batch.n_k;
  b.group = G;
  b.bits = B;
  b.label = pr.batch.label;
  b.weight.assign(pr.batch.weight.begin(), pr.batch.weight.end());
  b.target.assign(pr.batch.target.begin(), pr.batch.target.end());
  std::vector<mlp_work<T>> wq(G);
  mlp_work<T> wk;
  std::vector<T> yq((size_t)pr.nq * G * B);
  for (int g = 0; g < G; g++) {
    mlp_forward(u.qenc(u.q, g), xq.data() + (size_t)g * pr.nq * d, pr.nq, wq[g]);
    const auto& y = wq[g].pre[u.n_layers - 1];
    for (int64_t i = 0; i < pr.nq; i++)
      for (int j = 0; j < B; j++) yq[((size_t)i * G + g) * B + j] = y[(size_t)i * B + j];
  }
  mlp_forward(u.kenc(u.k), xk.data(), pr.nk, wk);
  std::vector<T> dyq(yq.size()), dyk((size_t)pr.nk * B);
  loss_work<T> lw;
  const double loss = pair_loss(lp, b, yq.data(), wk.pre[u.n_layers - 1].data(), dyq.data(), dyk.data(), lw);
  if (gq) {
    gq->assign(u.q.size(), T(0));
    gk->assign(u.k.size(), T(0));
    mlp_backward(u.kenc(u.k), xk.data(), pr.nk, wk, dyk.data(), u.kenc(*gk));
    std::vector<T> dg((size_t)pr.nq * B);
    for (int g = 0; g < G; g++) {
      for (int64_t i = 0; i < pr.nq; i++)
        for (int j = 0; j < B; j++) dg[(size_t)i * B + j] = dyq[((size_t)i * G + g) * B + j];
      mlp_backward(u.qenc(u.q, g), xq.data() + (size_t)g * pr.nq * d, pr.nq, wq[g], dg.data(), u.qenc(*gq, g));
    }
  }
  return loss;
}

problem make_problem(std::mt19937_64& rng, int G, int d, bool some_rows_without_pos, bool soft = false) {
  problem p;
  std::normal_distribution<double> nd(0, 1);
  std::uniform_real_distribution<double> ud(0.1, 2.0);
  p.xq.resize((size_t)G * p.nq * d);
  p.xk.resize((size_t)p.nk * d);
  for (auto& x : p.xq) x = nd(rng);
  for (auto& x : p.xk) x = nd(rng);
  p.batch.n_q = p.nq;
  p.batch.n_k = p.nk;
  p.batch.label.resize((size_t)p.nq * p.nk);
  p.batch.weight.resize((size_t)p.nq * p.nk);
  for (int64_t i = 0; i < p.nq; i++)
    for (int64_t t = 0; t < p.nk; t++) {
      const size_t j = (size_t)i * p.nk + t;
      p.batch.label[j] = (rng() % 3 == 0) ? 1 : 0;
      if (t == i) p.batch.label[j] = 1;  // every row has a positive...
      if (some_rows_without_pos && i == p.nq - 1) p.batch.label[j] = 0;  // ...but the last (listwise skips it)
      p.batch.weight[j] = (rng() % 5 == 0) ? 0.0 : ud(rng);               // some pairs masked
    }
  if (soft) {  // soft targets: random positive target weights
    p.batch.target.resize(p.batch.label.size());
    for (auto& x : p.batch.target) x = ud(rng);
  }
  return p;
}

void init(std::mt19937_64& rng, std::vector<double>& v, double scale) {
  std::normal_distribution<double> nd(0, scale);
  for (auto& x : v) x = nd(rng);
}

TEST(EncoderGrad, FiniteDifferencesWholeEncoderFloat64) {
  for (int loss_i = 0; loss_i < 3; loss_i++)  // bce, listwise, listwise with soft targets
    for (int G : {1, 3})
      for (int L : {1, 2, 3}) {
        const uint64_t seed = 1000 + loss_i * 100 + G * 10 + L;
        SEED_TRACE(seed);
        SCOPED_TRACE(::testing::Message() << "loss " << (loss_i == 2 ? "listwise-soft" : loss_i ? "listwise" : "bce") << " G "
                                          << G << " layers " << L);
        std::mt19937_64 rng(seed);
        unit<double> u;
        u.G = G;
        u.n_layers = L;
        u.q.resize(u.role_size(G));
        u.k.resize(u.role_size(1));
        init(rng, u.q, 0.7);
        init(rng, u.k, 0.7);
        const problem pr = make_problem(rng, G, u.d, loss_i >= 1, loss_i == 2);
        loss_params lp;
        lp.kind = loss_i ? loss_kind::listwise : loss_kind::bce;
        lp.scale = 0.8;
        std::vector<double> gq, gk;
        const double l0 = unit_loss(u, pr, lp, &gq, &gk);
        ASSERT_TRUE(std::isfinite(l0));
        if (loss_i == 2) {  // the targets must matter
          problem uniform = pr;
          uniform.batch.target.clear();
          EXPECT_GT(std::fabs(unit_loss<double>(u, uniform, lp, nullptr, nullptr) - l0), 1e-6);
        }
        double max_err = 0, max_g = 0;
        auto check = [&](std::vector<double>& p, const std::vector<double>& g, const char* role) {
          for (size_t j = 0; j < p.size(); j++) {
            const double h = 1e-5 * std::max(1.0, std::fabs(p[j]));
            const double keep = p[j];
            p[j] = keep + h;
            const double lp_ = unit_loss<double>(u, pr, lp, nullptr, nullptr);
            p[j] = keep - h;
            const double lm = unit_loss<double>(u, pr, lp, nullptr, nullptr);
            p[j] = keep;
            const double fd = (lp_ - lm) / (2 * h);
            const double err = std::fabs(fd - g[j]);
            max_err = std::max(max_err, err);
            max_g = std::max(max_g, std::fabs(g[j]));
            ASSERT_LE(err, 1e-7 + 1e-5 * std::fabs(fd)) << role << " param " << j << " fd " << fd << " analytic " << g[j];
          }
        };
        check(u.q, gq, "query");
        check(u.k, gk, "key");
        EXPECT_GT(max_g, 1e-4) << "gradients vanish: the check would be vacuous";
      }
}

TEST(EncoderGrad, Float32MatchesFloat64) {
  for (int loss_i = 0; loss_i < 2; loss_i++)
    for (int G : {1, 3}) {
      const uint64_t seed = 2000 + loss_i * 10 + G;
      SEED_TRACE(seed);
      std::mt19937_64 rng(seed);
      unit<double> ud;
      ud.G = G;
      ud.d = 64;
      ud.hidden = 32;
      ud.bits = 32;
      ud.q.resize(ud.role_size(G));
      ud.k.resize(ud.role_size(1));
      init(rng, ud.q, 0.15);
      init(rng, ud.k, 0.15);
      problem pr = make_problem(rng, G, ud.d, false);
      loss_params lp;
      lp.kind = loss_i ? loss_kind::listwise : loss_kind::bce;
      unit<float> uf;
      uf.G = G;
      uf.d = ud.d;
      uf.hidden = ud.hidden;
      uf.bits = ud.bits;
      uf.q.assign(ud.q.begin(), ud.q.end());
      uf.k.assign(ud.k.begin(), ud.k.end());
      std::vector<double> gqd, gkd;
      std::vector<float> gqf, gkf;
      const double ld = unit_loss(ud, pr, lp, &gqd, &gkd);
      const double lf = unit_loss(uf, pr, lp, &gqf, &gkf);
      EXPECT_NEAR(lf, ld, 1e-5 * std::max(1.0, std::fabs(ld)));
      auto cmp = [](const std::vector<float>& f, const std::vector<double>& d) {
        double mx = 0;
        for (double x : d) mx = std::max(mx, std::fabs(x));
        ASSERT_GT(mx, 0);
        for (size_t j = 0; j < d.size(); j++) ASSERT_NEAR(f[j], d[j], 1e-4 * mx) << "param " << j;
      };
      cmp(gqf, gqd);
      cmp(gkf, gkd);
    }
}

// The training forward pass computes exactly the inference encoder's function on the hash_weights layout.
TEST(EncoderGrad, ForwardMatchesInferenceReference) {
  for (int L : {1, 2, 3})
    for (bool kpg : {false, true}) {
      const uint64_t seed = 3000 + L * 2 + kpg;
      SEED_TRACE(seed);
      hash_weights w = hash_weights_alloc(2, 6, 2, 64, 32, L, 48, kpg);
      hash_weights_init_random(w, seed, 0.1f);
      std::mt19937_64 rng(seed);
      const int rows = 9;
      std::vector<float> x = test::random_vec(rng, test::dist::normal, rows * 64);
      for (int layer = 0; layer < 2; layer++)
        for (int role = 0; role < 2; role++) {
          const hash_mlp_view v = role == 0 ? w.query(layer) : w.key(layer);
          float* base = role == 0 ? w.query_data(layer) : w.key_data(layer);
          for (int e = 0; e < v.n_enc; e++) {
            mlp_work<float> wk;
            mlp_forward(enc_slice<float>(base, v.n_enc, e, L, 64, w.hidden, 32), x.data(), rows, wk);
            std::vector<double> ref(32);
            for (int r = 0; r < rows; r++) {
              ref::hash_mlp_ref(v, e, x.data() + r * 64, ref.data());
              for (int j = 0; j < 32; j++)
                ASSERT_NEAR(wk.pre[L - 1][(size_t)r * 32 + j], ref[j], 1e-4 * (1 + std::fabs(ref[j])))
                    << "layer " << layer << " role " << role << " enc " << e << " row " << r << " out " << j;
            }
          }
        }
    }
}

TEST(EncoderGrad, AdamMatchesScalarFloat64) {
  const uint64_t seed = 4000;
  SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  unit<float> u;
  u.q.resize(u.role_size(1));
  std::vector<float> g(u.q.size()), m(u.q.size(), 0.f), v(u.q.size(), 0.f);
  std::vector<double> wd(u.q.begin(), u.q.end()), md(u.q.size(), 0), vd(u.q.size(), 0);
  std::normal_distribution<float> nd(0, 1);
  for (auto& x : u.q) x = nd(rng);
  wd.assign(u.q.begin(), u.q.end());
  adam_params a;
  a.lr = 0.01;
  for (int t = 1; t <= 5; t++) {
    for (auto& x : g) x = nd(rng);
    adam_step(a, t, u.qenc(u.q, 0), u.qenc(g, 0), u.qenc(m, 0), u.qenc(v, 0));
    for (size_t j = 0; j < wd.size(); j++) {
      md[j] = a.beta1 * md[j] + (1 - a.beta1) * g[j];
      vd[j] = a.beta2 * vd[j] + (1 - a.beta2) * (double)g[j] * g[j];
      const double mh = md[j] / (1 - std::pow(a.beta1, t)), vh = vd[j] / (1 - std::pow(a.beta2, t));
      wd[j] -= a.lr * mh / (std::sqrt(vh) + a.eps);
    }
    for (size_t j = 0; j < wd.size(); j++) ASSERT_NEAR(u.q[j], wd[j], 1e-5) << "step " << t << " param " << j;
  }
}

}  // namespace
}  // namespace hashattn::train_detail
