// The model on the GPU (gpu.h) against the CPU runtime on the default model (SmolLM2-135M-Instruct Q4_1),
// on a GPU machine (scripts/gpu-check --model runs this binary; CI only compiles it).
// Tolerance: the GPU holds weights as bf16 (8-bit mantissa, dequantized from the file's Q4_1/Q8_0) and
// K/V as bf16; the CPU keeps the quantized weights with 16-bit activations and fp16 K/V. So logits differ
// by a few hundredths to tenths; what must hold:
//   - top-1 agreement on >= 99% of the decisive positions (CPU margin >= kNearTie) of 256 positions of
//     real text (prefill path and decode path), every disagreement a near-tie of the CPU's logits
//     (top-1 - top-2 < kNearTie), mean |diff| <= kMeanDiff; the plain agreement is printed (on an H100
//     the f16 prefill path gave 253/256, its 3 disagreements at CPU margins below 0.015);
//   - greedy continuations of 3 prompts equal for 32 tokens, or diverging only where the CPU's margin is
//     a near-tie (shown with its margin);
//   - batching (3 sequences in one step) and graph replay give the same tokens as one sequence eagerly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/model-files.h"
#include "hashattn/gpu.h"
#include "hashattn/hash.h"
#include "hashattn/model.h"
#include "hashattn/tokenizer.h"

namespace hashattn {
namespace {

constexpr double kNearTie = 0.5;
constexpr double kMeanDiff = 0.25;

struct top2 {
  int32_t id = 0;
  double margin = 0;
};
top2 top_of(const float* l, int64_t n) {
  int32_t a = 0;
  for (int64_t i = 1; i < n; ++i)
    if (l[i] > l[a]) a = (int32_t)i;
  double second = -1e30;
  for (int64_t i = 0; i < n; ++i)
    if (i != a) second = std::max(second, (double)l[i]);
  return {a, (double)l[a] - second};
}

class GpuModel : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!gpu::available(&why)) GTEST_SKIP() << "no CUDA device: " << why;
    const std::string path = test::model_path();
    ASSERT_NO_FATAL_FAILURE(test::require_file(path));
    m = model::load(path);
    tok = tokenizer::from_gguf(m->file());
    dm = gpu::device_model::upload(*m);
  }
  // CPU logits of every position, token by token (the decode path).
  std::vector<float> cpu_logits(const std::vector<int32_t>& ids) {
    session_params sp;
    sp.n_ctx = (int64_t)ids.size() + 8;
    session s(*m, sp);
    const int64_t V = m->hparams().n_vocab;
    std::vector<float> out(ids.size() * V);
    for (size_t i = 0; i < ids.size(); ++i) {
      const float* l = s.eval(&ids[i], 1);
      std::copy(l, l + V, out.begin() + i * V);
    }
    return out;
  }
  std::vector<int32_t> cpu_greedy(const std::vector<int32_t>& prompt, int n, std::vector<double>* margins) {
    session_params sp;
    sp.n_ctx = (int64_t)prompt.size() + n + 8;
    session s(*m, sp);
    const int64_t V = m->hparams().n_vocab;
    const float* l = nullptr;
    for (int32_t t : prompt) l = s.eval(&t, 1);
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      const top2 t = top_of(l, V);
      out.push_back(t.id);
      margins->push_back(t.margin);
      l = s.eval(&t.id, 1);
    }
    return out;
  }
  std::vector<int32_t> text_tokens(size_t n) {
    const std::string p = test::text_path("persuasion.txt");
    EXPECT_NO_FATAL_FAILURE(test::require_file(p));
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str().substr(std::min<size_t>(20000, ss.str().size() / 2), 6000);
    std::vector<int32_t> ids = tok->encode(text, true);
    if (ids.size() > n) ids.resize(n);
    return ids;
  }
  // Random 32-bit encoders, one key encoder per KV group (speed and plumbing checks, no quality claim).
  std::shared_ptr<const hash_weights> random_group_encoders(uint64_t seed) const {
    const model_hparams& hp = m->hparams();
    auto w = std::make_shared<hash_weights>(
        hash_weights_alloc(hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim, 32, 3, 128, true));
    hash_weights_init_random(*w, seed);
    return w;
  }
  // Top-1 agreement and |diff| of two sets of logit rows; asserts the bounds when `check`.
  int compare(const std::string& what, const float* gpu, const float* cpu, int64_t n_pos, int64_t V, bool check) {
    int agree = 0, decisive = 0, decisive_agree = 0;
    double sum_diff = 0, max_diff = 0;
    for (int64_t i = 0; i < n_pos; ++i) {
      const top2 g = top_of(gpu + i * V, V), c = top_of(cpu + i * V, V);
      if (c.margin >= kNearTie) {
        ++decisive;
        decisive_agree += g.id == c.id;
      }
      if (g.id == c.id) ++agree;
      else {
        std::printf("%s: position %lld: top-1 %d vs %d (reference margin %.4f)\n", what.c_str(), (long long)i, g.id,
                    c.id, c.margin);
        if (check) EXPECT_LT(c.margin, kNearTie) << what << ": a disagreement away from a near-tie, position " << i;
      }
      for (int64_t v = 0; v < V; ++v) {
        const double d = std::fabs((double)gpu[i * V + v] - cpu[i * V + v]);
        sum_diff += d;
        max_diff = std::max(max_diff, d);
      }
    }
    const double mean = sum_diff / (double)(n_pos * V);
    std::printf("%s: top-1 agreement %d/%lld (decisive positions, reference margin >= %.1f: %d/%d), mean |diff| %.4f, "
                "max |diff| %.4f\n",
                what.c_str(), agree, (long long)n_pos, kNearTie, decisive_agree, decisive, mean, max_diff);
    if (!check) return agree;
    EXPECT_GE(decisive_agree, (int)std::ceil(0.99 * decisive)) << what;
    EXPECT_LE(mean, kMeanDiff) << what;
    return agree;
  }

  std::unique_ptr<model> m;
  std::unique_ptr<tokenizer> tok;
  std::shared_ptr<const gpu::device_model> dm;
};

