// Independent checks of each architecture against llama.cpp (tests/data/arch-goldens.json, made by
// tests/data/make-arch-goldens.py with llama-cpp-python and the gguf package): the random-weight
// models are rebuilt here byte for byte from the spec in the JSON (the same per-tensor splitmix64
// recipe as the script; the data digest must match the script's), then our logits over 256 positions
// are compared with llama.cpp's, through prefill (all rows at once), through decode (one token at a
// time: the mat-vec path and, on gemma3's sliding-window layers, the window's index lists) and through
// the branch decoder (one dense branch forked after 100 tokens: batched layer halves, paged KV).
// Agreement required: top-1 on >= 99% of the positions, and every logit of llama.cpp's top 8 (all
// positions) and of its full rows (8 positions) within kRelErr of the row's largest |logit|.
// kRelErr = 0.03: llama.cpp quantizes activations to 8 bits in its quantized products (Q8_K for the
// K-quants) and rounds GeLU through an fp16 table; we keep 16-bit (decode) or fp32 (prefill)
// activations. Measured worst cases are printed (and recorded in docs/MODELS.md).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/model.h"
#include "hashattn/policy.h"
#include "hashattn/tokenizer.h"
#include "model/model-impl.h"

namespace hashattn {
namespace {

using json = nlohmann::json;
// F16 matrices: llama.cpp rounds activations to fp16 in its products, we keep 16-bit integers (decode)
// or fp32 (prefill); both keep K/V in fp16.
constexpr double kRelErrF16 = 0.005;
// Quantized matrices: llama.cpp's 8-bit activations move its logits by up to ~6% of the row's largest
// |logit| on these flat random models (its own float64 distance, measured by the script's author on
// the mistral case: 0.064; ours against float64 is that of the F16 cases).
constexpr double kRelErrQuant = 0.10;
// Top-1 agreement over all positions (F16) or over the decisive ones (quantized: llama.cpp's top-1 /
// top-2 margin above kDecisive of the row's largest |logit|, twice llama.cpp's typical noise there).
constexpr double kTop1 = 0.99;
constexpr double kDecisive = 0.04;

uint64_t fnv1a(const void* p, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  const uint8_t* b = (const uint8_t*)p;
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

struct splitmix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

struct type_info {
  gguf::type t;
  std::vector<int> half_fields;
};

type_info type_of(const std::string& n) {
  if (n == "F32") return {gguf::type::F32, {}};
  if (n == "F16") return {gguf::type::F16, {}};
  if (n == "Q4_0") return {gguf::type::Q4_0, {0}};
  if (n == "Q5_0") return {gguf::type::Q5_0, {0}};
  if (n == "Q8_0") return {gguf::type::Q8_0, {0}};
  if (n == "Q2_K") return {gguf::type::Q2_K, {80, 82}};
  if (n == "Q3_K") return {gguf::type::Q3_K, {108}};
  if (n == "Q4_K") return {gguf::type::Q4_K, {0, 2}};
  if (n == "Q5_K") return {gguf::type::Q5_K, {0, 2}};
  if (n == "Q6_K") return {gguf::type::Q6_K, {208}};
  throw error("arch goldens: unknown type " + n);
}

// The bytes of one tensor: make-arch-goldens.py's tensor_bytes.
std::vector<uint8_t> tensor_bytes(uint64_t seed, const json& t) {
  const std::string name = t["name"];
  splitmix64 rng{seed ^ fnv1a(name.data(), name.size())};
  const type_info ti = type_of(t["type"]);
  int64_t n = 1;
  for (int64_t d : t["ne"]) n *= d;
  std::vector<uint8_t> out;
  if (ti.t == gguf::type::F32) {
    const double base = t["kind"] == "norm" ? 1.0 : 0.0;
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) {
      const double u = (double)(rng.next() >> 40) / (double)(1 << 24) - 0.5;
      v[i] = (float)(base + u * 0.4);
    }
    out.resize(n * 4);
    std::memcpy(out.data(), v.data(), out.size());
    return out;
  }
  if (ti.t == gguf::type::F16) {  // +-2^E (1 + m / 1024)
    const int e = t["exp"];
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t r = rng.next();
      const uint16_t bits = (uint16_t)((r & 0x8000) | ((uint64_t)(e + 15) << 10) | (r & 0x3FF));
      out.push_back((uint8_t)(bits & 0xFF));
      out.push_back((uint8_t)(bits >> 8));
    }
    return out;
  }
  const size_t nbytes = gguf::row_bytes(ti.t, n);
  const int64_t blk = gguf::type_block_elems(ti.t);
  const size_t bb = gguf::type_block_bytes(ti.t);
  while (out.size() < nbytes) {
    const uint64_t r = rng.next();
    for (int k = 0; k < 8; ++k) out.push_back((uint8_t)(r >> (8 * k)));
  }
  out.resize(nbytes);
  const int e = t["exp"], e_min = t["exp_min"];
  for (int64_t b = 0; b < n / blk; ++b)
    for (size_t k = 0; k < ti.half_fields.size(); ++k) {
      const uint32_t bits = ((uint32_t)((k == 0 ? e : e_min) + 15) << 10) | (uint32_t)(rng.next() & 0x3FF);
      out[b * bb + ti.half_fields[k]] = (uint8_t)(bits & 0xFF);
      out[b * bb + ti.half_fields[k] + 1] = (uint8_t)(bits >> 8);
    }
  return out;
}

void set_meta(gguf::writer& w, const json& m) {
  const std::string key = m[0], type = m[1];
  if (type == "u32")
    w.set(key, gguf::value::from_u32(m[2].get<uint32_t>()));
  else if (type == "f32")
    w.set(key, gguf::value::from_f32(m[2].get<float>()));
  else
    w.set(key, gguf::value::from_string(m[2].get<std::string>()));
}

struct built {
  std::vector<uint8_t> bytes;
  std::string digest;
};

// ours_metadata: add the spec's metadata that only we read (llama3: the scaling instead of the tensor).
built build_case(uint64_t seed, const json& spec, bool rope_freqs_tensor, bool ours_metadata) {
  gguf::writer w;
  for (const auto& m : spec["metadata"]) set_meta(w, m);
  if (ours_metadata)
    for (const auto& m : spec["ours_metadata"]) set_meta(w, m);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> data;
  for (const auto& t : spec["tensors"]) {
    std::vector<uint8_t> b = tensor_bytes(seed, t);
    std::vector<int64_t> ne = t["ne"].get<std::vector<int64_t>>();
    w.add_tensor(t["name"], type_of(t["type"]).t, ne, b.data(), b.size());
    data.emplace_back(t["name"], std::move(b));
  }
  if (rope_freqs_tensor) {
    const std::vector<float> f = spec["rope_freqs"].get<std::vector<float>>();
    w.add_tensor("rope_freqs.weight", gguf::type::F32, {(int64_t)f.size()}, f.data(), f.size() * 4);
  }
  std::sort(data.begin(), data.end());
  uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& [name, b] : data) h = fnv1a(b.data(), b.size(), fnv1a(name.data(), name.size(), h));
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  return {w.to_bytes(), hex};
}

