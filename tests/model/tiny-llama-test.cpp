// The whole forward pass on tiny random models written to GGUF in memory (no model file needed),
// against a float64 forward pass written here from the architecture:
//   llama (adjacent-pair RoPE, tied embeddings, F32 weights: float paths) and qwen2 (NEOX RoPE,
//   q/k/v biases, separate output, Q8_0 / Q4_1 weights: integer paths), GQA 4:2, head dim 16.
// Prefill (all logits), decode (token by token) and chunked prefill agree with the reference;
// the policy seam is exercised (on_append sees every key once, post-RoPE; a non-dense policy that
// selects everything gives the dense result); branches decoded side by side after a shared prefix
// (branch_decoder) agree with the reference (dense) and with sequential decoding (sparse policies);
// the loader refuses broken files with clear errors.
// The reference rounds K and V to fp16 like the cache (the cache format is part of the spec).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/test-util.h"
#include "core/half.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/model.h"

namespace hashattn {
namespace {

struct tiny_cfg {
  std::string arch = "llama";
  int n_layer = 2, n_embd = 64, n_head = 4, n_head_kv = 2, head_dim = 16, n_ff = 96, n_vocab = 100;
  int ctx = 64;
  float rope_base = 10000.f, eps = 1e-5f;
  bool tied = true, bias = false;
  gguf::type wtype = gguf::type::F32;  // 2-D weights (embedding included)
  gguf::type otype = gguf::type::F32;  // output.weight when not tied
};

// A 2-D weight: random values, stored in `t`; `deq` holds what the file really contains.
struct tensor_data {
  std::vector<uint8_t> bytes;
  std::vector<double> deq;  // [rows, cols]
};

tensor_data make_matrix(gguf::type t, int64_t rows, int64_t cols, float scale, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(rows * cols);
  for (auto& x : v) x = nd(rng);
  tensor_data td;
  td.deq.resize(v.size());
  if (t == gguf::type::F32) {
    td.bytes.resize(v.size() * 4);
    std::memcpy(td.bytes.data(), v.data(), td.bytes.size());
    for (size_t i = 0; i < v.size(); ++i) td.deq[i] = v[i];
    return td;
  }
  const size_t bb = t == gguf::type::Q8_0 ? 34 : 20;
  td.bytes.resize(v.size() / 32 * bb);
  for (size_t b = 0; b < v.size() / 32; ++b) {
    const float* x = v.data() + b * 32;
    uint8_t* o = td.bytes.data() + b * bb;
    double* y = td.deq.data() + b * 32;
    if (t == gguf::type::Q8_0) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
      const uint16_t dh = fp32_to_fp16(amax / 127.f);
      const double d = fp16_to_fp32(dh);
      std::memcpy(o, &dh, 2);
      for (int j = 0; j < 32; ++j) {
        const int q = d > 0 ? (int)std::lround(x[j] / d) : 0;
        o[2 + j] = (uint8_t)(int8_t)std::max(-127, std::min(127, q));
        y[j] = (int8_t)o[2 + j] * d;
      }
    } else {  // Q4_1
      float mn = x[0], mx = x[0];
      for (int j = 0; j < 32; ++j) mn = std::min(mn, x[j]), mx = std::max(mx, x[j]);
      const uint16_t dh = fp32_to_fp16((mx - mn) / 15.f), mh = fp32_to_fp16(mn);
      const double d = fp16_to_fp32(dh), m = fp16_to_fp32(mh);
      std::memcpy(o, &dh, 2);
      std::memcpy(o + 2, &mh, 2);
      int q[32];
      for (int j = 0; j < 32; ++j) q[j] = d > 0 ? std::max(0, std::min(15, (int)std::lround((x[j] - m) / d))) : 0;
      for (int j = 0; j < 16; ++j) o[4 + j] = (uint8_t)(q[j] | (q[j + 16] << 4));
      for (int j = 0; j < 32; ++j) y[j] = q[j] * d + m;
    }
  }
  return td;
}

struct ref_layer {
  std::vector<double> attn_norm, ffn_norm, bq, bk, bv;
  std::vector<double> wq, wk, wv, wo, gate, up, down;
};

struct tiny_model {
  tiny_cfg c;
  std::vector<uint8_t> file;
  std::vector<double> embd, out, out_norm;
  std::vector<ref_layer> layers;
};

std::vector<double> make_vec(int64_t n, float mean, float sd, std::mt19937_64& rng, std::vector<float>& f) {
  std::normal_distribution<float> nd(mean, sd);
  f.resize(n);
  std::vector<double> d(n);
  for (int64_t i = 0; i < n; ++i) d[i] = f[i] = nd(rng);
  return d;
}

// Builds the GGUF bytes and the reference weights. `drop` names a tensor to leave out, `bad_shape`
// one to write with a wrong shape (for the loader's errors).
// Weight scales keep every sublayer a moderate update of the residual stream (a random model
// with large updates amplifies rounding differences by ~100x and tests nothing more).
tiny_model build(const tiny_cfg& c, uint64_t seed, const std::string& drop = {}, const std::string& bad_shape = {}) {
  std::mt19937_64 rng(seed);
  tiny_model m;
  m.c = c;
  gguf::writer w;
  const std::string a = c.arch + ".";
  w.set("general.architecture", gguf::value::from_string(c.arch));
  w.set(a + "block_count", gguf::value::from_u32(c.n_layer));
  w.set(a + "embedding_length", gguf::value::from_u32(c.n_embd));
  w.set(a + "attention.head_count", gguf::value::from_u32(c.n_head));
  w.set(a + "attention.head_count_kv", gguf::value::from_u32(c.n_head_kv));
  w.set(a + "attention.key_length", gguf::value::from_u32(c.head_dim));
  w.set(a + "feed_forward_length", gguf::value::from_u32(c.n_ff));
  w.set(a + "context_length", gguf::value::from_u32(c.ctx));
  w.set(a + "rope.freq_base", gguf::value::from_f32(c.rope_base));
  w.set(a + "attention.layer_norm_rms_epsilon", gguf::value::from_f32(c.eps));
  auto add_mat = [&](const std::string& name, gguf::type t, int64_t rows, int64_t cols, float scale) {
    tensor_data td = make_matrix(t, rows, cols, scale, rng);
    if (name != drop) {
      std::vector<int64_t> ne = {cols, rows};
      if (name == bad_shape) ne = {cols, rows - 1};
      const size_t nb = gguf::row_bytes(t, cols) * (size_t)ne[1];
      w.add_tensor(name, t, ne, td.bytes.data(), nb);
    }
    return td.deq;
  };
  auto add_vec = [&](const std::string& name, int64_t n, float mean, float sd) {
    std::vector<float> f;
    auto d = make_vec(n, mean, sd, rng, f);
    if (name != drop) w.add_tensor(name, gguf::type::F32, {n}, f.data(), n * 4);
    return d;
  };
  const int qd = c.n_head * c.head_dim, kvd = c.n_head_kv * c.head_dim;
  m.embd = add_mat("token_embd.weight", c.wtype, c.n_vocab, c.n_embd, 1.0f);
  m.out_norm = add_vec("output_norm.weight", c.n_embd, 1.0f, 0.1f);
  m.out = c.tied ? m.embd : add_mat("output.weight", c.otype, c.n_vocab, c.n_embd, 0.3f);
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    ref_layer L;
    L.attn_norm = add_vec(b + "attn_norm.weight", c.n_embd, 1.0f, 0.1f);
    L.ffn_norm = add_vec(b + "ffn_norm.weight", c.n_embd, 1.0f, 0.1f);
    L.wq = add_mat(b + "attn_q.weight", c.wtype, qd, c.n_embd, 0.1f);
    L.wk = add_mat(b + "attn_k.weight", c.wtype, kvd, c.n_embd, 0.1f);
    L.wv = add_mat(b + "attn_v.weight", c.wtype, kvd, c.n_embd, 0.1f);
    L.wo = add_mat(b + "attn_output.weight", c.wtype, c.n_embd, qd, 0.05f);
    L.gate = add_mat(b + "ffn_gate.weight", c.wtype, c.n_ff, c.n_embd, 0.1f);
    L.up = add_mat(b + "ffn_up.weight", c.wtype, c.n_ff, c.n_embd, 0.1f);
    L.down = add_mat(b + "ffn_down.weight", c.wtype, c.n_embd, c.n_ff, 0.05f);
    if (c.bias) {
      L.bq = add_vec(b + "attn_q.bias", qd, 0.f, 0.2f);
      L.bk = add_vec(b + "attn_k.bias", kvd, 0.f, 0.2f);
      L.bv = add_vec(b + "attn_v.bias", kvd, 0.f, 0.2f);
    }
    m.layers.push_back(std::move(L));
  }
  m.file = w.to_bytes();
  return m;
}

