// scheduler (serve.h): continuous batching over one batch_engine, on one thread.
// Locking: `mu` guards what other threads touch (incoming requests, cancellations, the stopping flag,
// the metrics). Everything else (queue, active jobs, the engine, the prefix cache) belongs to the
// scheduler thread. Sinks are called without the lock (a sink may cancel).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "hashattn/error.h"
#include "hashattn/serve.h"

namespace hashattn::serve {

namespace {
std::string str(int64_t v) { return std::to_string(v); }
}  // namespace

struct scheduler::impl {
  struct job {
    int64_t id = 0;
    request r;
    event_sink sink;
    int64_t seq = -1;         // engine sequence, once admitted
    int64_t prefilled = 0;    // prompt tokens in the KV cache
    int64_t shared = 0;       // of which forked from another request
    int64_t reserved = 0;     // pages reserved at admission
    int64_t n_gen = 0;
    int32_t next = -1;        // sampled token to append in the next step
    bool done = false;
    std::unique_ptr<sampler> smp;
    std::string pending;      // output bytes not yet emitted
  };
  struct cached_seq {
    int64_t seq;
    std::vector<int32_t> prompt;  // its prefilled prompt tokens
    int64_t held;                 // pages it holds
  };

  const model& m;
  const tokenizer& tok;
  scheduler_params p;
  batch_engine eng;
  int64_t V = 0;

  mutable std::mutex mu;
  std::condition_variable cv, idle_cv;
  std::deque<std::unique_ptr<job>> incoming;
  std::vector<int64_t> cancels;
  bool stopping = false, finish_running = true, busy = false, exited = false;
  int64_t next_id = 0;
  metrics met;

  std::deque<std::unique_ptr<job>> queue;
  std::vector<std::unique_ptr<job>> active;
  std::deque<cached_seq> cache;  // oldest first
  int64_t reserved = 0;
  size_t rr = 0;  // round robin over prefills
  std::vector<int64_t> ids;
  std::vector<int32_t> toks;
  std::vector<job*> stepped;
  std::thread th;

  impl(const model& mod, const tokenizer& t, const scheduler_params& sp)
      : m(mod), tok(t), p(sp), eng(mod, engine_params(sp)), V(mod.hparams().n_vocab) {
    if (p.n_batch < 1) fail("serve: prefill chunk", str(p.n_batch), ">= 1");
    if (eng.pages_total() < eng.pages_for(eng.n_ctx()))
      fail("serve: KV pages", str(eng.pages_total()), ">= " + str(eng.pages_for(eng.n_ctx())) + " (one full context)");
    met.pages_total = eng.pages_total();
    th = std::thread([this] { loop(); });
  }

  static batch_params engine_params(const scheduler_params& sp) {
    batch_params bp;
    bp.n_ctx = sp.n_ctx;
    bp.max_seqs = sp.max_seqs;
    bp.n_pages = sp.n_pages;
    bp.page_size = sp.page_size;
    bp.n_threads = sp.n_threads;
    bp.n_batch = sp.n_batch;
    return bp;
  }

  int64_t cached_pages() const {
    int64_t s = 0;
    for (const cached_seq& c : cache) s += c.held;
    return s;
  }
  void evict_oldest() {
    eng.close(cache.front().seq);
    cache.pop_front();
  }

  // Calls a job's sink; a false return cancels the job.
  void send(job& j, const event& e) {
    if (j.done) return;
    if (!j.sink(e)) cancel_job(j);
  }
  void release(job& j, bool keep) {
    j.done = true;
    reserved -= j.reserved;
    j.reserved = 0;
    if (j.seq < 0) return;
    if (keep && p.share_prefix && j.prefilled > 0) {
      cache.push_back(cached_seq{j.seq, std::vector<int32_t>(j.r.prompt.begin(), j.r.prompt.begin() + j.prefilled),
                                 eng.pages_for(eng.n_past(j.seq))});
    } else {
      eng.close(j.seq);
    }
    j.seq = -1;
  }
  void cancel_job(job& j) {
    if (j.done) return;
    release(j, false);
    std::lock_guard<std::mutex> lk(mu);
    met.requests_cancelled++;
  }
  void fail_job(job& j, const std::string& why) {
    if (j.done) return;
    event e;
    e.type = event::kind::error;
    e.error = why;
    j.sink(e);
    release(j, false);
    std::lock_guard<std::mutex> lk(mu);
    met.requests_failed++;
  }
  void finish(job& j, const std::string& reason) {
    event e;
    e.type = event::kind::done;
    e.finish_reason = reason;
    e.prompt_tokens = (int64_t)j.r.prompt.size();
    e.completion_tokens = j.n_gen;
    e.shared_tokens = j.shared;
    e.density = j.seq >= 0 ? eng.attended_density(j.seq) : 1.0;
    const bool ok = j.sink(e);
    release(j, ok);
    std::lock_guard<std::mutex> lk(mu);
    met.requests_ok++;
    met.prompt_tokens += e.prompt_tokens;
    met.completion_tokens += j.n_gen;
    met.shared_tokens += j.shared;
  }
  void emit_text(job& j, size_t n) {
    if (n == 0) return;
    event e;
    e.type = event::kind::text;
    e.text = j.pending.substr(0, n);
    j.pending.erase(0, n);
    send(j, e);
  }

