// Models with random weights (synthetic-model.h), written to a temporary folder:
//   - the tiny preset (and a variant with the Llama 3.1 RoPE scaling, F32 and F16) loads with the
//     requested shape, its tokenizer reads, and a CPU session prefills and decodes with finite logits;
//   - 32 layers keep the logits at their scale (finite, neither vanishing nor exploding);
//   - the bytes depend on the seed only: not on the thread count nor on the writer's chunk size;
//   - the plan (tensor count, parameters, file size) is what gets written; llama3.1-8b's is the real
//     model's 8,030,261,248 parameters (+ 64 RoPE factors) in BF16;
//   - the Llama 3.1 RoPE factors: 1 for short wavelengths, the factor for long ones, monotone between;
//   - bad shapes are refused naming the field;
//   - random hash encoders bind to their model (hash_weights_load_for) and drive a sparse decode;
//     a hash file made for another shape, or for the same shape in another type, is refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/hash-file.h"
#include "hashattn/model.h"
#include "hashattn/policy.h"
#include "hashattn/synthetic-model.h"
#include "hashattn/tokenizer.h"

namespace hashattn {
namespace {

class synthetic_model : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hashattn-synthetic-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  static std::vector<uint8_t> bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  std::string dir_;
};

template <class F>
void expect_error(F fn, std::initializer_list<const char*> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const error& e) {
    for (const char* n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

struct decode_stats {
  double density = 0;    // attended density of the decode steps
  double logit_std = 0;  // of the last step's logits
  double logit_max = 0;  // largest |logit| of every step
};

// Prefills `prompt` tokens and decodes `steps` more greedily; every logit of every step is finite and
// the logits are not all equal.
decode_stats decode_finite(const model& m, std::unique_ptr<attention_policy> policy, int prompt, int steps) {
  session_params sp;
  sp.n_ctx = prompt + steps;
  session s(m, sp, std::move(policy));
  const int64_t nv = m.hparams().n_vocab;
  std::vector<int32_t> toks(prompt);
  for (int i = 0; i < prompt; i++) toks[i] = (int32_t)((i * 37 + 11) % nv);
  const float* lg = s.eval(toks.data(), prompt);
  decode_stats st;
  for (int step = 0; step <= steps; step++) {
    int32_t best = 0;
    float lo = lg[0], hi = lg[0];
    double sum = 0, ss = 0;
    for (int64_t v = 0; v < nv; v++) {
      EXPECT_TRUE(std::isfinite(lg[v])) << "step " << step << " token " << v;
      if (lg[v] > lg[best]) best = (int32_t)v;
      lo = std::min(lo, lg[v]);
      hi = std::max(hi, lg[v]);
      sum += lg[v];
      ss += (double)lg[v] * lg[v];
      st.logit_max = std::max(st.logit_max, (double)std::fabs(lg[v]));
    }
    EXPECT_GT(hi, lo) << "step " << step;
    st.logit_std = std::sqrt(std::max(0.0, ss / (double)nv - (sum / (double)nv) * (sum / (double)nv)));
    if (step < steps) lg = s.eval(&best, 1);
  }
  st.density = s.attended_density();
  return st;
}

TEST_F(synthetic_model, tiny_preset_loads_with_its_shape_and_decodes) {
  for (gguf::type t : {gguf::type::BF16, gguf::type::F16, gguf::type::F32}) {
    SCOPED_TRACE(gguf::type_name(t));
    synthetic_model_params p = synthetic_model_preset("tiny");
    p.type = t;
    p.n_layer = 3;
    p.n_ctx = 2048;
    p.rope_base = 50000.f;
    p.rope_scaling = t == gguf::type::F16;
    const std::string f = path("tiny.gguf");
    const synthetic_model_layout plan = synthetic_model_plan(p);
    const synthetic_model_layout wrote = synthetic_model_write(f, p);
    EXPECT_EQ(wrote.file_bytes, plan.file_bytes);
    EXPECT_EQ(wrote.n_params, plan.n_params);
    EXPECT_EQ(std::filesystem::file_size(f), plan.file_bytes);
    const auto m = model::load(f);
    const model_hparams& hp = m->hparams();
    EXPECT_EQ(hp.arch, "llama");
    EXPECT_EQ(hp.n_layer, 3);
    EXPECT_EQ(hp.n_embd, 256);
    EXPECT_EQ(hp.n_ff, 512);
    EXPECT_EQ(hp.n_head, 4);
    EXPECT_EQ(hp.n_head_kv, 2);
    EXPECT_EQ(hp.head_dim, 64);
    EXPECT_EQ(hp.n_vocab, 512);
    EXPECT_EQ(hp.n_ctx_train, 2048);
    EXPECT_EQ(hp.rope_base, 50000.f);
    EXPECT_EQ(hp.rms_eps, 1e-5f);
    EXPECT_FALSE(hp.tied_embeddings);
    EXPECT_EQ(hp.rope_freq_factors, p.rope_scaling);
    EXPECT_EQ(m->file().tensors().size(), plan.n_tensors);
    EXPECT_EQ(m->file().tensor("blk.0.attn_q.weight").type, t);
    EXPECT_EQ(m->file().tensor("blk.0.attn_norm.weight").type, gguf::type::F32);
    int64_t n_params = 0;
    for (const auto& ti : m->file().tensors()) n_params += ti.n_elements();
    EXPECT_EQ(n_params, plan.n_params);
    // Weights: uniform with std 1 / sqrt(fan_in) (fan_in 256 for attn_q), norms 1.
    std::vector<float> q(256 * 256), norm(256);
    gguf::dequantize_row(t, m->file().tensor("blk.1.attn_q.weight").data, q.data(), (int64_t)q.size());
    gguf::dequantize_row(gguf::type::F32, m->file().tensor("blk.1.ffn_norm.weight").data, norm.data(), 256);
    double ss = 0, mx = 0;
    for (float x : q) ss += (double)x * x, mx = std::max(mx, (double)std::fabs(x));
    EXPECT_NEAR(std::sqrt(ss / (double)q.size()), 1.0 / 16, 0.002);
    EXPECT_LE(mx, std::sqrt(3.0 / 256) * 1.01);
    for (float x : norm) EXPECT_EQ(x, 1.f);
    auto tok = tokenizer::from_gguf(m->file());
    EXPECT_EQ(tok->n_vocab(), 512);
    EXPECT_EQ(tok->decode(tok->encode("abc", false)), "abc");
    EXPECT_EQ(decode_finite(*m, nullptr, 24, 4).density, 1.0);
  }
}

// The init keeps activations at their scale: 32 layers (the 8B's depth) at a small width give logits
// of order one, neither vanishing nor blowing up.
TEST_F(synthetic_model, logits_keep_their_scale_through_32_layers) {
  synthetic_model_params p = synthetic_model_preset("tiny");
  p.n_layer = 32;
  p.rope_scaling = true;
  synthetic_model_write(path("deep.gguf"), p);
  const auto m = model::load(path("deep.gguf"));
  const decode_stats st = decode_finite(*m, nullptr, 32, 4);
  EXPECT_GT(st.logit_std, 0.1);
  EXPECT_LT(st.logit_max, 100.0);
}

TEST_F(synthetic_model, bytes_depend_on_the_seed_only) {
  synthetic_model_params p = synthetic_model_preset("tiny");
  p.n_vocab = 1000;  // tensors of sizes that are not multiples of 4 elements per chunk
  p.rope_scaling = true;
  p.seed = 42;
  p.n_threads = 1;
  synthetic_model_write(path("a.gguf"), p);
  const auto a = bytes(path("a.gguf"));
  for (int threads : {2, 3, 7}) {
    for (size_t chunk : {size_t(5000), size_t(64) << 20}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, chunk " + std::to_string(chunk));
      p.n_threads = threads;
      p.chunk_bytes = chunk;
      synthetic_model_write(path("b.gguf"), p);
      EXPECT_TRUE(bytes(path("b.gguf")) == a);
    }
  }
  p.seed = 43;
  synthetic_model_write(path("c.gguf"), p);
  const auto c = bytes(path("c.gguf"));
  ASSERT_EQ(c.size(), a.size());
  size_t differ = 0;
  for (size_t i = 0; i < a.size(); i++) differ += a[i] != c[i];
  EXPECT_GT(differ, a.size() / 2);  // the weights (nearly all of the file) differ
}

TEST_F(synthetic_model, llama31_8b_plan) {
  const synthetic_model_params p = synthetic_model_preset("llama3.1-8b");
  EXPECT_EQ(p.n_layer, 32);
  EXPECT_EQ(p.n_embd, 4096);
  EXPECT_EQ(p.n_ff, 14336);
  EXPECT_EQ(p.n_head, 32);
  EXPECT_EQ(p.n_head_kv, 8);
  EXPECT_EQ(p.head_dim, 128);
  EXPECT_EQ(p.n_vocab, 128256);
  EXPECT_EQ(p.n_ctx, 131072);
  EXPECT_EQ(p.rope_base, 500000.f);
  EXPECT_TRUE(p.rope_scaling);
  EXPECT_EQ(p.type, gguf::type::BF16);
  const synthetic_model_layout plan = synthetic_model_plan(p);
  EXPECT_EQ(plan.n_tensors, 2u + 1 + 32 * 9 + 1);
  EXPECT_EQ(plan.n_params, 8030261248 + 64);
  EXPECT_GT(plan.file_bytes, (uint64_t)plan.n_params * 2);
  EXPECT_LT(plan.file_bytes, (uint64_t)plan.n_params * 2 + (8u << 20));  // + metadata (vocabulary) and padding
  expect_error([] { synthetic_model_preset("llama-70b"); }, {"llama-70b", "llama3.1-8b", "tiny"});
}

TEST_F(synthetic_model, llama3_rope_factors) {
  const llama3_rope_scaling sc;  // 8, 1, 4, 8192
  const std::vector<float> f = llama3_rope_freq_factors(128, 500000.0, sc);
  ASSERT_EQ(f.size(), 64u);
  const double pi = 3.14159265358979323846;
  int kept = 0, scaled = 0, blended = 0;
  for (int i = 0; i < 64; i++) {
    const double wave = 2 * pi * std::pow(500000.0, 2.0 * i / 128);
    if (wave < 8192 / 4.0) {
      EXPECT_EQ(f[i], 1.f) << i;
      kept++;
    } else if (wave > 8192 / 1.0) {
      EXPECT_EQ(f[i], 8.f) << i;
      scaled++;
    } else {
      EXPECT_GT(f[i], 1.f) << i;
      EXPECT_LT(f[i], 8.f) << i;
      blended++;
    }
    if (i) {
      EXPECT_GE(f[i], f[i - 1]) << i;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(scaled, 0);
  EXPECT_GT(blended, 0);
  expect_error([] { llama3_rope_freq_factors(128, 500000.0, {8, 4, 1, 8192}); }, {"low", "high"});
}

TEST_F(synthetic_model, bad_shapes_are_refused_naming_the_field) {
  struct bad {
    void (*edit)(synthetic_model_params&);
    const char* needle;
  };
  const bad cases[] = {
      {[](synthetic_model_params& p) { p.n_layer = 0; }, "layers"},
      {[](synthetic_model_params& p) { p.n_embd = -1; }, "embedding length"},
      {[](synthetic_model_params& p) { p.n_ff = 0; }, "feed-forward"},
      {[](synthetic_model_params& p) { p.n_head_kv = 3; }, "heads / KV heads"},
      {[](synthetic_model_params& p) { p.head_dim = 32; }, "heads x head dim"},
      {[](synthetic_model_params& p) { p.head_dim = 63; }, "head dim"},
      {[](synthetic_model_params& p) { p.n_vocab = 257; }, "vocabulary"},
      {[](synthetic_model_params& p) { p.n_ctx = 0; }, "context length"},
      {[](synthetic_model_params& p) { p.rope_base = 1.f; }, "RoPE base"},
      {[](synthetic_model_params& p) { p.rms_eps = 0.f; }, "rms eps"},
      {[](synthetic_model_params& p) { p.type = gguf::type::Q8_0; }, "type"},
  };
  for (const bad& b : cases) {
    synthetic_model_params p = synthetic_model_preset("tiny");
    b.edit(p);
    SCOPED_TRACE(b.needle);
    expect_error([&] { synthetic_model_plan(p); }, {"synthetic model", b.needle});
    expect_error([&] { synthetic_model_write(path("bad.gguf"), p); }, {b.needle});
    EXPECT_FALSE(std::filesystem::exists(path("bad.gguf")));
  }
}

TEST_F(synthetic_model, random_hash_encoders_bind_to_their_model_and_decode) {
  synthetic_model_params p = synthetic_model_preset("tiny");
  synthetic_model_write(path("m.gguf"), p);
  const auto m = model::load(path("m.gguf"));
  for (gqa_mode g : {gqa_mode::per_head, gqa_mode::per_group}) {
    SCOPED_TRACE(g == gqa_mode::per_head ? "per head" : "per group");
    synthetic_hash_params hp;
    hp.gqa = g;
    hp.bits = g == gqa_mode::per_head ? 32 : 16;
    synthetic_hash_write(*m, path("h.gguf"), hp);
    const auto w = hash_weights_load_for(*m, path("h.gguf"));
    EXPECT_EQ(w->bits, hp.bits);
    EXPECT_EQ(w->mlp_layers, 3);
    EXPECT_EQ(w->hidden, 128);
    EXPECT_EQ(w->key_per_group, g == gqa_mode::per_group);
    const hash_file_contents c = hash_file_load(path("h.gguf"));
    EXPECT_EQ(c.binding.digest, model_hash_binding(*m).digest);
    EXPECT_NE(c.info.settings.find("untrained"), std::string::npos);
    // A sparse decode: 1/4 of 256 tokens is above the budget's floor (sinks + window).
    policy_spec spec = policy_spec_parse(g == gqa_mode::per_head ? "hash@1/4" : "hash/group@1/4");
    policy_config cfg = policy_config_for(spec, 260);
    cfg.weights = w;
    const double density = decode_finite(*m, make_policy(cfg), 256, 4).density;
    EXPECT_LT(density, 0.5);
    EXPECT_GT(density, 0.1);
  }
  synthetic_hash_params bad;
  bad.bits = 12;
  expect_error([&] { synthetic_hash_validate(bad, 2, 4, 2, 64); }, {"bits", "12"});
  expect_error([&] { synthetic_hash_write(*m, path("bad.gguf"), bad); }, {"bits"});
}

TEST_F(synthetic_model, hash_file_of_another_model_is_refused) {
  synthetic_model_params p = synthetic_model_preset("tiny");
  synthetic_model_write(path("a.gguf"), p);
  synthetic_model_params q = p;
  q.n_layer = 3;
  synthetic_model_write(path("b.gguf"), q);
  synthetic_model_params r = p;
  r.type = gguf::type::F16;  // the same shape, another tensor type: another layout digest
  synthetic_model_write(path("c.gguf"), r);
  const auto a = model::load(path("a.gguf"));
  const auto b = model::load(path("b.gguf"));
  const auto c = model::load(path("c.gguf"));
  synthetic_hash_write(*a, path("ha.gguf"), {});
  expect_error([&] { hash_weights_load_for(*b, path("ha.gguf")); }, {"another model", "layers 2 (file) vs 3 (model)"});
  expect_error([&] { hash_weights_load_for(*c, path("ha.gguf")); }, {"another model", "layout digest"});
  EXPECT_NO_THROW(hash_weights_load_for(*a, path("ha.gguf")));
}

}  // namespace
}  // namespace hashattn