// float64 forward over a whole token sequence; returns logits [n, n_vocab].
std::vector<double> ref_forward(const tiny_model& m, const std::vector<int32_t>& toks) {
  const tiny_cfg& c = m.c;
  const int n = (int)toks.size(), E = c.n_embd, hd = c.head_dim, qd = c.n_head * hd, kvd = c.n_head_kv * hd;
  const int G = c.n_head / c.n_head_kv;
  std::vector<double> x((size_t)n * E);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < E; ++j) x[(size_t)i * E + j] = m.embd[(size_t)toks[i] * E + j];
  auto rms = [&](const double* v, const std::vector<double>& w, double* o) {
    double ss = 0;
    for (int j = 0; j < E; ++j) ss += v[j] * v[j];
    const double s = 1.0 / std::sqrt(ss / E + c.eps);
    for (int j = 0; j < E; ++j) o[j] = v[j] * s * w[j];
  };
  auto matvec = [](const std::vector<double>& W, int rows, int cols, const double* v, double* o) {
    for (int r = 0; r < rows; ++r) {
      double s = 0;
      for (int j = 0; j < cols; ++j) s += W[(size_t)r * cols + j] * v[j];
      o[r] = s;
    }
  };
  auto rope = [&](double* v, int heads, int pos) {
    const bool neox = c.arch == "qwen2";
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < hd / 2; ++i) {
        const double th = pos * std::pow((double)c.rope_base, -2.0 * i / hd);
        double* a = v + h * hd + (neox ? i : 2 * i);
        double* b = v + h * hd + (neox ? i + hd / 2 : 2 * i + 1);
        const double x0 = *a, x1 = *b;
        *a = x0 * std::cos(th) - x1 * std::sin(th);
        *b = x0 * std::sin(th) + x1 * std::cos(th);
      }
  };
  std::vector<double> h(E), q(qd), K((size_t)n * kvd), V((size_t)n * kvd), att(qd), t(std::max(E, c.n_ff)),
      g(c.n_ff), u(c.n_ff);
  for (int l = 0; l < c.n_layer; ++l) {
    const ref_layer& L = m.layers[l];
    std::vector<double> Q((size_t)n * qd);
    for (int i = 0; i < n; ++i) {
      rms(&x[(size_t)i * E], L.attn_norm, h.data());
      matvec(L.wq, qd, E, h.data(), &Q[(size_t)i * qd]);
      matvec(L.wk, kvd, E, h.data(), &K[(size_t)i * kvd]);
      matvec(L.wv, kvd, E, h.data(), &V[(size_t)i * kvd]);
      if (c.bias)
        for (int j = 0; j < qd; ++j) Q[(size_t)i * qd + j] += L.bq[j];
      if (c.bias)
        for (int j = 0; j < kvd; ++j) K[(size_t)i * kvd + j] += L.bk[j], V[(size_t)i * kvd + j] += L.bv[j];
      rope(&Q[(size_t)i * qd], c.n_head, i);
      rope(&K[(size_t)i * kvd], c.n_head_kv, i);
      for (int j = 0; j < kvd; ++j) K[(size_t)i * kvd + j] = fp16_to_fp32(fp32_to_fp16((float)K[(size_t)i * kvd + j])), V[(size_t)i * kvd + j] = fp16_to_fp32(fp32_to_fp16((float)V[(size_t)i * kvd + j]));
    }
    for (int i = 0; i < n; ++i) {
      for (int hh = 0; hh < c.n_head; ++hh) {
        const int gk = hh / G;
        std::vector<double> s(i + 1);
        double mx = -INFINITY, sum = 0;
        for (int tk = 0; tk <= i; ++tk) {
          double d = 0;
          for (int j = 0; j < hd; ++j) d += Q[(size_t)i * qd + hh * hd + j] * K[(size_t)tk * kvd + gk * hd + j];
          s[tk] = d / std::sqrt((double)hd);
          mx = std::max(mx, s[tk]);
        }
        for (auto& v : s) sum += v = std::exp(v - mx);
        for (int j = 0; j < hd; ++j) {
          double o = 0;
          for (int tk = 0; tk <= i; ++tk) o += s[tk] * V[(size_t)tk * kvd + gk * hd + j];
          att[hh * hd + j] = o / sum;
        }
      }
      matvec(L.wo, E, qd, att.data(), t.data());
      for (int j = 0; j < E; ++j) x[(size_t)i * E + j] += t[j];
    }
    for (int i = 0; i < n; ++i) {
      rms(&x[(size_t)i * E], L.ffn_norm, h.data());
      matvec(L.gate, c.n_ff, E, h.data(), g.data());
      matvec(L.up, c.n_ff, E, h.data(), u.data());
      for (int j = 0; j < c.n_ff; ++j) g[j] = g[j] / (1 + std::exp(-g[j])) * u[j];
      matvec(L.down, E, c.n_ff, g.data(), t.data());
      for (int j = 0; j < E; ++j) x[(size_t)i * E + j] += t[j];
    }
  }
  std::vector<double> logits((size_t)n * c.n_vocab);
  for (int i = 0; i < n; ++i) {
    rms(&x[(size_t)i * E], m.out_norm, h.data());
    matvec(m.out, c.n_vocab, E, h.data(), &logits[(size_t)i * c.n_vocab]);
  }
  return logits;
}

