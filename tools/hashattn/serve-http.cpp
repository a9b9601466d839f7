// `hashattn serve` over HTTP (serve-http.h): routes, API key, request -> scheduler, responses whole or
// streamed as server-sent events, Prometheus metrics, SIGTERM.
// Each HTTP request is handled on a pool thread: it parses and checks the body, tokenizes, builds the
// request's attention policy (both under one lock: the tokenizer and the policy builder are shared),
// submits to the scheduler and waits on a channel that the scheduler's sink fills. A stream writes
// each event as it comes; a failed write (the client left) cancels the request, which frees its pages.
#include "serve-http.h"

#ifdef HASHATTN_HAVE_HTTPLIB
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "hashattn/error.h"
#include "hashattn/serve.h"
#include "serve-api.h"

namespace hashattn::cli {

namespace {

using nlohmann::json;

int g_stop_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int) {
  const char c = 's';
  const ssize_t n = write(g_stop_pipe[1], &c, 1);  // async-signal-safe
  (void)n;
}

struct channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<serve::event> q;
  bool gone = false;
};

struct server_state {
  const serve_options& o;
  std::unique_ptr<model> m;
  std::unique_ptr<tokenizer> tok;
  chat_template tmpl;
  std::string model_id;
  std::mutex build_mu;  // the tokenizer and the policy builder
  std::unique_ptr<policy_builder> builder;
  std::string method, gqa;  // the server's default policy
  double density = 0;
  std::unique_ptr<serve::scheduler> sched;
  std::atomic<int64_t> http_requests{0}, http_errors{0};
  std::mt19937_64 seeds{std::random_device{}()};
  explicit server_state(const serve_options& opt) : o(opt) {}
};

void reply_error(httplib::Response& res, const api_error& e) {
  res.status = e.status;
  res.set_content(error_body(e.what(), e.type, e.param, e.code).dump(), "application/json");
}

struct prepared {
  api_request r;
  serve::request sr;
  std::string policy;
};

// Body -> tokens, policy and sampling of a scheduler request; api_error for anything wrong.
prepared prepare(server_state& S, const std::string& body, bool chat) {
  prepared p;
  p.r = parse_api_request(body, chat);
  if (!p.r.model.empty() && p.r.model != S.model_id)
    throw api_error(404, "the model '" + p.r.model + "' does not exist; this server has '" + S.model_id + "'", "model",
                    "model_not_found");
  std::lock_guard<std::mutex> lk(S.build_mu);
  std::vector<int32_t>& toks = p.sr.prompt;
  if (chat) {
    toks = S.tok->encode(apply_chat_template(S.tmpl, p.r.messages, true), true, true);
  } else {
    toks = S.tok->encode(p.r.prompt, true, false);
  }
  const int64_t n = (int64_t)toks.size(), ctx = S.sched->n_ctx();
  if (n < 1) throw api_error(400, "the prompt is empty", chat ? "messages" : "prompt", "invalid_value");
  if (n >= ctx)
    throw api_error(400,
                    "the prompt has " + std::to_string(n) + " tokens; this server's context is " + std::to_string(ctx) +
                        " tokens (prompt + completion)",
                    chat ? "messages" : "prompt", "context_length_exceeded");
  p.sr.max_tokens = p.r.max_tokens > 0 ? p.r.max_tokens : ctx - n;
  if (n + p.sr.max_tokens > ctx)
    throw api_error(400,
                    "max_tokens " + std::to_string(p.sr.max_tokens) + " + the prompt's " + std::to_string(n) +
                        " tokens exceed this server's context of " + std::to_string(ctx) + " tokens",
                    "max_tokens", "context_length_exceeded");
  std::string method = S.method, gqa = S.gqa;
  double density = S.density;
  try {
    if (!p.r.attn.empty()) method = canonical_method(p.r.attn);
  } catch (const error& e) {
    throw api_error(400, std::string("'attn': ") + e.what(), "attn", "invalid_value");
  }
  if (!p.r.gqa_mode.empty()) {
    if (p.r.gqa_mode != "head" && p.r.gqa_mode != "group")
      throw api_error(400, "'gqa_mode': expected head or group", "gqa_mode", "invalid_value");
    gqa = p.r.gqa_mode;
  }
  try {
    if (!p.r.density.empty()) density = parse_density_option(p.r.density);
  } catch (const error& e) {
    throw api_error(400, std::string("'density': ") + e.what(), "density", "invalid_value");
  }
  const std::string mode = method_has_gqa_mode(method) ? gqa : "";
  try {
    p.sr.policy = S.builder->make(method, mode, density, n);
    p.policy = method == "dense" ? "dense" : S.builder->spec_of(method, mode, density).str();
  } catch (const error& e) {
    throw api_error(400, std::string("'attn' ") + method + ": " + e.what(), "attn", "invalid_value");
  }
  p.sr.sampling.temp = (float)p.r.temperature;
  p.sr.sampling.top_p = (float)p.r.top_p;
  p.sr.sampling.seed = p.r.has_seed ? p.r.seed : S.seeds();
  p.sr.stop = p.r.stop;
  p.sr.ignore_eos = p.r.ignore_eos;
  return p;
}

