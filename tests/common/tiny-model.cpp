// Tiny random llama-family models and their float64 forward pass (tiny-model.h).
#include "common/tiny-model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/test-util.h"
#include "core/half.h"

namespace hashattn::tiny {

namespace {

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

std::vector<double> make_vec(int64_t n, float mean, float sd, std::mt19937_64& rng, std::vector<float>& f) {
  std::normal_distribution<float> nd(mean, sd);
  f.resize(n);
  std::vector<double> d(n);
  for (int64_t i = 0; i < n; ++i) d[i] = f[i] = nd(rng);
  return d;
}

}  // namespace

tiny_cfg qwen2_cfg() {
  tiny_cfg c;
  c.arch = "qwen2";
  c.bias = true;
  c.tied = false;
  c.wtype = gguf::type::Q8_0;
  c.otype = gguf::type::Q4_1;
  return c;
}

// Builds the GGUF bytes and the reference weights. `drop` names a tensor to leave out, `bad_shape`
// one to write with a wrong shape (for the loader's errors).
// Weight scales keep every sublayer a moderate update of the residual stream (a random model
// with large updates amplifies rounding differences by ~100x and tests nothing more).
tiny_model build(const tiny_cfg& c, uint64_t seed, const std::string& drop, const std::string& bad_shape) {
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

}  // namespace hashattn::tiny
