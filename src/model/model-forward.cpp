// Forward pass of a llama-family model with a KV cache (the session of model.h).
// Architecture features (model_hparams): embedding scale, per-head q/k RMSNorm, post-norms, GeGLU,
// per-layer RoPE sets and sliding windows (a sliding-window layer attends densely to its window
// through an index list; the policy selects on global layers only), final logit soft-capping.
// Decode (one token): embed -> per layer [RMSNorm, q/k/v integer mat-vecs (+bias), RoPE, K/V to the
//   fp16 cache, policy.on_append, attention (dense, or policy.select + sparse kernel), output
//   projection, residual, RMSNorm, gate/up mat-vecs, SwiGLU, down, residual] -> RMSNorm -> logits.
// Prefill (n tokens, in chunks of n_batch): the same layers on [n, *] fp32 activations with
//   tile-dequantized sgemm; attention is dense and causal over the fp16 cache read back as fp32:
//   per (query head, tile of 64 queries) S = Q K^T (sgemm), masked softmax rows, O = P V (sgemm).
// Activations: x [n_embd]; q [n_head, hd]; k, v [n_head_kv, hd]; ffn [n_ff]. Cache per layer:
//   K, V [n_ctx, n_head_kv, hd] fp16.
#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "cpu/matvec.h"
#include "cpu/model-ops.h"
#include "hashattn/error.h"
#include "model/model-impl.h"
#include "model/session-impl.h"

namespace hashattn {

void session::impl::mv(const weight* const* ws, float* const* ys, int n, const float* xin) {
  cpu::matvec_params ps[4];
  bool need_int = false;
  for (int i = 0; i < n; ++i) need_int |= cpu::matvec_uses_int(ws[i]->type);
  if (need_int) cpu::quantize_act_i16(xin, ws[0]->cols, xq);
  for (int i = 0; i < n; ++i) {
    HASHATTN_ASSERT(ws[i]->cols == ws[0]->cols);
    ps[i].type = ws[i]->type;
    ps[i].w = ws[i]->data;
    ps[i].row_bytes = ws[i]->row_bytes;
    ps[i].n_rows = ws[i]->rows;
    ps[i].n_cols = ws[i]->cols;
    ps[i].x = xin;
    ps[i].xq = need_int ? &xq : nullptr;
    ps[i].y = ys[i];
  }
  cpu::matvec_multi(ps, n, nt);
}

void session::impl::gemm(const weight& wt, const float* xin, int64_t n, float* yout, wpath wp) {
  const weight* ws[1] = {&wt};
  float* ys[1] = {yout};
  gemm_multi(ws, ys, 1, xin, n, wp);
}

void session::impl::gemm_multi(const weight* const* ws, float* const* ys, int nw, const float* xin, int64_t n,
                               wpath wp) {
  if (wp == wpath::quant && n >= kSmallBatchMin) {  // every weight row read once for all n rows
    HASHATTN_ASSERT(n <= cpu::kMaxSmallBatch && nw <= 4);
    const int64_t cols = ws[0]->cols;
    bool need_int = false;
    for (int j = 0; j < nw; ++j) need_int |= cpu::matvec_uses_int(ws[j]->type);
    if (need_int) {
      if ((int64_t)xqs.size() < n) xqs.resize(n);
      for (int64_t i = 0; i < n; ++i) cpu::quantize_act_i16(xin + i * cols, cols, xqs[i]);
    }
    cpu::matmul_small_params ps[4];
    for (int j = 0; j < nw; ++j) {
      HASHATTN_ASSERT(ws[j]->cols == cols);
      ps[j].type = ws[j]->type;
      ps[j].w = ws[j]->data;
      ps[j].row_bytes = ws[j]->row_bytes;
      ps[j].n_rows = ws[j]->rows;
      ps[j].n_cols = cols;
      ps[j].n_vec = (int)n;
      ps[j].x = xin;
      ps[j].ldx = cols;
      ps[j].xq = need_int ? xqs.data() : nullptr;
      ps[j].y = ys[j];
      ps[j].ldy = ws[j]->rows;
    }
    cpu::matmul_small_multi(ps, nw, nt);
    return;
  }
  if (wp == wpath::quant) {  // each row as a decode step's mat-vecs compute it
    for (int64_t i = 0; i < n; ++i) {
      float* yi[4];
      for (int j = 0; j < nw; ++j) yi[j] = ys[j] + i * ws[j]->rows;
      mv(ws, yi, nw, xin + i * ws[0]->cols);
    }
    return;
  }
  for (int j = 0; j < nw; ++j) gemm_one(*ws[j], xin, n, ys[j], wp);
}

void session::impl::gemm_one(const weight& wt, const float* xin, int64_t n, float* yout, wpath wp) {
  const bool f32 = wp == wpath::f32;
  cpu::gemm_params p;
  p.type = f32 ? gguf::type::F32 : wt.type;
  p.w = f32 ? (const void*)w->weight_f32(wt, nt) : wt.data;
  p.row_bytes = f32 ? (size_t)wt.cols * sizeof(float) : wt.row_bytes;
  p.n_rows = wt.rows;
  p.n_cols = wt.cols;
  p.x = xin;
  p.ldx = wt.cols;
  p.n_tok = n;
  p.y = yout;
  p.ldy = wt.rows;
  cpu::gemm_wt(p, wtile, nt);
}

const float* model::impl::weight_f32(const weight& wt, int n_threads) const {
  std::lock_guard<std::mutex> lock(w32_mu_);
  std::vector<float>& f = w32_[&wt];
  if (f.empty()) {
    f.resize((size_t)wt.rows * wt.cols);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t r = 0; r < wt.rows; r += 64)
      cpu::dequantize_rows(wt.type, wt.data, wt.row_bytes, wt.cols, r, std::min(wt.rows, r + 64),
                           f.data() + (size_t)r * wt.cols);
  }
  return f.data();
}