void handle_completion(server_state& S, const httplib::Request& req, httplib::Response& res, bool chat) {
  prepared p = prepare(S, req.body, chat);
  auto ch = std::make_shared<channel>();
  auto sink = [ch](const serve::event& e) {
    std::lock_guard<std::mutex> lk(ch->mu);
    if (ch->gone) return false;
    ch->q.push_back(e);
    ch->cv.notify_one();
    return true;
  };
  int64_t id = 0;
  try {
    id = S.sched->submit(std::move(p.sr), sink);
  } catch (const error& e) {
    const std::string what = e.what();
    if (what.find("shutting down") != std::string::npos) throw api_error(503, what, {}, "unavailable", "server_error");
    throw api_error(400, what, {}, "invalid_value");
  }
  const std::string rid = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(id);
  const int64_t created = (int64_t)std::time(nullptr);
  if (!p.r.stream) {
    api_result out;
    out.policy = p.policy;
    for (;;) {
      std::unique_lock<std::mutex> lk(ch->mu);
      ch->cv.wait(lk, [&] { return !ch->q.empty(); });
      const serve::event e = std::move(ch->q.front());
      ch->q.pop_front();
      if (e.type == serve::event::kind::text) {
        out.text += e.text;
        continue;
      }
      if (e.type == serve::event::kind::error) throw api_error(503, e.error, {}, "unavailable", "server_error");
      out.finish_reason = e.finish_reason;
      out.prompt_tokens = e.prompt_tokens;
      out.completion_tokens = e.completion_tokens;
      out.shared_tokens = e.shared_tokens;
      out.density = e.density;
      break;
    }
    res.set_content(api_response(p.r, rid, created, S.model_id, out).dump(), "application/json");
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  serve::scheduler* sched = S.sched.get();
  const std::string model_id = S.model_id;
  auto gone = [ch, sched, id] {
    {
      std::lock_guard<std::mutex> lk(ch->mu);
      ch->gone = true;
    }
    sched->cancel(id);
  };
  res.set_chunked_content_provider(
      "text/event-stream",
      [ch, gone, rid, created, model_id, r = p.r, first = true](size_t, httplib::DataSink& sink) mutable {
        std::deque<serve::event> evs;
        {
          std::unique_lock<std::mutex> lk(ch->mu);
          ch->cv.wait_for(lk, std::chrono::milliseconds(250), [&] { return !ch->q.empty(); });
          evs.swap(ch->q);
        }
        if (evs.empty()) {
          if (sink.is_writable()) return true;
          gone();
          return false;
        }
        for (const serve::event& e : evs) {
          std::string out;
          bool last = false;
          if (e.type == serve::event::kind::text) {
            out = "data: " + api_chunk(r, rid, created, model_id, e.text, "", first).dump() + "\n\n";
            first = false;
          } else if (e.type == serve::event::kind::done) {
            if (first) out = "data: " + api_chunk(r, rid, created, model_id, "", "", true).dump() + "\n\n";
            out += "data: " + api_chunk(r, rid, created, model_id, "", e.finish_reason, false).dump() + "\n\n";
            out += "data: [DONE]\n\n";
            last = true;
          } else {
            out = "data: " + error_body(e.error, "server_error", "", "unavailable").dump() + "\n\n";
            last = true;
          }
          if (!sink.write(out.data(), out.size())) {
            gone();
            return false;
          }
          if (last) {
            sink.done();
            return true;
          }
        }
        return true;
      },
      [gone](bool success) {
        if (!success) gone();
      });
}

std::string metrics_text(const server_state& S) {
  const serve::metrics m = S.sched->snapshot();
  std::string s;
  auto metric = [&](const char* name, const char* type, const char* help, const std::string& samples) {
    s += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + samples;
  };
  auto one = [](const char* name, int64_t v) { return std::string(name) + " " + std::to_string(v) + "\n"; };
  metric("hashattn_requests_total", "counter", "Generation requests ended, by outcome.",
         "hashattn_requests_total{outcome=\"ok\"} " + std::to_string(m.requests_ok) +
             "\nhashattn_requests_total{outcome=\"failed\"} " + std::to_string(m.requests_failed) +
             "\nhashattn_requests_total{outcome=\"cancelled\"} " + std::to_string(m.requests_cancelled) + "\n");
  metric("hashattn_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
         one("hashattn_prompt_tokens_total", m.prompt_tokens));
  metric("hashattn_shared_prompt_tokens_total", "counter", "Prompt tokens taken from another request's KV pages.",
         one("hashattn_shared_prompt_tokens_total", m.shared_tokens));
  metric("hashattn_completion_tokens_total", "counter", "Generated tokens of finished requests.",
         one("hashattn_completion_tokens_total", m.completion_tokens));
  metric("hashattn_decode_steps_total", "counter", "Batched decode steps run.", one("hashattn_decode_steps_total", m.steps));
  metric("hashattn_queue_depth", "gauge", "Requests waiting to be admitted.", one("hashattn_queue_depth", m.queue_depth));
  metric("hashattn_running_requests", "gauge", "Requests admitted and not finished.",
         one("hashattn_running_requests", m.running));
  metric("hashattn_batch_size", "gauge", "Sequences in the last decode step.", one("hashattn_batch_size", m.last_batch));
  metric("hashattn_kv_pages_used", "gauge", "KV pages in use (running requests and the prefix cache).",
         one("hashattn_kv_pages_used", m.pages_used));
  metric("hashattn_kv_pages_total", "gauge", "KV pages of the pool.", one("hashattn_kv_pages_total", m.pages_total));
  metric("hashattn_cached_sequences", "gauge", "Finished requests kept for prefix sharing.",
         one("hashattn_cached_sequences", m.cached_seqs));
  metric("hashattn_http_requests_total", "counter", "HTTP requests received.",
         one("hashattn_http_requests_total", S.http_requests.load()));
  metric("hashattn_http_errors_total", "counter", "HTTP requests answered with an error status.",
         one("hashattn_http_errors_total", S.http_errors.load()));
  return s;
}

// Wraps a handler: api_error and hashattn::error become OpenAI-style error JSON.
httplib::Server::Handler guarded(server_state& S, std::function<void(const httplib::Request&, httplib::Response&)> f) {
  return [&S, f](const httplib::Request& req, httplib::Response& res) {
    try {
      f(req, res);
    } catch (const api_error& e) {
      reply_error(res, e);
    } catch (const error& e) {
      reply_error(res, api_error(400, e.what()));
    } catch (const std::exception& e) {
      reply_error(res, api_error(500, e.what(), {}, "internal_error", "server_error"));
    }
  };
}

void add_routes(httplib::Server& svr, server_state& S) {
  svr.set_pre_routing_handler([&S](const httplib::Request& req, httplib::Response& res) {
    S.http_requests++;
    if (!S.o.api_key.empty() && req.path.rfind("/v1/", 0) == 0 &&
        req.get_header_value("Authorization") != "Bearer " + S.o.api_key) {
      reply_error(res, api_error(401, "invalid or missing API key (Authorization: Bearer KEY)", {}, "invalid_api_key"));
      S.http_errors++;
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.set_post_routing_handler([&S](const httplib::Request&, httplib::Response& res) {
    if (res.status >= 400) S.http_errors++;
  });
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      reply_error(res, api_error(404, "no such endpoint: " + req.method + " " + req.path, {}, "not_found"));
    } else if (res.status == 413) {
      reply_error(res, api_error(413, "the request body is too large (see --max-body)", {}, "payload_too_large"));
    } else {
      reply_error(res, api_error(res.status, "bad request"));
    }
  });
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  svr.Get("/metrics", [&S](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(S), "text/plain; version=0.0.4");
  });
  svr.Get("/v1/models", [&S](const httplib::Request&, httplib::Response& res) {
    const json body = {{"object", "list"},
                       {"data", json::array({{{"id", S.model_id}, {"object", "model"}, {"created", 0},
                                              {"owned_by", "hashattn"}}})}};
    res.set_content(body.dump(), "application/json");
  });
  svr.Post("/v1/chat/completions", guarded(S, [&S](const httplib::Request& req, httplib::Response& res) {
             handle_completion(S, req, res, true);
           }));
  svr.Post("/v1/completions", guarded(S, [&S](const httplib::Request& req, httplib::Response& res) {
             handle_completion(S, req, res, false);
           }));
}

}  // namespace

