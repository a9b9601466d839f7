// Capture of training data (see train.h): texts -> token windows -> dense prefill with a forward
// observer that copies the post-RoPE queries of sampled positions; keys and value norms are read back
// from the session's fp16 KV cache one layer at a time.
//   q: [n_q, n_head, d] per captured layer;  k: [n_tok, n_head_kv, d];  vnorm: [n_tok, n_head_kv].
#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "cpu/model-ops.h"
#include "hashattn/error.h"
#include "hashattn/model.h"
#include "hashattn/tokenizer.h"
#include "hashattn/train.h"

namespace hashattn {

std::vector<train_text> load_texts(const model& m, const std::vector<std::string>& paths) {
  if (paths.empty()) fail("texts", "none", "at least one text file", "pass --text FILE");
  auto tok = tokenizer::from_gguf(m.file());
  std::vector<train_text> out;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("text file " + path, "cannot open", "a readable UTF-8 text file");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    if (s.empty()) fail("text file " + path, "empty", "some text");
    train_text t;
    const size_t slash = path.find_last_of('/');
    t.name = slash == std::string::npos ? path : path.substr(slash + 1);
    t.tokens = tok->encode(s, false, false);
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<token_window> text_windows(const std::vector<train_text>& texts, int64_t n) {
  HASHATTN_ASSERT(n > 0);
  std::vector<token_window> w;
  for (size_t i = 0; i < texts.size(); i++)
    for (int64_t s = 0; s + n <= (int64_t)texts[i].tokens.size(); s += n) w.push_back({(int)i, s});
  return w;
}

std::vector<int64_t> sample_positions(uint64_t seed, int64_t lo, int64_t hi, int64_t n) {
  if (hi <= lo || n <= 0) return {};
  std::vector<int64_t> all(hi - lo);
  for (int64_t i = 0; i < hi - lo; i++) all[i] = lo + i;
  std::mt19937_64 rng(seed);
  n = std::min<int64_t>(n, hi - lo);
  // Partial Fisher-Yates: the first n are a uniform sample.
  for (int64_t i = 0; i < n; i++) {
    std::uniform_int_distribution<int64_t> d(i, hi - lo - 1);
    std::swap(all[i], all[d(rng)]);
  }
  all.resize(n);
  std::sort(all.begin(), all.end());
  return all;
}

struct window_capture::impl {
  const model* m = nullptr;
  model_hparams hp;
  std::vector<int> layers;
  std::vector<int> slot;  // layer -> index into q, or -1
  std::unique_ptr<session> s;
  std::vector<int64_t> qpos;
  std::vector<std::vector<float>> q;  // per listed layer [n_q, n_head, d]
  int64_t n_run = 0;
};

window_capture::window_capture(const model& m, int64_t ctx, std::vector<int> layers, int n_threads)
    : p_(std::make_unique<impl>()) {
  impl& p = *p_;
  p.m = &m;
  p.hp = m.hparams();
  p.layers = std::move(layers);
  p.slot.assign(p.hp.n_layer, -1);
  for (size_t i = 0; i < p.layers.size(); i++) {
    const int l = p.layers[i];
    if (l < 0 || l >= p.hp.n_layer)
      fail("capture: layer", std::to_string(l), "0 .. " + std::to_string(p.hp.n_layer - 1));
    p.slot[l] = (int)i;
  }
  p.q.resize(p.layers.size());
  session_params sp;
  sp.n_ctx = ctx;
  sp.n_threads = n_threads;
  impl* ip = &p;
  sp.observer = [ip](int layer, const float* q, const float*, const float*, int64_t pos0, int64_t n) {
    const int sl = ip->slot[layer];
    if (sl < 0) return;
    const int64_t row = (int64_t)ip->hp.n_head * ip->hp.head_dim;
    auto it = std::lower_bound(ip->qpos.begin(), ip->qpos.end(), pos0);
    for (; it != ip->qpos.end() && *it < pos0 + n; ++it) {
      const int64_t i = it - ip->qpos.begin();
      std::copy(q + (*it - pos0) * row, q + (*it - pos0 + 1) * row, ip->q[sl].data() + i * row);
    }
  };
  p.s = std::make_unique<session>(m, sp);
}

window_capture::~window_capture() = default;

void window_capture::run(const int32_t* tokens, int64_t n, const std::vector<int64_t>& qpos) {
  impl& p = *p_;
  if (n < 2 || n > p.s->n_ctx())
    fail("capture: window", std::to_string(n) + " tokens", "2 .. " + std::to_string(p.s->n_ctx()));
  for (size_t i = 0; i < qpos.size(); i++)
    if (qpos[i] < 0 || qpos[i] >= n || (i > 0 && qpos[i] <= qpos[i - 1]))
      fail("capture: query positions", std::to_string(qpos[i]), "ascending, unique, in [0, " + std::to_string(n) + ")");
  p.qpos = qpos;
  const int64_t row = (int64_t)p.hp.n_head * p.hp.head_dim;
  for (auto& q : p.q) q.assign((size_t)qpos.size() * row, 0.f);
  p.s->truncate(0);
  p.s->eval(tokens, n);
  p.n_run = n;
}

void window_capture::get(int layer, layer_capture& out) const {
  const impl& p = *p_;
  if (layer < 0 || layer >= p.hp.n_layer || p.slot[layer] < 0)
    fail("capture: layer", std::to_string(layer), "one of the captured layers");
  if (p.n_run == 0) fail("capture: no window run yet", {}, {}, "call run() first");
  const kv_view kv = p.s->kv(layer);
  HASHATTN_ASSERT(kv.type == dtype::f16 && kv.n_tok == p.n_run);
  const int nkv = p.hp.n_head_kv, d = p.hp.head_dim;
  out.n_head = p.hp.n_head;
  out.n_head_kv = nkv;
  out.head_dim = d;
  out.n_tok = kv.n_tok;
  out.k.resize((size_t)kv.n_tok * nkv * d);
  out.vnorm.resize((size_t)kv.n_tok * nkv);
  std::vector<float> vrow((size_t)nkv * d);
  for (int64_t t = 0; t < kv.n_tok; t++) {
    for (int h = 0; h < nkv; h++) {
      const int64_t off = kv_offset(kv, t, h);
      cpu::f16_to_f32_row((const uint16_t*)kv.k + off, out.k.data() + ((size_t)t * nkv + h) * d, d);
      cpu::f16_to_f32_row((const uint16_t*)kv.v + off, vrow.data() + (size_t)h * d, d);
      double ss = 0;
      for (int j = 0; j < d; j++) ss += (double)vrow[(size_t)h * d + j] * vrow[(size_t)h * d + j];
      out.vnorm[(size_t)t * nkv + h] = (float)std::sqrt(ss);
    }
  }
  out.qpos = p.qpos;
  out.q = p.q[p.slot[layer]];
}

}  // namespace hashattn