kv_view session::impl::view(int l, int64_t n_tok) const {
  kv_view kv;
  kv.k = pool->k(l);  // the session's own pages are in order: one contiguous page of the context
  kv.v = pool->v(l);
  kv.type = dtype::f16;
  kv.n_tok = n_tok;
  kv.n_head_kv = hp.n_head_kv;
  kv.head_dim = hp.head_dim;
  kv.stride_tok = kv_dim;
  kv.stride_head = hp.head_dim;
  return kv;
}

static void add_bias(float* y, const std::vector<float>& b) {
  if (!b.empty()) cpu::add_inplace(y, b.data(), (int64_t)b.size());
}

// Per-head RMSNorm in place (QK-norm); w empty: nothing.
static void head_norm(float* x, int n_heads, int hd, const std::vector<float>& w, float eps) {
  if (w.empty()) return;
  for (int h = 0; h < n_heads; ++h) cpu::rms_norm(x + (int64_t)h * hd, w.data(), x + (int64_t)h * hd, hd, eps);
}

static void ffn_act_rows(ffn_act act, const float* g, const float* u, float* h, int64_t n) {
  if (act == ffn_act::gelu)
    cpu::geglu(g, u, h, n);
  else
    cpu::swiglu(g, u, h, n);
}

int64_t session::impl::rope_row() const { return (int64_t)hp.rope_sets.size() * (hp.rope_dims / 2); }

void session::impl::rope_row_angles(int64_t pos, float* cs, float* sn) const {
  const int half = hp.rope_dims / 2;
  const float* ff = w->rope_freqs.empty() ? nullptr : w->rope_freqs.data();
  for (size_t k = 0; k < hp.rope_sets.size(); ++k) {
    const rope_params& r = hp.rope_sets[k];
    const float* f = r.freq_factors ? ff : nullptr;
    if (r.freq_scale == 1.0f && r.ext_factor == 0.0f && r.attn_factor == 1.0f) {
      cpu::rope_angles(pos, hp.rope_dims, r.base, f, cs + k * half, sn + k * half);
    } else {
      cpu::rope_scaling_params sc;
      sc.freq_scale = r.freq_scale;
      sc.ext_factor = r.ext_factor;
      sc.mscale = r.attn_factor;
      sc.corr_lo = r.corr_lo;
      sc.corr_hi = r.corr_hi;
      cpu::rope_angles_scaled(pos, hp.rope_dims, r.base, f, sc, cs + k * half, sn + k * half);
    }
  }
}

int64_t session::impl::rope_offset(int l) const {
  return hp.rope_set.empty() ? 0 : (int64_t)hp.rope_set[l] * (hp.rope_dims / 2);
}

bool session::impl::window_lists(int l, int64_t pos, index_lists& out) const {
  if (hp.is_global(l)) return false;
  const int64_t lo = hp.attn_first(l, pos), n = pos + 1 - lo;
  out.reset(hp.n_head_kv, n, true);
  for (int g = 0; g < hp.n_head_kv; ++g) {
    int32_t* d = out.idx.data() + (int64_t)g * n;
    for (int64_t i = 0; i < n; ++i) d[i] = (int32_t)(lo + i);
    out.count[g] = (int32_t)n;
  }
  return true;
}

