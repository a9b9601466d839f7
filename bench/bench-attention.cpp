// One layer's decode attention on the CPU: dense vs hash sparse (select + attend) at densities 1/8,
// 1/16, 1/32 in both GQA modes, for SmolLM2's shape (9 q / 3 kv heads, d 64) and Llama-3.1-8B's
// (32 / 8, d 128), fp16 KV [t][h][d], n = 4K .. 256K, 1 thread and all threads; plus the memory
// roofline (memcpy and read-only bandwidth) measured in the same binary.
// Lines: dense/<shape>/n:N/threads:T, hash_select/... (query MLP encode + score + histogram select),
// hash_total/... (select + sparse attention), memcpy/threads:T, read/threads:T.
// bytes_per_second counts the bytes each op must move: dense K+V; select the key codes; total codes +
// the selected K/V rows; memcpy read + write. Run:
//   build/bin/bench-attention --benchmark_repetitions=3 --benchmark_format=json > out.json
// Options (environment): HASHATTN_BENCH_MAX_N (default 262144) limits the contexts.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <sys/mman.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/half.h"
#include "cpu/cpu-kernels.h"
#include "hashattn/hash.h"
#include "hashattn/policy.h"

using namespace hashattn;

namespace {

struct shape_def {
  const char* name;
  int n_head, n_kv, d;
};
const shape_def shapes[] = {{"smollm2", 9, 3, 64}, {"llama8b", 32, 8, 128}};

// Large buffers on 2 MiB boundaries with transparent huge pages requested (what a KV cache should do).
struct big_buffer {
  void* p = nullptr;
  size_t bytes = 0;
  explicit big_buffer(size_t b) : bytes(b) {
    const size_t al = (size_t)2 << 20;
    p = std::aligned_alloc(al, (b + al - 1) / al * al);
    madvise(p, (b + al - 1) / al * al, MADV_HUGEPAGE);
  }
  ~big_buffer() { std::free(p); }
};

uint64_t mix(uint64_t& s) {  // xorshift64*
  s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
  return s * 2685821657736338717ull;
}

struct layer_data {
  std::unique_ptr<big_buffer> k, v;
  kv_view kv;
  std::vector<float> q;
};

// One layer's fp16 KV cache per (shape, n), built once and shared by every line.
layer_data& get_layer(const shape_def& s, int64_t n) {
  static std::map<std::pair<std::string, int64_t>, std::unique_ptr<layer_data>> cache;
  auto& slot = cache[{s.name, n}];
  if (slot) return *slot;
  slot = std::make_unique<layer_data>();
  layer_data& L = *slot;
  const size_t elems = (size_t)n * s.n_kv * s.d;
  L.k = std::make_unique<big_buffer>(elems * 2);
  L.v = std::make_unique<big_buffer>(elems * 2);
  uint16_t* k = (uint16_t*)L.k->p;
  uint16_t* v = (uint16_t*)L.v->p;
#pragma omp parallel
  {
    uint64_t st = 0x9e3779b97f4a7c15ull ^ (uint64_t)(omp_get_thread_num() + 1) * 7919;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < (int64_t)elems; i++) {
      const uint64_t r = mix(st);
      k[i] = fp32_to_fp16(((float)(r & 0xffff) / 32768.f - 1.f));
      v[i] = fp32_to_fp16(((float)((r >> 16) & 0xffff) / 32768.f - 1.f));
    }
  }
  L.kv = {k, v, dtype::f16, n, s.n_kv, s.d, (int64_t)s.n_kv * s.d, s.d};
  uint64_t st = 12345;
  L.q.resize((size_t)s.n_head * s.d);
  for (float& x : L.q) x = (float)(mix(st) & 0xffff) / 32768.f - 1.f;
  return L;
}

double kv_bytes(const shape_def& s, int64_t n) { return (double)n * s.n_kv * s.d * 2 * 2; }

