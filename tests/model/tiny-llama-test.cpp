// The whole forward pass on tiny random models written to GGUF in memory (no model file needed),
// against a float64 forward pass written here from the architecture:
//   llama (adjacent-pair RoPE, tied embeddings, F32 weights: float paths) and qwen2 (NEOX RoPE,
//   q/k/v biases, separate output, Q8_0 / Q4_1 weights: integer paths), GQA 4:2, head dim 16.
// Prefill (all logits), decode (token by token) and chunked prefill agree with the reference;
// the policy seam is exercised (on_append sees every key once, post-RoPE; a non-dense policy that
// selects everything gives the dense result); branches decoded side by side after a shared prefix
// (branch_decoder) agree with the reference (dense) and with sequential decoding (sparse policies);
// the loader refuses broken files with clear errors.
// The reference rounds K and V to fp16 like the cache (the cache format is part of the spec).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/test-util.h"
#include "common/tiny-model.h"
#include "core/half.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/model.h"

namespace hashattn {
namespace {

using namespace tiny;


void check_model(const tiny_cfg& c, uint64_t seed, double tol) {
  HASHATTN_SEED(seed);
  const tiny_model tm = build(c, seed);
  auto m = load(tm);
  EXPECT_EQ(m->hparams().arch, c.arch);
  EXPECT_EQ(m->hparams().tied_embeddings, c.tied);
  EXPECT_EQ(m->hparams().qkv_bias, c.bias);
  EXPECT_EQ(m->hparams().rope, c.arch == "qwen2" ? rope_layout::neox : rope_layout::adjacent);
  std::mt19937_64 rng(seed + 1);
  const int n = 23;
  const auto toks = random_tokens(n, c.n_vocab, rng);
  const auto ref = ref_forward(tm, toks);
  for (int nt : {1, 2}) {
    SCOPED_TRACE("threads=" + std::to_string(nt));
    {  // one prefill with every logit
      session s(*m, session_params{0, nt, 512});
      s.eval(toks.data(), n, true);
      for (int i = 0; i < n; ++i)
        expect_row_close(s.logits_at(i), &ref[(size_t)i * c.n_vocab], c.n_vocab, tol, "prefill pos " + std::to_string(i));
    }
    {  // chunked prefill (n_batch 5) for 13 tokens, then decode one by one
      session s(*m, session_params{0, nt, 5});
      const float* lg = s.eval(toks.data(), 13);
      expect_row_close(lg, &ref[12 * (size_t)c.n_vocab], c.n_vocab, tol, "chunked prefill last");
      for (int i = 13; i < n; ++i) {
        lg = s.eval(&toks[i], 1);
        expect_row_close(lg, &ref[(size_t)i * c.n_vocab], c.n_vocab, tol, "decode pos " + std::to_string(i));
      }
      EXPECT_EQ(s.n_past(), n);
    }
  }
}

TEST(tiny_model, llama_f32_tied_against_float64) {
  tiny_cfg c;
  check_model(c, 1001, kTol);
}

TEST(tiny_model, llama_q8_0_and_q4_1_against_float64) {
  tiny_cfg c;
  c.wtype = gguf::type::Q8_0;
  check_model(c, 1002, kTolQuant);
  c.wtype = gguf::type::Q4_1;
  check_model(c, 1003, kTolQuant);
}

TEST(tiny_model, qwen2_neox_bias_untied_against_float64) {
  tiny_cfg c = qwen2_cfg();
  check_model(c, 1004, kTolQuant);
  c.n_head_kv = 4;  // no GQA
  c.wtype = gguf::type::F32;
  check_model(c, 1005, kTol);
}

// Records every on_append; optionally selects every token (per query head) instead of dense.
class recording_policy final : public attention_policy {
 public:
  explicit recording_policy(bool dense) : dense_(dense) {}
  std::string name() const override { return "recording"; }
  bool is_dense() const override { return dense_; }
  double aux_bits_per_token_head() const override { return 0; }
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override {
    began++;
    shape_ = shape;
    keys.assign(n_layer, {});
    next_pos.assign(n_layer, 0);
  }
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override {
    EXPECT_EQ(pos0, next_pos[layer]) << "keys must be appended in order, once";
    next_pos[layer] = pos0 + n_new;
    const int64_t w = (int64_t)shape_.n_head_kv * shape_.head_dim;
    keys[layer].insert(keys[layer].end(), k, k + n_new * w);
  }
  void truncate(int64_t n) override {
    for (size_t l = 0; l < keys.size(); ++l) {
      keys[l].resize(n * shape_.n_head_kv * shape_.head_dim);
      next_pos[l] = n;
    }
  }
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override {
    selects++;
    out.per_group = false;
    out.stride = kv.n_tok;
    out.count.assign(shape_.n_head, (int32_t)kv.n_tok);
    out.idx.resize((size_t)shape_.n_head * kv.n_tok);
    for (int h = 0; h < shape_.n_head; ++h)
      std::iota(out.idx.begin() + (size_t)h * kv.n_tok, out.idx.begin() + (size_t)(h + 1) * kv.n_tok, 0);
  }
  int began = 0, selects = 0;
  std::vector<std::vector<float>> keys;
  std::vector<int64_t> next_pos;