TEST_F(GpuModel, LogitsAgreeWithCpuOn256PositionsOfText) {
  const std::vector<int32_t> ids = text_tokens(256);
  ASSERT_EQ(ids.size(), 256u);
  const int64_t V = m->hparams().n_vocab;
  const std::vector<float> cpu = cpu_logits(ids);
  // f16 K/V (the default, as the CPU's cache) is checked; bf16 K/V is shown beside it.
  for (dtype kvt : {dtype::f16, dtype::bf16}) {
    const bool check = kvt == dtype::f16;
    const std::string tag = kvt == dtype::f16 ? "f16 KV" : "bf16 KV";
    gpu::session_params sp;
    sp.n_ctx = 512;
    sp.kv_type = kvt;
    // Prefill path: every position's logits.
    gpu::session g(dm, sp);
    std::vector<float> pre;
    g.prefill(0, ids.data(), 256, &pre, true);
    compare(tag + " prefill vs cpu", pre.data(), cpu.data(), 256, V, check);
    // Decode path: one token prefilled, then 255 steps (graph replay from the third on).
    gpu::session d(dm, sp);
    std::vector<float> dec(256 * V), l;
    d.prefill(0, ids.data(), 1, &l);
    std::copy(l.begin(), l.end(), dec.begin());
    for (int i = 1; i < 256; ++i) {
      int32_t next = 0;
      d.step(&ids[i], &next, &l);
      std::copy(l.begin(), l.end(), dec.begin() + (size_t)i * V);
    }
    compare(tag + " decode vs cpu", dec.data(), cpu.data(), 256, V, check);
    compare(tag + " decode vs prefill (gpu)", dec.data(), pre.data(), 256, V, check);
  }
}

