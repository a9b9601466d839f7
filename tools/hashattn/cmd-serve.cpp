// `hashattn serve`: an OpenAI-compatible HTTP server with continuous batching (serve-http.h).
#include <memory>

#include "command.h"
#include "serve-http.h"

namespace {

HASHATTN_COMMAND(hashattn::cli::command{
    "serve", "OpenAI-compatible server: /v1/chat/completions, /v1/completions, continuous batching",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<hashattn::cli::serve_options>();
      o->model = hashattn::cli::default_model_path();
      sub.add_option("-m,--model", o->model, "GGUF model file")->capture_default_str();
      sub.add_option("--host", o->host, "address to listen on (127.0.0.1: this machine only)")->capture_default_str();
      sub.add_option("--port", o->port, "TCP port")->capture_default_str()->check(CLI::Range(0, 65535));
      sub.add_option("--parallel", o->parallel, "requests decoded together (the rest wait in a queue)")
          ->capture_default_str()
          ->check(CLI::Range(1, 256));
      sub.add_option("--ctx", o->ctx, "tokens per request, prompt + completion (0: the model's context)")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' on /v1/ endpoints");
      hashattn::cli::add_threads_option(sub, o->threads, "-t,--threads");
      sub.add_option("--max-body", o->max_body, "largest request body in bytes")->capture_default_str();
      sub.add_option("--prefill-chunk", o->n_batch,
                     "prompt tokens prefilled per scheduler iteration (running streams advance in between)")
          ->capture_default_str()
          ->check(CLI::Range((int64_t)1, (int64_t)1 << 20));
      sub.add_flag("--no-prefix-share", o->no_prefix_share,
                   "prefill every prompt in full (by default a prompt that starts like another reuses its KV pages)");
      sub.add_flag("-q,--quiet", o->quiet, "no messages on shutdown");
      o->pol.add_to(sub, false);
      return [o] { return hashattn::cli::run_serve(*o); };
    }});

}  // namespace