const json& goldens() {
  static const json j = [] {
    const std::string p = std::string(HASHATTN_SOURCE_DIR) + "/tests/data/arch-goldens.json";
    std::ifstream f(p);
    if (!f) throw error("arch goldens: cannot read " + p + " (committed with tests/data/make-arch-goldens.py)");
    return json::parse(f);
  }();
  return j;
}

const json& golden_case(const std::string& name) {
  for (const auto& c : goldens()["cases"])
    if (c["spec"]["name"] == name) return c;
  throw error("arch goldens: no case " + name);
}

struct agreement {
  int top1 = 0, n = 0;
  int top1_decisive = 0, n_decisive = 0;
  double worst_rel = 0;
  int worst_pos = -1;
};

// logits(i): our row i.
template <class F>
agreement compare(const json& c, int64_t n_vocab, F logits) {
  agreement a;
  const auto& ids = c["top_ids"];
  const auto& vals = c["top_logits"];
  a.n = (int)ids.size();
  for (int i = 0; i < a.n; ++i) {
    const float* y = logits(i);
    const int64_t am = std::max_element(y, y + n_vocab) - y;
    const bool same = am == ids[i][0].template get<int64_t>();
    a.top1 += same;
    double mx = 0;
    for (const auto& v : vals[i]) mx = std::max(mx, std::fabs(v.template get<double>()));
    if (vals[i][0].template get<double>() - vals[i][1].template get<double>() >= kDecisive * mx) {
      a.n_decisive++;
      a.top1_decisive += same;
    }
    for (size_t k = 0; k < ids[i].size(); ++k) {
      const double rel = std::fabs(y[ids[i][k].template get<int64_t>()] - vals[i][k].template get<double>()) / mx;
      if (rel > a.worst_rel) a.worst_rel = rel, a.worst_pos = i;
    }
  }
  for (const auto& [pos, row] : c["full_rows"].items()) {
    const float* y = logits(std::stoi(pos));
    double mx = 0;
    for (const auto& v : row) mx = std::max(mx, std::fabs(v.template get<double>()));
    for (int64_t j = 0; j < n_vocab; ++j) {
      const double rel = std::fabs(y[j] - row[j].template get<double>()) / mx;
      if (rel > a.worst_rel) a.worst_rel = rel, a.worst_pos = std::stoi(pos);
    }
  }
  return a;
}

