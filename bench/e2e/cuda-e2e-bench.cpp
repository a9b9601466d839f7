// End-to-end decode benchmark of the model on the GPU (gpu.h): for each policy, context and batch, a
// session of B sequences holding `ctx` tokens of synthetic K/V (and codes), the decode step captured as
// a CUDA graph, then single timed replays (CUDA events): median / min / max / p10 / p90 ms per step.
// Beside each row: bytes one step reads (weights + K/V of the attended tokens + codes) and the roofline
// time at the device copy bandwidth measured here. Speed only: synthetic contexts, no quality claim.
// Hash policies use the --hash file, or random encoders (32 bits, the trainer's default MLP) when none.
// usage: cuda-e2e-bench --model M [--hash H] [--batch 1,8,16] [--ctx 8192,32768,131072]
//        [--policy dense,hash/group@1/16,hash/group@1/32] [--reps 30] [--warmup 3] [--json FILE]
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/model-kernels.h"
#include "hashattn/cuda.h"
#include "hashattn/error.h"
#include "hashattn/gpu.h"
#include "hashattn/hash-file.h"
#include "hashattn/hash.h"
#include "hashattn/model.h"

using namespace hashattn;

namespace {

std::vector<int64_t> parse_list(const std::string& s, const char* what) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const long long x = std::stoll(item, &used);
      if (used != item.size() || x < 1) throw std::invalid_argument(item);
      v.push_back(x);
    } catch (const std::exception&) {
      fail(std::string("--") + what + " item", "'" + item + "'", "a positive integer");
    }
  }
  if (v.empty()) fail(std::string("--") + what, "empty", "a comma-separated list");
  return v;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(item);
  return v;
}

