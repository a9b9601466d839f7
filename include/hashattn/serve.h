// Continuous batching for a server (module serve, above model): requests join and leave one running
// batch_engine (model.h) at token boundaries. One scheduler thread owns the engine; any thread may
// submit, cancel or read the metrics.
// Per loop iteration: admit queued requests while a sequence slot is free and the pool can hold every
// admitted request at its longest (prompt + max_tokens pages, reserved up front, so no running request
// ever runs out of pages); prefill ONE chunk (n_batch tokens) of one admitted request, round robin;
// then one decode step of every request that has a token to append. Long prompts are so spread over
// several iterations and running streams keep flowing.
// Prefix sharing: a new prompt that starts with the prompt of a running or recently finished request
// (kept open while slots and pages allow) forks that sequence's full pages instead of prefilling them.
// Only prompt tokens are shared (their keys come from the dense prefill, the same under every policy).
// Output text: token pieces, held back while incomplete UTF-8 or a possible start of a stop string.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hashattn/model.h"
#include "hashattn/policy.h"
#include "hashattn/tokenizer.h"

namespace hashattn::serve {

struct request {
  std::vector<int32_t> prompt;               // >= 1 token
  int64_t max_tokens = 16;                   // >= 1; prompt + max_tokens <= the context
  sampler_params sampling;                   // temp 0: greedy
  std::vector<std::string> stop;             // stop strings (not part of the output), at most 4
  bool ignore_eos = false;
  std::unique_ptr<attention_policy> policy;  // nullptr: dense
};

struct event {
  enum class kind { text, done, error };
  kind type = kind::text;
  std::string text;           // text: new output (complete UTF-8)
  std::string finish_reason;  // done: "stop" | "length"
  std::string error;          // error: why the request failed
  int64_t prompt_tokens = 0, completion_tokens = 0;
  int64_t shared_tokens = 0;  // prompt tokens taken from another request's pages
  double density = 1;         // attended / context over the request's decode steps
};
// Called on the scheduler thread, in order; must not block for long. Returns false when the receiver
// is gone: the request is cancelled and its pages are freed.
using event_sink = std::function<bool(const event&)>;

struct scheduler_params {
  int max_seqs = 8;          // requests decoded together
  int64_t n_ctx = 0;         // tokens of one request at most (0: the model's)
  int64_t n_pages = 0;       // KV pages (0: max_seqs full contexts)
  int page_size = 16;
  int n_threads = 0;
  int64_t n_batch = 256;     // prefill chunk per loop iteration
  bool share_prefix = true;
};

struct metrics {
  int64_t requests_ok = 0, requests_failed = 0, requests_cancelled = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0, shared_tokens = 0;
  int64_t steps = 0;              // decode steps run
  int64_t queue_depth = 0;        // submitted, not yet admitted
  int64_t running = 0;            // admitted, not finished
  int64_t last_batch = 0;         // sequences in the last decode step
  int64_t pages_total = 0, pages_used = 0;
  int64_t cached_seqs = 0;        // finished requests kept for prefix sharing
};

class scheduler {
 public:
  scheduler(const model& m, const tokenizer& tok, const scheduler_params& p);
  ~scheduler();  // shutdown(false), then joins the thread
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  // Queues a request; returns its id. Throws hashattn::error for an invalid request (empty prompt,
  // prompt + max_tokens over the context, bad max_tokens, too many stop strings) or after shutdown.
  int64_t submit(request r, event_sink sink);
  // Cancels a queued or running request (its sink is not called again). Unknown ids are ignored.
  void cancel(int64_t id);
  // Stops admitting: queued requests get an error event; running ones finish (finish_running) or are
  // cancelled. Returns at once; the destructor waits.
  void shutdown(bool finish_running);
  // Blocks until nothing is queued or running.
  void drain();
  // After shutdown(): waits for the scheduler thread to end (the prefix cache's sequences closed, so
  // every page is back in the pool unless one leaked).
  void join();
  metrics snapshot() const;
  int64_t n_ctx() const;

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

// The text to emit now from `pending` (raw output bytes not yet emitted): with no stop string in it,
// the longest prefix that is complete UTF-8 and does not end with the start of a stop string
// (stop_at = npos); else the text before the earliest stop string (stop_at = its offset).
struct stop_scan {
  size_t emit = 0;
  size_t stop_at = std::string::npos;
};
stop_scan scan_stop(const std::string& pending, const std::vector<std::string>& stop);

}  // namespace hashattn::serve
