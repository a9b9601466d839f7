// `hashattn serve`: the HTTP server (cpp-httplib) over the continuous-batching scheduler (serve.h).
#pragma once
#include <cstdint>
#include <string>

#include "policy-options.h"

namespace hashattn::cli {

struct serve_options {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 8;            // requests decoded together
  int64_t ctx = 0;             // tokens per request (0: the model's)
  std::string api_key;         // empty: no key needed
  int threads = 0;
  size_t max_body = 1 << 20;   // bytes
  int64_t n_batch = 256;       // prefill chunk per scheduler iteration
  bool no_prefix_share = false;
  bool quiet = false;
  policy_options pol;          // the default policy of requests, and the inputs (hash file, ...)
};

// Runs until SIGTERM or SIGINT: then stops accepting, finishes running requests and returns 0.
int run_serve(const serve_options& o);

}  // namespace hashattn::cli
