// Uploads a model's weights to the GPU: matrices dequantized to bf16 on the host a chunk of rows at a
// time (BF16 tensors are copied as they are), q/k/v and gate/up stacked so that each is one GEMM.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "cpu/matvec.h"
#include "cuda/model-kernels.h"
#include "gpu/gpu-impl.h"
#include "hashattn/error.h"
#include "hashattn/hash.h"
#include "model/model-impl.h"

namespace hashattn {
namespace gpu {

dbuf::dbuf(size_t n, const char* what) : p(cuda::dev_alloc(n, what)), bytes(n) {}
dbuf::~dbuf() { cuda::dev_free(p); }
dbuf& dbuf::operator=(dbuf&& o) noexcept {
  if (this != &o) {
    cuda::dev_free(p);
    p = o.p, bytes = o.bytes;
    o.p = nullptr, o.bytes = 0;
  }
  return *this;
}

bool available(std::string* why) { return cuda::device_available(why); }

namespace {

uint16_t to_bf16_bits(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

struct uploader {
  int n_threads;
  void* stream;
  std::vector<float> f32;
  std::vector<uint16_t> b16;
  int64_t uploaded = 0;

  // Rows [0, wt.rows) of a weight to dst (bf16, row stride wt.cols), starting at row `row0` of dst.
  void matrix(const weight& wt, dbuf& dst, int64_t row0) {
    const int64_t chunk = std::max<int64_t>(1, (int64_t(8) << 20) / std::max<int64_t>(wt.cols, 1));
    uint16_t* out = dst.as<uint16_t>() + row0 * wt.cols;
    for (int64_t r = 0; r < wt.rows; r += chunk) {
      const int64_t r1 = std::min(wt.rows, r + chunk), n = (r1 - r) * wt.cols;
      if (wt.type == gguf::type::BF16) {
        cuda::copy_h2d(out + r * wt.cols, wt.data + r * wt.row_bytes, (size_t)n * 2, stream);
        cuda::stream_sync(stream);
        continue;
      }
      f32.resize((size_t)n);
      b16.resize((size_t)n);
#pragma omp parallel for num_threads(n_threads) schedule(static)
      for (int64_t rr = r; rr < r1; ++rr) {
        float* f = f32.data() + (rr - r) * wt.cols;
        cpu::dequantize_rows(wt.type, wt.data, wt.row_bytes, wt.cols, rr, rr + 1, f);
        uint16_t* b = b16.data() + (rr - r) * wt.cols;
        for (int64_t j = 0; j < wt.cols; ++j) b[j] = to_bf16_bits(f[j]);
      }
      cuda::copy_h2d(out + r * wt.cols, b16.data(), (size_t)n * 2, stream);
      cuda::stream_sync(stream);  // the host buffers are reused
    }
    uploaded += wt.rows * wt.cols * 2;
  }

  dbuf floats(const std::vector<float>& v, const char* what) {
    if (v.empty()) return {};
    dbuf d(v.size() * 4, what);
    cuda::copy_h2d(d.p, v.data(), v.size() * 4, stream);
    cuda::stream_sync(stream);
    return d;
  }
};

dbuf stacked(uploader& up, std::initializer_list<const weight*> ws, const char* what) {
  int64_t rows = 0;
  for (const weight* w : ws) {
    if (w->cols != (*ws.begin())->cols) fail(std::string(what) + ": widths differ", std::to_string(w->cols));
    rows += w->rows;
  }
  dbuf d((size_t)rows * (*ws.begin())->cols * 2, what);
  int64_t r0 = 0;
  for (const weight* w : ws) {
    up.matrix(*w, d, r0);
    r0 += w->rows;
  }
  return d;
}

}  // namespace

device_model::device_model() : p_(std::make_unique<impl>()) {}
device_model::~device_model() = default;
const model_hparams& device_model::hparams() const { return p_->hp; }
int64_t device_model::device_bytes() const { return p_->bytes; }
int64_t device_model::step_weight_bytes(int batch) const {
  return p_->matrix_bytes + (int64_t)batch * p_->hp.n_embd * 2;
}

std::shared_ptr<const device_model> device_model::upload(const model& m, int n_threads, bool verbose) {
  std::string why;
  if (!available(&why)) fail("GPU runtime", why, "a CUDA device");
  const model::impl& mi = m.internals();
  const model_hparams& hp = mi.hp;
  if (hp.head_dim != 64 && hp.head_dim != 128)
    fail("GPU runtime: head_dim", std::to_string(hp.head_dim), "64 or 128 (the CUDA attention kernels)");
  if (hp.rope_dims % 2 || hp.rope_dims > hp.head_dim) fail("GPU runtime: rope dims", std::to_string(hp.rope_dims), "even, <= head_dim");
  // The GPU forward pass runs the llama / qwen2 layer (SwiGLU, one RoPE, every layer global).
  if (hp.act != ffn_act::silu || hp.qk_norm || hp.post_norms || hp.embd_scale != 1.0f || !hp.window.empty() ||
      hp.logit_softcap > 0)
    fail("GPU runtime: architecture '" + hp.arch + "'", hp.arch, "llama or qwen2 (the CPU runs " + hp.arch + ")");
  if (hp.rope_scaling == "linear" || hp.rope_scaling == "yarn")
    fail("GPU runtime: RoPE scaling '" + hp.rope_scaling + "'", hp.rope_scaling,
         "none or llama3 frequency factors (the CPU runs " + hp.rope_scaling + ")");
  std::shared_ptr<device_model> dm(new device_model());
  impl& d = *dm->p_;
  d.hp = hp;
  void* stream = cuda::stream_create();
  uploader up{n_threads > 0 ? n_threads : omp_get_max_threads(), stream, {}, {}, 0};
  try {
    d.tok_embd = stacked(up, {&mi.tok_embd}, "token embeddings");
    if (!hp.tied_embeddings) d.output = stacked(up, {&mi.output}, "output projection");
    d.output_norm = up.floats(mi.output_norm, "output norm");
    d.rope_freqs = up.floats(mi.rope_freqs, "rope frequencies");
    d.layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
      const layer_weights& w = mi.layers[l];
      device_layer& dl = d.layers[l];
      dl.attn_norm = up.floats(w.attn_norm, "attention norm");
      dl.ffn_norm = up.floats(w.ffn_norm, "ffn norm");
      dl.wqkv = stacked(up, {&w.wq, &w.wk, &w.wv}, "q/k/v weights");
      if (hp.qkv_bias) {
        std::vector<float> b(w.bq);
        b.insert(b.end(), w.bk.begin(), w.bk.end());
        b.insert(b.end(), w.bv.begin(), w.bv.end());
        dl.bqkv = up.floats(b, "q/k/v biases");
      }
      dl.wo = stacked(up, {&w.wo}, "output weights");
      dl.wgu = stacked(up, {&w.gate, &w.up}, "gate/up weights");
      dl.wdown = stacked(up, {&w.down}, "down weights");
      if (verbose && (l + 1) % std::max(1, hp.n_layer / 8) == 0)
        std::fprintf(stderr, "gpu: uploaded %d/%d layers (%.2f GB)\n", l + 1, hp.n_layer, up.uploaded / 1e9);
    }
  } catch (...) {
    cuda::stream_destroy(stream);
    throw;
  }
  cuda::stream_destroy(stream);
  d.bytes = up.uploaded;
  // A step reads every layer matrix and the output projection, and one embedding row per sequence.
  d.matrix_bytes = up.uploaded - (hp.tied_embeddings ? 0 : (int64_t)hp.n_vocab * hp.n_embd * 2);
  return dm;
}

device_hash upload_hash(const hash_weights& w, const model_hparams& hp) {
  if (w.n_layer != hp.n_layer || w.n_head != hp.n_head || w.n_head_kv != hp.n_head_kv || w.head_dim != hp.head_dim)
    fail("GPU runtime: hash encoders' shape",
         std::to_string(w.n_layer) + " layers, " + std::to_string(w.n_head) + "/" + std::to_string(w.n_head_kv) +
             " heads, d " + std::to_string(w.head_dim),
         "the model's");
  if (w.bits < 1 || w.bits > 32) fail("GPU runtime: hash bits", std::to_string(w.bits), "1 .. 32 (uint32 codes)");
  device_hash h;
  h.bits = w.bits;
  h.key_per_group = w.key_per_group;
  h.data = dbuf(w.data.size() * 4, "hash encoders");
  void* s = cuda::stream_create();
  cuda::copy_h2d(h.data.p, w.data.data(), w.data.size() * 4, s);
  cuda::stream_sync(s);
  cuda::stream_destroy(s);
  const float* host = w.data.data();
  const float* dev = h.data.as<const float>();
  auto remap = [&](hash_mlp_view v) {
    for (int i = 0; i < 3; ++i) {
      if (v.w[i]) v.w[i] = dev + (v.w[i] - host);
      if (v.b[i]) v.b[i] = dev + (v.b[i] - host);
    }
    return v;
  };
  for (int l = 0; l < w.n_layer; ++l) {
    h.query.push_back(remap(w.query(l)));
    h.key.push_back(remap(w.key(l)));
  }
  return h;
}

}  // namespace gpu
}  // namespace hashattn
