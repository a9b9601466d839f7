// Loads a model (llama, qwen2, gemma3) from GGUF: the hyperparameters from the metadata
// (model-hparams.cpp), then every tensor's presence, shape and type, keeping views of the matrices in
// the mapping. Every refusal names the file (when it has a path) and the key or tensor. Tensor shapes
// (GGUF ne order, ne[0] contiguous):
//   token_embd [n_embd, n_vocab]; output [n_embd, n_vocab] (absent: tied); *_norm [n_embd]
//   attn_q [n_embd, n_head*hd]; attn_k/v [n_embd, n_kv*hd]; attn_output [n_head*hd, n_embd]
//   ffn_gate/up [n_embd, n_ff]; ffn_down [n_ff, n_embd]; attn_q/k/v.bias (qwen2) [rows]
//   gemma3: attn_q_norm / attn_k_norm [hd]; post_attention_norm / post_ffw_norm [n_embd]
//   rope_freqs [rope_dims / 2] (optional: the llama3 frequency factors)
#include <cmath>
#include <sstream>

#include "cpu/matvec.h"
#include "hashattn/error.h"
#include "model/model-impl.h"

namespace hashattn {
namespace {

std::string shape_str(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

const gguf::tensor_info& need_tensor(const gguf::file& f, const std::string& name,
                                     const std::vector<int64_t>& ne) {
  const gguf::tensor_info* t = f.find_tensor(name);
  if (!t)
    fail("model: tensor '" + name + "' is missing", {}, "shape " + shape_str(ne),
         "the file is not a complete llama-family model");
  if (t->ne != ne)
    fail("model: tensor '" + name + "' has the wrong shape", shape_str(t->ne), shape_str(ne));
  return *t;
}

weight make_weight(const gguf::file& f, const std::string& name, int64_t rows, int64_t cols) {
  const auto& t = need_tensor(f, name, {cols, rows});
  if (!cpu::matvec_supported(t.type))
    fail("model: tensor '" + name + "' has an unsupported type", gguf::type_name(t.type),
         "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 or a K-quant");
  weight w;
  w.name = name;
  w.type = t.type;
  w.data = t.data;
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = gguf::row_bytes(t.type, cols);
  HASHATTN_ASSERT(w.row_bytes * (size_t)rows == t.nbytes);
  return w;
}

std::vector<float> make_vector(const gguf::file& f, const std::string& name, int64_t n) {
  const auto& t = need_tensor(f, name, {n});
  if (!gguf::type_dequantizable(t.type))
    fail("model: tensor '" + name + "' has an unsupported type", gguf::type_name(t.type), "F32");
  std::vector<float> v(n);
  gguf::dequantize_row(t.type, t.data, v.data(), n);
  for (float x : v)
    if (!std::isfinite(x)) fail("model: tensor '" + name + "' holds a non-finite value");
  return v;
}

std::string window_summary(const model_hparams& hp) {
  int n_swa = 0;
  for (int l = 0; l < hp.n_layer; ++l) n_swa += hp.is_global(l) ? 0 : 1;
  if (n_swa == 0) return "";
  const rope_params& swa = hp.rope_sets.back();
  return ", " + std::to_string(n_swa) + " sliding-window layers (window " + std::to_string(hp.window[0] ? hp.window[0] : hp.window.back()) +
         ", rope base " + std::to_string((int64_t)swa.base) + ") and " + std::to_string(hp.n_layer - n_swa) +
         " global layers (sparse attention applies to these only)";
}

}  // namespace

model::model() : p_(std::make_unique<impl>()) {}
model::~model() = default;

const model_hparams& model::hparams() const { return p_->hp; }
const gguf::file& model::file() const { return *p_->f; }

std::unique_ptr<model> model::load(const std::string& path) {
  std::shared_ptr<const gguf::file> f = gguf::file::open(path);
  return from_gguf(std::move(f));
}

std::unique_ptr<model> model::from_gguf(std::shared_ptr<const gguf::file> fp) {
  if (!fp) fail("model: no GGUF file");
  // Every refusal names the file (and, in its message, the metadata key or tensor).
  const std::string path = fp->path();
  try {
    return load_checked(std::move(fp));
  } catch (const error& e) {
    if (path.empty()) throw;
    throw error("model file '" + path + "': " + e.what());
  }
}

std::unique_ptr<model> model::load_checked(std::shared_ptr<const gguf::file> fp) {
  const gguf::file& f = *fp;
  std::unique_ptr<model> m(new model());
  impl& im = *m->p_;
  im.f = fp;
  model_hparams& hp = im.hp;
  read_hparams(f, hp, im.rope_freqs);

  const gguf::tensor_info* te = f.find_tensor("token_embd.weight");
  if (!te) fail("model: tensor 'token_embd.weight' is missing", {}, {}, "not a llama-family model");
  if (te->ne.size() != 2 || te->ne[0] != hp.n_embd)
    fail("model: tensor 'token_embd.weight' has the wrong shape", shape_str(te->ne),
         "[" + std::to_string(hp.n_embd) + ", n_vocab]");
  hp.n_vocab = te->ne[1];
  if (const gguf::value* v = f.find(hp.arch + ".vocab_size"); v && v->is_integer() && v->i != hp.n_vocab)
    fail("model: metadata '" + hp.arch + ".vocab_size' disagrees with token_embd", std::to_string(v->i),
         std::to_string(hp.n_vocab));
  im.tok_embd = make_weight(f, "token_embd.weight", hp.n_vocab, hp.n_embd);
  hp.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  im.output = hp.tied_embeddings ? im.tok_embd : make_weight(f, "output.weight", hp.n_vocab, hp.n_embd);
  im.output_norm = make_vector(f, "output_norm.weight", hp.n_embd);
  if (f.find_tensor("rope_freqs.weight")) {
    im.rope_freqs = make_vector(f, "rope_freqs.weight", hp.rope_dims / 2);  // wins over the metadata
    for (float x : im.rope_freqs)
      if (!(x > 0)) fail("model: tensor 'rope_freqs.weight' holds a factor <= 0", std::to_string(x), "> 0");
    if (hp.rope_scaling == "none") hp.rope_scaling = "llama3";
  }
  hp.rope_freq_factors = !im.rope_freqs.empty();
  for (auto& r : hp.rope_sets) r.freq_factors = hp.rope_freq_factors;
  if (hp.arch == "gemma3") {  // llama.cpp's gemma3 passes no frequency factors
    if (hp.rope_freq_factors)
      fail("model: RoPE frequency factors (tensor 'rope_freqs.weight' or llama3 scaling) in a gemma3 file are not supported");
    for (const char* t : {"dense_2.weight", "dense_3.weight"})
      if (f.find_tensor(t)) fail(std::string("model: tensor '") + t + "' (an embedding model's) is not supported");
  }

  const int64_t q_rows = (int64_t)hp.n_head * hp.head_dim;
  const int64_t kv_rows = (int64_t)hp.n_head_kv * hp.head_dim;
  im.layers.resize(hp.n_layer);
  hp.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  for (int l = 0; l < hp.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    layer_weights& L = im.layers[l];
    L.il = l;
    L.attn_norm = make_vector(f, b + "attn_norm.weight", hp.n_embd);
    L.ffn_norm = make_vector(f, b + "ffn_norm.weight", hp.n_embd);
    L.wq = make_weight(f, b + "attn_q.weight", q_rows, hp.n_embd);
    L.wk = make_weight(f, b + "attn_k.weight", kv_rows, hp.n_embd);
    L.wv = make_weight(f, b + "attn_v.weight", kv_rows, hp.n_embd);
    L.wo = make_weight(f, b + "attn_output.weight", hp.n_embd, q_rows);
    L.gate = make_weight(f, b + "ffn_gate.weight", hp.n_ff, hp.n_embd);
    L.up = make_weight(f, b + "ffn_up.weight", hp.n_ff, hp.n_embd);
    L.down = make_weight(f, b + "ffn_down.weight", hp.n_embd, hp.n_ff);
    if (hp.qk_norm) {
      L.q_norm = make_vector(f, b + "attn_q_norm.weight", hp.head_dim);
      L.k_norm = make_vector(f, b + "attn_k_norm.weight", hp.head_dim);
    }
    if (hp.post_norms) {
      L.attn_post_norm = make_vector(f, b + "post_attention_norm.weight", hp.n_embd);
      L.ffn_post_norm = make_vector(f, b + "post_ffw_norm.weight", hp.n_embd);
    }
    if (hp.qkv_bias) {
      L.bq = make_vector(f, b + "attn_q.bias", q_rows);
      L.bk = make_vector(f, b + "attn_k.bias", kv_rows);
      L.bv = make_vector(f, b + "attn_v.bias", kv_rows);
    } else if (f.find_tensor(b + "attn_q.bias")) {
      fail("model: tensor '" + b + "attn_q.bias' present although layer 0 has no q bias");
    }
  }
  return m;
}

std::string model::describe() const {
  const auto& hp = p_->hp;
  std::ostringstream os;
  os << hp.arch << ": " << hp.n_layer << " layers, embd " << hp.n_embd << ", heads " << hp.n_head
     << "/" << hp.n_head_kv << " x " << hp.head_dim << ", ffn " << hp.n_ff << ", vocab "
     << hp.n_vocab << ", ctx " << hp.n_ctx_train << ", rope "
     << (hp.rope == rope_layout::neox ? "neox" : "adjacent") << " base " << hp.rope_base
     << (hp.rope_scaling != "none" ? ", rope scaling " + hp.rope_scaling : "")
     << (hp.tied_embeddings ? ", tied embeddings" : "") << (hp.qkv_bias ? ", qkv bias" : "")
     << window_summary(hp) << "; weights " << gguf::type_name(p_->layers[0].wq.type) << ", output "
     << gguf::type_name(p_->output.type);
  return os.str();
}

int64_t model::decode_weight_bytes() const {
  int64_t b = (int64_t)p_->output.bytes() + (int64_t)p_->tok_embd.row_bytes;
  for (const auto& L : p_->layers)
    b += L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes() + L.gate.bytes() +
         L.up.bytes() + L.down.bytes();
  return b;
}

}  // namespace hashattn
