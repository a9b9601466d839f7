// `hashattn generate --device cuda`: weights uploaded as bf16, the prompt prefilled on the GPU, then one
// decode step per token (replayed as a CUDA graph from the third on); only token ids cross to the host.
#include "generate-gpu.h"

#include <chrono>
#include <cstdio>

#include "hashattn/error.h"
#include "hashattn/tokenizer.h"
#ifdef HASHATTN_HAVE_CUDA
#include "hashattn/gpu.h"
#include "hashattn/model.h"
#endif

namespace hashattn::cli {

#ifndef HASHATTN_HAVE_CUDA
bool gpu_generate_available(std::string* why) {
  if (why) *why = "a build without the CUDA backend (cmake --preset cuda builds it)";
  return false;
}
int gpu_generate(const model&, const tokenizer&, const gpu_generate_args&) {
  fail("--device cuda", "a build without the CUDA backend", "cmake --preset cuda");
}
#else
bool gpu_generate_available(std::string* why) { return gpu::available(why); }

int gpu_generate(const model& m, const tokenizer& tok, const gpu_generate_args& a) {
  const int64_t n_prompt = (int64_t)a.prompt.size();
  const int64_t n_ctx = a.n_ctx > 0 ? a.n_ctx : n_prompt + a.n_predict + 1;
  if (n_prompt >= n_ctx)
    fail("prompt longer than the context", std::to_string(n_prompt) + " tokens", "fewer than " + std::to_string(n_ctx),
         "pass a larger --ctx or a shorter prompt");
  using clock = std::chrono::steady_clock;
  const auto t_load = clock::now();
  auto dm = gpu::device_model::upload(m, a.threads, a.verbose);
  gpu::session_params sp;
  sp.n_ctx = n_ctx;
  sp.policy = a.policy;
  sp.hash = a.hash;
  sp.temp = a.temp;
  sp.seed = a.seed;
  sp.budget_ctx = a.budget_ctx;
  sp.attend = a.attend;
  gpu::session s(dm, sp);
  if (a.verbose)
    std::fprintf(stderr, "hashattn: gpu: weights %.2f GB uploaded in %.1f s; policy %s; context %lld\n",
                 dm->device_bytes() / 1e9, std::chrono::duration<double>(clock::now() - t_load).count(),
                 a.policy.c_str(), (long long)n_ctx);
  const auto t0 = clock::now();
  int32_t cur = s.prefill(0, a.prompt.data(), n_prompt);
  const auto t1 = clock::now();
  std::string pending;
  int64_t n_gen = 0, attended = 0, context = 0;
  bool context_full = false;
  for (int i = 0; i < a.n_predict; ++i) {
    if (!a.ignore_eos && tok.is_eog(cur)) break;
    pending += tok.token_to_piece(cur, false);
    const size_t ok = utf8_complete_prefix(pending);
    if (ok > 0) {
      std::fwrite(pending.data(), 1, ok, stdout);
      std::fflush(stdout);
      pending.erase(0, ok);
    }
    ++n_gen;
    if (i + 1 == a.n_predict) break;
    if (s.n_past(0) + 1 > s.n_ctx()) {
      context_full = true;
      break;
    }
    const int64_t n = s.n_past(0) + 1;
    attended += s.attended(n);
    context += n;
    int32_t next = 0;
    s.step(&cur, &next);
    cur = next;
  }
  const auto t2 = clock::now();
  if (!pending.empty()) std::fwrite(pending.data(), 1, pending.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const double tp = std::chrono::duration<double>(t1 - t0).count();
  const double td = std::chrono::duration<double>(t2 - t1).count();
  const int64_t n_dec = n_gen > 0 ? n_gen - 1 : 0;
  if (context_full) std::fprintf(stderr, "hashattn: stopped: the context (%lld) is full\n", (long long)s.n_ctx());
  std::fprintf(stderr,
               "hashattn: gpu: prompt %lld tokens, %.1f tokens/s | decode %lld tokens, %.1f tokens/s "
               "(%.2f ms/token) | density %.4f\n",
               (long long)n_prompt, n_prompt / tp, (long long)n_gen, n_dec > 0 ? n_dec / td : 0.0,
               n_dec > 0 ? 1e3 * td / n_dec : 0.0, context > 0 ? (double)attended / context : 1.0);
  return 0;
}
#endif

}  // namespace hashattn::cli
