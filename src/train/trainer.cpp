// `train_hash_encoders` (see train.h): windows of the training text are prefilled one at a time; for each
// captured layer the units (query heads, or KV groups in group mode) take steps_per_window Adam steps on
// minibatches of that window, in parallel over units (OpenMP; OpenBLAS single-threaded inside). A held-out
// window (not trained on) measures the top-32-in-budget overlap (metrics.h) at the label budget after every
// layer's turn.
// Minibatch of a unit: B queries with a middle; up to P sampled positives of each; up to hard_neg hard
// negatives of each (hard-negatives.cpp; drawn from its pool, weighted as the random negatives); N random
// middle keys, or with all_negatives every key of the queries' middles (batch_keys).
// Pair weights make the loss an estimate of the full per-query loss over its middle region:
//   positives of query i: pos_weight * k_i / npos_i, negatives: (n_mid_i - k_i) / nneg_i, over
//   norm_i = pos_weight * k_i + n_mid_i - k_i, then the mean over queries (listwise: importance weights).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/core.h>

#include "cpu/matvec.h"
#include "hashattn/error.h"
#include "hashattn/model.h"
#include "train/encoder-math.h"
#include "train/train-internal.h"
#include "train/trainer-core.h"

namespace hashattn {
using namespace train_detail;

namespace {
std::string s(int64_t v) { return std::to_string(v); }

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x7F4A7C159E3779B9ull + (a << 6) + (a >> 2));
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  return x;
}

}  // namespace

// Per-thread buffers of one unit's step.
struct step_work {
  std::vector<float> xq, xk, yq, dyq, dyq_g;
  mlp_work<float> wq[16], wk;
  pair_batch<float> batch;
  loss_work<float> lw;
  std::vector<int32_t> qsel, keys, pool;
  std::vector<float> dyk;
};

namespace {

// Standardization of one layer's inputs (nullptr: none): x -> (x - mu) * is, per head and dimension.
struct input_norm_view {
  const float *mu_q = nullptr, *is_q = nullptr;  // [n_head, d]
  const float *mu_k = nullptr, *is_k = nullptr;  // [n_head_kv, d]
};

void standardize(float* x, const float* mu, const float* is, int d) {
  for (int j = 0; j < d; j++) x[j] = (x[j] - mu[j]) * is[j];
}

struct unit_data {
  std::vector<std::vector<int32_t>> labels;  // per query
  std::vector<uint8_t> is_label;             // [n_q, n_tok]
  std::vector<int32_t> usable;               // queries with k > 0
  std::vector<std::vector<int32_t>> hard;    // per query: hard negatives (empty without hard_neg)
  std::vector<std::vector<float>> label_w;   // per query, aligned with labels: soft targets (empty: uniform)
};


}  // namespace

