// A GPU session (gpu.h): policy binding, buffer sizing against the free GPU memory, prefill, decode
// steps (the first eager, then captured once as a CUDA graph and replayed), synthetic contexts.
#include <algorithm>
#include <cstring>

#include "cuda/model-kernels.h"
#include "gpu/session-impl.h"
#include "hashattn/error.h"
#include "hashattn/hash.h"

namespace hashattn {
namespace gpu {
namespace {

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

void bind_policy(session::impl& s) {
  s.spec = policy_spec_parse(s.p.policy);
  const std::string& mth = s.spec.method;
  if (s.spec.is_dense()) {
    s.method = attn_method::dense;
    return;
  }
  if (mth == "streaming") s.method = attn_method::streaming;
  else if (mth == "hash") s.method = attn_method::hash;
  else
    fail("policy on the GPU", s.spec.str(), "dense, hash[/head|/group]@DENSITY or streaming@DENSITY",
         "the other policies run on the CPU (--device cpu)");
  s.budget = policy_budget(s.spec, s.p.budget_ctx > 0 ? s.p.budget_ctx : s.n_ctx);
  if (s.method == attn_method::streaming) return;
  if (!s.p.hash) fail("policy " + s.spec.str(), "no hash encoders", "a hash file (--hash)");
  const hash_weights& hw = *s.p.hash;
  s.mode = s.spec.gqa;
  if (hw.key_per_group && s.mode == gqa_mode::per_head)
    fail("policy " + s.spec.str() + " on the GPU", "encoders with one key encoder per KV group",
         "per-query-head key encoders", "use " + s.spec.method + "/group with these encoders");
  if (!hw.key_per_group && s.mode == gqa_mode::per_group)
    fail("policy " + s.spec.str() + " on the GPU", "encoders with one key encoder per query head",
         "per-KV-group key encoders (the CUDA kernels score a group against its KV head's code)",
         "use " + s.spec.method + "/head with these encoders");
  s.hash = upload_hash(hw, s.m->hp);
}

}  // namespace

size_t session::impl::layer_kv_elems() const {
  return (size_t)B * pages_per_seq * p.page_size * m->hp.n_head_kv * m->hp.head_dim;
}

void session::impl::check_room(int64_t n) const {
  for (int b = 0; b < B; ++b)
    if (h_len[b] + n > n_ctx)
      fail("GPU session: sequence " + std::to_string(b) + " context",
           std::to_string(h_len[b]) + " + " + std::to_string(n) + " tokens", "<= " + std::to_string(n_ctx),
           "a longer --ctx");
}

void session::impl::init() {
  const model_hparams& hp = m->hp;
  if (p.batch < 1 || p.batch > 4096) fail("GPU session: batch", std::to_string(p.batch), "1 .. 4096");
  if (p.page_size < 1 || (p.page_size & (p.page_size - 1)) || p.page_size > 4096)
    fail("GPU session: page_size", std::to_string(p.page_size), "a power of two, 1 .. 4096");
  if (p.n_batch < 1) fail("GPU session: n_batch", std::to_string(p.n_batch), ">= 1");
  if (p.kv_type != dtype::f16 && p.kv_type != dtype::bf16) fail("GPU session: kv_type", "not f16 / bf16", "f16 or bf16");
  B = p.batch;
  if (p.prefill_attn_rows < 1 || p.prefill_attn_rows > 4096)
    fail("GPU session: prefill_attn_rows", std::to_string(p.prefill_attn_rows), "1 .. 4096");
  // Every prefill attention launch has attn_rows rows (the last of a chunk padded with empty rows):
  // one launch shape, so one zeroed workspace serves them all (cuda.h).
  attn_rows = (int)std::min<int64_t>(p.prefill_attn_rows, p.n_batch);
  n_ctx = p.n_ctx > 0 ? p.n_ctx : hp.n_ctx_train;
  if (n_ctx < 1 || n_ctx > (int64_t(1) << 30)) fail("GPU session: context", std::to_string(n_ctx), "1 .. 2^30 tokens");
  if (p.gemv_rows < 0 || p.gemv_rows > cuda::gemv_max_rows)
    fail("GPU session: gemv_rows", std::to_string(p.gemv_rows),
         "0 .. " + std::to_string(cuda::gemv_max_rows) + " (0: cuBLAS for every projection)");
  attend = cuda::attend_impl_parse(p.attend);
  bind_policy(*this);
  rows = std::max<int64_t>(B, round_up(p.n_batch, attn_rows));
  pages_per_seq = (n_ctx + p.page_size - 1) / p.page_size;
  n_code_head = method == attn_method::hash ? (mode == gqa_mode::per_group ? hp.n_head_kv : hp.n_head) : 0;
  code_row = round_up(n_ctx, 4);
  idx_stride = method == attn_method::streaming ? round_up(budget.sinks + budget.window, 4) : 0;

  // Size everything first and refuse before allocating when it cannot fit.
  const int D = hp.n_embd, W = m->qkv_width(), HD = hp.n_head * hp.head_dim, F = hp.n_ff;
  const int64_t kv_bytes = 2 * (int64_t)hp.n_layer * (int64_t)layer_kv_elems() * 2;
  const int64_t code_bytes = (int64_t)hp.n_layer * B * n_code_head * code_row * 4;
  const int64_t act_bytes = rows * (4 * (int64_t)D + 2 * std::max({D, HD, F}) + 4 * (int64_t)W + 4 * (int64_t)HD * 2 +
                                    4 * (int64_t)hp.n_head_kv * hp.head_dim + 8 * (int64_t)F + 4 * hp.n_vocab);
  size_t fr = 0, tot = 0;
  cuda::device_mem_info(&fr, &tot);
  const int64_t need = kv_bytes + code_bytes + act_bytes + (int64_t(256) << 20);
  if (need > (int64_t)fr) {
    const int64_t per_tok = (kv_bytes + code_bytes) / std::max<int64_t>(1, n_ctx);
    const int64_t fit = per_tok > 0 ? ((int64_t)fr - act_bytes - (int64_t(256) << 20)) / per_tok : 0;
    fail("GPU memory for " + std::to_string(B) + " x " + std::to_string(n_ctx) + " tokens of KV cache",
         std::to_string(need >> 20) + " MiB", "at most the free " + std::to_string(fr >> 20) + " MiB",
         "at most about " + std::to_string(std::max<int64_t>(0, fit)) + " tokens per sequence fit at batch " +
             std::to_string(B));
  }
  stream = cuda::stream_create();
  blas = cuda::blas_create(stream);
  k_pages = dbuf((size_t)kv_bytes / 2, "K pages");
  v_pages = dbuf((size_t)kv_bytes / 2, "V pages");
  if (code_bytes) codes = dbuf((size_t)code_bytes, "key codes");
  x = dbuf(rows * D * 4, "activations");
  xb = dbuf(rows * std::max({D, HD, F}) * 2, "activations");
  qkv = dbuf(rows * W * 4, "q/k/v");
  q = dbuf(rows * HD * 4, "queries");
  k = dbuf(rows * hp.n_head_kv * hp.head_dim * 4, "keys");
  att = dbuf(rows * HD * 4, "attention output");
  gu = dbuf(rows * 2 * F * 4, "gate/up");
  logits = dbuf(rows * hp.n_vocab * 4, "logits");
  tok = dbuf(rows * 4, "tokens");
  next = dbuf(B * 4, "sampled tokens");
  len = dbuf(B * 4, "lengths");
  prefill_len = dbuf(rows * 4, "prefill lengths");
  pos0 = dbuf(4, "prefill position");
  std::vector<int32_t> table((size_t)B * pages_per_seq);
  for (size_t i = 0; i < table.size(); ++i) table[i] = (int32_t)i;
  page_table = dbuf(table.size() * 4, "page table");
  cuda::copy_h2d(page_table.p, table.data(), table.size() * 4, stream);
  prefill_table = dbuf((size_t)attn_rows * pages_per_seq * 4, "prefill page table");
  if (method == attn_method::streaming) {
    lists = dbuf((size_t)B * hp.n_head_kv * idx_stride * 4, "index lists");
    list_count = dbuf((size_t)B * hp.n_head_kv * 4, "index counts");
  }
  // The prefill's attention workspace, then the decode step's.
  size_t w = 0;
  {
    cuda::attend_params a;
    a.batch = attn_rows;
    a.n_head = hp.n_head;
    a.q = q.as<const float>();
    a.kv = kv(0, true);
    a.seq_len = prefill_len.as<const int32_t>();
    a.max_ctx = n_ctx;
    a.out = att.as<float>();
    a.impl = attend;
    const size_t wp = cuda::attend_workspace_size(a);
    ws_prefill = dbuf(std::max<size_t>(wp, 256), "prefill attention workspace");
    a.batch = B;
    a.kv = kv(0, false);
    a.seq_len = len.as<const int32_t>();
    if (method == attn_method::streaming) {
      a.idx = lists.as<const int32_t>();
      a.idx_count = list_count.as<const int32_t>();
      a.idx_stride = idx_stride;
      a.per_group = true;
    }
    w = std::max(w, cuda::attend_workspace_size(a));
  }
  if (method == attn_method::hash) w = std::max(w, cuda::decode_workspace_size(hash_decode(0)));
  ws = dbuf(std::max<size_t>(w, 256), "attention workspace");
  cuda::workspace_clear(ws.p, ws.bytes, stream);
  cuda::workspace_clear(ws_prefill.p, ws_prefill.bytes, stream);
  cuda::mem_zero(len.p, len.bytes, stream);
  cuda::mem_zero(tok.p, tok.bytes, stream);
  cuda::stream_sync(stream);
  h_len.assign(B, 0);
}

session::session(std::shared_ptr<const device_model> m, const session_params& p) : p_(std::make_unique<impl>()) {
  if (!m) fail("GPU session: model", "null", "an uploaded device_model");
  p_->dm = std::move(m);
  p_->m = &p_->dm->internals();
  p_->p = p;
  p_->init();
}

session::~session() {
  if (!p_) return;
  if (p_->stream) cuda::stream_sync(p_->stream);
  cuda::graph_destroy(p_->graph);
  cuda::blas_destroy(p_->blas);
  cuda::stream_destroy(p_->stream);
}

int session::batch() const { return p_->B; }
int64_t session::n_ctx() const { return p_->n_ctx; }
int64_t session::n_past(int seq) const { return p_->h_len.at(seq); }
const std::string& session::policy() const { return p_->p.policy; }
budget_params session::budget() const { return p_->budget; }

int64_t session::attended(int64_t n) const {
  const impl& s = *p_;
  if (s.method == attn_method::dense || n <= 0) return std::max<int64_t>(n, 0);
  if (s.method == attn_method::streaming) {
    const int64_t sk = std::min(s.budget.sinks, n);
    return sk + std::min(s.budget.window, n - sk);
  }
  return select_split_for(s.budget, n).total;
}

int64_t session::cache_bytes() const {
  return (int64_t)(p_->k_pages.bytes + p_->v_pages.bytes + p_->codes.bytes);
}

int64_t session::step_bytes(int64_t n) const {
  const impl& s = *p_;
  const model_hparams& hp = s.m->hp;
  const int64_t row = (int64_t)hp.head_dim * 2 * 2;  // one token's K and V of one head, bf16
  const int64_t lists = s.method == attn_method::hash && s.mode == gqa_mode::per_head ? hp.n_head : hp.n_head_kv;
  int64_t per_layer = (int64_t)s.B * lists * attended(n) * row;
  if (s.method == attn_method::hash) per_layer += (int64_t)s.B * s.n_code_head * n * 4;
  return s.dm->step_weight_bytes(s.B) + hp.n_layer * per_layer + (int64_t)s.hash.data.bytes;
}

int32_t session::prefill(int seq, const int32_t* tokens, int64_t n, std::vector<float>* logits, bool all_logits) {
  impl& s = *p_;
  const model_hparams& hp = s.m->hp;
  if (seq < 0 || seq >= s.B) fail("GPU prefill: sequence", std::to_string(seq), "0 .. " + std::to_string(s.B - 1));
  if (n < 1) fail("GPU prefill: tokens", "none", ">= 1");
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= hp.n_vocab)
      fail("GPU prefill: token " + std::to_string(i), std::to_string(tokens[i]), "0 .. " + std::to_string(hp.n_vocab - 1));
  if (s.h_len[seq] + n > s.n_ctx)
    fail("GPU prefill: context", std::to_string(s.h_len[seq]) + " + " + std::to_string(n) + " tokens",
         "<= " + std::to_string(s.n_ctx), "a longer --ctx");
  std::vector<int32_t> rows_table((size_t)s.attn_rows * s.pages_per_seq);
  for (int r = 0; r < s.attn_rows; ++r)
    for (int64_t i = 0; i < s.pages_per_seq; ++i) rows_table[r * s.pages_per_seq + i] = (int32_t)(seq * s.pages_per_seq + i);
  cuda::copy_h2d(s.prefill_table.p, rows_table.data(), rows_table.size() * 4, s.stream);
  if (logits) logits->assign((size_t)(all_logits ? n : 1) * hp.n_vocab, 0.f);
  std::vector<int32_t> plen;
  for (int64_t c0 = 0; c0 < n; c0 += s.p.n_batch) {
    const int64_t c = std::min<int64_t>(s.p.n_batch, n - c0);
    const int64_t pos = s.h_len[seq] + c0;
    plen.assign((size_t)round_up(c, s.attn_rows), 0);  // padding rows: length 0, nothing attended
    for (int64_t t = 0; t < c; ++t) plen[t] = (int32_t)(pos + t + 1);
    const int32_t p32 = (int32_t)pos;
    cuda::copy_h2d(s.tok.p, tokens + c0, c * 4, s.stream);
    cuda::copy_h2d(s.prefill_len.p, plen.data(), plen.size() * 4, s.stream);
    cuda::copy_h2d(s.pos0.p, &p32, 4, s.stream);
    cuda::embed_rows(s.m->tok_embd.p, hp.n_vocab, hp.n_embd, s.tok.as<const int32_t>(), c, s.x.as<float>(), nullptr,
                     s.stream);
    s.layers(c, false, seq, pos);
    const bool last = c0 + c == n;
    const float* last_row = s.logits.as<const float>();
    if (logits && all_logits) {
      s.logits_rows(s.x.as<const float>(), c);
      cuda::copy_d2h(logits->data() + c0 * hp.n_vocab, s.logits.p, (size_t)c * hp.n_vocab * 4, s.stream);
      last_row += (c - 1) * hp.n_vocab;
    } else if (last) {
      s.logits_rows(s.x.as<const float>() + (c - 1) * hp.n_embd, 1);
      if (logits) cuda::copy_d2h(logits->data(), s.logits.p, (size_t)hp.n_vocab * 4, s.stream);
    }
    if (last)
      cuda::sample_tokens(last_row, 1, hp.n_vocab, s.p.temp, s.p.seed, s.len.as<const int32_t>() + seq,
                          s.next.as<int32_t>() + seq, nullptr, s.stream);
    cuda::stream_sync(s.stream);  // the host buffers of this chunk are reused
  }
  s.h_len[seq] += n;
  const int32_t l32 = (int32_t)s.h_len[seq];
  int32_t sampled = 0;
  cuda::copy_h2d(s.len.as<int32_t>() + seq, &l32, 4, s.stream);
  cuda::copy_d2h(&sampled, s.next.as<int32_t>() + seq, 4, s.stream);
  cuda::stream_sync(s.stream);
  return sampled;
}

namespace {
void launch_step(session::impl& s) {
  if (!s.p.graph || !s.stepped_eagerly) {  // the first step runs eagerly (it also warms cuBLAS up)
    s.decode_body();
    s.stepped_eagerly = true;
    return;
  }
  if (!s.graph) {
    cuda::graph_begin(s.stream);
    try {
      s.decode_body();
    } catch (...) {
      try { cuda::graph_end(s.stream); } catch (...) {}
      throw;
    }
    s.graph = cuda::graph_end(s.stream);
  }
  cuda::graph_launch(s.graph, s.stream);
}
}  // namespace

void session::step(const int32_t* tokens, int32_t* next_out, std::vector<float>* logits) {
  impl& s = *p_;
  const model_hparams& hp = s.m->hp;
  s.check_room(1);
  for (int b = 0; b < s.B; ++b)
    if (tokens[b] < 0 || tokens[b] >= hp.n_vocab)
      fail("GPU step: token of sequence " + std::to_string(b), std::to_string(tokens[b]),
           "0 .. " + std::to_string(hp.n_vocab - 1));
  cuda::copy_h2d(s.tok.p, tokens, s.B * 4, s.stream);
  launch_step(s);
  cuda::copy_d2h(next_out, s.next.p, s.B * 4, s.stream);
  if (logits) {
    logits->resize((size_t)s.B * hp.n_vocab);
    cuda::copy_d2h(logits->data(), s.logits.p, logits->size() * 4, s.stream);
  }
  cuda::stream_sync(s.stream);
  for (auto& l : s.h_len) ++l;
}

float session::run_steps(int n) {
  impl& s = *p_;
  if (n < 1) return 0.f;
  s.check_room(n);
  void* e0 = cuda::event_create();
  void* e1 = cuda::event_create();
  cuda::event_record(e0, s.stream);
  for (int i = 0; i < n; ++i) launch_step(s);
  cuda::event_record(e1, s.stream);
  const float ms = cuda::event_ms(e0, e1);
  cuda::event_destroy(e0);
  cuda::event_destroy(e1);
  for (auto& l : s.h_len) l += n;
  return ms;
}

std::vector<int32_t> session::last_tokens() {
  impl& s = *p_;
  std::vector<int32_t> t(s.B);
  cuda::copy_d2h(t.data(), s.next.p, s.B * 4, s.stream);
  cuda::stream_sync(s.stream);
  return t;
}

void session::fill_synthetic(int64_t n, uint64_t seed) {
  impl& s = *p_;
  if (n < 1 || n > s.n_ctx) fail("GPU synthetic context", std::to_string(n), "1 .. " + std::to_string(s.n_ctx));
  cuda::fill_random_half(s.k_pages.p, s.p.kv_type, (int64_t)(s.k_pages.bytes / 2), seed * 3 + 1, 1.f, s.stream);
  cuda::fill_random_half(s.v_pages.p, s.p.kv_type, (int64_t)(s.v_pages.bytes / 2), seed * 3 + 2, 1.f, s.stream);
  if (s.codes.p) cuda::fill_random_u32(s.codes.as<uint32_t>(), (int64_t)(s.codes.bytes / 4), seed * 3 + 3, s.stream);
  cuda::fill_i32(s.len.as<int32_t>(), s.B, (int32_t)n, s.stream);
  cuda::stream_sync(s.stream);
  s.h_len.assign(s.B, n);
}

}  // namespace gpu
}  // namespace hashattn
