// Decode mat-vec per weight type (cpu/matvec.h): y = W x for a 4096 x 4096 weight (a Llama-8B-sized
// projection) on 1 and 2 threads, reporting weight bytes read per second. The integer paths (Q4_0, Q4_1,
// Q5_0, Q8_0, Q4_K, Q5_K, Q6_K) next to F16's and BF16's float dots and Q3_K, which has no integer path (dequantize a row,
// then a float dot): the baselines of the same run.
// Small-batch mat-mat (matmul_small) of the same weights with n_vec = 1, 4, 8, 16 vectors: "time/vec" is
// the time per vector.
//   ./build/bin/bench-matvec --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "cpu/matvec.h"
#include "hashattn/gguf.h"

namespace {
using namespace hashattn;

// Random blocks of type t with finite scales.
std::vector<uint8_t> random_weight(gguf::type t, int64_t rows, int64_t cols, std::mt19937_64& rng) {
  const size_t rb = gguf::row_bytes(t, cols);
  std::vector<uint8_t> w(rb * rows);
  for (auto& b : w) b = (uint8_t)rng();
  // Finite fp16 scales: every 16-bit word gets a small fp16 value (random bytes can be NaN/inf there).
  const size_t bb = gguf::type_block_bytes(t);
  for (size_t off = 0; off + bb <= w.size(); off += bb) {
    const uint16_t d = fp32_to_fp16(0.01f);
    if (t == gguf::type::Q6_K) {
      std::memcpy(&w[off + 208], &d, 2);
    } else if (t == gguf::type::Q3_K) {
      std::memcpy(&w[off + 108], &d, 2);
    } else if (t == gguf::type::F16 || t == gguf::type::BF16) {
      for (size_t i = 0; i < bb; i += 2) std::memcpy(&w[off + i], &d, 2);
    } else {
      std::memcpy(&w[off], &d, 2);
      if (t == gguf::type::Q4_1 || t == gguf::type::Q4_K || t == gguf::type::Q5_K) std::memcpy(&w[off + 2], &d, 2);
    }
  }
  return w;
}

void bm_matvec(benchmark::State& st, gguf::type t, int threads, int64_t rows = 4096, int64_t cols = 4096) {
  const size_t rb = gguf::row_bytes(t, cols);
  std::mt19937_64 rng(7);
  const std::vector<uint8_t> w = random_weight(t, rows, cols, rng);
  std::vector<float> x(cols), y(rows);
  for (auto& v : x) v = (float)((int)(rng() % 200) - 100) / 100.f;
  cpu::act_i16 xq;
  cpu::quantize_act_i16(x.data(), cols, xq);
  cpu::matvec_params p;
  p.type = t;
  p.w = w.data();
  p.row_bytes = rb;
  p.n_rows = rows;
  p.n_cols = cols;
  p.x = x.data();
  p.xq = &xq;
  p.y = y.data();
  for (auto _ : st) {
    cpu::matvec(p, threads);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GB/s"] = benchmark::Counter((double)w.size() * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.counters["bits/weight"] = 8.0 * (double)rb / (double)cols;
}

// The same weight times n_vec vectors in one matmul_small call; "time/vec" is the time per vector, to
// set against the mat-vec above (same type, same threads).
void bm_matmul_small(benchmark::State& st, gguf::type t, int n_vec, int threads) {
  const int64_t rows = 4096, cols = 4096;
  const size_t rb = gguf::row_bytes(t, cols);
  std::mt19937_64 rng(7);
  const std::vector<uint8_t> w = random_weight(t, rows, cols, rng);
  std::vector<float> x(n_vec * cols), y(n_vec * rows);
  for (auto& v : x) v = (float)((int)(rng() % 200) - 100) / 100.f;
  std::vector<cpu::act_i16> xq(n_vec);
  for (int v = 0; v < n_vec; ++v) cpu::quantize_act_i16(x.data() + v * cols, cols, xq[v]);
  cpu::matmul_small_params p;
  p.type = t;
  p.w = w.data();
  p.row_bytes = rb;
  p.n_rows = rows;
  p.n_cols = cols;
  p.n_vec = n_vec;
  p.x = x.data();
  p.ldx = cols;
  p.xq = xq.data();
  p.y = y.data();
  p.ldy = rows;
  for (auto _ : st) {
    cpu::matmul_small(p, threads);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["time/vec"] = benchmark::Counter((double)st.iterations() * n_vec,
                                             benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

int reg = [] {
  for (int t : {1, 2})
    for (gguf::type ty : {gguf::type::Q4_0, gguf::type::Q4_1, gguf::type::Q5_0, gguf::type::Q8_0, gguf::type::Q4_K,
                          gguf::type::Q5_K, gguf::type::Q6_K, gguf::type::F16, gguf::type::BF16, gguf::type::Q3_K})
      benchmark::RegisterBenchmark((std::string("matvec/") + gguf::type_name(ty) + "/4096x4096/threads:" + std::to_string(t)).c_str(),
                                   [ty, t](benchmark::State& st) { bm_matvec(st, ty, t); })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  for (int t : {1, 2})
    for (gguf::type ty : {gguf::type::Q4_0, gguf::type::Q4_1, gguf::type::Q8_0, gguf::type::Q4_K, gguf::type::Q6_K,
                          gguf::type::F16})
      for (int nv : {1, 4, 8, 16})
        benchmark::RegisterBenchmark((std::string("matmul_small/") + gguf::type_name(ty) + "/4096x4096/n_vec:" +
                                      std::to_string(nv) + "/threads:" + std::to_string(t)).c_str(),
                                     bm_matmul_small, ty, nv, t)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
  // The shapes that dominate a decode step of the Q4_K_M files (docs/PERFORMANCE.md): Gemma 3 270M's tied
  // Q8_0 output matrix (262,144 x 640, 178 MB: streamed from memory every token) and its Q5_0 FFN gate / up,
  // SmolLM2-135M's Q8_0 output (49,152 x 576) and Q5_0 FFN gate / up (1,536 x 576), 1 thread.
  struct shape { gguf::type t; int64_t rows, cols; };
  for (shape s : {shape{gguf::type::Q8_0, 262144, 640}, shape{gguf::type::Q5_0, 2048, 640},
                  shape{gguf::type::Q8_0, 49152, 576}, shape{gguf::type::Q5_0, 1536, 576},
                  shape{gguf::type::Q6_K, 640, 2048}, shape{gguf::type::Q4_K, 640, 2048}})
    benchmark::RegisterBenchmark((std::string("matvec_model/") + gguf::type_name(s.t) + "/" + std::to_string(s.rows) + "x" +
                                  std::to_string(s.cols) + "/threads:1").c_str(),
                                 [s](benchmark::State& st) { bm_matvec(st, s.t, 1, s.rows, s.cols); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
