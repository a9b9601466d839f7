// branch_decoder (model.h): several continuations of one prefix, decoded side by side.
// Per step, over the B active branches (all at position pos = P + steps()):
//   embed B rows -> per layer [RMSNorm, q/k/v sgemm (+bias), RoPE; per branch: K/V row to the branch's
//   own store, policy.on_append, its rows 0 .. steps() copied after the prefix in the session's cache
//   (K and V of this layer), attention (dense, or select + sparse kernel); output sgemm, residual,
//   RMSNorm, gate/up sgemm, SwiGLU, down sgemm, residual] -> RMSNorm -> logits sgemm [B, n_vocab].
// The sgemms read fp32 copies of the weights that the session makes on first use (session-impl.h).
// Branch stores: per branch and layer, K and V [max_steps, kv_dim] fp16.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/model-ops.h"
#include "hashattn/error.h"
#include "model/session-impl.h"

namespace hashattn {

struct branch_decoder::impl {
  session::impl* s = nullptr;
  std::vector<attention_policy*> pol;
  int64_t fork = 0, max_steps = 0, steps = 0;
  std::vector<uint8_t> alive;                        // [B]: took part in every step so far
  std::vector<std::vector<uint16_t>> kb, vb;         // [B * n_layer] each [max_steps, kv_dim]
  std::vector<int> rows;                             // active branch of each batch row
  std::vector<float> X, XN, Q, K, V, A, T, G, U, wtile, cos_t, sin_t;
  std::vector<float> logits;                         // [B, n_vocab]
  index_lists lists;
};

branch_decoder::branch_decoder(session& s, std::vector<attention_policy*> policies, int64_t max_steps)
    : p_(std::make_unique<impl>()) {
  impl& b = *p_;
  b.s = s.p_.get();
  const session::impl& S = *b.s;
  if (policies.empty()) fail("branch decoder: no branches", "0 policies", ">= 1");
  for (size_t i = 0; i < policies.size(); ++i) {
    if (!policies[i]) fail("branch decoder: branch " + std::to_string(i) + " has no policy");
    for (size_t j = 0; j < i; ++j)
      if (policies[j] == policies[i])
        fail("branch decoder: branches " + std::to_string(j) + " and " + std::to_string(i) +
             " share one policy object (each branch needs its own state)");
  }
  if (max_steps < 1) fail("branch decoder: steps per branch", std::to_string(max_steps), ">= 1");
  if (S.n_past < 1) fail("branch decoder: nothing to fork from", "an empty session", "prefill a prompt first");
  if (S.n_past + max_steps > S.n_ctx)
    fail("branch decoder: context full", std::to_string(S.n_past) + " + " + std::to_string(max_steps) + " tokens",
         "at most " + std::to_string(S.n_ctx), "use a larger context or fewer steps");
  b.pol = std::move(policies);
  b.fork = S.n_past;
  b.max_steps = max_steps;
  const size_t B = b.pol.size();
  b.alive.assign(B, 1);
  b.kb.resize(B * S.hp.n_layer);
  b.vb.resize(B * S.hp.n_layer);
  for (size_t i = 0; i < b.kb.size(); ++i) {
    b.kb[i].assign((size_t)max_steps * S.kv_dim, 0);
    b.vb[i].assign((size_t)max_steps * S.kv_dim, 0);
  }
  b.logits.assign(B * (size_t)S.hp.n_vocab, 0.f);
  b.cos_t.resize(S.hp.rope_dims / 2);
  b.sin_t.resize(S.hp.rope_dims / 2);
}

branch_decoder::~branch_decoder() = default;

int branch_decoder::n_branches() const { return (int)p_->pol.size(); }
int64_t branch_decoder::fork_pos() const { return p_->fork; }
int64_t branch_decoder::steps() const { return p_->steps; }

const float* branch_decoder::logits(int b) const {
  if (b < 0 || b >= n_branches())
    fail("branch decoder: branch", std::to_string(b), "0 .. " + std::to_string(n_branches() - 1));
  if (p_->steps == 0) fail("branch decoder: no logits yet", {}, {}, "call step() first");
  return p_->logits.data() + (size_t)b * p_->s->hp.n_vocab;
}

void branch_decoder::step(const int32_t* tokens, const uint8_t* active) {
  impl& b = *p_;
  session::impl& S = *b.s;
  const model::impl& W = *S.w;
  const model_hparams& hp = S.hp;
  const int E = hp.n_embd, hd = hp.head_dim, F = hp.n_ff, qd = S.q_dim, kvd = S.kv_dim;
  const bool neox = hp.rope == rope_layout::neox;
  if (!tokens) fail("branch decoder: step without tokens");
  if (b.steps >= b.max_steps)
    fail("branch decoder: steps", std::to_string(b.steps + 1), "at most " + std::to_string(b.max_steps));
  b.rows.clear();
  for (int i = 0; i < n_branches(); ++i) {
    if (active && !active[i]) continue;
    if (!b.alive[i])
      fail("branch decoder: branch " + std::to_string(i) + " was left out of an earlier step and cannot resume");
    if (tokens[i] < 0 || tokens[i] >= hp.n_vocab)
      fail("branch decoder: token id out of range", std::to_string(tokens[i]), "0 .. " + std::to_string(hp.n_vocab - 1));
    b.rows.push_back(i);
  }
  const int64_t n = (int64_t)b.rows.size();
  if (n == 0) fail("branch decoder: step with no active branch");
  if (active)
    for (int i = 0; i < n_branches(); ++i)
      if (!active[i]) b.alive[i] = 0;
  const int64_t t = b.steps, pos = b.fork + t;
  for (auto* v : {&b.X, &b.XN, &b.T}) v->resize((size_t)n * E);
  for (auto* v : {&b.Q, &b.A}) v->resize((size_t)n * qd);
  for (auto* v : {&b.K, &b.V}) v->resize((size_t)n * kvd);
  for (auto* v : {&b.G, &b.U}) v->resize((size_t)n * F);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t tok = tokens[b.rows[r]];
    cpu::dequantize_rows(W.tok_embd.type, W.tok_embd.data, W.tok_embd.row_bytes, E, tok, tok + 1,
                         b.X.data() + r * E);
  }
  cpu::rope_angles(pos, hp.rope_dims, hp.rope_base, W.rope_freqs.empty() ? nullptr : W.rope_freqs.data(),
                   b.cos_t.data(), b.sin_t.data());
  auto gemm = [&](const weight& wt, const float* x, float* y) {
    cpu::gemm_params p;
    p.type = gguf::type::F32;
    p.w = S.weight_f32(wt);
    p.row_bytes = (size_t)wt.cols * sizeof(float);
    p.n_rows = wt.rows;
    p.n_cols = wt.cols;
    p.x = x;
    p.ldx = wt.cols;
    p.n_tok = n;
    p.y = y;
    p.ldy = wt.rows;
    cpu::gemm_wt(p, b.wtile, S.nt);
  };
  const float scale = 1.0f / std::sqrt((float)hd);
  for (int l = 0; l < hp.n_layer; ++l) {
    const layer_weights& L = W.layers[l];
    for (int64_t r = 0; r < n; ++r)
      cpu::rms_norm(b.X.data() + r * E, L.attn_norm.data(), b.XN.data() + r * E, E, hp.rms_eps);
    gemm(L.wq, b.XN.data(), b.Q.data());
    gemm(L.wk, b.XN.data(), b.K.data());
    gemm(L.wv, b.XN.data(), b.V.data());
    uint16_t* kc = S.kc[l].data();
    uint16_t* vc = S.vc[l].data();
    for (int64_t r = 0; r < n; ++r) {
      const int br = b.rows[r];
      float* q = b.Q.data() + r * qd;
      float* k = b.K.data() + r * kvd;
      float* v = b.V.data() + r * kvd;
      add_bias(q, L.bq);
      add_bias(k, L.bk);
      add_bias(v, L.bv);
      cpu::rope_apply(q, hp.n_head, hd, hp.rope_dims, neox, b.cos_t.data(), b.sin_t.data());
      cpu::rope_apply(k, hp.n_head_kv, hd, hp.rope_dims, neox, b.cos_t.data(), b.sin_t.data());
      std::vector<uint16_t>& kst = b.kb[(size_t)br * hp.n_layer + l];
      std::vector<uint16_t>& vst = b.vb[(size_t)br * hp.n_layer + l];
      cpu::f32_to_f16_row(k, kst.data() + t * kvd, kvd);
      cpu::f32_to_f16_row(v, vst.data() + t * kvd, kvd);
      attention_policy& pol = *b.pol[br];
      pol.on_append(l, k, pos, 1);
      // This branch's rows after the shared prefix: the cache now reads as its own history.
      std::memcpy(kc + b.fork * kvd, kst.data(), (size_t)(t + 1) * kvd * sizeof(uint16_t));
      std::memcpy(vc + b.fork * kvd, vst.data(), (size_t)(t + 1) * kvd * sizeof(uint16_t));
      attn_decode_params ap;
      ap.q = q;
      ap.kv = S.view(l, pos + 1);
      ap.n_head = hp.n_head;
      ap.scale = scale;
      ap.out = b.A.data() + r * qd;
      ap.n_threads = S.nt;
      if (!pol.is_dense()) {
        pol.select(l, q, ap.kv, b.lists);
        attn_params_set_lists(ap, b.lists);
      }
      attn_decode_cpu(ap);
    }
    gemm(L.wo, b.A.data(), b.T.data());
    for (int64_t r = 0; r < n; ++r) {
      cpu::add_inplace(b.X.data() + r * E, b.T.data() + r * E, E);
      cpu::rms_norm(b.X.data() + r * E, L.ffn_norm.data(), b.XN.data() + r * E, E, hp.rms_eps);
    }
    gemm(L.gate, b.XN.data(), b.G.data());
    gemm(L.up, b.XN.data(), b.U.data());
    for (int64_t r = 0; r < n; ++r) cpu::swiglu(b.G.data() + r * F, b.U.data() + r * F, b.G.data() + r * F, F);
    gemm(L.down, b.G.data(), b.T.data());
    for (int64_t r = 0; r < n; ++r) cpu::add_inplace(b.X.data() + r * E, b.T.data() + r * E, E);
  }
  for (int64_t r = 0; r < n; ++r)
    cpu::rms_norm(b.X.data() + r * E, W.output_norm.data(), b.XN.data() + r * E, E, hp.rms_eps);
  // Logits of the active rows (in T), then to each branch's row.
  std::vector<float>& lg = b.T;
  lg.resize((size_t)n * hp.n_vocab);
  gemm(W.output, b.XN.data(), lg.data());
  for (int64_t r = 0; r < n; ++r)
    std::memcpy(b.logits.data() + (size_t)b.rows[r] * hp.n_vocab, lg.data() + (size_t)r * hp.n_vocab,
                (size_t)hp.n_vocab * sizeof(float));
  ++b.steps;
}

}  // namespace hashattn