void check_case(const std::string& name, bool rope_freqs_tensor = false, bool ours_metadata = false) {
  const json& c = golden_case(name);
  const uint64_t seed = goldens()["seed"];
  std::printf("arch golden %s: seed %llu, llama-cpp-python %s\n", name.c_str(), (unsigned long long)seed,
              goldens()["reference"]["llama_cpp_python"].get<std::string>().c_str());
  const built b = build_case(seed, c["spec"], rope_freqs_tensor, ours_metadata);
  ASSERT_EQ(b.digest, c["digest"].get<std::string>()) << "the rebuilt tensors differ from the script's";
  auto m = model::from_gguf(gguf::file::from_buffer(b.bytes.data(), b.bytes.size()));
  const std::vector<int32_t> toks = c["tokens"].get<std::vector<int32_t>>();
  const int64_t V = m->hparams().n_vocab, n = (int64_t)toks.size();
  session_params sp;
  sp.n_ctx = 512;
  sp.n_threads = 2;
  session pre(*m, sp);
  pre.eval(toks.data(), n, true);
  const agreement ap = compare(c, V, [&](int i) { return pre.logits_at(i); });
  std::vector<float> dec((size_t)n * V);
  session one(*m, sp);
  for (int64_t i = 0; i < n; ++i) std::memcpy(dec.data() + i * V, one.eval(&toks[i], 1), V * sizeof(float));
  const agreement ad = compare(c, V, [&](int i) { return dec.data() + (size_t)i * V; });
  // The branch decoder (the evaluation's path: batched layer halves, paged KV): one dense branch forked
  // after P tokens; rows before P are the prefill's.
  const int64_t P = 100;
  std::vector<float> brl((size_t)n * V);
  {
    session s(*m, sp);
    s.eval(toks.data(), P, true);
    for (int64_t i = 0; i < P; ++i) std::memcpy(brl.data() + i * V, s.logits_at(i), V * sizeof(float));
    const model_hparams& hp = m->hparams();
    auto pol = make_dense_policy();
    pol->begin(hp.n_layer, layer_shape{hp.n_head, hp.n_head_kv, hp.head_dim}, sp.n_ctx);
    branch_decoder bd(s, {pol.get()}, n - P);
    for (int64_t i = P; i < n; ++i) {
      bd.step(&toks[i]);
      std::memcpy(brl.data() + i * V, bd.logits(0), V * sizeof(float));
    }
  }
  const agreement ab = compare(c, V, [&](int i) { return brl.data() + (size_t)i * V; });
  const bool f16 = name.size() > 4 && name.substr(name.size() - 4) == "-f16";
  for (const auto& [what, a] :
       {std::pair<const char*, agreement>{"prefill", ap}, {"decode", ad}, {"branch", ab}}) {
    std::printf("  %s: top-1 %d / %d (decisive positions %d / %d), worst relative error %.4f (position %d)\n", what,
                a.top1, a.n, a.top1_decisive, a.n_decisive, a.worst_rel, a.worst_pos);
    if (f16) {
      EXPECT_GE(a.top1, (int)std::ceil(kTop1 * a.n)) << name << " " << what;
    } else {
      EXPECT_GE(a.n_decisive, a.n / 2) << name << " " << what << ": too few decisive positions to test";
      EXPECT_GE(a.top1_decisive, (int)std::ceil(kTop1 * a.n_decisive)) << name << " " << what;
    }
    EXPECT_LE(a.worst_rel, f16 ? kRelErrF16 : kRelErrQuant) << name << " " << what << " at position " << a.worst_pos;
  }
}