void session::impl::finish_logits(float* out, int64_t n) const {
  if (hp.logit_softcap > 0) cpu::softcap(out, n, hp.logit_softcap);
}

void session::impl::decode(int32_t tok) {
  // The multi-sequence step with one row: integer mat-vecs, attention through the policy.
  seq_row r{seq.get(), policy.get(), n_past, &attended_tokens, &context_tokens};
  logits.resize(hp.n_vocab);
  n_logit_rows = 1;
  decode_rows(&r, &tok, 1, logits.data(), wpath::quant);
  ++n_past;
}

void session::impl::attn_prefill(int l, int64_t pos0, int64_t n, const kv_seq& sq) {
  const int hd = hp.head_dim;
  const int G = hp.n_head / hp.n_head_kv;
  const int64_t Lmax = pos0 + n;
  const float scale = hp.attn_scale;
  // The cache holds fp16; attend to exactly those values (as decode does).
  kf.resize((size_t)Lmax * kv_dim);
  vf.resize((size_t)Lmax * kv_dim);
  // Gathered page by page from the sequence's page table.
  const int ps = pool->page_size();
  const std::vector<int32_t>& table = sq.table();
  const int64_t n_pg = (Lmax + ps - 1) / ps;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t pg = 0; pg < n_pg; ++pg) {
    const int64_t t = pg * ps;
    const int64_t cnt = std::min<int64_t>(ps, Lmax - t) * kv_dim;
    const int64_t off = pool->row_offset(table[pg], 0);
    cpu::f16_to_f32_row(pool->k(l) + off, kf.data() + t * kv_dim, cnt);
    cpu::f16_to_f32_row(pool->v(l) + off, vf.data() + t * kv_dim, cnt);
  }
  constexpr int64_t kTile = 64;
  const int64_t n_tiles = (n + kTile - 1) / kTile;
  const int64_t n_tasks = n_tiles * hp.n_head;
  if ((int)S.size() < nt) S.resize(nt);
  cpu::blas_single_thread guard;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t task = 0; task < n_tasks; ++task) {
    // The costliest tiles (last queries, longest key ranges) first.
    const int64_t tile = n_tiles - 1 - task / hp.n_head;
    const int h = (int)(task % hp.n_head);
    const int gk = h / G;
    const int64_t i0 = tile * kTile, i1 = std::min(n, i0 + kTile), rows = i1 - i0;
    // Keys k0 .. pos0 + i1 - 1: k0 is the first key of the tile's first query (0 on global layers);
    // a sliding-window row masks the keys before its own first one.
    const int64_t k0 = hp.attn_first(l, pos0 + i0);
    const int64_t Lk = pos0 + i1 - k0;
    std::vector<float>& s = S[omp_get_thread_num()];
    if ((int64_t)s.size() < rows * Lk) s.resize(rows * Lk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)Lk, hd, 1.0f,
                Q.data() + i0 * q_dim + h * hd, q_dim, kf.data() + k0 * kv_dim + gk * hd, kv_dim, 0.0f, s.data(),
                (int)Lk);
    for (int64_t r = 0; r < rows; ++r) {
      float* sr = s.data() + r * Lk;
      const int64_t first = hp.attn_first(l, pos0 + i0 + r) - k0;
      for (int64_t j = 0; j < first; ++j) sr[j] = -INFINITY;
      cpu::softmax_row(sr, pos0 + i0 + r + 1 - k0, Lk, scale);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, hd, (int)Lk, 1.0f, s.data(),
                (int)Lk, vf.data() + k0 * kv_dim + gk * hd, kv_dim, 0.0f, A.data() + i0 * q_dim + h * hd, q_dim);
  }
}

void session::impl::rows_resize(int64_t n) {
  const int E = hp.n_embd, F = hp.n_ff;
  for (auto* b : {&X, &XN, &T}) b->resize((size_t)n * E);
  for (auto* b : {&Q, &A}) b->resize((size_t)n * q_dim);
  for (auto* b : {&K, &V}) b->resize((size_t)n * kv_dim);
  for (auto* b : {&G, &U}) b->resize((size_t)n * F);
}