void train_params_validate(const train_params& p, int n_layer, int n_head, int n_head_kv) {
  if (!hash_bits_valid(p.bits)) fail("train: bits", s(p.bits), "16, 32 or 64");
  if (p.mlp_layers < 1 || p.mlp_layers > 3) fail("train: MLP layers", s(p.mlp_layers), "1, 2 or 3");
  if (p.mlp_layers > 1 && (p.hidden < 1 || p.hidden > 4096)) fail("train: MLP hidden size", s(p.hidden), "1 .. 4096");
  if (p.ctx < 64) fail("train: context", s(p.ctx), ">= 64 tokens (0: the model's, at most 8192)");
  if (p.n_windows < 1) fail("train: windows", s(p.n_windows), ">= 1");
  if (p.queries_per_window < 1) fail("train: queries per window", s(p.queries_per_window), ">= 1");
  if (p.steps_per_window < 1) fail("train: steps per window", s(p.steps_per_window), ">= 1");
  if (p.batch_queries < 1 || p.batch_pos < 1 || p.batch_neg < 0)
    fail("train: batch", s(p.batch_queries) + " queries, " + s(p.batch_pos) + " positives, " + s(p.batch_neg) + " negatives",
         ">= 1 query, >= 1 positive, >= 0 negatives");
  if (p.targets == train_targets::attention && p.loss != train_loss::listwise)
    fail("train: targets", "attention", "uniform with --loss bce (soft targets need the listwise loss)");
  if (p.hard_neg < 0) fail("train: hard negatives", s(p.hard_neg), ">= 0 per query per step (0: none)");
  if (p.hard_neg > 0 && p.hard_pool < 1) fail("train: hard-negative pool", s(p.hard_pool), ">= 1 per query");
  if (p.val_queries < 0) fail("train: held-out queries", s(p.val_queries), ">= 0");
  if (!(p.lr > 0 && p.lr < 1)) fail("train: learning rate", fmt::format("{}", p.lr), "in (0, 1)");
  if (!(p.pos_weight > 0)) fail("train: positive weight", fmt::format("{}", p.pos_weight), "> 0");
  if (!(p.score_scale > 0)) fail("train: score scale", fmt::format("{}", p.score_scale), "> 0");
  const label_params& l = p.labels;
  if (l.k_fixed < 0) fail("train: label k", s(l.k_fixed), ">= 0 (0: the budget's share)");
  if (l.k_fixed == 0 && !(l.density > 0 && l.density <= 1)) fail("train: density", fmt::format("{}", l.density), "in (0, 1]");
  if (l.sinks < 0 || l.window < 0) fail("train: sinks/window", s(l.sinks) + "/" + s(l.window), ">= 0");
  if (l.sinks + l.window + 2 >= p.ctx)
    fail("train: context", s(p.ctx), "> sinks + window + 2 = " + s(l.sinks + l.window + 2), "use a longer --ctx");
  for (int x : p.layers)
    if (x < 0 || x >= n_layer) fail("train: layer", s(x), "0 .. " + s(n_layer - 1));
  const int n_units = p.gqa == gqa_mode::per_head ? n_head : n_head_kv;
  for (int x : p.heads)
    if (x < 0 || x >= n_units)
      fail("train: head", s(x), "0 .. " + s(n_units - 1),
           p.gqa == gqa_mode::per_head ? "query heads in head mode" : "KV heads in group mode");
  const int G = n_head_kv > 0 ? n_head / n_head_kv : 0;
  if (G > 16) fail("train: GQA group", s(G), "<= 16 query heads per KV head");
  if (p.init && p.input_norm)
    fail("train: input norm", "on with initial weights", "off when starting from a hash file",
         "the initial weights take raw queries and keys");
}

void train_init_check(const train_params& p, int n_layer, int n_head, int n_head_kv, int head_dim) {
  if (!p.init) return;
  const hash_weights& w = *p.init;
  const int hidden = p.mlp_layers > 1 ? p.hidden : 0, w_hidden = w.mlp_layers > 1 ? w.hidden : 0;
  const bool grp = p.gqa == gqa_mode::per_group;
  std::string got, want;
  auto diff = [&](const char* name, const std::string& a, const std::string& b) {
    if (a == b) return;
    got += (got.empty() ? "" : ", ") + fmt::format("{} {}", name, a);
    want += (want.empty() ? "" : ", ") + fmt::format("{} {}", name, b);
  };
  diff("n_layer", s(w.n_layer), s(n_layer));
  diff("n_head", s(w.n_head), s(n_head));
  diff("n_head_kv", s(w.n_head_kv), s(n_head_kv));
  diff("head_dim", s(w.head_dim), s(head_dim));
  diff("bits", s(w.bits), s(p.bits));
  diff("mlp_layers", s(w.mlp_layers), s(p.mlp_layers));
  diff("hidden", s(w_hidden), s(hidden));
  diff("key encoders", w.key_per_group ? "per KV head (group)" : "per query head",
       grp ? "per KV head (group)" : "per query head");
  if (!got.empty())
    fail("train: initial weights", got, want + " (the training settings)",
         "train with the file's --bits, --mlp and --gqa-mode, or start from random weights");
  if (w.data.size() != (size_t)w.n_layer * w.layer_floats())
    fail("train: initial weights", s((int64_t)w.data.size()) + " floats",
         s((int64_t)((size_t)w.n_layer * w.layer_floats())) + " for their shape");
}