int run_serve(const serve_options& o) {
  if (o.port < 0 || o.port > 65535) fail("--port", std::to_string(o.port), "0 .. 65535");
  if (o.parallel < 1 || o.parallel > 256) fail("--parallel", std::to_string(o.parallel), "1 .. 256");
  if (o.max_body < 64) fail("--max-body", std::to_string(o.max_body), ">= 64 bytes");
  // SIGTERM / SIGINT: the handler (on whichever thread the signal lands: OpenBLAS starts its own at
  // load time) writes to a pipe that one waiting thread reads.
  if (pipe(g_stop_pipe) != 0) fail("serve: cannot create a pipe for signals");
  struct sigaction sa = {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  server_state S(o);
  S.m = model::load(o.model);
  S.tok = tokenizer::from_gguf(S.m->file());
  S.tmpl = chat_template_from_gguf(S.m->file());
  if (!S.tmpl.warning.empty()) std::fprintf(stderr, "hashattn serve: warning: %s\n", S.tmpl.warning.c_str());
  S.model_id = std::filesystem::path(o.model).stem().string();
  policy_options po = o.pol;
  po.n_threads = o.threads;
  S.method = canonical_method(po.attn);
  if (split_list(po.attn).size() != 1 || split_list(po.gqa_mode).size() != 1 || po.density.find(',') != std::string::npos)
    fail("serve takes one --attn, --gqa-mode and --density (the default of requests)", po.attn + " / " + po.gqa_mode,
         "single values");
  S.gqa = po.gqa_mode;
  S.density = !po.density.empty() ? parse_density_option(po.density) : (po.budget > 0 ? 0.0 : 1.0 / 32);
  S.builder = std::make_unique<policy_builder>(*S.m, po);
  S.builder->prepare({S.method}, {S.density}, {});
  if (!po.hash_file.empty()) S.builder->need_hash(false);

  serve::scheduler_params sp;
  sp.max_seqs = o.parallel;
  sp.n_ctx = o.ctx;
  sp.n_threads = o.threads;
  sp.n_batch = o.n_batch;
  sp.share_prefix = !o.no_prefix_share;
  S.sched = std::make_unique<serve::scheduler>(*S.m, *S.tok, sp);

  httplib::Server svr;
  const size_t pool = (size_t)std::max(32, 4 * o.parallel + 16);  // a streaming response holds a thread
  svr.new_task_queue = [pool] { return new httplib::ThreadPool(pool); };
  svr.set_payload_max_length(o.max_body);
  svr.set_keep_alive_max_count(1000);
  add_routes(svr, S);
  if (!svr.bind_to_port(o.host, o.port))
    fail("serve: cannot listen on " + o.host + ":" + std::to_string(o.port), {}, {},
         "is the port in use? pick another with --port");
  std::fprintf(stderr,
               "hashattn serve: %s on http://%s:%d (model id '%s', %d parallel, context %lld, policy %s%s)\n",
               S.m->describe().c_str(), o.host.c_str(), o.port, S.model_id.c_str(), o.parallel,
               (long long)S.sched->n_ctx(), S.method.c_str(), o.api_key.empty() ? "" : ", API key required");
  std::thread waiter([&] {
    char c = 0;
    while (read(g_stop_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    if (c == 'q') return;  // listen ended by itself
    if (!o.quiet) std::fprintf(stderr, "hashattn serve: stopping: finishing running requests\n");
    S.sched->shutdown(true);
    S.sched->drain();
    svr.stop();
  });
  const bool listened = svr.listen_after_bind();
  if (!listened) {
    const char q = 'q';
    if (write(g_stop_pipe[1], &q, 1) < 0) std::perror("hashattn serve: pipe");
  }
  waiter.join();
  S.sched->shutdown(true);
  S.sched->join();
  const serve::metrics m = S.sched->snapshot();
  S.sched.reset();
  if (!o.quiet)
    std::fprintf(stderr, "hashattn serve: stopped after %lld requests (%lld failed, %lld cancelled); KV pages in use: %lld of %lld\n",
                 (long long)(m.requests_ok + m.requests_failed + m.requests_cancelled), (long long)m.requests_failed,
                 (long long)m.requests_cancelled, (long long)m.pages_used, (long long)m.pages_total);
  return 0;
}

}  // namespace hashattn::cli

#else

#include "hashattn/error.h"

namespace hashattn::cli {
int run_serve(const serve_options&) {
  fail("hashattn serve is not in this build", "no cpp-httplib", "a build with libcpp-httplib-dev",
       "run scripts/setup and rebuild (portable GPU builds leave the server out)");
}
}  // namespace hashattn::cli

#endif