std::unique_ptr<model> load(const tiny_model& m) {
  std::shared_ptr<const gguf::file> f = gguf::file::from_buffer(m.file.data(), m.file.size());
  return model::from_gguf(f);
}

std::vector<int32_t> random_tokens(int n, int vocab, std::mt19937_64& rng) {
  std::vector<int32_t> t(n);
  for (auto& v : t) v = (int32_t)(rng() % vocab);
  return t;
}

// |ours - ref| <= tol * (1 + |ref|) for every logit of a row.
void expect_row_close(const float* ours, const double* ref, int n, double tol, const std::string& what) {
  std::vector<double> r(ref, ref + n);
  EXPECT_TRUE(test::all_close(ours, r.data(), n, tol, tol, 1e-6)) << what;
}

// Tolerances (absolute + relative, per logit). Float weights: fp32 arithmetic plus the rare
// value whose fp16 rounding differs between the fp32 runtime and the float64 reference.
// Quantized weights: decode also rounds activations to 16-bit blocks (2^-16 of a block's max);
// with weights of magnitude ~1 over 64-96 inputs that is up to ~1e-3 on a logit.
constexpr double kTol = 2e-4;
constexpr double kTolQuant = 1e-3;

void check_model(const tiny_cfg& c, uint64_t seed, double tol) {
  HASHATTN_SEED(seed);
  const tiny_model tm = build(c, seed);
  auto m = load(tm);
  EXPECT_EQ(m->hparams().arch, c.arch);
  EXPECT_EQ(m->hparams().tied_embeddings, c.tied);
  EXPECT_EQ(m->hparams().qkv_bias, c.bias);
  EXPECT_EQ(m->hparams().rope, c.arch == "qwen2" ? rope_layout::neox : rope_layout::adjacent);
  std::mt19937_64 rng(seed + 1);
  const int n = 23;
  const auto toks = random_tokens(n, c.n_vocab, rng);
  const auto ref = ref_forward(tm, toks);
  for (int nt : {1, 2}) {
    SCOPED_TRACE("threads=" + std::to_string(nt));
    {  // one prefill with every logit
      session s(*m, session_params{0, nt, 512});
      s.eval(toks.data(), n, true);
      for (int i = 0; i < n; ++i)
        expect_row_close(s.logits_at(i), &ref[(size_t)i * c.n_vocab], c.n_vocab, tol, "prefill pos " + std::to_string(i));
    }
    {  // chunked prefill (n_batch 5) for 13 tokens, then decode one by one
      session s(*m, session_params{0, nt, 5});
      const float* lg = s.eval(toks.data(), 13);
      expect_row_close(lg, &ref[12 * (size_t)c.n_vocab], c.n_vocab, tol, "chunked prefill last");
      for (int i = 13; i < n; ++i) {
        lg = s.eval(&toks[i], 1);
        expect_row_close(lg, &ref[(size_t)i * c.n_vocab], c.n_vocab, tol, "decode pos " + std::to_string(i));
      }
      EXPECT_EQ(s.n_past(), n);
    }
  }
}