  // A sampled token: end of generation, stop strings, text, max_tokens.
  void on_token(job& j, int32_t t) {
    if (!j.r.ignore_eos && tok.is_eog(t)) return finish(j, "stop");
    j.n_gen++;
    j.pending += tok.token_to_piece(t, false);
    const stop_scan sc = scan_stop(j.pending, j.r.stop);
    if (sc.stop_at != std::string::npos) {
      j.pending.resize(sc.stop_at);
      emit_text(j, utf8_complete_prefix(j.pending));
      if (!j.done) finish(j, "stop");
      return;
    }
    emit_text(j, sc.emit);
    if (j.done) return;
    if (j.n_gen >= j.r.max_tokens) {
      emit_text(j, utf8_complete_prefix(j.pending));  // an incomplete UTF-8 tail is dropped
      if (!j.done) finish(j, "length");
      return;
    }
    j.next = t;
  }

  // The longest shareable prefix of a prompt among running and cached sequences: (sequence, tokens).
  std::pair<int64_t, int64_t> best_prefix(const std::vector<int32_t>& prompt) const {
    std::pair<int64_t, int64_t> best{-1, 0};
    auto consider = [&](int64_t seq, const int32_t* t, int64_t n) {
      const int64_t lim = std::min<int64_t>(n, (int64_t)prompt.size() - 1);
      int64_t l = 0;
      while (l < lim && t[l] == prompt[l]) ++l;
      if (l > best.second) best = {seq, l};
    };
    for (const auto& j : active)
      if (!j->done && j->seq >= 0) consider(j->seq, j->r.prompt.data(), j->prefilled);
    for (const cached_seq& c : cache) consider(c.seq, c.prompt.data(), (int64_t)c.prompt.size());
    return best;
  }

  void admit() {
    while (!queue.empty()) {
      job& j = *queue.front();
      const int64_t need = eng.pages_for((int64_t)j.r.prompt.size() + j.r.max_tokens);
      auto fits = [&] {
        return eng.n_open() < p.max_seqs && reserved + need + cached_pages() <= eng.pages_total() &&
               eng.pages_free() >= 1;
      };
      // Keep a cached sequence this prompt can share while it fits without it.
      while (!fits() && !cache.empty()) evict_oldest();
      if (!fits()) return;
      std::unique_ptr<job> jp = std::move(queue.front());
      queue.pop_front();
      {
        std::lock_guard<std::mutex> lk(mu);
        met.queue_depth = (int64_t)queue.size() + (int64_t)incoming.size();
      }
      try {
        const auto [from, n] = p.share_prefix ? best_prefix(jp->r.prompt) : std::pair<int64_t, int64_t>{-1, 0};
        if (from >= 0 && n >= (int64_t)p.page_size) {  // at least one full page
          jp->seq = eng.fork(from, n, std::move(jp->r.policy));
          jp->prefilled = jp->shared = n;
        } else {
          jp->seq = eng.open(std::move(jp->r.policy));
        }
      } catch (const error& e) {
        fail_job(*jp, e.what());
        continue;
      }
      jp->reserved = need;
      reserved += need;
      jp->smp = std::make_unique<sampler>(jp->r.sampling);
      active.push_back(std::move(jp));
    }
  }

  // One chunk of one admitted prompt (round robin).
  void prefill_one() {
    std::vector<job*> todo;
    for (auto& j : active)
      if (!j->done && j->prefilled < (int64_t)j->r.prompt.size()) todo.push_back(j.get());
    if (todo.empty()) return;
    job& j = *todo[rr++ % todo.size()];
    const int64_t n = std::min<int64_t>(p.n_batch, (int64_t)j.r.prompt.size() - j.prefilled);
    try {
      const float* lg = eng.prefill(j.seq, j.r.prompt.data() + j.prefilled, n);
      j.prefilled += n;
      if (j.prefilled == (int64_t)j.r.prompt.size()) on_token(j, j.smp->sample(lg, V));
    } catch (const error& e) {
      fail_job(j, e.what());
    }
  }

  void decode_step() {
    ids.clear();
    toks.clear();
    stepped.clear();
    for (auto& j : active)
      if (!j->done && j->next >= 0) {
        ids.push_back(j->seq);
        toks.push_back(j->next);
        stepped.push_back(j.get());
        j->next = -1;
      }
    if (ids.empty()) return;
    try {
      eng.step(ids.data(), toks.data(), (int)ids.size());
    } catch (const error& e) {
      for (job* j : stepped) fail_job(*j, e.what());
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu);
      met.steps++;
      met.last_batch = (int64_t)ids.size();
    }
    for (job* j : stepped)
      if (!j->done) on_token(*j, j->smp->sample(eng.logits(j->seq), V));
  }