void bm_dense(benchmark::State& st, shape_def s, int64_t n, int threads) {
  layer_data& L = get_layer(s, n);
  std::vector<float> out((size_t)s.n_head * s.d);
  attn_decode_params p;
  p.q = L.q.data();
  p.kv = L.kv;
  p.n_head = s.n_head;
  p.scale = 1.f / std::sqrt((float)s.d);
  p.out = out.data();
  p.n_threads = threads;
  for (auto _ : st) {
    attn_decode_cpu(p);
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed((int64_t)(st.iterations() * kv_bytes(s, n)));
  st.counters["n"] = (double)n;
  st.counters["bytes"] = kv_bytes(s, n);
}

// Hash state for one (shape, n, mode): random 3-layer encoders (hidden 128, 32 bits), the key codes
// of all n keys in a code store (per query head for per_head, per KV head for per_group).
struct hash_state {
  hash_weights w;
  hash_code_store store;
};
hash_state& get_hash(const shape_def& s, int64_t n, gqa_mode m) {
  static std::map<std::tuple<std::string, int64_t, int>, std::unique_ptr<hash_state>> cache;
  auto& slot = cache[{s.name, n, (int)m}];
  if (slot) return *slot;
  slot = std::make_unique<hash_state>();
  hash_state& H = *slot;
  const bool kpg = m == gqa_mode::per_group;
  H.w = hash_weights_alloc(1, s.n_head, s.n_kv, s.d, 32, 3, 128, kpg);
  hash_weights_init_random(H.w, 7, 0.05f);
  H.store.reset(1, H.w.n_key_enc(), 32, n);
  // Random key codes (encoding all n keys with the MLP here would dominate the setup time; the
  // encoder is measured by the tests' correctness and by hash_select's query encoding).
  uint32_t* c = (uint32_t*)H.store.row(0, 0);
  uint64_t st = 99;
  for (int e = 0; e < H.w.n_key_enc(); e++)
    for (int64_t t = 0; t < n; t++) c[e * H.store.stride_enc() + t] = (uint32_t)mix(st);
  H.store.commit(0, 0, n);
  return H;
}

struct hash_step {
  hash_encode_params enc;
  hash_select_params sel;
  std::vector<uint32_t> qcodes;
  index_lists lists;
  std::vector<float> out;
  attn_decode_params attn;
};

void setup_step(hash_step& h, const shape_def& s, int64_t n, gqa_mode m, int inv_density, int threads) {
  layer_data& L = get_layer(s, n);
  hash_state& H = get_hash(s, n, m);
  h.qcodes.assign(s.n_head, 0);
  h.enc.mlp = H.w.query(0);
  h.enc.x = L.q.data();
  h.enc.n_rows = 1;
  h.enc.x_stride_row = (int64_t)s.n_head * s.d;
  h.enc.x_stride_head = s.d;
  h.enc.codes = h.qcodes.data();
  h.enc.code_stride_enc = 1;
  h.enc.n_threads = threads;
  h.sel.keys = H.store.view(0);
  h.sel.q_codes = h.qcodes.data();
  h.sel.n_head = s.n_head;
  h.sel.n_head_kv = s.n_kv;
  h.sel.mode = m;
  h.sel.budget = {1.0 / inv_density, 0, 128, 128};
  const int n_lists = hash_select_n_lists(h.sel);
  const int64_t total = budget_tokens(h.sel.budget, n);
  h.lists.stride = total;
  h.lists.per_group = m == gqa_mode::per_group;
  h.lists.idx.assign((size_t)n_lists * total, 0);
  h.lists.count.assign(n_lists, 0);
  h.sel.idx = h.lists.idx.data();
  h.sel.count = h.lists.count.data();
  h.sel.idx_stride = total;
  h.sel.n_threads = threads;
  h.out.assign((size_t)s.n_head * s.d, 0.f);
  h.attn.q = L.q.data();
  h.attn.kv = L.kv;
  h.attn.n_head = s.n_head;
  h.attn.scale = 1.f / std::sqrt((float)s.d);
  h.attn.out = h.out.data();
  h.attn.n_threads = threads;
  attn_params_set_lists(h.attn, h.lists);
}

void bm_hash(benchmark::State& st, shape_def s, int64_t n, int threads, int inv_density, gqa_mode m, bool attend) {
  hash_step h;
  setup_step(h, s, n, m, inv_density, threads);
  for (auto _ : st) {
    hash_encode_cpu(h.enc);
    hash_select_cpu(h.sel);
    if (attend) attn_decode_cpu(h.attn);
    benchmark::DoNotOptimize(h.out.data());
  }
  const int n_lists = hash_select_n_lists(h.sel);
  const double code_bytes = (double)n * h.sel.keys.n_enc * 4;
  double rows = 0;
  for (int r = 0; r < n_lists; r++) rows += h.lists.count[r];
  const double sel_kv = rows * s.d * 2 * 2;
  const double bytes = code_bytes + (attend ? sel_kv : 0);
  st.SetBytesProcessed((int64_t)(st.iterations() * bytes));
  st.counters["n"] = (double)n;
  st.counters["bytes"] = bytes;
  st.counters["density"] = (double)h.lists.count[0] / n;
}

constexpr size_t roof_bytes = (size_t)512 << 20;
void bm_memcpy(benchmark::State& st, int threads) {
  static big_buffer a(roof_bytes), b(roof_bytes);
  std::memset(a.p, 1, roof_bytes);
  std::memset(b.p, 2, roof_bytes);
  for (auto _ : st) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int c = 0; c < 64; c++)
      std::memcpy((char*)b.p + c * (roof_bytes / 64), (char*)a.p + c * (roof_bytes / 64), roof_bytes / 64);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed((int64_t)(st.iterations() * 2 * roof_bytes));
}
void bm_read(benchmark::State& st, int threads) {
  static big_buffer a(roof_bytes);
  std::memset(a.p, 1, roof_bytes);
  const uint64_t* x = (const uint64_t*)a.p;
  const int64_t n = roof_bytes / 8;
  for (auto _ : st) {
    uint64_t s = 0;
#pragma omp parallel for num_threads(threads) reduction(^ : s) schedule(static)
    for (int64_t i = 0; i < n; i++) s ^= x[i];
    benchmark::DoNotOptimize(s);
  }
  st.SetBytesProcessed((int64_t)(st.iterations() * roof_bytes));
}