TEST_F(GpuModel, PrefillMatchesDecodeForEveryChunking) {
  // The GPU's own decode path (token by token) against its prefill path for several chunkings of the
  // prompt and of the prefill attention launches (chunks that are not a multiple of the launch rows
  // pad their last launch: once a wrong-shaped launch corrupted the shared workspace past row 41).
  const std::vector<int32_t> ids = text_tokens(200);
  const int64_t V = m->hparams().n_vocab, n = (int64_t)ids.size();
  gpu::session_params sp;
  sp.n_ctx = 256;
  gpu::session d(dm, sp);
  std::vector<float> dec((size_t)n * V), l;
  d.prefill(0, ids.data(), 1, &l);
  std::copy(l.begin(), l.end(), dec.begin());
  for (int64_t i = 1; i < n; ++i) {
    int32_t next = 0;
    d.step(&ids[i], &next, &l);
    std::copy(l.begin(), l.end(), dec.begin() + i * V);
  }
  const int settings[][2] = {{256, 64}, {256, 1}, {1, 64}, {8, 1}, {8, 8}, {16, 16}, {100, 64}, {37, 5}};
  for (const auto& st : settings) {
    gpu::session_params pp = sp;
    pp.n_batch = st[0];
    pp.prefill_attn_rows = st[1];
    gpu::session g(dm, pp);
    std::vector<float> pre;
    g.prefill(0, ids.data(), n, &pre, true);
    compare("prefill chunk " + std::to_string(st[0]) + " attn rows " + std::to_string(st[1]) + " vs decode",
            pre.data(), dec.data(), n, V, true);
  }
}

TEST_F(GpuModel, GreedyContinuationsMatchTheCpu) {
  const char* prompts[] = {"The capital of France is", "Once upon a time, in a small village,",
                           "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"};
  const int n = 32;
  for (const char* pr : prompts) {
    const std::vector<int32_t> ids = tok->encode(pr, true);
    std::vector<double> margins;
    const std::vector<int32_t> ref = cpu_greedy(ids, n, &margins);
    gpu::session_params sp;
    sp.n_ctx = 256;
    gpu::session g(dm, sp);
    std::vector<float> l;
    g.prefill(0, ids.data(), (int64_t)ids.size(), &l);
    int32_t cur = top_of(l.data(), (int64_t)l.size()).id;
    std::vector<int32_t> out{cur};
    for (int i = 1; i < n; ++i) {
      int32_t next = 0;
      g.step(&cur, &next);
      out.push_back(next);
      cur = next;
    }
    size_t div = 0;
    while (div < out.size() && out[div] == ref[div]) ++div;
    std::printf("prompt '%.30s': %zu/%d tokens equal%s\n", pr, div, n, div < out.size() ? "" : " (all)");
    if (div < out.size()) {
      std::printf("  diverges at token %zu: gpu %d, cpu %d, cpu margin %.4f\n", div, out[div], ref[div], margins[div]);
      EXPECT_LT(margins[div], 0.1) << "greedy divergence where the CPU is not at a near-tie";
    }
  }
}

TEST_F(GpuModel, BatchedGraphStepsEqualSingleEagerSequences) {
  const char* prompts[] = {"The river flows", "In the year 1815, the", "A list of colours: red,"};
  const int n = 16;
  std::vector<std::vector<int32_t>> single;
  for (const char* pr : prompts) {
    gpu::session_params sp;
    sp.n_ctx = 128;
    sp.graph = false;
    gpu::session g(dm, sp);
    const std::vector<int32_t> ids = tok->encode(pr, true);
    std::vector<float> l;
    g.prefill(0, ids.data(), (int64_t)ids.size(), &l);
    int32_t cur = top_of(l.data(), (int64_t)l.size()).id;
    std::vector<int32_t> out{cur};
    for (int i = 1; i < n; ++i) {
      g.step(&cur, &cur);
      out.push_back(cur);
    }
    single.push_back(out);
  }
  gpu::session_params sp;
  sp.n_ctx = 128;
  sp.batch = 3;
  gpu::session g(dm, sp);
  std::vector<int32_t> cur(3);
  for (int b = 0; b < 3; ++b) {
    const std::vector<int32_t> ids = tok->encode(prompts[b], true);
    std::vector<float> l;
    g.prefill(b, ids.data(), (int64_t)ids.size(), &l);
    cur[b] = top_of(l.data(), (int64_t)l.size()).id;
    EXPECT_EQ(cur[b], single[b][0]);
  }
  for (int i = 1; i < n; ++i) {
    std::vector<int32_t> next(3);
    g.step(cur.data(), next.data());
    for (int b = 0; b < 3; ++b) EXPECT_EQ(next[b], single[b][i]) << "sequence " << b << ", step " << i;
    cur = next;
  }
}