std::string train_settings_string(const train_params& p) {
  return fmt::format(
      "bits={} mlp_layers={} hidden={} gqa={} label_k={} density={} sinks={} window={} rank={} loss={} pos_weight={} "
      "score_scale={} lr={} ctx={} windows={} queries={} steps={} batch_q={} batch_pos={} batch_neg={} seed={} "
      "input_norm={} hard_neg={} hard_pool={} targets={}{}",
      p.bits, p.mlp_layers, p.mlp_layers > 1 ? p.hidden : 0, p.gqa == gqa_mode::per_head ? "head" : "group",
      p.labels.k_fixed > 0 ? s(p.labels.k_fixed) : std::string("budget"), p.labels.density, p.labels.sinks,
      p.labels.window, p.labels.rank == label_rank::logit ? "logit" : "value_norm",
      p.loss == train_loss::bce ? "bce" : "listwise", p.pos_weight, p.score_scale, p.lr, p.ctx, p.n_windows,
      p.queries_per_window, p.steps_per_window, p.batch_queries, p.batch_pos,
      p.all_negatives ? std::string("all") : s(p.batch_neg), p.seed,
      p.input_norm ? "on" : "off", p.hard_neg, p.hard_pool,
      p.targets == train_targets::attention ? "attention" : "uniform", p.init ? " init=file" : "");
}

namespace {

unit_data make_unit_data(const layer_capture& c, const train_params& p, int unit, const eval_codes* codes) {
  unit_data u;
  u.labels = make_labels(c, p.labels, p.gqa, unit);
  u.is_label.assign((size_t)c.n_q() * c.n_tok, 0);
  for (int64_t i = 0; i < c.n_q(); i++) {
    for (int32_t t : u.labels[i]) u.is_label[(size_t)i * c.n_tok + t] = 1;
    if (!u.labels[i].empty()) u.usable.push_back((int32_t)i);
  }
  if (codes) {
    hard_negative_params hp;
    hp.labels = p.labels;
    hp.gqa = p.gqa;
    hp.pool = p.hard_pool;
    u.hard = hard_negatives(c, *codes, u.labels, hp, unit);
  }
  if (p.targets == train_targets::attention) u.label_w = label_attention_weights(c, p.gqa, unit, u.labels);
  return u;
}

}  // namespace