TEST(tiny_model, llama_f32_tied_against_float64) {
  tiny_cfg c;
  check_model(c, 1001, kTol);
}

TEST(tiny_model, llama_q8_0_and_q4_1_against_float64) {
  tiny_cfg c;
  c.wtype = gguf::type::Q8_0;
  check_model(c, 1002, kTolQuant);
  c.wtype = gguf::type::Q4_1;
  check_model(c, 1003, kTolQuant);
}

// qwen2: NEOX RoPE, q/k/v biases, untied output; Q8_0 layers, Q4_1 output.
tiny_cfg qwen2_cfg() {
  tiny_cfg c;
  c.arch = "qwen2";
  c.bias = true;
  c.tied = false;
  c.wtype = gguf::type::Q8_0;
  c.otype = gguf::type::Q4_1;
  return c;
}

TEST(tiny_model, qwen2_neox_bias_untied_against_float64) {
  tiny_cfg c = qwen2_cfg();
  check_model(c, 1004, kTolQuant);
  c.n_head_kv = 4;  // no GQA
  c.wtype = gguf::type::F32;
  check_model(c, 1005, kTol);
}

// Records every on_append; optionally selects every token (per query head) instead of dense.
class recording_policy final : public attention_policy {
 public:
  explicit recording_policy(bool dense) : dense_(dense) {}
  std::string name() const override { return "recording"; }
  bool is_dense() const override { return dense_; }
  double aux_bits_per_token_head() const override { return 0; }
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override {
    began++;
    shape_ = shape;
    keys.assign(n_layer, {});
    next_pos.assign(n_layer, 0);
  }
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override {
    EXPECT_EQ(pos0, next_pos[layer]) << "keys must be appended in order, once";
    next_pos[layer] = pos0 + n_new;
    const int64_t w = (int64_t)shape_.n_head_kv * shape_.head_dim;
    keys[layer].insert(keys[layer].end(), k, k + n_new * w);
  }
  void truncate(int64_t n) override {
    for (size_t l = 0; l < keys.size(); ++l) {
      keys[l].resize(n * shape_.n_head_kv * shape_.head_dim);
      next_pos[l] = n;
    }
  }
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override {
    selects++;
    out.per_group = false;
    out.stride = kv.n_tok;
    out.count.assign(shape_.n_head, (int32_t)kv.n_tok);
    out.idx.resize((size_t)shape_.n_head * kv.n_tok);
    for (int h = 0; h < shape_.n_head; ++h)
      std::iota(out.idx.begin() + (size_t)h * kv.n_tok, out.idx.begin() + (size_t)(h + 1) * kv.n_tok, 0);
  }
  int began = 0, selects = 0;
  std::vector<std::vector<float>> keys;
  std::vector<int64_t> next_pos;