void register_all() {
  const int all = omp_get_max_threads();
  std::vector<int> thr = {1};
  if (all > 1) thr.push_back(all);
  int64_t max_n = 262144;
  if (const char* e = std::getenv("HASHATTN_BENCH_MAX_N")) max_n = std::atoll(e);
  for (int t : thr) {
    benchmark::RegisterBenchmark(("memcpy/threads:" + std::to_string(t)).c_str(), bm_memcpy, t)
        ->UseRealTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("read/threads:" + std::to_string(t)).c_str(), bm_read, t)
        ->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  for (const shape_def& s : shapes)
    for (int64_t n : {4096, 16384, 65536, 262144}) {
      if (n > max_n) continue;
      for (int t : thr) {
        const std::string tail = std::string("/") + s.name + "/n:" + std::to_string(n) + "/threads:" + std::to_string(t);
        benchmark::RegisterBenchmark(("dense" + tail).c_str(), bm_dense, s, n, t)
            ->UseRealTime()->Unit(benchmark::kMicrosecond);
        for (gqa_mode m : {gqa_mode::per_head, gqa_mode::per_group})
          for (int inv : {8, 16, 32}) {
            const std::string mid = std::string(m == gqa_mode::per_head ? "/per_head" : "/per_group") +
                                    "/density:1_" + std::to_string(inv);
            benchmark::RegisterBenchmark(("hash_select" + mid + tail).c_str(), bm_hash, s, n, t, inv, m, false)
                ->UseRealTime()->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("hash_total" + mid + tail).c_str(), bm_hash, s, n, t, inv, m, true)
                ->UseRealTime()->Unit(benchmark::kMicrosecond);
          }
      }
    }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("simd_target", cpu_simd_target());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
