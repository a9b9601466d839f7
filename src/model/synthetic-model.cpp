// Llama-architecture models with random weights (include/hashattn/synthetic-model.h): presets, the
// validation of a shape, the tensor list, and the streamed write. Element e of tensor t takes 16 bits
// of draw e / 4 of a splitmix64 sequence keyed by (seed, t), so any chunking and any thread count give
// the same bytes.
#include "hashattn/synthetic-model.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/core.h>

#include "core/half.h"
#include "hashattn/error.h"
#include "hashattn/tokenizer.h"

namespace hashattn {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// One tensor of the file and how its values are made.
struct tensor_plan {
  std::string name;
  gguf::type type = gguf::type::F32;
  std::vector<int64_t> ne;
  int layer = -1;
  enum class kind { uniform, ones, values } what = kind::uniform;
  float scale = 0;            // uniform: half-width a
  std::vector<float> values;  // kind::values (rope_freqs)
  int64_t n_elements() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
  }
};

tensor_plan plan(std::string name, gguf::type t, std::vector<int64_t> ne, int layer, tensor_plan::kind what) {
  tensor_plan tp;
  tp.name = std::move(name);
  tp.type = t;
  tp.ne = std::move(ne);
  tp.layer = layer;
  tp.what = what;
  return tp;
}

tensor_plan matrix(std::string name, gguf::type t, int64_t cols, int64_t rows, int layer) {
  tensor_plan tp = plan(std::move(name), t, {cols, rows}, layer, tensor_plan::kind::uniform);
  tp.scale = (float)std::sqrt(3.0 / (double)cols);
  return tp;
}

tensor_plan norm(std::string name, int64_t n, int layer) {
  return plan(std::move(name), gguf::type::F32, {n}, layer, tensor_plan::kind::ones);
}

std::vector<tensor_plan> tensor_list(const synthetic_model_params& p) {
  const gguf::type t = p.type;
  const int64_t q = (int64_t)p.n_head * p.head_dim, kv = (int64_t)p.n_head_kv * p.head_dim;
  std::vector<tensor_plan> ts;
  ts.push_back(matrix("token_embd.weight", t, p.n_embd, p.n_vocab, -1));
  if (p.rope_scaling) {
    tensor_plan rf = plan("rope_freqs.weight", gguf::type::F32, {p.head_dim / 2}, -1, tensor_plan::kind::values);
    rf.values = llama3_rope_freq_factors(p.head_dim, p.rope_base, p.scaling);
    ts.push_back(std::move(rf));
  }
  for (int l = 0; l < p.n_layer; l++) {
    const std::string b = "blk." + std::to_string(l) + ".";
    ts.push_back(norm(b + "attn_norm.weight", p.n_embd, l));
    ts.push_back(matrix(b + "attn_q.weight", t, p.n_embd, q, l));
    ts.push_back(matrix(b + "attn_k.weight", t, p.n_embd, kv, l));
    ts.push_back(matrix(b + "attn_v.weight", t, p.n_embd, kv, l));
    ts.push_back(matrix(b + "attn_output.weight", t, q, p.n_embd, l));
    ts.push_back(norm(b + "ffn_norm.weight", p.n_embd, l));
    ts.push_back(matrix(b + "ffn_gate.weight", t, p.n_embd, p.n_ff, l));
    ts.push_back(matrix(b + "ffn_up.weight", t, p.n_embd, p.n_ff, l));
    ts.push_back(matrix(b + "ffn_down.weight", t, p.n_ff, p.n_embd, l));
  }
  ts.push_back(norm("output_norm.weight", p.n_embd, -1));
  ts.push_back(matrix("output.weight", t, p.n_embd, p.n_vocab, -1));
  return ts;
}