 private:
  bool dense_;
  layer_shape shape_;
};

TEST(tiny_model, policy_seam_sees_every_key_and_select_all_equals_dense) {
  tiny_cfg c;
  c.wtype = gguf::type::Q8_0;
  const tiny_model tm = build(c, 77);
  auto m = load(tm);
  std::mt19937_64 rng(78);
  const auto toks = random_tokens(17, c.n_vocab, rng);
  auto pol = std::make_unique<recording_policy>(false);
  recording_policy* p = pol.get();
  session sparse(*m, session_params{32, 2, 512}, std::move(pol));
  session dense(*m, session_params{32, 2, 512});
  EXPECT_EQ(p->began, 1);
  sparse.eval(toks.data(), 10);
  dense.eval(toks.data(), 10);
  EXPECT_EQ(p->selects, 0) << "prefill is dense and causal; select() is for decode";
  for (int i = 10; i < 17; ++i) {
    const float* a = sparse.eval(&toks[i], 1);
    const float* b = dense.eval(&toks[i], 1);
    std::vector<double> bd(b, b + c.n_vocab);
    EXPECT_TRUE(test::all_close(a, bd.data(), c.n_vocab, 1e-5, 1e-5)) << "pos " << i;
  }
  EXPECT_EQ(p->selects, 7 * c.n_layer);
  // Every layer saw all 17 keys once, post-RoPE, equal to the cache up to fp16 rounding.
  for (int l = 0; l < c.n_layer; ++l) {
    ASSERT_EQ(p->next_pos[l], 17);
    const kv_view kv = sparse.kv(l);
    ASSERT_EQ(kv.n_tok, 17);
    const uint16_t* kc = static_cast<const uint16_t*>(kv.k);
    for (int64_t t = 0; t < 17; ++t)
      for (int j = 0; j < c.n_head_kv * c.head_dim; ++j) {
        const float got = p->keys[l][t * c.n_head_kv * c.head_dim + j];
        ASSERT_EQ(fp32_to_fp16(got), kc[t * kv.stride_tok + j]) << "layer " << l << " tok " << t;
      }
  }
  sparse.truncate(5);
  EXPECT_EQ(p->next_pos[0], 5);
  EXPECT_EQ(sparse.n_past(), 5);
}

// Branches forked after a prefix: every branch gets its own tokens (so its K/V history differs from
// the others'). Dense branches must equal the float64 forward of prefix + their tokens; sparse branches
// (streaming, oracle: selections that depend on the branch's own keys) must equal a session that
// prefills the prefix and decodes the same tokens one by one with a fresh policy of the same kind.
void check_branches(const tiny_cfg& c, uint64_t seed, double tol) {
  HASHATTN_SEED(seed);
  const tiny_model tm = build(c, seed);
  auto m = load(tm);
  std::mt19937_64 rng(seed + 1);
  const int P = 11, T = 8, B = 5;
  const auto prefix = random_tokens(P, c.n_vocab, rng);
  std::vector<std::vector<int32_t>> toks(B);
  for (auto& t : toks) t = random_tokens(T, c.n_vocab, rng);
  const layer_shape shape{c.n_head, c.n_head_kv, c.head_dim};
  auto sparse_cfg = [&](const std::string& name) {
    policy_config pc;
    pc.name = name;
    pc.budget.count = 6;
    pc.budget.sinks = 2;
    pc.budget.window = 2;
    return pc;
  };
  // Branch kinds: 0, 1 dense; 2 streaming; 3, 4 oracle (4 drops out after step 3).
  const std::vector<std::string> kind = {"dense", "dense", "streaming", "oracle", "oracle"};
  for (int nt : {1, 2}) {
    SCOPED_TRACE("threads=" + std::to_string(nt));
    auto rec = std::make_unique<recording_policy>(true);
    recording_policy* prefix_keys = rec.get();
    session s(*m, session_params{48, nt, 512}, std::move(rec));
    s.eval(prefix.data(), P);
    std::vector<std::unique_ptr<attention_policy>> own;
    std::vector<attention_policy*> pols;
    for (int b = 0; b < B; ++b) {
      own.push_back(kind[b] == "dense" ? make_dense_policy() : make_policy(sparse_cfg(kind[b])));
      own.back()->begin(c.n_layer, shape, 48);
      for (int l = 0; l < c.n_layer; ++l) own.back()->on_append(l, prefix_keys->keys[l].data(), 0, P);
      pols.push_back(own.back().get());
    }
    branch_decoder bd(s, pols, T);
    EXPECT_EQ(bd.fork_pos(), P);
    std::vector<int32_t> step_toks(B);
    std::vector<uint8_t> active(B, 1);
    std::vector<std::vector<std::vector<float>>> got(B);  // [branch][step][vocab]
    for (int t = 0; t < T; ++t) {
      if (t == 4) active[4] = 0;
      for (int b = 0; b < B; ++b) step_toks[b] = toks[b][t];
      bd.step(step_toks.data(), active.data());
      for (int b = 0; b < B; ++b)
        if (active[b]) got[b].emplace_back(bd.logits(b), bd.logits(b) + c.n_vocab);
    }
    EXPECT_EQ(s.n_past(), P) << "branches must not move the session";
    EXPECT_THROW(bd.step(step_toks.data()), error) << "every step is used";
    for (int b = 0; b < B; ++b) {
      SCOPED_TRACE("branch " + std::to_string(b) + " (" + kind[b] + ")");
      ASSERT_EQ((int)got[b].size(), b == 4 ? 4 : T);
      std::vector<int32_t> all = prefix;
      all.insert(all.end(), toks[b].begin(), toks[b].end());
      if (kind[b] == "dense") {
        const auto ref = ref_forward(tm, all);
        for (size_t t = 0; t < got[b].size(); ++t)
          expect_row_close(got[b][t].data(), &ref[(P + t) * (size_t)c.n_vocab], c.n_vocab, tol,
                           "step " + std::to_string(t));
      } else {
        session q(*m, session_params{48, nt, 512}, make_policy(sparse_cfg(kind[b])));
        q.eval(prefix.data(), P);
        for (size_t t = 0; t < got[b].size(); ++t) {
          const float* lg = q.eval(&all[P + t], 1);
          std::vector<double> r(lg, lg + c.n_vocab);
          expect_row_close(got[b][t].data(), r.data(), c.n_vocab, 2 * tol, "step " + std::to_string(t));
        }
      }
    }
  }
}

TEST(tiny_model, branches_match_float64_dense_and_sequential_sparse_decoding) {
  tiny_cfg c;
  check_branches(c, 2001, kTol);
  check_branches(qwen2_cfg(), 2002, kTolQuant);
}

TEST(tiny_model, branches_refuse_bad_use) {
  tiny_cfg c;
  const tiny_model tm = build(c, 2003);
  auto m = load(tm);
  session s(*m, session_params{16, 1, 512});
  auto p0 = make_dense_policy(), p1 = make_dense_policy();
  EXPECT_THROW(branch_decoder(s, {p0.get()}, 1), error) << "empty session";
  const std::vector<int32_t> pre = {1, 2, 3, 4};
  s.eval(pre.data(), 4);
  p0->begin(c.n_layer, layer_shape{c.n_head, c.n_head_kv, c.head_dim}, 16);
  p1->begin(c.n_layer, layer_shape{c.n_head, c.n_head_kv, c.head_dim}, 16);
  EXPECT_THROW(branch_decoder(s, {}, 1), error);
  EXPECT_THROW(branch_decoder(s, {p0.get(), p0.get()}, 1), error) << "one policy object per branch";
  EXPECT_THROW(branch_decoder(s, {p0.get()}, 13), error) << "past the context";
  branch_decoder bd(s, {p0.get(), p1.get()}, 3);
  EXPECT_THROW(bd.logits(0), error) << "no step yet";
  const int32_t bad[2] = {1, (int32_t)c.n_vocab};
  EXPECT_THROW(bd.step(bad), error);
  const int32_t ok[2] = {1, 2};
  const uint8_t none[2] = {0, 0};
  EXPECT_THROW(bd.step(ok, none), error);
}

void expect_load_error(const tiny_model& tm, const std::string& needle) {
  try {
    load(tm);
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(tiny_model, loader_refuses_broken_models) {
  tiny_cfg c;
  expect_load_error(build(c, 5, "blk.1.ffn_up.weight"), "blk.1.ffn_up.weight' is missing");
  expect_load_error(build(c, 5, "output_norm.weight"), "output_norm.weight' is missing");
  expect_load_error(build(c, 5, {}, "blk.0.attn_k.weight"), "blk.0.attn_k.weight' has the wrong shape");
  tiny_cfg g = c;
  g.arch = "gemma2";
  expect_load_error(build(g, 5), "architecture 'gemma2' (metadata 'general.architecture') is not supported");
  g.arch = "gemma3";  // a llama-shaped file lacks gemma3's QK-norm weights
  expect_load_error(build(g, 5), "blk.0.attn_q_norm.weight' is missing");
  tiny_cfg h = c;
  h.n_head_kv = 3;
  expect_load_error(build(h, 5), "is not a multiple of 'llama.attention.head_count_kv'");
  // A session cannot be larger than the training context, and tokens must be in the vocabulary.
  const tiny_model ok = build(c, 6);
  auto m = load(ok);
  EXPECT_THROW(session(*m, session_params{c.ctx + 1, 1, 512}), error);
  session s(*m, session_params{0, 1, 512});
  int32_t bad = c.n_vocab;
  EXPECT_THROW(s.eval(&bad, 1), error);
  std::vector<int32_t> many(c.ctx + 1, 3);
  EXPECT_THROW(s.eval(many.data(), (int64_t)many.size()), error);
}

}  // namespace
}  // namespace hashattn
