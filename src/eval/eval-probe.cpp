// probe_policy: the attention policy the evaluation runs the model with. It forwards everything to
// an inner policy that can be swapped over an existing KV cache (install: begin + replay of the
// fp32 keys it kept), so one dense prefill serves every policy under test, and it measures what
// each decode step reads: attended tokens per query head, KV rows read (the union of a group's
// lists in per-head mode), what the selector read (its auxiliary state, extra keys), and optionally the
// attention-mass recall and top-32-in-budget overlap (metrics.h) of each head's attended list against
// exact attention (softmax(q.k * scale) over every cached token, fp32 keys).
// Kept keys: per layer [max_ctx, n_head_kv, head_dim] fp32; a forked probe (one branch of a
// branch_decoder) reads its base's keys before the fork and keeps only its own after.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "hashattn/error.h"
#include "hashattn/eval.h"
#include "hashattn/metrics.h"

namespace hashattn {

probe_policy::probe_policy() = default;
probe_policy::~probe_policy() = default;

std::string probe_policy::name() const { return inner_ ? inner_->name() : "dense"; }
bool probe_policy::is_dense() const { return !inner_ || inner_->is_dense(); }
double probe_policy::aux_bits_per_token_head() const { return inner_ ? inner_->aux_bits_per_token_head() : 0; }

void probe_policy::begin(int n_layer, const layer_shape& shape, int64_t max_ctx) {
  n_layer_ = n_layer;
  shape_ = shape;
  max_ctx_ = max_ctx;
  base_ = nullptr;
  fork_ = 0;
  keys_.assign(n_layer, {});
  for (auto& k : keys_) k.assign((size_t)max_ctx * shape.n_head_kv * shape.head_dim, 0.f);
  n_tok_.assign(n_layer, 0);
  if (inner_) inner_->begin(n_layer, shape, max_ctx);
  reset_stats();
}

std::unique_ptr<probe_policy> probe_policy::fork(const probe_policy& base, std::unique_ptr<attention_policy> inner,
                                                 int64_t max_tail) {
  if (base.base_) fail("eval probe: fork of a forked probe");
  HASHATTN_ASSERT(max_tail >= 0);
  auto p = std::make_unique<probe_policy>();
  p->n_layer_ = base.n_layer_;
  p->shape_ = base.shape_;
  p->base_ = &base;
  p->fork_ = base.n_layer_ > 0 ? base.n_tok_[0] : 0;
  for (int l = 0; l < base.n_layer_; ++l)
    if (base.n_tok_[l] != p->fork_) fail("eval probe: fork while the layers hold different lengths");
  p->max_ctx_ = p->fork_ + max_tail;
  p->keys_.assign(p->n_layer_, {});
  for (auto& k : p->keys_) k.assign((size_t)max_tail * p->shape_.n_head_kv * p->shape_.head_dim, 0.f);
  p->n_tok_.assign(p->n_layer_, p->fork_);
  p->dense_layers_ = base.dense_layers_;
  p->install(std::move(inner));
  return p;
}

const float* probe_policy::key_row(int layer, int64_t t) const {
  const size_t row = (size_t)shape_.n_head_kv * shape_.head_dim;
  return t < fork_ ? base_->keys_[layer].data() + (size_t)t * row : keys_[layer].data() + (size_t)(t - fork_) * row;
}

void probe_policy::on_append(int layer, const float* k, int64_t pos0, int64_t n_new) {
  HASHATTN_ASSERT(layer >= 0 && layer < n_layer_);
  HASHATTN_ASSERT(pos0 >= fork_ && pos0 <= n_tok_[layer] && pos0 + n_new <= max_ctx_);
  const size_t row = (size_t)shape_.n_head_kv * shape_.head_dim;
  std::memcpy(keys_[layer].data() + (size_t)(pos0 - fork_) * row, k, (size_t)n_new * row * sizeof(float));
  n_tok_[layer] = pos0 + n_new;
  if (inner_) inner_->on_append(layer, k, pos0, n_new);
}

void probe_policy::truncate(int64_t n) {
  if (n < fork_) fail("eval probe: truncate a forked probe to " + std::to_string(n) + " tokens, before its fork");
  for (auto& t : n_tok_) t = std::min(t, n);
  if (inner_) inner_->truncate(n);
}

int64_t probe_policy::n_tok(int layer) const { return n_tok_.at(layer); }

void probe_policy::install(std::unique_ptr<attention_policy> p) {
  inner_ = std::move(p);
  if (!inner_ || n_layer_ == 0) return;
  inner_->begin(n_layer_, shape_, max_ctx_);
  for (int l = 0; l < n_layer_; ++l) {
    const int64_t shared = std::min(n_tok_[l], fork_);
    if (shared > 0) inner_->on_append(l, base_->keys_[l].data(), 0, shared);
    if (n_tok_[l] > shared) inner_->on_append(l, keys_[l].data(), shared, n_tok_[l] - shared);
  }
}

void probe_policy::reset_stats() {
  stats_ = probe_stats{};
}

void probe_policy::select(int layer, const float* q, const kv_view& kv, index_lists& out) {
  HASHATTN_ASSERT(inner_ != nullptr);
  inner_->select(layer, q, kv, out);
  if (std::find(dense_layers_.begin(), dense_layers_.end(), layer) != dense_layers_.end()) {
    // An ablation: this layer attends every token (the inner policy still selected, so what it reads is
    // counted as in any other layer).
    out.reset(out.n_lists(), kv.n_tok, out.per_group);
    for (int r = 0; r < out.n_lists(); r++) {
      for (int64_t t = 0; t < kv.n_tok; t++) out.idx[(size_t)r * out.stride + t] = (int32_t)t;
      out.count[r] = (int32_t)kv.n_tok;
    }
  }
  measure(layer, q, kv, out);
}

void probe_policy::measure(int layer, const float* q, const kv_view& kv, const index_lists& l) {
  const int64_t n = kv.n_tok;
  const int H = shape_.n_head, Hk = shape_.n_head_kv, d = shape_.head_dim;
  const int G = H / Hk;
  if (n <= 0) return;
  const int expect = l.per_group ? Hk : H;
  if (l.n_lists() != expect)
    fail("eval probe: policy '" + inner_->name() + "' returned " + std::to_string(l.n_lists()) +
         " index lists, expected " + std::to_string(expect));
  auto list_of = [&](int h) { return l.per_group ? h / G : h; };
  double att = 0;
  for (int h = 0; h < H; ++h) att += (double)l.count[list_of(h)] / (double)n;
  stats_.attended_frac += att / H;

  if ((int64_t)mark_.size() < n) mark_.resize((size_t)n);
  int64_t rows = 0;
  for (int hk = 0; hk < Hk; ++hk) {
    int64_t u = 0;
    const int r0 = l.per_group ? hk : hk * G, r1 = l.per_group ? hk + 1 : (hk + 1) * G;
    for (int r = r0; r < r1; ++r) {
      const int32_t* ix = l.idx.data() + (size_t)r * l.stride;
      for (int32_t i = 0; i < l.count[r]; ++i) {
        HASHATTN_ASSERT(ix[i] >= 0 && ix[i] < n);
        if (!mark_[ix[i]]) mark_[ix[i]] = 1, ++u;
      }
    }
    for (int r = r0; r < r1; ++r) {
      const int32_t* ix = l.idx.data() + (size_t)r * l.stride;
      for (int32_t i = 0; i < l.count[r]; ++i) mark_[ix[i]] = 0;
    }
    rows += u;
  }
  stats_.kv_read_frac += (double)rows / ((double)n * Hk);
  stats_.kv_read_bytes += (double)rows * d * 2.0 * (double)dtype_size(kv.type);
  stats_.select_read_bytes +=
      inner_->aux_bits_per_token_kv_head() / 8.0 * (double)n * Hk + inner_->select_extra_read_bytes();
  stats_.dense_bytes += (double)n * Hk * d * 2.0 * (double)dtype_size(kv.type);
  stats_.steps += 1;

  if (!recall_on_) return;
  if (stats_.top_overlap.empty()) {
    stats_.top_overlap.assign((size_t)n_layer_ * H, 0.0);
    stats_.mass_recall.assign((size_t)n_layer_ * H, 0.0);
  }
  if (layer == 0) stats_.recall_steps += 1;
  const float scale = 1.f / std::sqrt((float)d);
  sc_.resize((size_t)n);
  for (int h = 0; h < H; ++h) {
    const int hk = h / G;
    const float* qh = q + (size_t)h * d;
    double mx = -1e300;
    for (int64_t t = 0; t < n; ++t) {
      const float* kt = key_row(layer, t) + (size_t)hk * d;
      double s = 0;
      for (int j = 0; j < d; ++j) s += (double)qh[j] * kt[j];
      s *= scale;
      sc_[t] = s;
      mx = std::max(mx, s);
    }
    double z = 0;
    for (int64_t t = 0; t < n; ++t) z += (sc_[t] = std::exp(sc_[t] - mx));
    for (int64_t t = 0; t < n; ++t) sc_[t] /= z;  // exact attention weights
    const int r = list_of(h);
    attention_recall_params rp;
    rp.prob = sc_.data();
    rp.n = n;
    rp.attended = l.idx.data() + (size_t)r * l.stride;
    rp.n_attended = l.count[r];
    const attention_recall rec = attention_recall_of(rp);
    stats_.top_overlap[(size_t)layer * H + h] += rec.top_overlap;
    stats_.mass_recall[(size_t)layer * H + h] += rec.mass;
  }
}

}  // namespace hashattn