void session::impl::rows_embed(const int32_t* toks, int64_t n) {
  const weight& te = w->tok_embd;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
  for (int64_t i = 0; i < n; ++i)
  {
    float* xi = X.data() + i * hp.n_embd;
    cpu::dequantize_rows(te.type, te.data, te.row_bytes, hp.n_embd, toks[i], toks[i] + 1, xi);
    if (hp.embd_scale != 1.0f)
      for (int j = 0; j < hp.n_embd; ++j) xi[j] *= hp.embd_scale;
  }
}

void session::impl::layer_qkv(const layer_weights& L, int64_t n, const float* cs, const float* sn,
                              int64_t angle_stride, wpath wp) {
  const int E = hp.n_embd, hd = hp.head_dim;
  const bool neox = hp.rope == rope_layout::neox;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
  for (int64_t i = 0; i < n; ++i)
    cpu::rms_norm(X.data() + i * E, L.attn_norm.data(), XN.data() + i * E, E, hp.rms_eps);
  {
    const weight* ws[3] = {&L.wq, &L.wk, &L.wv};
    float* ys[3] = {Q.data(), K.data(), V.data()};
    gemm_multi(ws, ys, 3, XN.data(), n, wp);
  }
  const int64_t ro = rope_offset(L.il);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
  for (int64_t i = 0; i < n; ++i) {
    float* qi = Q.data() + i * q_dim;
    float* ki = K.data() + i * kv_dim;
    add_bias(qi, L.bq);
    add_bias(ki, L.bk);
    add_bias(V.data() + i * kv_dim, L.bv);
    head_norm(qi, hp.n_head, hd, L.q_norm, hp.rms_eps);
    head_norm(ki, hp.n_head_kv, hd, L.k_norm, hp.rms_eps);
    const float* c = cs + i * angle_stride + ro;
    const float* s = sn + i * angle_stride + ro;
    cpu::rope_apply(qi, hp.n_head, hd, hp.rope_dims, neox, c, s);
    cpu::rope_apply(ki, hp.n_head_kv, hd, hp.rope_dims, neox, c, s);
  }
}

void session::impl::layer_out_ffn(const layer_weights& L, int64_t n, wpath wp) {
  const int E = hp.n_embd, F = hp.n_ff;
  gemm(L.wo, A.data(), n, T.data(), wp);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
  for (int64_t i = 0; i < n; ++i) {
    if (!L.attn_post_norm.empty())
      cpu::rms_norm(T.data() + i * E, L.attn_post_norm.data(), T.data() + i * E, E, hp.rms_eps);
    cpu::add_inplace(X.data() + i * E, T.data() + i * E, E);
    cpu::rms_norm(X.data() + i * E, L.ffn_norm.data(), XN.data() + i * E, E, hp.rms_eps);
  }
  {
    const weight* ws[2] = {&L.gate, &L.up};
    float* ys[2] = {G.data(), U.data()};
    gemm_multi(ws, ys, 2, XN.data(), n, wp);
  }
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
  for (int64_t i = 0; i < n; ++i) ffn_act_rows(hp.act, G.data() + i * F, U.data() + i * F, G.data() + i * F, F);
  gemm(L.down, G.data(), n, T.data(), wp);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
  for (int64_t i = 0; i < n; ++i) {
    if (!L.ffn_post_norm.empty())
      cpu::rms_norm(T.data() + i * E, L.ffn_post_norm.data(), T.data() + i * E, E, hp.rms_eps);
    cpu::add_inplace(X.data() + i * E, T.data() + i * E, E);
  }
}

void session::impl::rows_logits(int64_t n, float* out, wpath wp) {
  const int E = hp.n_embd;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
  for (int64_t i = 0; i < n; ++i)
    cpu::rms_norm(X.data() + i * E, w->output_norm.data(), XN.data() + i * E, E, hp.rms_eps);
  gemm(w->output, XN.data(), n, out, wp);
  if (hp.logit_softcap > 0)
    for (int64_t i = 0; i < n; ++i) finish_logits(out + i * hp.n_vocab, hp.n_vocab);
}