gguf::writer make_writer(const synthetic_model_params& p, const std::vector<tensor_plan>& ts) {
  using gguf::value;
  gguf::writer w;
  const std::string a = "llama.";
  w.set("general.architecture", value::from_string("llama"));
  w.set("general.name", value::from_string(p.name));
  w.set("general.description",
        value::from_string(fmt::format("random weights (seed {}) for speed benchmarks: no quality", p.seed)));
  w.set(a + "block_count", value::from_u32((uint32_t)p.n_layer));
  w.set(a + "context_length", value::from_u32((uint32_t)p.n_ctx));
  w.set(a + "embedding_length", value::from_u32((uint32_t)p.n_embd));
  w.set(a + "feed_forward_length", value::from_u32((uint32_t)p.n_ff));
  w.set(a + "attention.head_count", value::from_u32((uint32_t)p.n_head));
  w.set(a + "attention.head_count_kv", value::from_u32((uint32_t)p.n_head_kv));
  w.set(a + "attention.key_length", value::from_u32((uint32_t)p.head_dim));
  w.set(a + "attention.value_length", value::from_u32((uint32_t)p.head_dim));
  w.set(a + "attention.layer_norm_rms_epsilon", value::from_f32(p.rms_eps));
  w.set(a + "rope.freq_base", value::from_f32(p.rope_base));
  w.set(a + "rope.dimension_count", value::from_u32((uint32_t)p.head_dim));
  w.set(a + "vocab_size", value::from_u32((uint32_t)p.n_vocab));
  tokenizer_vocab_write(tokenizer_vocab_bytes(p.n_vocab), w);
  for (const tensor_plan& t : ts) w.add_tensor_streamed(t.name, t.type, t.ne);
  return w;
}

// Elements [e0, e0 + n) of a uniform tensor with key `key` and half-width a, stored as T by `store`.
// Element e takes 16-bit lane e % 4 of draw e / 4: (lane + 1/2) / 2^15 - 1 in (-1, 1), times a; the 2^16
// stored values are tabulated once per call.
template <class T, class Store>
void fill_uniform_as(uint64_t key, float a, int64_t e0, int64_t n, T* dst, int n_threads, Store store) {
  std::vector<T> tab(1 << 16);
  for (int v = 0; v < (1 << 16); v++) tab[v] = store((float)(((double)v + 0.5) / 32768.0 - 1.0) * a);
  const auto draw = [key](int64_t group) { return mix64(key + (uint64_t)(group + 1) * kGolden); };
  constexpr int64_t kBlock = 1 << 16;  // elements per task, a multiple of 4
  const int64_t g0 = e0 / 4 * 4;       // the first group's first element
  const int64_t n_blocks = (e0 + n - g0 + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(n_threads)
  for (int64_t b = 0; b < n_blocks; b++) {
    const int64_t lo = std::max(e0, g0 + b * kBlock), hi = std::min(e0 + n, g0 + (b + 1) * kBlock);
    int64_t e = lo;
    for (; e < hi && e % 4; e++) dst[e - e0] = tab[(draw(e / 4) >> (16 * (e % 4))) & 0xffff];
    for (; e + 4 <= hi; e += 4) {
      const uint64_t r = draw(e / 4);
      T* d = dst + (e - e0);
      d[0] = tab[r & 0xffff];
      d[1] = tab[(r >> 16) & 0xffff];
      d[2] = tab[(r >> 32) & 0xffff];
      d[3] = tab[r >> 48];
    }
    for (; e < hi; e++) dst[e - e0] = tab[(draw(e / 4) >> (16 * (e % 4))) & 0xffff];
  }
}

void fill_uniform(gguf::type type, uint64_t key, float a, int64_t e0, int64_t n, uint8_t* dst, int n_threads) {
  const int nt = n_threads > 0 ? n_threads : std::max(1, omp_get_max_threads() - 1);  // a core for the writer
  switch (type) {
    case gguf::type::BF16:
      return fill_uniform_as(key, a, e0, n, (uint16_t*)dst, nt, [](float x) { return fp32_to_bf16(x); });
    case gguf::type::F16:
      return fill_uniform_as(key, a, e0, n, (uint16_t*)dst, nt, [](float x) { return fp32_to_fp16(x); });
    case gguf::type::F32:
      return fill_uniform_as(key, a, e0, n, (float*)dst, nt, [](float x) { return x; });
    default:
      fail("synthetic model: type", gguf::type_name(type), "F32, F16 or BF16");
  }
}

void check(bool ok, const std::string& what, const std::string& got, const std::string& expected,
           const std::string& hint = {}) {
  if (!ok) fail("synthetic model: " + what, got, expected, hint);
}

std::string s(int64_t v) { return std::to_string(v); }

}  // namespace