  void loop() {
    for (;;) {
      std::vector<int64_t> cancel_ids;
      bool stop_now = false, cancel_running = false;
      {
        std::unique_lock<std::mutex> lk(mu);
        busy = false;
        if (incoming.empty() && queue.empty() && active.empty()) idle_cv.notify_all();
        cv.wait(lk, [&] { return stopping || !incoming.empty() || !cancels.empty() || !queue.empty() || !active.empty(); });
        busy = true;
        while (!incoming.empty()) {
          queue.push_back(std::move(incoming.front()));
          incoming.pop_front();
        }
        cancel_ids.swap(cancels);
        stop_now = stopping;
        cancel_running = stopping && !finish_running;
      }
      for (int64_t id : cancel_ids) {
        for (auto it = queue.begin(); it != queue.end(); ++it)
          if ((*it)->id == id) {
            queue.erase(it);
            std::lock_guard<std::mutex> lk(mu);
            met.requests_cancelled++;
            break;
          }
        for (auto& j : active)
          if (j->id == id) cancel_job(*j);
      }
      if (stop_now) {
        for (auto& j : queue) fail_job(*j, "the server is shutting down");
        queue.clear();
        if (cancel_running)
          for (auto& j : active) cancel_job(*j);
      }
      admit();
      prefill_one();
      decode_step();
      active.erase(std::remove_if(active.begin(), active.end(), [](const auto& j) { return j->done; }), active.end());
      {
        std::lock_guard<std::mutex> lk(mu);
        met.queue_depth = (int64_t)queue.size() + (int64_t)incoming.size();
        met.running = (int64_t)active.size();
        met.pages_used = eng.pages_total() - eng.pages_free();
        met.cached_seqs = (int64_t)cache.size();
        if (stopping && active.empty() && queue.empty() && incoming.empty()) break;
      }
    }
    while (!cache.empty()) evict_oldest();
    std::lock_guard<std::mutex> lk(mu);
    met.pages_used = eng.pages_total() - eng.pages_free();
    met.cached_seqs = 0;
    busy = false;
    exited = true;
    idle_cv.notify_all();
  }
};

scheduler::scheduler(const model& m, const tokenizer& tok, const scheduler_params& p)
    : p_(std::make_unique<impl>(m, tok, p)) {}

scheduler::~scheduler() {
  shutdown(false);
  join();
}

void scheduler::join() {
  if (p_->th.joinable()) p_->th.join();
}

int64_t scheduler::submit(request r, event_sink sink) {
  impl& s = *p_;
  const int64_t n = (int64_t)r.prompt.size();
  if (n < 1) fail("empty prompt", "0 tokens", "at least one token");
  if (r.max_tokens < 1) fail("max_tokens", str(r.max_tokens), ">= 1");
  if (n + r.max_tokens > s.eng.n_ctx())
    fail("prompt + max_tokens exceeds the context",
         str(n) + " prompt tokens + " + str(r.max_tokens) + " max_tokens",
         "at most " + str(s.eng.n_ctx()) + " tokens", "use a shorter prompt or fewer max_tokens");
  check_token_ids(s.m, r.prompt.data(), n, "serve");
  if (r.stop.size() > 4) fail("stop", str((int64_t)r.stop.size()) + " strings", "at most 4");
  for (const std::string& st : r.stop)
    if (st.empty()) fail("stop", "an empty string", "non-empty strings");
  if (!sink) fail("serve: a request without an event sink");
  auto j = std::make_unique<impl::job>();
  j->r = std::move(r);
  j->sink = std::move(sink);
  std::lock_guard<std::mutex> lk(s.mu);
  if (s.stopping) fail("the server is shutting down", {}, {}, "retry on another server");
  j->id = s.next_id++;
  const int64_t id = j->id;
  s.incoming.push_back(std::move(j));
  s.met.queue_depth++;
  s.cv.notify_one();
  return id;
}

void scheduler::cancel(int64_t id) {
  std::lock_guard<std::mutex> lk(p_->mu);
  if (p_->exited) return;
  p_->cancels.push_back(id);
  p_->cv.notify_one();
}

void scheduler::shutdown(bool finish_running) {
  std::lock_guard<std::mutex> lk(p_->mu);
  if (!p_->stopping) p_->finish_running = finish_running;
  p_->stopping = true;
  p_->cv.notify_one();
}

void scheduler::drain() {
  std::unique_lock<std::mutex> lk(p_->mu);
  // Cancellations of finished requests (a client closing right after the end of its stream) are no work.
  p_->idle_cv.wait(lk, [&] {
    return p_->exited || (!p_->busy && p_->incoming.empty() && p_->met.running == 0 && p_->met.queue_depth == 0);
  });
}

metrics scheduler::snapshot() const {
  std::lock_guard<std::mutex> lk(p_->mu);
  return p_->met;
}

int64_t scheduler::n_ctx() const { return p_->eng.n_ctx(); }

}  // namespace hashattn::serve
