// Hyperparameters of a model from its GGUF metadata (keys <arch>.*), as llama.cpp reads them:
//   sizes: block_count, embedding_length, attention.head_count[_kv], attention.key_length,
//     feed_forward_length, context_length, attention.layer_norm_rms_epsilon
//   RoPE: rope.freq_base, rope.dimension_count; scaling: rope.scaling.type (absent: linear when
//     rope.scaling.factor or rope.scale_linear is given, else none), rope.scaling.factor,
//     rope.scaling.original_context_length (YaRN's and llama3's original context),
//     rope.scaling.attn_factor and rope.scaling.yarn_log_multiplier (YaRN magnitude),
//     rope.scaling.low_freq_factor / high_freq_factor (llama3; defaults 1 and 4, Llama 3.1's).
//     "llama3" is read here only (llama.cpp reads those factors from the rope_freqs tensor, which
//     wins when present).
//   gemma3: attention.sliding_window (0 or absent: every layer global), attention.sliding_window_pattern
//     (n: layer l slides unless l % n == n - 1, default 6; or one bool per layer), rope.freq_base_swa
//     (default 10000; sliding layers never scale), final_logit_softcapping (default off).
//   llama and qwen2 files may carry attention.sliding_window (Mistral 7B v0.1): llama.cpp ignores it
//     for these architectures and so do we (every layer global); `hashattn info` says so.
#include <cmath>

#include "hashattn/error.h"
#include "hashattn/synthetic-model.h"
#include "model/model-impl.h"