std::vector<float> llama3_rope_freq_factors(int rope_dims, double base, const llama3_rope_scaling& sc) {
  if (rope_dims <= 0 || rope_dims % 2) fail("llama3 rope scaling: rope dims", s(rope_dims), "a positive even number");
  if (!(base > 1) || !std::isfinite(base)) fail("llama3 rope scaling: base", fmt::format("{}", base), "> 1");
  if (!(sc.factor >= 1) || !std::isfinite(sc.factor))
    fail("llama3 rope scaling: factor", fmt::format("{}", sc.factor), ">= 1");
  if (!(sc.low_freq_factor > 0) || !(sc.high_freq_factor > sc.low_freq_factor) || !std::isfinite(sc.high_freq_factor))
    fail("llama3 rope scaling: low / high frequency factors",
         fmt::format("{} / {}", sc.low_freq_factor, sc.high_freq_factor), "0 < low < high");
  if (sc.orig_ctx <= 0) fail("llama3 rope scaling: original context", s(sc.orig_ctx), "> 0");
  const double pi = 3.14159265358979323846;
  const double long_wave = (double)sc.orig_ctx / sc.low_freq_factor;   // longer: divided by factor
  const double short_wave = (double)sc.orig_ctx / sc.high_freq_factor;  // shorter: kept
  std::vector<float> f(rope_dims / 2);
  for (int i = 0; i < rope_dims / 2; i++) {
    const double freq = std::pow(base, -2.0 * i / rope_dims);
    const double wave = 2 * pi / freq;
    double div = 1;
    if (wave > long_wave) {
      div = sc.factor;
    } else if (wave >= short_wave) {
      // smooth = 0 at the long edge (divided by factor), 1 at the short edge (kept); the new frequency
      // (1 - smooth) freq / factor + smooth freq is freq divided by:
      const double smooth =
          ((double)sc.orig_ctx / wave - sc.low_freq_factor) / (sc.high_freq_factor - sc.low_freq_factor);
      div = 1 / ((1 - smooth) / sc.factor + smooth);
    }
    f[i] = (float)div;
  }
  return f;
}

const std::vector<std::string>& synthetic_model_preset_names() {
  static const std::vector<std::string> names = {"llama3.1-8b", "tiny"};
  return names;
}

synthetic_model_params synthetic_model_preset(const std::string& name) {
  synthetic_model_params p;
  if (name == "llama3.1-8b") {
    p.name = "synthetic llama3.1-8b";
    p.n_layer = 32;
    p.n_embd = 4096;
    p.n_ff = 14336;
    p.n_head = 32;
    p.n_head_kv = 8;
    p.head_dim = 128;
    p.n_vocab = 128256;
    p.n_ctx = 131072;
    p.rope_base = 500000.f;
    p.rms_eps = 1e-5f;
    p.rope_scaling = true;
  } else if (name == "tiny") {
    p.name = "synthetic tiny";  // the struct's defaults
  } else {
    std::string all;
    for (const auto& n : synthetic_model_preset_names()) all += (all.empty() ? "" : ", ") + n;
    fail("synthetic model: preset '" + name + "'", "unknown", all);
  }
  return p;
}