double quantile(std::vector<float> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * (double)(v.size() - 1);
  const size_t i = (size_t)pos;
  const double f = pos - (double)i;
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

// Device copy bandwidth (bytes read + written per second), a 2 GiB device-to-device copy.
double copy_gbps() {
  const size_t bytes = size_t(2) << 30;
  void* a = cuda::dev_alloc(bytes, "bandwidth probe");
  void* b = cuda::dev_alloc(bytes, "bandwidth probe");
  void* s = cuda::stream_create();
  void* e0 = cuda::event_create();
  void* e1 = cuda::event_create();
  cuda::mem_zero(a, bytes, s);
  std::vector<float> ms;
  for (int i = 0; i < 8; ++i) {
    cuda::event_record(e0, s);
    cuda::copy_d2d(b, a, bytes, s);
    cuda::event_record(e1, s);
    ms.push_back(cuda::event_ms(e0, e1));
  }
  cuda::event_destroy(e0);
  cuda::event_destroy(e1);
  cuda::stream_destroy(s);
  cuda::dev_free(a);
  cuda::dev_free(b);
  return 2.0 * (double)bytes / (quantile(ms, 0.5) * 1e-3) / 1e9;
}

struct row {
  std::string policy;
  int batch = 0;
  int64_t ctx = 0;
  bool fits = false;
  std::string why;
  std::vector<float> ms;
  int64_t attended = 0, bytes = 0, weight_bytes = 0, cache_bytes = 0;
};

std::string json_row(const row& r, double gbps) {
  std::string s = fmt::format(R"({{"impl": "ours", "policy": "{}", "batch": {}, "ctx": {}, "fits": {})", r.policy,
                              r.batch, r.ctx, r.fits ? "true" : "false");
  if (!r.fits) {
    std::string why = r.why;
    for (char& c : why)
      if (c == '"' || c == '\\' || c == '\n') c = ' ';
    return s + fmt::format(R"(, "why": "{}"}})", why);
  }
  const double med = quantile(r.ms, 0.5);
  s += fmt::format(R"(, "ms": {:.4f}, "ms_min": {:.4f}, "ms_max": {:.4f}, "ms_p10": {:.4f}, "ms_p90": {:.4f}, "reps": {})",
                   med, quantile(r.ms, 0), quantile(r.ms, 1), quantile(r.ms, 0.1), quantile(r.ms, 0.9), r.ms.size());
  s += fmt::format(R"(, "tokens_per_s": {:.1f}, "attended": {}, "weight_bytes": {}, "bytes": {}, "cache_bytes": {})",
                   r.batch * 1000.0 / med, r.attended, r.weight_bytes, r.bytes, r.cache_bytes);
  s += fmt::format(R"(, "roofline_ms": {:.4f}}})", (double)r.bytes / (gbps * 1e9) * 1e3);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"End-to-end decode benchmark of the model on the GPU (synthetic contexts)"};
  std::string model_path, hash_path, batches = "1,8,16", ctxs = "8192,32768,131072",
                                     policies = "dense,hash/group@1/16,hash/group@1/32", json;
  int reps = 30, warmup = 3, threads = 0;
  uint64_t seed = 1;
  app.add_option("--model", model_path, "GGUF model")->required();
  app.add_option("--hash", hash_path, "hash file (default: random encoders, speed only)");
  app.add_option("--batch", batches, "batch sizes");
  app.add_option("--ctx", ctxs, "contexts (tokens per sequence)");
  app.add_option("--policy", policies, "policies (dense, hash[/head|/group]@D, streaming@D)");
  app.add_option("--reps", reps, "timed steps per row")->check(CLI::Range(1, 100000));
  app.add_option("--warmup", warmup, "untimed steps per row (the first is eager, the second captures)")
      ->check(CLI::Range(2, 1000));
  app.add_option("--seed", seed, "synthetic contents and random encoders");
  app.add_option("-t,--threads", threads, "host threads for the upload")->check(CLI::Range(0, 4096));
  app.add_option("--json", json, "write the rows as JSON");
  int gemv_rows = gpu::session_params{}.gemv_rows;
  app.add_option("--gemv-rows", gemv_rows,
                 "projections of up to this many rows on our matrix-vector kernel, more on cuBLAS (0: cuBLAS always)")
      ->check(CLI::Range(0, cuda::gemv_max_rows))
      ->capture_default_str();
  std::string attend = "auto";
  app.add_option("--attend", attend, "attention kernel: auto, cores (CUDA cores) or tensor (tensor cores)")
      ->check(CLI::IsMember(cuda::attend_impl_names()));
  CLI11_PARSE(app, argc, argv);
  try {
    const auto B = parse_list(batches, "batch");
    const auto C = parse_list(ctxs, "ctx");
    const auto P = split(policies);
    if (!json.empty()) {
      std::ofstream probe(json, std::ios::app);
      if (!probe) fail("--json", json, "a writable file");
    }
    std::string why;
    if (!gpu::available(&why)) fail("cuda-e2e-bench: GPU", why, "a CUDA device");
    const double gbps = copy_gbps();
    auto m = model::load(model_path);
    std::fprintf(stderr, "model: %s\n", m->describe().c_str());
    auto dm = gpu::device_model::upload(*m, threads, true);
    const model_hparams& hp = dm->hparams();
    std::shared_ptr<const hash_weights> hw_file, hw_group, hw_head;
    if (!hash_path.empty()) hw_file = hash_weights_load_for(*m, hash_path);
    auto encoders = [&](const std::string& pol) -> std::shared_ptr<const hash_weights> {
      if (hw_file) return hw_file;
      const bool grp = policy_spec_parse(pol).gqa == gqa_mode::per_group;
      auto& slot = grp ? hw_group : hw_head;
      if (!slot) {
        auto w = std::make_shared<hash_weights>(
            hash_weights_alloc(hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim, 32, 3, 128, grp));
        hash_weights_init_random(*w, seed);
        slot = w;
      }
      return slot;
    };
    const std::string proj =
        gemv_rows > 0 ? "gemv for B <= " + std::to_string(gemv_rows) + ", cuBLAS above" : std::string("cuBLAS");
    std::printf("device %s, copy bandwidth %.0f GB/s, weights %.2f GB on the GPU; projections: %s; attention kernel: %s\n",
                cuda::device_name().c_str(), gbps, dm->device_bytes() / 1e9, proj.c_str(), attend.c_str());
    std::printf("%-18s %5s %8s %9s %9s %9s %10s %9s %9s\n", "policy", "B", "ctx", "ms", "p10", "p90", "tok/s",
                "GB/step", "roof ms");
    std::vector<row> rows;
    for (const std::string& pol : P) {
      for (int64_t ctx : C) {
        for (int64_t b : B) {
          row r;
          r.policy = pol;
          r.batch = (int)b;
          r.ctx = ctx;
          try {
            gpu::session_params sp;
            sp.batch = (int)b;
            sp.n_ctx = ctx + warmup + reps + 1;
            sp.policy = pol;
            sp.gemv_rows = gemv_rows;
            sp.attend = attend;
            if (!policy_spec_parse(pol).is_dense() && policy_spec_parse(pol).is_hash()) sp.hash = encoders(pol);
            gpu::session s(dm, sp);
            s.fill_synthetic(ctx, seed);
            s.run_steps(warmup);
            for (int i = 0; i < reps; ++i) r.ms.push_back(s.run_steps(1));
            r.fits = true;
            r.attended = s.attended(ctx);
            r.bytes = s.step_bytes(ctx);
            r.weight_bytes = dm->step_weight_bytes((int)b);
            r.cache_bytes = s.cache_bytes();
          } catch (const error& e) {
            if (std::string(e.what()).find("GPU memory") == std::string::npos) throw;
            r.why = e.what();
          }
          if (r.fits) {
            const double med = quantile(r.ms, 0.5);
            std::printf("%-18s %5d %8lld %9.3f %9.3f %9.3f %10.1f %9.2f %9.3f\n", pol.c_str(), r.batch, (long long)ctx,
                        med, quantile(r.ms, 0.1), quantile(r.ms, 0.9), r.batch * 1000.0 / med, r.bytes / 1e9,
                        (double)r.bytes / (gbps * 1e9) * 1e3);
          } else {
            std::printf("%-18s %5d %8lld  does not fit: %s\n", pol.c_str(), r.batch, (long long)ctx, r.why.c_str());
          }
          std::fflush(stdout);
          rows.push_back(std::move(r));
        }
      }
    }
    if (!json.empty()) {
      std::ofstream f(json);
      f << "{\"device\": \"" << cuda::device_name() << "\", \"copy_gbps\": " << fmt::format("{:.1f}", gbps)
        << ", \"gemv_rows\": " << gemv_rows << ", \"attend\": \"" << attend << "\""
        << ", \"model\": \"" << m->describe() << "\", \"shape\": {\"layers\": " << hp.n_layer
        << ", \"embd\": " << hp.n_embd << ", \"ff\": " << hp.n_ff << ", \"heads\": " << hp.n_head
        << ", \"kv_heads\": " << hp.n_head_kv << ", \"head_dim\": " << hp.head_dim << ", \"vocab\": " << hp.n_vocab
        << "},\n \"rows\": [\n";
      for (size_t i = 0; i < rows.size(); ++i) f << "  " << json_row(rows[i], gbps) << (i + 1 < rows.size() ? ",\n" : "\n");
      f << "]}\n";
      if (!f) fail("--json", json, "written");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda-e2e-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