 private:
  bool dense_;
  layer_shape shape_;
};

TEST(tiny_model, policy_seam_sees_every_key_and_select_all_equals_dense) {
  tiny_cfg c;
  c.wtype = gguf::type::Q8_0;
  const tiny_model tm = build(c, 77);
  auto m = load(tm);
  std::mt19937_64 rng(78);
  const auto toks = random_tokens(17, c.n_vocab, rng);
  auto pol = std::make_unique<recording_policy>(false);
  recording_policy* p = pol.get();
  session sparse(*m, session_params{32, 2, 512}, std::move(pol));
  session dense(*m, session_params{32, 2, 512});
  EXPECT_EQ(p->began, 1);
  sparse.eval(toks.data(), 10);
  dense.eval(toks.data(), 10);
  EXPECT_EQ(p->selects, 0) << "prefill is dense and causal; select() is for decode";
  for (int i = 10; i < 17; ++i) {
    const float* a = sparse.eval(&toks[i], 1);
    const float* b = dense.eval(&toks[i], 1);
    std::vector<double> bd(b, b + c.n_vocab);
    EXPECT_TRUE(test::all_close(a, bd.data(), c.n_vocab, 1e-5, 1e-5)) << "pos " << i;
  }
  EXPECT_EQ(p->selects, 7 * c.n_layer);
  // Every layer saw all 17 keys once, post-RoPE, equal to the cache up to fp16 rounding.
  for (int l = 0; l < c.n_layer; ++l) {
    ASSERT_EQ(p->next_pos[l], 17);
    const kv_view kv = sparse.kv(l);
    ASSERT_EQ(kv.n_tok, 17);
    const uint16_t* kc = static_cast<const uint16_t*>(kv.k);
    for (int64_t t = 0; t < 17; ++t)
      for (int j = 0; j < c.n_head_kv * c.head_dim; ++j) {
        const float got = p->keys[l][t * c.n_head_kv * c.head_dim + j];
        ASSERT_EQ(fp32_to_fp16(got), kc[t * kv.stride_tok + j]) << "layer " << l << " tok " << t;
      }
  }
  sparse.truncate(5);
  EXPECT_EQ(p->next_pos[0], 5);
  EXPECT_EQ(sparse.n_past(), 5);
}