void synthetic_model_validate(const synthetic_model_params& p) {
  // The loader's limits (model-load.cpp), so that every file written here loads.
  check(p.n_layer >= 1 && p.n_layer <= 4096, "layers", s(p.n_layer), "1 .. 4096");
  check(p.n_embd >= 1 && p.n_embd <= (1 << 20), "embedding length", s(p.n_embd), "1 .. 1048576");
  check(p.n_ff >= 1 && p.n_ff <= (1 << 20), "feed-forward length", s(p.n_ff), "1 .. 1048576");
  check(p.n_head >= 1 && p.n_head <= 4096, "heads", s(p.n_head), "1 .. 4096");
  check(p.n_head_kv >= 1 && p.n_head_kv <= 4096, "KV heads", s(p.n_head_kv), "1 .. 4096");
  check(p.n_head % p.n_head_kv == 0, "heads / KV heads", s(p.n_head) + " / " + s(p.n_head_kv),
        "heads a multiple of the KV heads");
  check(p.head_dim >= 2 && p.head_dim <= 4096 && p.head_dim % 2 == 0, "head dim", s(p.head_dim),
        "an even number in 2 .. 4096");
  check((int64_t)p.n_head * p.head_dim == p.n_embd, "heads x head dim",
        s(p.n_head) + " x " + s(p.head_dim) + " = " + s((int64_t)p.n_head * p.head_dim),
        "the embedding length " + s(p.n_embd));
  check(p.n_vocab >= 258 && p.n_vocab <= std::numeric_limits<int32_t>::max() / 2, "vocabulary", s(p.n_vocab),
        "258 .. " + s(std::numeric_limits<int32_t>::max() / 2), "256 byte tokens, bos and eos at least");
  check(p.n_ctx >= 1 && p.n_ctx <= (1 << 24), "context length", s(p.n_ctx), "1 .. 16777216");
  check(p.rope_base > 1.f && std::isfinite(p.rope_base), "RoPE base", fmt::format("{}", p.rope_base), "> 1");
  check(p.rms_eps > 0.f && p.rms_eps <= 1.f, "rms eps", fmt::format("{}", p.rms_eps), "in (0, 1]");
  check(p.type == gguf::type::F32 || p.type == gguf::type::F16 || p.type == gguf::type::BF16, "type",
        gguf::type_name(p.type), "F32, F16 or BF16");
  if (p.rope_scaling) llama3_rope_freq_factors(p.head_dim, p.rope_base, p.scaling);
}

namespace {
synthetic_model_layout layout_of(const std::vector<tensor_plan>& ts, const gguf::writer& w) {
  synthetic_model_layout out;
  out.n_tensors = ts.size();
  for (const auto& t : ts) out.n_params += t.n_elements();
  out.file_bytes = w.file_size();
  return out;
}
}  // namespace

synthetic_model_layout synthetic_model_plan(const synthetic_model_params& p) {
  synthetic_model_validate(p);
  const std::vector<tensor_plan> ts = tensor_list(p);
  return layout_of(ts, make_writer(p, ts));
}

synthetic_model_layout synthetic_model_write(const std::string& path, const synthetic_model_params& p) {
  synthetic_model_validate(p);
  const std::vector<tensor_plan> ts = tensor_list(p);
  const gguf::writer w = make_writer(p, ts);
  const synthetic_model_layout out = layout_of(ts, w);
  synthetic_progress prog;
  for (const auto& t : ts) prog.bytes_total += gguf::row_bytes(t.type, t.n_elements());
  const uint64_t seed_key = mix64(p.seed);
  const auto t0 = std::chrono::steady_clock::now();
  w.write(path, [&](size_t i, uint64_t off, uint8_t* dst, size_t n) {
    const tensor_plan& t = ts[i];
    const size_t es = gguf::type_block_bytes(t.type);  // one element per block for F32 / F16 / BF16
    const int64_t e0 = (int64_t)(off / es), cnt = (int64_t)(n / es);
    switch (t.what) {
      case tensor_plan::kind::uniform:
        fill_uniform(t.type, mix64(seed_key + (uint64_t)(i + 1) * kGolden), t.scale, e0, cnt, dst, p.n_threads);
        break;
      case tensor_plan::kind::ones:
        for (int64_t k = 0; k < cnt; k++) ((float*)dst)[k] = 1.f;
        break;
      case tensor_plan::kind::values:
        std::memcpy(dst, t.values.data() + e0, n);
        break;
    }
    prog.bytes_done += n;
    prog.layer = t.layer;
    prog.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (p.on_progress) p.on_progress(prog);
  }, p.chunk_bytes);
  return out;
}

}  // namespace hashattn