TEST(arch_golden, mistral_f16) { check_case("mistral-f16"); }
TEST(arch_golden, mistral_kquants) { check_case("mistral"); }
TEST(arch_golden, llama3_f16_rope_scaling_from_tensor) { check_case("llama3-f16", true, false); }
TEST(arch_golden, llama3_f16_rope_scaling_from_metadata) { check_case("llama3-f16", false, true); }
TEST(arch_golden, llama3_quantized_rope_scaling_from_metadata) { check_case("llama3", false, true); }
TEST(arch_golden, qwen2_yarn_f16) { check_case("qwen2-yarn-f16"); }
TEST(arch_golden, qwen2_yarn_quantized) { check_case("qwen2-yarn"); }
TEST(arch_golden, gemma3_f16) { check_case("gemma3-f16"); }
TEST(arch_golden, gemma3_kquants) { check_case("gemma3"); }

TEST(arch_golden, hparams_of_each_case) {
  const uint64_t seed = goldens()["seed"];
  auto load = [&](const std::string& name, bool meta) {
    const built b = build_case(seed, golden_case(name)["spec"], false, meta);
    return model::from_gguf(gguf::file::from_buffer(b.bytes.data(), b.bytes.size()));
  };
  {
    auto m = load("mistral", false);
    EXPECT_TRUE(m->hparams().window.empty()) << "llama files: attention.sliding_window is ignored";
    EXPECT_EQ(m->hparams().rope_scaling, "none");
  }
  {
    auto m = load("llama3", true);
    EXPECT_EQ(m->hparams().rope_scaling, "llama3");
    EXPECT_TRUE(m->hparams().rope_freq_factors);
    const auto& f = m->internals().rope_freqs;
    const auto want = golden_case("llama3")["spec"]["rope_freqs"].get<std::vector<float>>();
    ASSERT_EQ(f.size(), want.size());
    for (size_t i = 0; i < f.size(); ++i) EXPECT_FLOAT_EQ(f[i], want[i]) << i;
  }
  {
    auto m = load("qwen2-yarn", false);
    const auto& r = m->hparams().rope_sets.at(0);
    EXPECT_EQ(m->hparams().rope_scaling, "yarn");
    EXPECT_FLOAT_EQ(r.freq_scale, 0.25f);
    EXPECT_EQ(r.ext_factor, 1.0f);
  }
  {
    auto m = load("gemma3", false);
    const model_hparams& hp = m->hparams();
    ASSERT_EQ(hp.window.size(), 6u);
    for (int l = 0; l < 6; ++l) EXPECT_EQ(hp.is_global(l), l == 5) << l;
    EXPECT_EQ(hp.attn_first(0, 100), 100 - 32 + 1);
    EXPECT_EQ(hp.attn_first(0, 10), 0);
    EXPECT_EQ(hp.attn_first(5, 100), 0);
    EXPECT_FLOAT_EQ(hp.rope_of(0).base, 10000.f);
    EXPECT_FLOAT_EQ(hp.rope_of(0).freq_scale, 1.f);
    EXPECT_FLOAT_EQ(hp.rope_of(5).base, 1e6f);
    EXPECT_FLOAT_EQ(hp.rope_of(5).freq_scale, 0.125f);
    EXPECT_TRUE(hp.tied_embeddings);
    EXPECT_FLOAT_EQ(hp.embd_scale, 16.f);
    EXPECT_FLOAT_EQ(hp.logit_softcap, 30.f);
  }
}

// YaRN stretches the usable context to original_context_length x factor when that is longer.
TEST(arch_golden, yarn_stretches_the_context) {
  json spec = golden_case("qwen2-yarn")["spec"];
  for (auto& m : spec["metadata"])
    if (m[0] == "qwen2.context_length") m[2] = 128;
  const built b = build_case(goldens()["seed"], spec, false, false);
  auto m = model::from_gguf(gguf::file::from_buffer(b.bytes.data(), b.bytes.size()));
  EXPECT_EQ(m->hparams().n_ctx_train, 64 * 4);
}