namespace hashattn {
namespace {

int positive(const std::string& key, int64_t v, int64_t max = 1 << 20) {
  if (v <= 0 || v > max)
    fail("model: metadata '" + key + "' out of range", std::to_string(v), "1 .. " + std::to_string(max));
  return (int)v;
}

float finite_at_least(const gguf::file& f, const std::string& key, double fallback, double lo) {
  const double v = f.get_float(key, fallback);
  if (!(v >= lo) || !std::isfinite(v))
    fail("model: metadata '" + key + "' out of range", std::to_string(v), ">= " + std::to_string(lo));
  return (float)v;
}

// ggml_rope_yarn_corr_dims
void yarn_corr_dims(int n_dims, int64_t n_ctx_orig, float base, float beta_fast, float beta_slow, rope_params& r) {
  auto dim = [&](float n_rot) {
    return n_dims * std::log((float)n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * std::log(base));
  };
  r.corr_lo = std::max(0.0f, std::floor(dim(beta_fast)));
  r.corr_hi = std::min((float)(n_dims - 1), std::ceil(dim(beta_slow)));
}

// The scaling of the global layers' RoPE (rope_sets[0]); llama3 factors into rope_freqs.
void read_scaling(const gguf::file& f, const std::string& a, model_hparams& hp, std::vector<float>& rope_freqs) {
  rope_params& r = hp.rope_sets[0];
  std::string type;
  const std::string tkey = a + "rope.scaling.type";
  if (const gguf::value* v = f.find(tkey)) {
    if (v->type != gguf::value_type::STRING)
      fail("model: metadata '" + tkey + "' has the wrong type", gguf::value_type_name(v->type), "string");
    type = v->s;
  }
  std::string fkey = a + "rope.scaling.factor";
  if (!f.find(fkey) && f.find(a + "rope.scale_linear")) fkey = a + "rope.scale_linear";
  const bool has_factor = f.find(fkey) != nullptr;
  if (type.empty()) type = has_factor ? "linear" : "none";
  if (type == "none") {
    hp.rope_scaling = "none";
    return;
  }
  if (type != "linear" && type != "yarn" && type != "llama3")
    fail("model: RoPE scaling '" + type + "' (metadata '" + tkey + "') is not supported", type,
         "none, linear, yarn or llama3");
  const float factor = finite_at_least(f, fkey, 0.0, 0.0);
  if (type == "llama3") {
    if (!has_factor) fail("model: llama3 RoPE scaling without metadata '" + a + "rope.scaling.factor'");
    llama3_rope_scaling sc;
    sc.factor = factor;
    sc.low_freq_factor = (float)f.get_float(a + "rope.scaling.low_freq_factor", 1.0);
    sc.high_freq_factor = (float)f.get_float(a + "rope.scaling.high_freq_factor", 4.0);
    sc.orig_ctx = f.get_int(a + "rope.scaling.original_context_length", 8192);
    rope_freqs = llama3_rope_freq_factors(hp.rope_dims, hp.rope_base, sc);
    hp.rope_scaling = "llama3";
    return;
  }
  // llama.cpp: a factor of 0 (or none) means 1.
  if (factor != 0.0f) r.freq_scale = 1.0f / factor;
  hp.rope_scaling = r.freq_scale == 1.0f && type == "linear" ? "none" : type;
  if (type == "yarn") {
    const float fac = 1.0f / r.freq_scale;
    auto mscale = [](float scale, float m) { return scale <= 1.0f ? 1.0f : 0.1f * m * std::log(scale) + 1.0f; };
    const float log_mul = (float)f.get_float(a + "rope.scaling.yarn_log_multiplier", 0.0);
    r.ext_factor = 1.0f;
    r.attn_factor = (log_mul != 0.0f ? mscale(fac, 1.0f) / mscale(fac, log_mul) : mscale(fac, 1.0f)) /
                    (1.0f + 0.1f * std::log(fac));
    r.attn_factor *= finite_at_least(f, a + "rope.scaling.attn_factor", 1.0, 0.0);
    hp.yarn_orig_ctx = f.get_int(a + "rope.scaling.original_context_length", hp.n_ctx_train);
    positive(a + "rope.scaling.original_context_length", hp.yarn_orig_ctx, 1 << 24);
    yarn_corr_dims(hp.rope_dims, hp.yarn_orig_ctx, r.base, 32.0f, 1.0f, r);
    // The context YaRN stretches to (Qwen2.5 files keep context_length at the original 32K).
    const double stretched = (double)hp.yarn_orig_ctx * fac;
    if (stretched > (double)hp.n_ctx_train && stretched <= (double)(1 << 24)) hp.n_ctx_train = (int64_t)stretched;
  }
}

// gemma3's sliding-window layers: hp.window, hp.rope_set, rope_sets[1].
void read_gemma3_windows(const gguf::file& f, const std::string& a, model_hparams& hp) {
  const std::string wkey = a + "attention.sliding_window";
  const int64_t n_swa = f.get_int(wkey, 0);
  if (n_swa < 0 || n_swa > (1 << 24)) fail("model: metadata '" + wkey + "' out of range", std::to_string(n_swa));
  if (n_swa == 0) return;
  hp.window.assign(hp.n_layer, 0);
  const std::string pkey = a + "attention.sliding_window_pattern";
  const gguf::value* pv = f.find(pkey);
  if (pv && pv->type == gguf::value_type::ARRAY) {
    const std::vector<int64_t> flags = f.get_ints(pkey);
    if ((int64_t)flags.size() != hp.n_layer)
      fail("model: metadata '" + pkey + "' length", std::to_string(flags.size()), std::to_string(hp.n_layer));
    for (int l = 0; l < hp.n_layer; ++l) hp.window[l] = flags[l] ? (int32_t)n_swa : 0;
  } else {
    const int64_t n = f.get_int(pkey, 6);
    if (n < 0 || n > 4096) fail("model: metadata '" + pkey + "' out of range", std::to_string(n), "0 .. 4096");
    for (int l = 0; l < hp.n_layer; ++l) hp.window[l] = n == 0 || l % n < n - 1 ? (int32_t)n_swa : 0;
  }
  rope_params swa = hp.rope_sets[0];
  swa.base = finite_at_least(f, a + "rope.freq_base_swa", 10000.0, 1.0);
  swa.freq_scale = 1.0f;
  if (swa.ext_factor != 0.0f) yarn_corr_dims(hp.rope_dims, hp.yarn_orig_ctx, swa.base, 32.0f, 1.0f, swa);
  hp.rope_sets.push_back(swa);
  hp.rope_set.assign(hp.n_layer, 0);
  for (int l = 0; l < hp.n_layer; ++l) hp.rope_set[l] = hp.window[l] ? 1 : 0;
}

}  // namespace

void read_hparams(const gguf::file& f, model_hparams& hp, std::vector<float>& rope_freqs) {
  hp.arch = f.get_string("general.architecture");
  if (hp.arch != "llama" && hp.arch != "qwen2" && hp.arch != "gemma3")
    fail("model: architecture '" + hp.arch + "' (metadata 'general.architecture') is not supported", hp.arch,
         "llama, qwen2 or gemma3");
  const std::string a = hp.arch + ".";
  hp.n_layer = positive(a + "block_count", f.get_int(a + "block_count"), 4096);
  hp.n_embd = positive(a + "embedding_length", f.get_int(a + "embedding_length"));
  hp.n_head = positive(a + "attention.head_count", f.get_int(a + "attention.head_count"), 4096);
  hp.n_head_kv = positive(a + "attention.head_count_kv", f.get_int(a + "attention.head_count_kv", hp.n_head), 4096);
  if (hp.n_head % hp.n_head_kv != 0)
    fail("model: metadata '" + a + "attention.head_count' is not a multiple of '" + a + "attention.head_count_kv'",
         std::to_string(hp.n_head) + " / " + std::to_string(hp.n_head_kv));
  if (!f.find(a + "attention.key_length") && hp.n_embd % hp.n_head != 0)
    fail("model: metadata '" + a + "embedding_length' is not a multiple of '" + a +
             "attention.head_count' (and no key_length)",
         std::to_string(hp.n_embd) + " / " + std::to_string(hp.n_head));
  hp.head_dim = positive(a + "attention.key_length", f.get_int(a + "attention.key_length", hp.n_embd / hp.n_head), 4096);
  const int64_t vlen = f.get_int(a + "attention.value_length", hp.head_dim);
  if (vlen != hp.head_dim)
    fail("model: metadata '" + a + "attention.value_length' differs from key_length", std::to_string(vlen),
         std::to_string(hp.head_dim));
  if (hp.head_dim % 2 != 0)
    fail("model: metadata '" + a + "attention.key_length' (head dim)", std::to_string(hp.head_dim), "an even number");
  hp.n_ff = positive(a + "feed_forward_length", f.get_int(a + "feed_forward_length"));
  hp.n_ctx_train = positive(a + "context_length", f.get_int(a + "context_length"), 1 << 24);
  hp.rope_base = (float)f.get_float(a + "rope.freq_base", 10000.0);
  if (!(hp.rope_base > 1.0f) || !std::isfinite(hp.rope_base))
    fail("model: metadata '" + a + "rope.freq_base'", std::to_string(hp.rope_base), "a finite number > 1");
  hp.rope_dims = (int)f.get_int(a + "rope.dimension_count", hp.head_dim);
  if (hp.rope_dims <= 0 || hp.rope_dims > hp.head_dim || hp.rope_dims % 2 != 0)
    fail("model: metadata '" + a + "rope.dimension_count'", std::to_string(hp.rope_dims),
         "an even number in 2 .. head dim " + std::to_string(hp.head_dim));
  hp.rms_eps = (float)f.get_float(a + "attention.layer_norm_rms_epsilon");
  if (!(hp.rms_eps > 0) || hp.rms_eps > 1)
    fail("model: metadata '" + a + "attention.layer_norm_rms_epsilon'", std::to_string(hp.rms_eps), "in (0, 1]");
  hp.rope = hp.arch == "llama" ? rope_layout::adjacent : rope_layout::neox;
  hp.attn_scale = 1.0f / std::sqrt((float)hp.head_dim);
  hp.yarn_orig_ctx = hp.n_ctx_train;
  hp.rope_sets.assign(1, rope_params{});
  hp.rope_sets[0].base = hp.rope_base;
  read_scaling(f, a, hp, rope_freqs);
  if (hp.arch == "gemma3") {
    hp.act = ffn_act::gelu;
    hp.qk_norm = true;
    hp.post_norms = true;
    hp.embd_scale = std::sqrt((float)hp.n_embd);
    // llama.cpp (after gemma_pytorch): the 62-layer 27B model scales by 1/sqrt(n_embd / n_head).
    if (hp.n_layer == 62) hp.attn_scale = 1.0f / std::sqrt((float)(hp.n_embd / hp.n_head));
    hp.logit_softcap = (float)f.get_float(a + "final_logit_softcapping", 0.0);
    if (hp.logit_softcap < 0 || !std::isfinite(hp.logit_softcap))
      fail("model: metadata '" + a + "final_logit_softcapping'", std::to_string(hp.logit_softcap), ">= 0");
    read_gemma3_windows(f, a, hp);
  }
}

}  // namespace hashattn
