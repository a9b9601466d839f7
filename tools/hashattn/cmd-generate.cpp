// `hashattn generate`: text generation with a llama-family GGUF on the CPU, or on the GPU (--device cuda,
// generate-gpu.cpp).
// The prompt (-p TEXT, -f FILE, or --token-ids FILE of integer ids) is optionally wrapped in the
// model's chat template (--chat: user message, generation prompt; stops at end-of-generation
// tokens such as <|im_end|>), prefilled in one batch, then tokens are sampled one at a time and
// streamed to stdout as they come (bytes held back while a UTF-8 sequence is incomplete).
// A closing line on stderr gives prompt tokens, prompt tokens/s, decode tokens, decode tokens/s and the
// density attended in decode steps (attended / context, the policy's true one).
// The attention policy seam is here: make_policy() is where --attn / --density / --hash plug in.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "hashattn/cuda.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/model.h"
#include "hashattn/policy.h"
#include "generate-gpu.h"
#include "policy-options.h"
#include "hashattn/tokenizer.h"

namespace {

using namespace hashattn;
using namespace hashattn::cli;

struct generate_options {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  std::string token_ids_file;
  std::string system;
  int n_predict = 128;
  bool chat = false;
  bool ignore_eos = false;
  bool verbose = false;
  float temp = 0.f;
  int top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 42;
  int threads = 0;
  int64_t ctx = 0;
  int64_t sparse_tail = 0;
  std::string device = "cpu";
  std::string attend_kernel = cuda::attend_impl_name(cuda::attend_impl::automatic);
  policy_options pol;
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read prompt file '" + path + "'", {}, {}, "check the path");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<int32_t> read_token_ids(const std::string& path) {
  std::string s = read_file(path);
  for (char& c : s)
    if (c == ',') c = ' ';
  std::istringstream is(s);
  std::vector<int32_t> ids;
  long long v;
  while (is >> v) {
    if (v < 0 || v > INT32_MAX) fail("token id in '" + path + "' out of range", std::to_string(v));
    ids.push_back((int32_t)v);
  }
  if (!is.eof()) fail("token id file '" + path + "' holds something that is not an integer");
  return ids;
}


int run_generate(const generate_options& o) {
  if (o.device != "cuda" && cuda::attend_impl_parse(o.attend_kernel) != cuda::attend_impl::automatic)
    fail("--attend-kernel " + o.attend_kernel, "--device " + o.device, "--device cuda (the CPU has one attention kernel)");
  if (o.device == "cuda") {
    std::string why;
    if (!gpu_generate_available(&why)) fail("--device cuda", why, "a build with the CUDA backend and a GPU", "--device cpu");
  }
  {
    std::ifstream probe(o.model, std::ios::binary);
    if (!probe)
      fail("model file not found: '" + o.model + "'", {}, {},
           "run scripts/setup to fetch the default model, or pass -m MODEL.gguf");
  }
  const int n_sources = !o.prompt.empty() + !o.prompt_file.empty() + !o.token_ids_file.empty();
  if (n_sources > 1) fail("give one prompt source", "several of -p, -f, --token-ids", "exactly one");
  if (o.n_predict < 0) fail("-n", std::to_string(o.n_predict), ">= 0");

  auto m = model::load(o.model);
  const model_hparams& hp = m->hparams();
  // The policy of --attn (policy-options.h): one method, GQA mode and density. Its inputs (hash file
  // bound to the model, calibration) are checked before the prompt is read; the budget's auto sinks and
  // window use the prompt length (below the budget's floor every token is attended).
  policy_options po = o.pol;
  po.n_threads = o.threads;
  po.seed = o.seed;
  const std::string method = canonical_method(po.attn);
  if (split_list(po.attn).size() != 1 || split_list(po.gqa_mode).size() != 1 || po.density.find(',') != std::string::npos)
    fail("generate takes one --attn, --gqa-mode and --density", po.attn + " / " + po.gqa_mode + " / " + po.density,
         "single values (lists are for hashattn eval)");
  const double density = !po.density.empty() ? parse_density_option(po.density) : (po.budget > 0 ? 0.0 : 1.0 / 32);
  policy_builder builder(*m, po);
  builder.prepare({method}, {density}, {});
  std::unique_ptr<tokenizer> tok = tokenizer::from_gguf(m->file());

  std::vector<int32_t> prompt;
  if (!o.token_ids_file.empty()) {
    if (o.chat) fail("--chat needs a text prompt", "--token-ids", "-p or -f");
    prompt = read_token_ids(o.token_ids_file);
  } else {
    std::string text = !o.prompt_file.empty() ? read_file(o.prompt_file) : o.prompt;
    if (text.empty())
      fail("empty prompt", {}, "text with -p TEXT or -f FILE", "e.g. -p \"Tell me about the sea\"");
    if (o.chat) {
      const chat_template tmpl = chat_template_from_gguf(m->file());
      if (!tmpl.warning.empty()) std::fprintf(stderr, "hashattn: warning: %s\n", tmpl.warning.c_str());
      std::vector<chat_message> msgs;
      if (!o.system.empty()) msgs.push_back({"system", o.system});
      msgs.push_back({"user", text});
      text = apply_chat_template(tmpl, msgs, true);
      prompt = tok->encode(text, true, true);
    } else {
      prompt = tok->encode(text, true, false);
    }
  }
  if (prompt.empty()) fail("empty prompt", "0 tokens", "at least one token");

  const int64_t n_prompt = (int64_t)prompt.size();
  if (o.device == "cuda") {
    gpu_generate_args g;
    g.prompt = prompt;
    g.n_predict = o.n_predict;
    g.n_ctx = o.ctx;
    g.temp = o.temp;
    g.seed = o.seed;
    g.ignore_eos = o.ignore_eos;
    g.verbose = o.verbose;
    g.threads = o.threads;
    g.attend = o.attend_kernel;
    g.budget_ctx = n_prompt;  // the budget's auto sinks / window as on the CPU
    if (method != "dense") {
      const std::string gqa = method_has_gqa_mode(method) ? po.gqa_mode : "";
      g.policy = builder.spec_of(method, gqa, density).str();
      if (is_hash_method(method)) g.hash = builder.need_hash(gqa == "group");
    }
    if (o.temp > 0 && (o.top_k != 0 || o.top_p < 1.f))
      std::fprintf(stderr, "hashattn: note: --device cuda draws from softmax(logits / temp) on the GPU; "
                           "--top-k and --top-p apply on the CPU only\n");
    return gpu_generate(*m, *tok, g);
  }
  session_params sp;
  sp.n_ctx = o.ctx;
  sp.n_threads = o.threads;
  std::unique_ptr<attention_policy> pol =
      method == "dense" ? nullptr : builder.make(method, method_has_gqa_mode(method) ? po.gqa_mode : "", density, n_prompt);
  if (o.sparse_tail < 0) fail("--sparse-tail", std::to_string(o.sparse_tail), ">= 0");
  const int64_t tail = std::min<int64_t>(o.sparse_tail, n_prompt - 1);
  session s(*m, sp, std::move(pol));
  if (n_prompt >= s.n_ctx())
    fail("prompt longer than the context", std::to_string(n_prompt) + " tokens",
         "fewer than " + std::to_string(s.n_ctx()),
         "pass a larger --ctx (up to " + std::to_string(hp.n_ctx_train) + ") or a shorter prompt");
  if (o.verbose)
    std::fprintf(stderr, "hashattn: %s\nhashattn: context %lld, threads %d, prompt %lld tokens\n",
                 m->describe().c_str(), (long long)s.n_ctx(), s.n_threads(), (long long)n_prompt);

  sampler smp(sampler_params{o.temp, o.top_k, o.top_p, o.seed});
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  // Prefill is dense; the last `tail` prompt tokens go through the policy one decode step at a time.
  const float* logits = s.eval(prompt.data(), n_prompt - tail);
  for (int64_t j = n_prompt - tail; j < n_prompt; ++j) logits = s.eval(&prompt[j], 1);
  const auto t1 = clock::now();

  std::string pending;  // bytes of an incomplete UTF-8 sequence
  int64_t n_gen = 0;
  bool context_full = false;
  for (int i = 0; i < o.n_predict; ++i) {
    const int32_t t = smp.sample(logits, hp.n_vocab);
    if (!o.ignore_eos && tok->is_eog(t)) break;
    pending += tok->token_to_piece(t, false);
    const size_t ok = utf8_complete_prefix(pending);
    if (ok > 0) {
      std::fwrite(pending.data(), 1, ok, stdout);
      std::fflush(stdout);
      pending.erase(0, ok);
    }
    ++n_gen;
    if (i + 1 == o.n_predict) break;  // the last token needs no forward pass
    if (s.n_past() >= s.n_ctx()) {
      context_full = true;
      break;
    }
    logits = s.eval(&t, 1);
  }
  const auto t2 = clock::now();
  if (!pending.empty()) std::fwrite(pending.data(), 1, pending.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);

  const double tp = std::chrono::duration<double>(t1 - t0).count();
  const double td = std::chrono::duration<double>(t2 - t1).count();
  // Decode forward passes: one per generated token but the last.
  const int64_t n_dec = n_gen > 0 ? n_gen - 1 : 0;
  if (context_full) std::fprintf(stderr, "hashattn: stopped: the context (%lld) is full\n", (long long)s.n_ctx());
  std::fprintf(stderr,
               "hashattn: prompt %lld tokens, %.1f tokens/s | decode %lld tokens, %.1f tokens/s "
               "(%.2f ms/token) | density %.4f | threads %d\n",
               (long long)n_prompt, n_prompt / tp, (long long)n_gen, n_dec > 0 ? n_dec / td : 0.0,
               n_dec > 0 ? 1e3 * td / n_dec : 0.0, s.attended_density(), s.n_threads());
  return 0;
}

HASHATTN_COMMAND(hashattn::cli::command{
    "generate", "Generate text with a llama-family GGUF model (CPU or GPU)",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<generate_options>();
      o->model = hashattn::cli::default_model_path();
      sub.add_option("-m,--model", o->model, "GGUF model file")->capture_default_str();
      sub.add_option("-p,--prompt", o->prompt, "prompt text");
      sub.add_option("-f,--file", o->prompt_file, "read the prompt from a file");
      sub.add_option("--token-ids", o->token_ids_file,
                     "read the prompt as token ids (integers separated by spaces or commas)");
      sub.add_option("-n,--n-predict", o->n_predict, "tokens to generate")->capture_default_str();
      sub.add_flag("--chat", o->chat, "wrap the prompt in the model's chat template; stop at end of turn");
      sub.add_option("--system", o->system, "system message (with --chat)");
      sub.add_option("--temp", o->temp, "temperature (0: greedy)")->capture_default_str();
      sub.add_option("--top-k", o->top_k, "keep the k most likely tokens (0: off)")->capture_default_str();
      sub.add_option("--top-p", o->top_p, "nucleus sampling mass (1: off)")->capture_default_str();
      sub.add_option("--seed", o->seed, "sampling seed")->capture_default_str();
      hashattn::cli::add_threads_option(sub, o->threads, "-t,--threads");
      sub.add_option("--ctx", o->ctx, "context size in tokens (0: the model's)")->capture_default_str();
      sub.add_option("--device", o->device, "where the model runs: cpu, or cuda (the whole model on the GPU: dense, hash, streaming)")
          ->check(CLI::IsMember({"cpu", "cuda"}))
          ->capture_default_str();
      sub.add_option("--attend-kernel", o->attend_kernel,
                     "with --device cuda: the attention kernel, auto (tensor cores; CUDA cores for per-head lists), cores, or tensor")
          ->check(CLI::IsMember(cuda::attend_impl_names()))
          ->capture_default_str();
      sub.add_flag("--ignore-eos", o->ignore_eos, "keep generating past end-of-generation tokens");
      sub.add_flag("-v,--verbose", o->verbose, "print the model and settings on stderr");
      sub.add_option("--sparse-tail", o->sparse_tail,
                     "last prompt tokens decoded through the policy (read sparsely) instead of prefilled densely")
          ->capture_default_str();
      o->pol.add_to(sub, false);
      return [o] { return run_generate(*o); };
    }});

}  // namespace