// Branches forked after a prefix: every branch gets its own tokens (so its K/V history differs from
// the others'). Dense branches must equal the float64 forward of prefix + their tokens; sparse branches
// (streaming, oracle: selections that depend on the branch's own keys) must equal a session that
// prefills the prefix and decodes the same tokens one by one with a fresh policy of the same kind.
void check_branches(const tiny_cfg& c, uint64_t seed, double tol) {
  HASHATTN_SEED(seed);
  const tiny_model tm = build(c, seed);
  auto m = load(tm);
  std::mt19937_64 rng(seed + 1);
  const int P = 11, T = 8, B = 5;
  const auto prefix = random_tokens(P, c.n_vocab, rng);
  std::vector<std::vector<int32_t>> toks(B);
  for (auto& t : toks) t = random_tokens(T, c.n_vocab, rng);
  const layer_shape shape{c.n_head, c.n_head_kv, c.head_dim};
  auto sparse_cfg = [&](const std::string& name) {
    policy_config pc;
    pc.name = name;
    pc.budget.count = 6;
    pc.budget.sinks = 2;
    pc.budget.window = 2;
    return pc;
  };
  // Branch kinds: 0, 1 dense; 2 streaming; 3, 4 oracle (4 drops out after step 3).
  const std::vector<std::string> kind = {"dense", "dense", "streaming", "oracle", "oracle"};
  for (int nt : {1, 2}) {
    SCOPED_TRACE("threads=" + std::to_string(nt));
    auto rec = std::make_unique<recording_policy>(true);
    recording_policy* prefix_keys = rec.get();
    session s(*m, session_params{48, nt, 512}, std::move(rec));
    s.eval(prefix.data(), P);
    std::vector<std::unique_ptr<attention_policy>> own;
    std::vector<attention_policy*> pols;
    for (int b = 0; b < B; ++b) {
      own.push_back(kind[b] == "dense" ? make_dense_policy() : make_policy(sparse_cfg(kind[b])));
      own.back()->begin(c.n_layer, shape, 48);
      for (int l = 0; l < c.n_layer; ++l) own.back()->on_append(l, prefix_keys->keys[l].data(), 0, P);
      pols.push_back(own.back().get());
    }
    branch_decoder bd(s, pols, T);
    EXPECT_EQ(bd.fork_pos(), P);
    std::vector<int32_t> step_toks(B);
    std::vector<uint8_t> active(B, 1);
    std::vector<std::vector<std::vector<float>>> got(B);  // [branch][step][vocab]
    for (int t = 0; t < T; ++t) {
      if (t == 4) active[4] = 0;
      for (int b = 0; b < B; ++b) step_toks[b] = toks[b][t];
      bd.step(step_toks.data(), active.data());
      for (int b = 0; b < B; ++b)
        if (active[b]) got[b].emplace_back(bd.logits(b), bd.logits(b) + c.n_vocab);
    }
    EXPECT_EQ(s.n_past(), P) << "branches must not move the session";
    EXPECT_THROW(bd.step(step_toks.data()), error) << "every step is used";
    for (int b = 0; b < B; ++b) {
      SCOPED_TRACE("branch " + std::to_string(b) + " (" + kind[b] + ")");
      ASSERT_EQ((int)got[b].size(), b == 4 ? 4 : T);
      std::vector<int32_t> all = prefix;
      all.insert(all.end(), toks[b].begin(), toks[b].end());
      if (kind[b] == "dense") {
        const auto ref = ref_forward(tm, all);
        for (size_t t = 0; t < got[b].size(); ++t)
          expect_row_close(got[b][t].data(), &ref[(P + t) * (size_t)c.n_vocab], c.n_vocab, tol,
                           "step " + std::to_string(t));
      } else {
        session q(*m, session_params{48, nt, 512}, make_policy(sparse_cfg(kind[b])));
        q.eval(prefix.data(), P);
        for (size_t t = 0; t < got[b].size(); ++t) {
          const float* lg = q.eval(&all[P + t], 1);
          std::vector<double> r(lg, lg + c.n_vocab);
          expect_row_close(got[b][t].data(), r.data(), c.n_vocab, 2 * tol, "step " + std::to_string(t));
        }
      }
    }
  }
}

