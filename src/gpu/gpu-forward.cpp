// The layers of the GPU runtime on its stream: prefill chunks and the decode step (the graph's body).
#include <algorithm>

#include "cuda/model-kernels.h"
#include "gpu/session-impl.h"
#include "hashattn/error.h"

namespace hashattn {
namespace gpu {

kv_view session::impl::kv(int layer, bool prefill) const {
  const model_hparams& hp = m->hp;
  kv_view kv;
  const size_t off = (size_t)layer * layer_kv_elems() * 2;
  kv.k = static_cast<char*>(k_pages.p) + off;
  kv.v = static_cast<char*>(v_pages.p) + off;
  kv.type = p.kv_type;
  kv.n_head_kv = hp.n_head_kv;
  kv.head_dim = hp.head_dim;
  kv.page_size = p.page_size;
  // [page][KV head][slot][d]: a head's rows of a page are contiguous (whole-page gathers)
  kv.stride_tok = hp.head_dim;
  kv.stride_head = (int64_t)p.page_size * hp.head_dim;
  kv.stride_page = kv.stride_head * hp.n_head_kv;
  kv.page_table = prefill ? prefill_table.as<const int32_t>() : page_table.as<const int32_t>();
  kv.page_table_stride = pages_per_seq;
  return kv;
}

code_view session::impl::layer_codes(int layer) const {
  code_view c;
  c.n_enc = n_code_head;
  c.stride_enc = code_row;
  c.stride_seq = code_row * n_code_head;
  c.codes = codes.as<uint32_t>() + (size_t)layer * B * c.stride_seq;
  return c;
}

void session::impl::linear(int64_t n, int64_t n_out, int64_t n_in, const void* w, const void* xin, float* y,
                           int64_t ldy, float beta) {
  if (n <= p.gemv_rows && cuda::gemv_bf16(n, n_out, n_in, w, xin, y, ldy, beta, stream)) return;
  cuda::gemm_bf16(blas, n, n_out, n_in, w, xin, y, ldy, beta);
}

cuda::decode_params session::impl::hash_decode(int l) const {
  cuda::decode_params dp;
  dp.batch = B;
  dp.n_head = m->hp.n_head;
  dp.mode = mode;
  dp.q = q.as<const float>();
  dp.k_new = k.p;  // the new key's code; K/V are already in the pages
  dp.kv_in_type = dtype::f32;
  dp.append_kv = false;
  dp.kv = kv(l, false);
  dp.codes = layer_codes(l);
  dp.key_mlp = hash.key[l];
  dp.query_mlp = hash.query[l];
  dp.seq_len = len.as<const int32_t>();
  dp.max_ctx = n_ctx;
  dp.budget = budget;
  dp.out = att.as<float>();
  dp.attend = attend;
  return dp;
}

void session::impl::attend_decode(int l) {
  const model_hparams& hp = m->hp;
  if (method == attn_method::hash) {
    cuda::decode_run(hash_decode(l), ws.p, stream);
    return;
  }
  cuda::attend_params a;
  a.batch = B;
  a.n_head = hp.n_head;
  a.q = q.as<const float>();
  a.kv = kv(l, false);
  a.seq_len = len.as<const int32_t>();
  a.max_ctx = n_ctx;
  a.out = att.as<float>();
  a.impl = attend;
  if (method == attn_method::streaming) {
    cuda::window_lists(a.seq_len, B, hp.n_head_kv, budget.sinks, budget.window, lists.as<int32_t>(),
                       list_count.as<int32_t>(), idx_stride, stream);
    a.idx = lists.as<const int32_t>();
    a.idx_count = list_count.as<const int32_t>();
    a.idx_stride = idx_stride;
    a.per_group = true;
  }
  cuda::attend_run(a, ws.p, stream);
}

void session::impl::attend_prefill(int l, int seq, int64_t pos0_host, int64_t n) {
  const model_hparams& hp = m->hp;
  if (method == attn_method::hash) {  // key codes of the chunk's keys (K/V are in the pages already)
    cuda::encode_params e;
    e.batch = 1;
    e.n_head = hp.n_head;
    e.n_head_kv = hp.n_head_kv;
    e.head_dim = hp.head_dim;
    e.mode = mode;
    e.n_new = n;
    e.k_new = k.p;
    e.kv_in_type = dtype::f32;
    e.pos0 = pos0.as<const int32_t>();
    e.kv = kv(l, false);
    e.kv.k = nullptr;
    e.kv.v = nullptr;
    e.key_mlp = hash.key[l];
    e.codes = layer_codes(l);
    e.codes.codes = static_cast<const uint32_t*>(e.codes.codes) + (size_t)seq * e.codes.stride_seq;
    cuda::encode_run(e, stream);
  }
  const int64_t hd = (int64_t)hp.n_head * hp.head_dim;
  for (int64_t t0 = 0; t0 < n; t0 += attn_rows) {  // always attn_rows rows: one launch shape (init)
    cuda::attend_params a;
    a.batch = attn_rows;
    a.n_head = hp.n_head;
    a.q = q.as<const float>() + t0 * hd;
    a.kv = kv(l, true);
    a.seq_len = prefill_len.as<const int32_t>() + t0;
    a.max_ctx = n_ctx;
    a.out = att.as<float>() + t0 * hd;
    a.impl = attend;
    cuda::attend_run(a, ws_prefill.p, stream);
  }
  (void)pos0_host;
}

void session::impl::layers(int64_t n, bool decode, int seq, int64_t pos0_host) {
  const model_hparams& hp = m->hp;
  const int D = hp.n_embd, W = m->qkv_width(), HD = hp.n_head * hp.head_dim, F = hp.n_ff;
  for (int l = 0; l < hp.n_layer; ++l) {
    const device_layer& w = m->layers[l];
    cuda::rms_norm(x.as<const float>(), w.attn_norm.as<const float>(), n, D, hp.rms_eps, xb.p, stream);
    linear(n, W, D, w.wqkv.p, xb.p, qkv.as<float>(), W, 0.f);
    cuda::qkv_params qp;
    qp.n = n;
    qp.n_head = hp.n_head;
    qp.n_head_kv = hp.n_head_kv;
    qp.head_dim = hp.head_dim;
    qp.qkv = qkv.as<const float>();
    qp.bias = w.bqkv.as<const float>();
    qp.seq_len = decode ? len.as<const int32_t>() : nullptr;
    qp.seq = seq;
    qp.pos0 = pos0_host;
    qp.rope_dims = hp.rope_dims;
    qp.neox = hp.rope == rope_layout::neox;
    qp.rope_base = hp.rope_base;
    qp.freq_factors = m->rope_freqs.as<const float>();
    qp.q_out = q.as<float>();
    qp.k_out = method == attn_method::hash ? k.as<float>() : nullptr;
    qp.kv = kv(l, false);
    cuda::qkv_rope_store(qp, stream);
    if (decode) attend_decode(l);
    else attend_prefill(l, seq, pos0_host, n);
    cuda::to_bf16(att.as<const float>(), n * HD, xb.p, stream);
    linear(n, D, HD, w.wo.p, xb.p, x.as<float>(), D, 1.f);  // + residual
    cuda::rms_norm(x.as<const float>(), w.ffn_norm.as<const float>(), n, D, hp.rms_eps, xb.p, stream);
    linear(n, 2 * (int64_t)F, D, w.wgu.p, xb.p, gu.as<float>(), 2 * (int64_t)F, 0.f);
    cuda::swiglu(gu.as<const float>(), n, F, xb.p, stream);
    linear(n, D, F, w.wdown.p, xb.p, x.as<float>(), D, 1.f);  // + residual
  }
}

void session::impl::logits_rows(const float* x_rows, int64_t n) {
  const model_hparams& hp = m->hp;
  cuda::rms_norm(x_rows, m->output_norm.as<const float>(), n, hp.n_embd, hp.rms_eps, xb.p, stream);
  linear(n, hp.n_vocab, hp.n_embd, m->out_w(), xb.p, logits.as<float>(), hp.n_vocab, 0.f);
}

void session::impl::decode_body() {
  const model_hparams& hp = m->hp;
  cuda::embed_rows(m->tok_embd.p, hp.n_vocab, hp.n_embd, tok.as<const int32_t>(), B, x.as<float>(), len.as<int32_t>(),
                   stream);
  layers(B, true, 0, 0);
  logits_rows(x.as<const float>(), B);
  cuda::sample_tokens(logits.as<const float>(), B, hp.n_vocab, p.temp, p.seed, len.as<const int32_t>(),
                      next.as<int32_t>(), tok.as<int32_t>(), stream);
}

}  // namespace gpu
}  // namespace hashattn