void session::impl::prefill_seq(kv_seq& sq, attention_policy& pol, int64_t pos0, const int32_t* toks, int64_t n,
                                float* out, bool all_logits) {
  const model::impl& W = *w;
  const int E = hp.n_embd;
  const int64_t rr = rope_row();
  HASHATTN_ASSERT(sq.capacity() >= pos0 + n);
  rows_resize(n);
  CS.resize((size_t)n * rr);
  SN.resize((size_t)n * rr);
  rows_embed(toks, n);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i) rope_row_angles(pos0 + i, CS.data() + i * rr, SN.data() + i * rr);
  for (int l = 0; l < hp.n_layer; ++l) {
    const layer_weights& L = W.layers[l];
    layer_qkv(L, n, CS.data(), SN.data(), rr, wpath::tiles);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      cpu::f32_to_f16_row(K.data() + i * kv_dim, sq.k_row(l, pos0 + i), kv_dim);
      cpu::f32_to_f16_row(V.data() + i * kv_dim, sq.v_row(l, pos0 + i), kv_dim);
    }
    if (observer) observer(l, Q.data(), K.data(), V.data(), pos0, n);
    // The policy indexes the keys as the cache holds them (fp16 values): the same whether a key was
    // prefilled, decoded or read back from shared pages.
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
    for (int64_t i = 0; i < n; ++i) cpu::f16_to_f32_row(sq.k_row(l, pos0 + i), K.data() + i * kv_dim, kv_dim);
    pol.on_append(l, K.data(), pos0, n);
    attn_prefill(l, pos0, n, sq);
    layer_out_ffn(L, n, wpath::tiles);
  }
  sq.set_length(pos0 + n);
  if (all_logits) {
    rows_logits(n, out, wpath::tiles);
  } else {
    cpu::rms_norm(X.data() + (n - 1) * E, W.output_norm.data(), xn.data(), E, hp.rms_eps);
    const weight* ws[1] = {&W.output};
    float* ys[1] = {out};
    mv(ws, ys, 1, xn.data());
    finish_logits(out, hp.n_vocab);
  }
}

void session::impl::prefill(const int32_t* toks, int64_t n, bool all_logits, int64_t out_row0) {
  prefill_seq(*seq, *policy, n_past, toks, n, logits.data() + out_row0 * hp.n_vocab, all_logits);
  n_past += n;
}

namespace {

// Memory the system can give us now (MemAvailable of /proc/meminfo, else all physical memory);
// 0 when unknown.
double available_memory_bytes() {
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    long long kb = -1;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    std::fclose(f);
    if (kb > 0) return (double)kb * 1024;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (double)pages * page : 0;
}

}  // namespace

void session::impl::init(const model& mod, const char* who, int64_t ctx, int n_threads, const std::string& backend,
                         int64_t batch, int page_size, int64_t kv_tokens) {
  const std::string w_ = who;
  m = &mod;
  w = &mod.internals();
  hp = mod.hparams();
  if (ctx < 0) fail(w_ + ": context size", std::to_string(ctx), ">= 0 (0: the model's)");
  n_ctx = ctx > 0 ? ctx : hp.n_ctx_train;
  if (n_ctx > hp.n_ctx_train)
    fail(w_ + ": context size", std::to_string(n_ctx),
         "at most the model's training context " + std::to_string(hp.n_ctx_train),
         "the model's RoPE (and its scaling, if any) covers no more");
  if (n_threads < 0) fail(w_ + ": threads", std::to_string(n_threads), ">= 0 (0: all)");
  nt = n_threads > 0 ? n_threads : omp_get_max_threads();
  be = &backend_get(backend);
  if (batch < 1) fail(w_ + ": batch size", std::to_string(batch), ">= 1");
  n_batch = batch;
  q_dim = hp.n_head * hp.head_dim;
  kv_dim = hp.n_head_kv * hp.head_dim;
  if (page_size < 1 || page_size > 4096 || (page_size & (page_size - 1)) != 0)
    fail(w_ + ": KV page size", std::to_string(page_size), "a power of two in [1, 4096]");
  if (kv_tokens < 0) kv_tokens = n_ctx;
  // Refuse up front a KV cache that cannot fit in memory (instead of being killed while filling it).
  const double kv_bytes = 2.0 * hp.n_layer * (double)kv_tokens * kv_dim * sizeof(uint16_t);
  const double avail = available_memory_bytes();
  if (avail > 0 && kv_bytes > avail) {
    char got[160], want[64], hint[96];
    std::snprintf(got, sizeof got, "%.2f GiB (%lld tokens x %d layers x %d values x K,V x fp16)", kv_bytes / (1 << 30),
                  (long long)kv_tokens, hp.n_layer, kv_dim);
    std::snprintf(want, sizeof want, "at most the %.2f GiB of memory available", avail / (1 << 30));
    std::snprintf(hint, sizeof hint, "pass a smaller context (--ctx); about %lld tokens fit",
                  (long long)(avail / (kv_bytes / (double)kv_tokens)));
    fail(w_ + ": the KV cache does not fit in memory", got, want, hint);
  }
  pool = std::make_unique<kv_pages>(hp.n_layer, hp.n_head_kv, hp.head_dim, page_size,
                                    (kv_tokens + page_size - 1) / page_size);
  xn.resize(hp.n_embd);
}