TEST(tiny_model, branches_match_float64_dense_and_sequential_sparse_decoding) {
  tiny_cfg c;
  check_branches(c, 2001, kTol);
  check_branches(qwen2_cfg(), 2002, kTolQuant);
}

TEST(tiny_model, branches_refuse_bad_use) {
  tiny_cfg c;
  const tiny_model tm = build(c, 2003);
  auto m = load(tm);
  session s(*m, session_params{16, 1, 512});
  auto p0 = make_dense_policy(), p1 = make_dense_policy();
  EXPECT_THROW(branch_decoder(s, {p0.get()}, 1), error) << "empty session";
  const std::vector<int32_t> pre = {1, 2, 3, 4};
  s.eval(pre.data(), 4);
  p0->begin(c.n_layer, layer_shape{c.n_head, c.n_head_kv, c.head_dim}, 16);
  p1->begin(c.n_layer, layer_shape{c.n_head, c.n_head_kv, c.head_dim}, 16);
  EXPECT_THROW(branch_decoder(s, {}, 1), error);
  EXPECT_THROW(branch_decoder(s, {p0.get(), p0.get()}, 1), error) << "one policy object per branch";
  EXPECT_THROW(branch_decoder(s, {p0.get()}, 13), error) << "past the context";
  branch_decoder bd(s, {p0.get(), p1.get()}, 3);
  EXPECT_THROW(bd.logits(0), error) << "no step yet";
  const int32_t bad[2] = {1, (int32_t)c.n_vocab};
  EXPECT_THROW(bd.step(bad), error);
  const int32_t ok[2] = {1, 2};
  const uint8_t none[2] = {0, 0};
  EXPECT_THROW(bd.step(ok, none), error);
}

void expect_load_error(const tiny_model& tm, const std::string& needle) {
  try {
    load(tm);
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(tiny_model, loader_refuses_broken_models) {
  tiny_cfg c;
  expect_load_error(build(c, 5, "blk.1.ffn_up.weight"), "blk.1.ffn_up.weight' is missing");
  expect_load_error(build(c, 5, "output_norm.weight"), "output_norm.weight' is missing");
  expect_load_error(build(c, 5, {}, "blk.0.attn_k.weight"), "blk.0.attn_k.weight' has the wrong shape");
  tiny_cfg g = c;
  g.arch = "gemma2";
  expect_load_error(build(g, 5), "architecture 'gemma2' (metadata 'general.architecture') is not supported");
  g.arch = "gemma3";  // a llama-shaped file lacks gemma3's QK-norm weights
  expect_load_error(build(g, 5), "blk.0.attn_q_norm.weight' is missing");
  tiny_cfg h = c;
  h.n_head_kv = 3;
  expect_load_error(build(h, 5), "is not a multiple of 'llama.attention.head_count_kv'");
  // A session cannot be larger than the training context, and tokens must be in the vocabulary.
  const tiny_model ok = build(c, 6);
  auto m = load(ok);
  EXPECT_THROW(session(*m, session_params{c.ctx + 1, 1, 512}), error);
  session s(*m, session_params{0, 1, 512});
  int32_t bad = c.n_vocab;
  EXPECT_THROW(s.eval(&bad, 1), error);
  std::vector<int32_t> many(c.ctx + 1, 3);
  EXPECT_THROW(s.eval(many.data(), (int64_t)many.size()), error);
}

}  // namespace
}  // namespace hashattn