void train_detail::batch_keys(const layer_capture& c, const train_params& p, const std::vector<int32_t>& qsel,
                const std::vector<std::vector<int32_t>>& labels,
                const std::vector<const std::vector<int32_t>*>& hard, std::mt19937_64& rng,
                std::vector<int32_t>& keys) {
  keys.clear();
  int64_t lo_min = c.n_tok, hi_max = 0;
  for (int32_t qi : qsel) {
    const middle_range r = label_middle(p.labels, c.qpos[qi]);
    lo_min = std::min(lo_min, r.lo);
    hi_max = std::max(hi_max, r.hi);
    const auto& L = labels[qi];
    if ((int64_t)L.size() <= p.batch_pos) {
      keys.insert(keys.end(), L.begin(), L.end());
    } else {
      std::vector<int32_t> tmp(L);
      for (int j = 0; j < p.batch_pos; j++) {
        std::uniform_int_distribution<size_t> dj(j, tmp.size() - 1);
        std::swap(tmp[j], tmp[dj(rng)]);
        keys.push_back(tmp[j]);
      }
    }
  }
  for (const std::vector<int32_t>* H : hard)
    for (int j = 0; j < p.hard_neg && !H->empty(); j++)
      keys.push_back((*H)[std::uniform_int_distribution<size_t>(0, H->size() - 1)(rng)]);
  if (p.all_negatives) {
    for (int64_t t = lo_min; t < hi_max; t++) keys.push_back((int32_t)t);
  } else if (hi_max > lo_min) {
    std::uniform_int_distribution<int64_t> dt(lo_min, hi_max - 1);
    for (int j = 0; j < p.batch_neg; j++) keys.push_back((int32_t)dt(rng));
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
}

namespace {

// One Adam step of one unit; returns the loss (NaN if the unit has no usable query).
double unit_step(const train_params& p, hash_weights& W, std::vector<float>& grad, std::vector<float>& m1,
                 std::vector<float>& m2, int layer, int unit, int64_t t_step, const layer_capture& c,
                 const unit_data& ud, std::mt19937_64& rng, step_work& sw, const input_norm_view& nv) {
  if (ud.usable.empty()) return NAN;
  const int G = c.n_head / c.n_head_kv, d = c.head_dim, B = W.bits;
  const bool grp = p.gqa == gqa_mode::per_group;
  const int nqe = grp ? G : 1;            // query encoders of the unit
  const int q0 = grp ? unit * G : unit;   // first query head
  const int hk = grp ? unit : unit / G;   // KV head of the keys
  const int ke = unit;                    // key encoder (per query head, or per KV head in group mode)
  const int nke = W.n_key_enc();
  const int64_t n = c.n_tok;
  // -- queries
  sw.pool = ud.usable;
  const int bq = (int)std::min<size_t>(p.batch_queries, sw.pool.size());
  for (int i = 0; i < bq; i++) {
    std::uniform_int_distribution<size_t> di(i, sw.pool.size() - 1);
    std::swap(sw.pool[i], sw.pool[di(rng)]);
  }
  sw.qsel.assign(sw.pool.begin(), sw.pool.begin() + bq);
  // -- keys: sampled positives of each query + hard negatives + random (or all) middle keys
  std::vector<const std::vector<int32_t>*> hard;
  if (p.hard_neg > 0 && !ud.hard.empty())
    for (int32_t qi : sw.qsel) hard.push_back(&ud.hard[qi]);
  batch_keys(c, p, sw.qsel, ud.labels, hard, rng, sw.keys);
  const int64_t nk = (int64_t)sw.keys.size();
  // -- pairs
  pair_batch<float>& pb = sw.batch;
  pb.n_q = bq;
  pb.n_k = nk;
  pb.group = nqe;
  pb.bits = B;
  pb.label.assign((size_t)bq * nk, 0);
  pb.weight.assign((size_t)bq * nk, 0.f);
  if (ud.label_w.empty()) pb.target.clear();
  else pb.target.assign((size_t)bq * nk, 1.f);
  for (int i = 0; i < bq; i++) {
    const int32_t qi = sw.qsel[i];
    const middle_range r = label_middle(p.labels, c.qpos[qi]);
    const uint8_t* lab = ud.is_label.data() + (size_t)qi * n;
    int64_t npos = 0, nneg = 0;
    for (int64_t j = 0; j < nk; j++) {
      const int32_t t = sw.keys[j];
      if (t < r.lo || t >= r.hi) continue;
      (lab[t] ? npos : nneg)++;
    }
    const double kpos = (double)r.k, kneg = (double)(r.hi - r.lo - r.k);
    double wp, wn;
    if (p.loss == train_loss::bce) {
      const double norm = p.pos_weight * kpos + kneg;
      wp = npos ? p.pos_weight * kpos / npos / norm / bq : 0;
      wn = nneg ? kneg / nneg / norm / bq : 0;
    } else {
      wp = npos ? kpos / npos : 0;
      wn = nneg ? kneg / nneg : 0;
    }
    for (int64_t j = 0; j < nk; j++) {
      const int32_t t = sw.keys[j];
      if (t < r.lo || t >= r.hi) continue;
      pb.label[(size_t)i * nk + j] = lab[t];
      pb.weight[(size_t)i * nk + j] = (float)(lab[t] ? wp : wn);
      if (lab[t] && !ud.label_w.empty()) {
        const auto& L = ud.labels[qi];
        pb.target[(size_t)i * nk + j] = ud.label_w[qi][std::lower_bound(L.begin(), L.end(), t) - L.begin()];
      }
    }
  }
  // -- forward
  float* qbase = W.query_data(layer);
  float* kbase = W.key_data(layer);
  const size_t qoff = (size_t)layer * W.layer_floats();
  const size_t koff = qoff + W.role_floats(W.n_head);
  auto qslice = [&](float* base, int e) { return enc_slice<float>(base, W.n_head, e, W.mlp_layers, d, W.hidden, B); };
  auto kslice = [&](float* base) { return enc_slice<float>(base, nke, ke, W.mlp_layers, d, W.hidden, B); };
  sw.xk.resize((size_t)nk * d);
  for (int64_t j = 0; j < nk; j++) {
    const float* src = c.k.data() + ((size_t)sw.keys[j] * c.n_head_kv + hk) * d;
    std::copy(src, src + d, sw.xk.data() + j * d);
    if (nv.mu_k) standardize(sw.xk.data() + j * d, nv.mu_k + (size_t)hk * d, nv.is_k + (size_t)hk * d, d);
  }
  const enc_tensors<float> kw = kslice(kbase);
  mlp_forward(kw, sw.xk.data(), nk, sw.wk);
  sw.xq.resize((size_t)nqe * bq * d);
  sw.yq.resize((size_t)bq * nqe * B);
  for (int g = 0; g < nqe; g++) {
    float* xg = sw.xq.data() + (size_t)g * bq * d;
    for (int i = 0; i < bq; i++) {
      const float* src = c.q.data() + ((size_t)sw.qsel[i] * c.n_head + q0 + g) * d;
      std::copy(src, src + d, xg + (size_t)i * d);
      if (nv.mu_q) standardize(xg + (size_t)i * d, nv.mu_q + (size_t)(q0 + g) * d, nv.is_q + (size_t)(q0 + g) * d, d);
    }
    mlp_forward(qslice(qbase, q0 + g), xg, bq, sw.wq[g]);
    const std::vector<float>& y = sw.wq[g].pre[W.mlp_layers - 1];
    for (int i = 0; i < bq; i++) std::copy(y.data() + (size_t)i * B, y.data() + (size_t)(i + 1) * B, sw.yq.data() + ((size_t)i * nqe + g) * B);
  }
  // -- loss and backward
  loss_params lp;
  lp.kind = p.loss == train_loss::bce ? loss_kind::bce : loss_kind::listwise;
  lp.scale = p.score_scale;
  sw.dyq.resize(sw.yq.size());
  sw.dyk.resize((size_t)nk * B);
  const double loss = pair_loss(lp, pb, sw.yq.data(), sw.wk.pre[W.mlp_layers - 1].data(), sw.dyq.data(), sw.dyk.data(), sw.lw);
  float* gq = grad.data() + qoff;
  float* gk = grad.data() + koff;
  auto zero = [](const enc_tensors<float>& t) {
    for (int i = 0; i < t.n_layers; i++) {
      std::fill(t.w[i], t.w[i] + (size_t)t.dims[i] * t.dims[i + 1], 0.f);
      std::fill(t.b[i], t.b[i] + t.dims[i + 1], 0.f);
    }
  };
  adam_params ap;
  ap.lr = p.lr;
  const enc_tensors<float> kg = kslice(gk);
  zero(kg);
  mlp_backward(kw, sw.xk.data(), nk, sw.wk, sw.dyk.data(), kg);
  adam_step(ap, t_step, kw, kg, kslice(m1.data() + koff), kslice(m2.data() + koff));
  sw.dyq_g.resize((size_t)bq * B);
  for (int g = 0; g < nqe; g++) {
    for (int i = 0; i < bq; i++)
      std::copy(sw.dyq.data() + ((size_t)i * nqe + g) * B, sw.dyq.data() + ((size_t)i * nqe + g + 1) * B, sw.dyq_g.data() + (size_t)i * B);
    const enc_tensors<float> qw = qslice(qbase, q0 + g), qg = qslice(gq, q0 + g);
    zero(qg);
    mlp_backward(qw, sw.xq.data() + (size_t)g * bq * d, bq, sw.wq[g], sw.dyq_g.data(), qg);
    adam_step(ap, t_step, qw, qg, qslice(m1.data() + qoff, q0 + g), qslice(m2.data() + qoff, q0 + g));
  }
  return loss;
}

}  // namespace


hash_trainer::hash_trainer(int n_layer, int n_head, int n_head_kv, int head_dim, const train_params& p) : p_(p) {
  train_params_validate(p, n_layer, n_head, n_head_kv);
  train_init_check(p, n_layer, n_head, n_head_kv, head_dim);
  const bool grp = p.gqa == gqa_mode::per_group;
  if (p.init) {
    w_ = *p.init;
  } else {
    w_ = hash_weights_alloc(n_layer, n_head, n_head_kv, head_dim, p.bits, p.mlp_layers, p.hidden, grp);
    hash_weights_init_random(w_, mix(p.seed, 1));
  }
  if (p.input_norm) folded_ = w_;  // only the standardized run needs a folded copy
  mu_q_.assign(n_layer, {}), is_q_.assign(n_layer, {}), mu_k_.assign(n_layer, {}), is_k_.assign(n_layer, {});
  m1_.assign(w_.data.size(), 0.f);
  m2_.assign(w_.data.size(), 0.f);
  grad_.assign(w_.data.size(), 0.f);
  units_ = p.heads;
  if (units_.empty())
    for (int u = 0; u < (grp ? n_head_kv : n_head); u++) units_.push_back(u);
  std::sort(units_.begin(), units_.end());
  units_.erase(std::unique(units_.begin(), units_.end()), units_.end());
  nt_ = p.n_threads > 0 ? p.n_threads : omp_get_max_threads();
  work_ = std::make_unique<std::vector<step_work>>(nt_);
  steps_.assign((size_t)n_layer * (grp ? n_head_kv : n_head), 0);
}

hash_trainer::~hash_trainer() = default;

double hash_trainer::train_layer(int l, const layer_capture& c, uint64_t stream) {
  const train_params& p = p_;
  const int n_units_all = p.gqa == gqa_mode::per_group ? w_.n_head_kv : w_.n_head;
  std::vector<double> loss_sum(units_.size(), 0.0);
  std::vector<int64_t> loss_n(units_.size(), 0);
  std::vector<step_work>& work = *work_;
  input_norm_view nv;
  if (p.input_norm) {
    if (mu_q_[l].empty()) input_stats(l, c);
    nv = {mu_q_[l].data(), is_q_[l].data(), mu_k_[l].data(), is_k_[l].data()};
  }
  // Hard negatives: ranked by the codes of the encoders as they are at this window's start.
  eval_codes codes;
  if (p.hard_neg > 0) codes = codes_learned(weights(), l, c, nt_);
  {
    cpu::blas_single_thread guard;
#pragma omp parallel for num_threads(nt_) schedule(dynamic, 1)
    for (int64_t ui = 0; ui < (int64_t)units_.size(); ui++) {
      const int u = units_[ui];
      const unit_data ud = make_unit_data(c, p, u, p.hard_neg > 0 ? &codes : nullptr);
      std::mt19937_64 rng(mix(mix(p.seed, 10 + stream), mix(l, u)));
      step_work& sw = work[omp_get_thread_num()];
      int64_t& t = steps_[(size_t)l * n_units_all + u];
      for (int st = 0; st < p.steps_per_window; st++) {
        const double lv = unit_step(p, w_, grad_, m1_, m2_, l, u, t + 1, c, ud, rng, sw, nv);
        if (std::isfinite(lv)) {
          t++;
          loss_sum[ui] += lv, loss_n[ui]++;
        }
      }
    }
  }
  if (p.input_norm) fold_layer(l);
  double ls = 0;
  int64_t ln = 0;
  for (size_t ui = 0; ui < units_.size(); ui++) ls += loss_sum[ui], ln += loss_n[ui];
  return ln ? ls / ln : NAN;
}

// Mean and spread per dimension of the layer's keys (tokens past the first 4: the first tokens' keys are
// outliers in many heads) and captured queries; the spread is floored at a tenth of its RMS over the
// dimensions so that near-constant dimensions are not blown up.
void hash_trainer::input_stats(int l, const layer_capture& c) {
  const int d = c.head_dim;
  auto stats = [d](const float* x, int64_t rows, int64_t stride, std::vector<float>& mu, std::vector<float>& is,
                   size_t at) {
    std::vector<double> m(d, 0.0), v(d, 0.0);
    for (int64_t r = 0; r < rows; r++)
      for (int j = 0; j < d; j++) m[j] += x[r * stride + j];
    for (int j = 0; j < d; j++) m[j] /= (double)std::max<int64_t>(rows, 1);
    for (int64_t r = 0; r < rows; r++)
      for (int j = 0; j < d; j++) v[j] += ((double)x[r * stride + j] - m[j]) * ((double)x[r * stride + j] - m[j]);
    double ms = 0;
    for (int j = 0; j < d; j++) v[j] = std::sqrt(v[j] / (double)std::max<int64_t>(rows, 1)), ms += v[j] * v[j];
    const double floor = std::max(0.1 * std::sqrt(ms / d), 1e-6);
    for (int j = 0; j < d; j++) {
      mu[at + j] = (float)m[j];
      is[at + j] = (float)(1.0 / std::max(v[j], floor));
    }
  };
  mu_q_[l].assign((size_t)c.n_head * d, 0.f), is_q_[l].assign((size_t)c.n_head * d, 1.f);
  mu_k_[l].assign((size_t)c.n_head_kv * d, 0.f), is_k_[l].assign((size_t)c.n_head_kv * d, 1.f);
  const int64_t t0 = std::min<int64_t>(4, std::max<int64_t>(c.n_tok - 1, 0));
  for (int hk = 0; hk < c.n_head_kv; hk++)
    stats(c.k.data() + ((size_t)t0 * c.n_head_kv + hk) * d, c.n_tok - t0, (int64_t)c.n_head_kv * d, mu_k_[l], is_k_[l],
          (size_t)hk * d);
  for (int h = 0; h < c.n_head; h++)
    stats(c.q.data() + (size_t)h * d, c.n_q(), (int64_t)c.n_head * d, mu_q_[l], is_q_[l], (size_t)h * d);
}

// folded_ layer l = w_ layer l with x -> (x - mu) * is folded into the first linear layer of every encoder:
// W0' = diag(is) W0, b0' = b0 - (mu * is) W0.
void hash_trainer::fold_layer(int l) {
  const int d = w_.head_dim, B = w_.bits, L = w_.mlp_layers, hid = w_.hidden;
  const int H = w_.n_head, Hk = w_.n_head_kv, G = H / Hk, nke = w_.n_key_enc();
  std::copy(w_.query_data(l), w_.query_data(l) + w_.layer_floats(), folded_.query_data(l));
  auto fold = [&](float* src_base, float* dst_base, int n_enc, int e, const float* mu, const float* is) {
    const enc_tensors<float> a = enc_slice<float>(src_base, n_enc, e, L, d, hid, B);
    const enc_tensors<float> o = enc_slice<float>(dst_base, n_enc, e, L, d, hid, B);
    const int out = a.dims[1];
    for (int j = 0; j < out; j++) {
      double b = a.b[0][j];
      for (int i = 0; i < d; i++) b -= (double)a.w[0][(size_t)i * out + j] * is[i] * mu[i];
      o.b[0][j] = (float)b;
    }
    for (int i = 0; i < d; i++)
      for (int j = 0; j < out; j++) o.w[0][(size_t)i * out + j] = a.w[0][(size_t)i * out + j] * is[i];
  };
  for (int h = 0; h < H; h++)
    fold(w_.query_data(l), folded_.query_data(l), H, h, mu_q_[l].data() + (size_t)h * d, is_q_[l].data() + (size_t)h * d);
  for (int e = 0; e < nke; e++) {
    const int hk = w_.key_per_group ? e : e / G;
    fold(w_.key_data(l), folded_.key_data(l), nke, e, mu_k_[l].data() + (size_t)hk * d, is_k_[l].data() + (size_t)hk * d);
  }
}

int64_t train_default_ctx(const model& m) { return std::min<int64_t>(m.hparams().n_ctx_train, 8192); }

train_result train_hash_encoders(const model& m, const std::vector<train_text>& texts, const train_params& p_in) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  auto secs = [](clock::time_point a) { return std::chrono::duration<double>(clock::now() - a).count(); };
  const model_hparams& hp = m.hparams();
  train_params p = p_in;
  if (p.ctx == 0) p.ctx = train_default_ctx(m);
  hash_trainer tr(hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim, p);
  std::vector<int> layers = p.layers;
  if (layers.empty())
    for (int l = 0; l < hp.n_layer; l++) layers.push_back(l);
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  const std::vector<int>& units = tr.units();

  train_result res;
  res.params = p;
  res.params.on_progress = nullptr;
  for (const auto& t : texts) res.texts.push_back(t.name);

  // Windows: one held out, n_windows for training, drawn with the seed.
  std::vector<token_window> wins = text_windows(texts, p.ctx);
  if ((int)wins.size() < p.n_windows + 1)
    fail("train: text too short", s(wins.size()) + " windows of " + s(p.ctx) + " tokens",
         ">= " + s(p.n_windows + 1) + " (windows + 1 held out)", "add text, or lower --windows or --ctx");
  std::mt19937_64 wrng(mix(p.seed, 2));
  std::shuffle(wins.begin(), wins.end(), wrng);
  const int nt = p.n_threads > 0 ? p.n_threads : omp_get_max_threads();
  window_capture cap(m, p.ctx, layers, nt);

  // Held-out window (the first half of a window: cheaper; queries over its second half): captures and the
  // SimHash baseline's recall per layer.
  std::vector<layer_capture> val(layers.size());
  std::vector<double> val_simhash(layers.size(), -1), val_simhash256(layers.size(), -1);
  const int64_t val_ctx = p.ctx / 2;
  if (p.val_queries > 0) {
    const token_window& vw = wins[0];
    const auto t0 = clock::now();
    cap.run(texts[vw.text].tokens.data() + vw.start, val_ctx,
            sample_positions(mix(p.seed, 3), val_ctx / 2, val_ctx, p.val_queries));
    for (size_t li = 0; li < layers.size(); li++) {
      cap.get(layers[li], val[li]);
      auto simhash_recall = [&](int bits, uint64_t salt) {
        return eval_recall(val[li], codes_simhash(val[li], bits, mix(p.seed, salt + layers[li])), p.labels, p.gqa,
                           units).top_overlap;
      };
      val_simhash[li] = simhash_recall(p.bits, 100);
      val_simhash256[li] = simhash_recall(256, 200);
    }
    res.val_tokens = val_ctx;
    res.seconds_capture += secs(t0);
    if (p.on_progress) {
      train_progress pr;
      pr.capture = true;
      pr.window = -1;
      pr.n_windows = p.n_windows;
      pr.elapsed_s = secs(t_start);
      p.on_progress(pr);
    }
  }

  const int64_t q_lo = train_query_lo(p);
  const int64_t steps_total = (int64_t)p.n_windows * p.steps_per_window;
  res.layers.resize(layers.size());
  layer_capture c;
  for (int w = 0; w < p.n_windows; w++) {
    const token_window& tw = wins[1 + w];
    const auto t0 = clock::now();
    cap.run(texts[tw.text].tokens.data() + tw.start, p.ctx,
            sample_positions(mix(p.seed, 1000 + w), q_lo, p.ctx, p.queries_per_window));
    res.train_tokens += p.ctx;
    res.seconds_capture += secs(t0);
    if (p.on_progress) {
      train_progress pr;
      pr.capture = true;
      pr.window = w;
      pr.n_windows = p.n_windows;
      pr.elapsed_s = secs(t_start);
      p.on_progress(pr);
    }
    for (size_t li = 0; li < layers.size(); li++) {
      const int l = layers[li];
      const auto t1 = clock::now();
      cap.get(l, c);
      train_layer_stats& stt = res.layers[li];
      stt.layer = l;
      stt.loss = tr.train_layer(l, c, (uint64_t)w);
      stt.val_recall_simhash = val_simhash[li];
      stt.val_recall_simhash256 = val_simhash256[li];
      stt.val_recall = -1;
      if (p.val_queries > 0) {
        const recall_stats vs = eval_recall(val[li], codes_learned(tr.weights(), l, val[li], nt), p.labels, p.gqa, units);
        stt.val_recall = vs.n > 0 ? vs.top_overlap : -1;
      }
      res.seconds_train += secs(t1);
      if (p.on_progress) {
        train_progress pr;
        pr.window = w;
        pr.n_windows = p.n_windows;
        pr.layer = l;
        pr.layer_index = (int)li;
        pr.n_layers = (int)layers.size();
        pr.steps = (int64_t)(w + 1) * p.steps_per_window;
        pr.steps_total = steps_total;
        pr.loss = stt.loss;
        pr.val_recall = stt.val_recall;
        pr.val_recall_simhash = stt.val_recall_simhash;
        pr.val_recall_simhash256 = stt.val_recall_simhash256;
        pr.elapsed_s = secs(t_start);
        const double done = ((double)w * layers.size() + li + 1) / ((double)p.n_windows * layers.size());
        pr.eta_s = pr.elapsed_s / done - pr.elapsed_s;
        p.on_progress(pr);
      }
    }
  }
  res.weights = tr.weights();
  res.seconds_total = secs(t_start);
  return res;
}

int64_t train_query_lo(const train_params& p) {
  // Every position with a middle of at least 16 tokens: hashes of post-RoPE vectors do not extrapolate to
  // positions (rotation angles) never trained on, so queries cover the whole window.
  return std::min<int64_t>(p.ctx - 1, p.labels.sinks + p.labels.window + 16);
}

}  // namespace hashattn