session::session(const model& m, const session_params& p, std::unique_ptr<attention_policy> policy)
    : p_(std::make_unique<impl>()) {
  impl& s = *p_;
  s.init(m, "session", p.n_ctx, p.n_threads, p.backend, p.n_batch, p.page_size, -1);
  s.policy = policy ? std::move(policy) : make_dense_policy();
  s.observer = p.observer;
  s.seq = std::make_unique<kv_seq>(*s.pool);
  s.seq->reserve(s.n_ctx);
  for (int64_t i = 0; i < (int64_t)s.seq->table().size(); ++i) HASHATTN_ASSERT(s.seq->table()[i] == i);  // in order
  s.policy->begin(s.hp.n_layer, layer_shape{s.hp.n_head, s.hp.n_head_kv, s.hp.head_dim}, s.n_ctx);
}

session::~session() = default;

void check_token_ids(const model& m, const int32_t* toks, int64_t n, const std::string& who) {
  const int64_t V = m.hparams().n_vocab;
  for (int64_t i = 0; i < n; ++i)
    if (toks[i] < 0 || toks[i] >= V)
      fail(who + ": token id out of range", std::to_string(toks[i]), "0 .. " + std::to_string(V - 1));
}

const float* session::eval(const int32_t* tokens, int64_t n, bool all_logits) {
  impl& s = *p_;
  if (n < 1 || !tokens) fail("session: eval of an empty token list", std::to_string(n), ">= 1 token");
  if (s.n_past + n > s.n_ctx)
    fail("session: context full", std::to_string(s.n_past) + " + " + std::to_string(n) + " tokens",
         "at most " + std::to_string(s.n_ctx), "use a larger context (--ctx) or a shorter prompt");
  check_token_ids(*s.m, tokens, n, "session");
  if (n == 1 && !all_logits) {
    s.decode(tokens[0]);
    return s.logits.data();
  }
  s.n_logit_rows = all_logits ? n : 1;
  s.logits.resize((size_t)s.n_logit_rows * s.hp.n_vocab);
  for (int64_t c = 0; c < n; c += s.n_batch) {
    const int64_t m = std::min(s.n_batch, n - c);
    const bool last = c + m == n;
    if (!all_logits && !last) {
      // Logits of this chunk are not needed: run it with its last row's logits into row 0
      // (overwritten by the final chunk).
      s.prefill(tokens + c, m, false, 0);
    } else {
      s.prefill(tokens + c, m, all_logits, all_logits ? c : 0);
    }
  }
  return logits();
}

const float* session::logits() const {
  const impl& s = *p_;
  if (s.n_logit_rows == 0) fail("session: no logits yet", {}, {}, "call eval() first");
  return s.logits.data() + (s.n_logit_rows - 1) * s.hp.n_vocab;
}

const float* session::logits_at(int64_t i) const {
  const impl& s = *p_;
  if (i < 0 || i >= s.n_logit_rows)
    fail("session: logits row", std::to_string(i), "0 .. " + std::to_string(s.n_logit_rows - 1));
  return s.logits.data() + i * s.hp.n_vocab;
}

int64_t session::n_past() const { return p_->n_past; }
int64_t session::n_ctx() const { return p_->n_ctx; }
int session::n_threads() const { return p_->nt; }
double session::attended_density() const {
  return p_->context_tokens > 0 ? p_->attended_tokens / p_->context_tokens : 1.0;
}

void session::truncate(int64_t n) {
  impl& s = *p_;
  if (n < 0 || n > s.n_past)
    fail("session: truncate", std::to_string(n), "0 .. " + std::to_string(s.n_past));
  s.n_past = n;
  s.n_logit_rows = 0;
  s.policy->truncate(n);
}

attention_policy& session::policy() { return *p_->policy; }
kv_view session::kv(int layer) const {
  if (layer < 0 || layer >= p_->hp.n_layer)
    fail("session: layer", std::to_string(layer), "0 .. " + std::to_string(p_->hp.n_layer - 1));
  return p_->view(layer, p_->n_past);
}
const model& session::get_model() const { return *p_->m; }

}  // namespace hashattn