// model_check (hashattn info): what runs, what is missing, the notes.
TEST(arch_golden, model_check_says_what_is_missing) {
  const uint64_t seed = goldens()["seed"];
  auto check = [&](const json& spec) {
    const built b = build_case(seed, spec, false, false);
    return model_check(*gguf::file::from_buffer(b.bytes.data(), b.bytes.size()));
  };
  auto has = [](const std::vector<std::string>& v, const std::string& needle) {
    for (const auto& s : v)
      if (s.find(needle) != std::string::npos) return true;
    return false;
  };
  {
    const model_support s = check(golden_case("gemma3")["spec"]);
    EXPECT_TRUE(s.runs);
    EXPECT_TRUE(s.missing.empty());
    EXPECT_TRUE(has(s.notes, "5 sliding-window layers keep their window")) << testing::PrintToString(s.notes);
    EXPECT_TRUE(has(s.notes, "on the 1 global layers only"));
    EXPECT_NE(s.summary.find("gemma3"), std::string::npos);
    EXPECT_NE(s.tokenizer.find("none"), std::string::npos) << "no tokenizer keys in these files";
  }
  {
    const model_support s = check(golden_case("mistral")["spec"]);
    EXPECT_TRUE(s.runs);
    EXPECT_TRUE(has(s.notes, "'llama.attention.sliding_window' = 4096 is ignored")) << testing::PrintToString(s.notes);
  }
  {  // another architecture, an unknown scaling: both named
    json spec = golden_case("qwen2-yarn")["spec"];
    for (auto& m : spec["metadata"]) {
      if (m[0] == "general.architecture") m[2] = "phi3";
      if (m[0] == "qwen2.rope.scaling.type") m[0] = "phi3.rope.scaling.type", m[2] = "longrope";
    }
    const model_support s = check(spec);
    EXPECT_FALSE(s.runs);
    EXPECT_TRUE(has(s.missing, "architecture 'phi3'")) << testing::PrintToString(s.missing);
    EXPECT_TRUE(has(s.missing, "RoPE scaling 'longrope' (metadata 'phi3.rope.scaling.type'"));
  }
  {  // the loader's refusal when nothing else is found: a missing tensor, by name
    json spec = golden_case("mistral")["spec"];
    json kept = json::array();
    for (const auto& t : spec["tensors"])
      if (t["name"] != "blk.1.ffn_up.weight") kept.push_back(t);
    spec["tensors"] = kept;
    const model_support s = check(spec);
    EXPECT_FALSE(s.runs);
    EXPECT_TRUE(has(s.missing, "blk.1.ffn_up.weight' is missing")) << testing::PrintToString(s.missing);
  }
}

// Every refusal at load names the file and the key.
TEST(arch_golden, refusals_name_the_file_and_the_key) {
  const uint64_t seed = goldens()["seed"];
  json spec = golden_case("qwen2-yarn")["spec"];
  for (auto& m : spec["metadata"])
    if (m[0] == "qwen2.rope.scaling.type") m[2] = "longrope";
  const built b = build_case(seed, spec, false, false);
  const std::string path = (std::filesystem::temp_directory_path() / "hashattn-arch-refusal.gguf").string();
  {
    std::ofstream f(path, std::ios::binary);
    f.write((const char*)b.bytes.data(), (std::streamsize)b.bytes.size());
  }
  try {
    model::load(path);
    ADD_FAILURE() << "a longrope file loaded";
  } catch (const error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find(path), std::string::npos) << w;
    EXPECT_NE(w.find("qwen2.rope.scaling.type"), std::string::npos) << w;
    EXPECT_NE(w.find("longrope"), std::string::npos) << w;
  }
  // The tokenizer's refusals too.
  spec["metadata"].push_back({"tokenizer.ggml.model", "str", "bert"});
  const built bt = build_case(seed, spec, false, false);
  {
    std::ofstream f(path, std::ios::binary);
    f.write((const char*)bt.bytes.data(), (std::streamsize)bt.bytes.size());
  }
  try {
    tokenizer::from_gguf(*gguf::file::open(path));
    ADD_FAILURE() << "a bert vocabulary was accepted";
  } catch (const error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find(path), std::string::npos) << w;
    EXPECT_NE(w.find("tokenizer.ggml.model"), std::string::npos) << w;
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace hashattn
