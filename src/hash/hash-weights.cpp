// Hash encoder weights (allocation, seeded init, per-layer views) and the key-code store. See
// include/hashattn/hash.h.
// Weight layout per layer: query role then key role; each role: w0 [n_enc, in0, out0], b0 [n_enc, out0],
// w1, b1, w2, b2 (as many as mlp_layers).
#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "hashattn/error.h"
#include "hashattn/hash.h"

namespace hashattn {
namespace {
std::string s(int64_t v) { return std::to_string(v); }

hash_mlp_view make_view(const hash_weights& w, const float* base, int n_enc) {
  hash_mlp_view v;
  v.n_enc = n_enc;
  v.in_dim = w.head_dim;
  v.hidden = w.hidden;
  v.bits = w.bits;
  v.n_layers = w.mlp_layers;
  const float* p = base;
  for (int i = 0; i < w.mlp_layers; i++) {
    v.w[i] = p;
    p += (size_t)n_enc * v.layer_in(i) * v.layer_out(i);
    v.b[i] = p;
    p += (size_t)n_enc * v.layer_out(i);
  }
  return v;
}
}  // namespace

size_t hash_weights::role_floats(int n_enc) const {
  size_t n = 0;
  for (int i = 0; i < mlp_layers; i++) {
    const int in = i == 0 ? head_dim : hidden;
    const int out = i == mlp_layers - 1 ? bits : hidden;
    n += (size_t)n_enc * ((size_t)in * out + out);
  }
  return n;
}

hash_mlp_view hash_weights::query(int layer) const {
  HASHATTN_ASSERT(layer >= 0 && layer < n_layer);
  return make_view(*this, data.data() + (size_t)layer * layer_floats(), n_head);
}
hash_mlp_view hash_weights::key(int layer) const {
  HASHATTN_ASSERT(layer >= 0 && layer < n_layer);
  return make_view(*this, data.data() + (size_t)layer * layer_floats() + role_floats(n_head), n_key_enc());
}
float* hash_weights::query_data(int layer) { return data.data() + (size_t)layer * layer_floats(); }
float* hash_weights::key_data(int layer) { return query_data(layer) + role_floats(n_head); }

void hash_weights_check_shape(int n_layer, int n_head, int n_head_kv, int head_dim, int bits, int mlp_layers,
                              int hidden) {
  if (n_layer <= 0) fail("hash weights: n_layer", s(n_layer), "> 0");
  if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv != 0)
    fail("hash weights: heads", s(n_head) + "/" + s(n_head_kv), "n_head a positive multiple of n_head_kv");
  if (head_dim <= 0 || head_dim > 4096) fail("hash weights: head_dim", s(head_dim), "in [1, 4096]");
  if (!hash_bits_valid(bits)) fail("hash weights: bits", s(bits), "16, 32 or 64");
  if (mlp_layers < 1 || mlp_layers > 3) fail("hash weights: mlp layers", s(mlp_layers), "1, 2 or 3");
  if (mlp_layers > 1 && (hidden <= 0 || hidden > 8192))
    fail("hash weights: hidden", s(hidden), "in [1, 8192] for a 2- or 3-layer MLP");
}

hash_weights hash_weights_alloc(int n_layer, int n_head, int n_head_kv, int head_dim, int bits, int mlp_layers,
                                int hidden, bool key_per_group) {
  hash_weights_check_shape(n_layer, n_head, n_head_kv, head_dim, bits, mlp_layers, hidden);
  hash_weights w;
  w.n_layer = n_layer;
  w.n_head = n_head;
  w.n_head_kv = n_head_kv;
  w.head_dim = head_dim;
  w.bits = bits;
  w.mlp_layers = mlp_layers;
  w.hidden = mlp_layers > 1 ? hidden : 0;
  w.key_per_group = key_per_group;
  w.data.assign((size_t)n_layer * w.layer_floats(), 0.f);
  return w;
}

void hash_weights_init_random(hash_weights& w, uint64_t seed, float bias_std) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int l = 0; l < w.n_layer; l++) {
    for (int role = 0; role < 2; role++) {
      const hash_mlp_view v = role == 0 ? w.query(l) : w.key(l);
      for (int i = 0; i < v.n_layers; i++) {
        const float sd = 1.f / std::sqrt((float)v.layer_in(i));
        float* wp = (float*)v.w[i];
        float* bp = (float*)v.b[i];
        const size_t nw = (size_t)v.n_enc * v.layer_in(i) * v.layer_out(i);
        for (size_t j = 0; j < nw; j++) wp[j] = nd(rng) * sd;
        for (size_t j = 0; j < (size_t)v.n_enc * v.layer_out(i); j++) bp[j] = nd(rng) * bias_std;
      }
    }
  }
}

// ---- code store ----
void hash_code_store::reset(int n_layer, int n_enc, int bits, int64_t max_ctx) {
  if (n_layer <= 0) fail("code store: n_layer", s(n_layer), "> 0");
  if (n_enc <= 0) fail("code store: n_enc", s(n_enc), "> 0");
  if (!hash_bits_valid(bits)) fail("code store: bits", s(bits), "16, 32 or 64");
  if (max_ctx < 0 || max_ctx > INT32_MAX) fail("code store: max_ctx", s(max_ctx), "in [0, 2^31)");
  n_enc_ = n_enc;
  bits_ = bits;
  max_ctx_ = max_ctx;
  // Layers padded to 64 bytes so that every layer starts cache-line aligned.
  const size_t layer_bytes = ((size_t)max_ctx * n_enc * hash_code_bytes(bits) + 63) / 64 * 64;
  layer_words_ = layer_bytes / hash_code_bytes(bits);
  data_.assign(layer_bytes / 8 * n_layer + 8, 0);
  n_tok_.assign(n_layer, 0);
}

code_view hash_code_store::view(int layer) const {
  HASHATTN_ASSERT(layer >= 0 && layer < n_layer());
  code_view v;
  v.codes = (const char*)data_.data() + (size_t)layer * layer_words_ * hash_code_bytes(bits_);
  v.bits = bits_;
  v.n_enc = n_enc_;
  v.n_tok = n_tok_[layer];
  v.stride_tok = 1;
  v.stride_enc = max_ctx_;
  return v;
}

void* hash_code_store::row(int layer, int64_t pos) {
  if (layer < 0 || layer >= n_layer()) fail("code store: layer", s(layer), "in [0, " + s(n_layer()) + ")");
  if (pos < 0 || pos > max_ctx_) fail("code store: position", s(pos), "in [0, max_ctx = " + s(max_ctx_) + "]");
  return (char*)data_.data() + ((size_t)layer * layer_words_ + (size_t)pos) * hash_code_bytes(bits_);
}

void hash_code_store::commit(int layer, int64_t pos0, int64_t n) {
  if (layer < 0 || layer >= n_layer()) fail("code store: layer", s(layer), "in [0, " + s(n_layer()) + ")");
  if (pos0 != n_tok_[layer])
    fail("code store: append position", s(pos0), s(n_tok_[layer]) + " (the layer's token count)",
         "keys must be appended in order; truncate first to rewrite");
  if (n < 0 || pos0 + n > max_ctx_)
    fail("code store: append of " + s(n) + " tokens at " + s(pos0), "end " + s(pos0 + n),
         "<= max_ctx = " + s(max_ctx_), "begin() the policy with a larger context");
  n_tok_[layer] = pos0 + n;
}

void hash_code_store::truncate(int64_t n) {
  if (n < 0) fail("code store: truncate", s(n), ">= 0");
  for (auto& t : n_tok_) t = std::min(t, n);
}

}  // namespace hashattn