TEST_F(GpuModel, HashAndStreamingRunAndFollowTheBudget) {
  // Random encoders (speed-path check, no quality claim): a 1/4 budget over 400 tokens selects, and
  // the step's tokens are valid; streaming keeps sinks + window.
  const model_hparams& hp = m->hparams();
  const auto w = random_group_encoders(7);
  const std::vector<int32_t> ids = text_tokens(400);
  for (const char* pol : {"hash/group@1/4", "streaming@1/4"}) {
    gpu::session_params sp;
    sp.n_ctx = 512;
    sp.policy = pol;
    sp.hash = w;
    gpu::session g(dm, sp);
    // hash: floor(400 / 4); streaming: its sinks 16 + window 112 (the budget at 512 spent on the window)
    EXPECT_EQ(g.attended(400), std::string(pol).rfind("hash", 0) == 0 ? 100 : 128) << pol;
    std::vector<float> l;
    g.prefill(0, ids.data(), (int64_t)ids.size(), &l);
    int32_t cur = top_of(l.data(), (int64_t)l.size()).id;
    for (int i = 0; i < 8; ++i) {
      int32_t next = -1;
      g.step(&cur, &next);
      ASSERT_GE(next, 0);
      ASSERT_LT(next, hp.n_vocab);
      cur = next;
    }
    std::printf("%s: 8 steps ok, attended %lld of 400\n", pol, (long long)g.attended(400));
  }
}

TEST_F(GpuModel, HashDecodeFollowsTheCpu) {
  // The same random encoders on both sides, hash/group@1/4 at a 512-token context: 300 prompt tokens
  // prefilled (the GPU in chunks of 256 + 44), then 100 text tokens decoded one by one. Both encode the
  // keys as their caches hold them (fp16), but the GPU's weights are bf16 and the CPU's quantized with
  // 8-bit activations, so keys differ in their last bits, a code bit near zero flips and another token is
  // selected now and then (the selection itself is exact against the reference in test-cuda-cuda). The
  // first H100 run, before the GPU encoded the stored keys: 94/100 top-1 equal. Bound: >= 90/100.
  const model_hparams& hp = m->hparams();
  const auto w = random_group_encoders(11);
  const std::vector<int32_t> ids = text_tokens(400);
  ASSERT_EQ(ids.size(), 400u);
  const int64_t V = hp.n_vocab, n_prompt = 300, n_dec = 100, n_ctx = 512;
  const std::string pol = "hash/group@1/4";

  policy_config pc = policy_config_for(policy_spec_parse(pol), n_ctx);
  pc.weights = w;
  session_params cp;
  cp.n_ctx = n_ctx;
  session cs(*m, cp, make_policy(pc));
  cs.eval(ids.data(), n_prompt);
  std::vector<float> cpu((size_t)n_dec * V);
  for (int64_t i = 0; i < n_dec; ++i) {
    const float* l = cs.eval(&ids[n_prompt + i], 1);
    std::copy(l, l + V, cpu.begin() + i * V);
  }

  gpu::session_params sp;
  sp.n_ctx = n_ctx;
  sp.policy = pol;
  sp.hash = w;
  gpu::session g(dm, sp);
  g.prefill(0, ids.data(), n_prompt);
  std::vector<float> gl((size_t)n_dec * V), l;
  for (int64_t i = 0; i < n_dec; ++i) {
    int32_t next = 0;
    g.step(&ids[n_prompt + i], &next, &l);
    std::copy(l.begin(), l.end(), gl.begin() + i * V);
  }
  std::printf("attended per step at 400: cpu density %.4f, gpu %lld of 400\n", cs.attended_density(),
              (long long)g.attended(400));
  const int agree = compare(pol + " decode, gpu vs cpu", gl.data(), cpu.data(), n_dec, V, false);
  EXPECT_GE(agree, 90) << "hash decode on the GPU departs from the CPU's";
}

}  // namespace
}  // namespace hashattn
