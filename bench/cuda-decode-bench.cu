// Decode-attention benchmark on the GPU: Llama-3.1-8B attention shape (32 query / 8 KV heads,
// head_dim 128, bf16 paged KV, page size 16), batch B and context n from the command line.
// Page layout [page][kv head][slot][d]: a KV head's 16 rows of a page are 4 KB contiguous.
// Per (B, n): our dense split-KV flash decoding, and our hash-sparse decode (encode the new key and
// the queries, select, attend) for both GQA modes and each density, with the time of each stage.
// Timing: each variant is captured as one CUDA graph over L layers (L distinct KV caches, codes and
// encoder weights, enough that the data is several times the L2), replayed; time / L per replay,
// CUDA events, median/min/max over the replays after warm-up. Writes JSON records (--json FILE).
// Keys and codes are random (the costs do not depend on their values); the new token's K/V are not
// written by the timed sparse step (both dense and sparse leave the KV append to the engine).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "hashattn/cuda.h"
#include "hashattn/error.h"

using namespace hashattn;
using namespace hashattn::cuda;

namespace {

void ck(cudaError_t e, const char* what, int line) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "cuda-decode-bench: %s failed (line %d): %s\n", what, line, cudaGetErrorString(e));
    std::exit(1);
  }
}
#define CK(x) ck((x), #x, __LINE__)

__global__ void fill_bf16(uint16_t* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    const float f = (float)((x >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f;
    p[i] = __bfloat16_as_ushort(__float2bfloat16_rn(f));
  }
}
__global__ void fill_u32(uint32_t* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t x = (i + 7) * 0xD1B54A32D192ED03ull ^ seed;
    x ^= x >> 32;
    x *= 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    p[i] = (uint32_t)x;
  }
}
__global__ void fill_f32(float* p, size_t n, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t x = (i + 3) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    p[i] = scale * ((float)((x >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f);
  }
}

template <class T>
T* dalloc(size_t n, std::vector<void*>& owned) {
  void* p = nullptr;
  CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  owned.push_back(p);
  return static_cast<T*>(p);
}

struct stats {
  double med = 0, min = 0, max = 0;
};

// Replays a graph that runs `layers` layers; per-layer milliseconds.
stats time_graph(cudaGraphExec_t ge, cudaStream_t s, int layers, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) CK(cudaGraphLaunch(ge, s));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / layers);
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front(), t.back()};
}

template <class F>
stats time_captured(F&& body, cudaStream_t s, int layers, int reps) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  body();
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  const stats r = time_graph(ge, s, layers, reps);
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  return r;
}

std::vector<double> parse_list(const char* s) {
  std::vector<double> v;
  std::string x(s);
  size_t i = 0;
  while (i < x.size()) {
    size_t j = x.find(',', i);
    if (j == std::string::npos) j = x.size();
    const std::string tok = x.substr(i, j - i);
    const size_t slash = tok.find('/');
    v.push_back(slash == std::string::npos ? std::atof(tok.c_str())
                                           : std::atof(tok.substr(0, slash).c_str()) / std::atof(tok.substr(slash + 1).c_str()));
    i = j + 1;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<double> Bs = {1, 8, 32}, ns = {8192, 32768, 131072, 524288}, dens = {1.0 / 8, 1.0 / 16, 1.0 / 32};
  const char* json_path = nullptr;
  int reps = 30;
  double min_bytes = 256e6;
  attend_impl impl = attend_impl::automatic;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cuda-decode-bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--batch") Bs = parse_list(next());
    else if (a == "--ctx") ns = parse_list(next());
    else if (a == "--density") dens = parse_list(next());
    else if (a == "--reps") reps = std::atoi(next());
    else if (a == "--json") json_path = next();
    else if (a == "--rotate-bytes") min_bytes = std::atof(next());
    else if (a == "--attend") {
      try {
        impl = attend_impl_parse(next());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "cuda-decode-bench: --attend: %s\n", e.what());
        return 2;
      }
    }
    else {
      std::fprintf(stderr, "usage: cuda-decode-bench [--batch 1,8,32] [--ctx 8192,...] [--density 1/8,...] [--reps N] [--attend auto|cores|tensor] [--json FILE]\n");
      return 2;
    }
  }
  std::string why;
  if (!device_available(&why)) {
    std::fprintf(stderr, "cuda-decode-bench: %s\n", why.c_str());
    return 1;
  }
  const int H = 32, HKV = 8, D = 128, PS = 16, BITS = 32, HID = 128;
  const int64_t sinks = 128, window = 128;
  std::string records;
  auto add = [&](const std::string& r) { records += (records.empty() ? "" : ",\n") + r; };
  std::printf("device: %s, %d SMs; attention kernel: %s\n", device_name().c_str(), device_sm_count(),
              attend_impl_name(impl));
  std::printf("%-3s %-7s %-9s %-8s %10s %10s %10s %10s %10s %9s\n", "B", "n", "mode", "density", "total_us",
              "encode_us", "select_us", "attend_us", "MB_moved", "GB/s");
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  for (double Bd : Bs)
    for (double nd : ns) {
      const int B = (int)Bd;
      const int64_t n = (int64_t)nd;
      const int64_t npp = (n + PS - 1) / PS;
      const size_t kv_elems = (size_t)B * npp * PS * HKV * D;
      const double kv_bytes = 2.0 * kv_elems * 2;
      const int L = (int)std::min<double>(16, std::max(1.0, std::ceil(min_bytes / kv_bytes)));
      size_t free_b = 0, total_b = 0;
      CK(cudaMemGetInfo(&free_b, &total_b));
      const double need = L * (kv_bytes + (double)B * H * n * 4 * 2) + 2e9;
      if (need > 0.92 * free_b) {
        std::printf("%-3d %-7lld skipped: needs %.1f GB, %.1f GB free\n", B, (long long)n, need / 1e9, free_b / 1e9);
        add("{\"B\":" + std::to_string(B) + ",\"n\":" + std::to_string(n) + ",\"impl\":\"skipped\",\"reason\":\"memory\"}");
        continue;
      }
      std::vector<void*> owned;
      // Page table: sequence b owns pages b*npp .. (shuffled within the pool by a fixed stride).
      std::vector<int32_t> pt((size_t)B * npp);
      const int64_t n_pages = (int64_t)B * npp;
      int64_t mult = 7919;
      while (std::__gcd<int64_t>(mult, n_pages) != 1) mult += 2;
      for (int64_t i = 0; i < n_pages; ++i) pt[i] = (int32_t)((i * mult) % n_pages);
      int32_t* d_pt = dalloc<int32_t>(pt.size(), owned);
      CK(cudaMemcpy(d_pt, pt.data(), pt.size() * 4, cudaMemcpyHostToDevice));
      std::vector<int32_t> lens(B, (int32_t)n);
      int32_t* d_len = dalloc<int32_t>(B, owned);
      CK(cudaMemcpy(d_len, lens.data(), B * 4, cudaMemcpyHostToDevice));
      const int64_t row = (n + 3) / 4 * 4;
      struct layer {
        kv_view kv;
        float* q;
        float* out;
        uint16_t* knew;
        code_view codes[2];
        mlp_device kmlp[2];
        mlp_device qmlp;
      };
      std::vector<layer> ls(L);
      uint64_t seed = 12345 + B * 1000003ull + n;
      auto mlp = [&](int n_enc) {
        mlp_device m;
        m.n_enc = n_enc;
        m.n_layers = 3;
        m.in_dim = D;
        m.hidden = HID;
        m.bits = BITS;
        const int dims[4] = {D, HID, HID, BITS};
        for (int l2 = 0; l2 < 3; ++l2) {
          const size_t nw = (size_t)n_enc * dims[l2] * dims[l2 + 1], nb = (size_t)n_enc * dims[l2 + 1];
          float* w = dalloc<float>(nw, owned);
          float* b = dalloc<float>(nb, owned);
          fill_f32<<<256, 256>>>(w, nw, seed++, 1.7f / std::sqrt((float)dims[l2]));
          fill_f32<<<256, 256>>>(b, nb, seed++, 0.1f);
          m.w[l2] = w;
          m.b[l2] = b;
        }
        return m;
      };
      for (int l = 0; l < L; ++l) {
        layer& y = ls[l];
        y.kv.k = dalloc<uint16_t>(kv_elems, owned);
        y.kv.v = dalloc<uint16_t>(kv_elems, owned);
        fill_bf16<<<4096, 256>>>((uint16_t*)y.kv.k, kv_elems, seed++);
        fill_bf16<<<4096, 256>>>((uint16_t*)y.kv.v, kv_elems, seed++);
        y.kv.type = dtype::bf16;
        y.kv.n_head_kv = HKV;
        y.kv.head_dim = D;
        y.kv.page_size = PS;
        // Page layout [page][kv head][slot][d] ("HND"): a KV head's rows of a page are contiguous.
        y.kv.stride_tok = D;
        y.kv.stride_head = (int64_t)PS * D;
        y.kv.stride_page = (int64_t)PS * HKV * D;
        y.kv.page_table = d_pt;
        y.kv.page_table_stride = npp;
        y.q = dalloc<float>((size_t)B * H * D, owned);
        fill_f32<<<64, 256>>>(y.q, (size_t)B * H * D, seed++, 1.f);
        y.out = dalloc<float>((size_t)B * H * D, owned);
        y.knew = dalloc<uint16_t>((size_t)B * HKV * D, owned);
        fill_bf16<<<64, 256>>>(y.knew, (size_t)B * HKV * D, seed++);
        for (int m = 0; m < 2; ++m) {
          const int nc = m ? HKV : H;
          y.codes[m].n_enc = nc;
          y.codes[m].stride_enc = row;
          y.codes[m].stride_seq = (int64_t)nc * row;
          uint32_t* words = dalloc<uint32_t>((size_t)B * nc * row, owned);
          fill_u32<<<4096, 256>>>(words, (size_t)B * nc * row, seed++);
          y.codes[m].codes = words;
          y.kmlp[m] = mlp(nc);
        }
        y.qmlp = mlp(H);
      }
      CK(cudaGetLastError());
      CK(cudaDeviceSynchronize());

      // Our dense flash decoding.
      {
        std::vector<attend_params> ap(L);
        size_t wsz = 1;
        for (int l = 0; l < L; ++l) {
          ap[l].batch = B;
          ap[l].n_head = H;
          ap[l].q = ls[l].q;
          ap[l].kv = ls[l].kv;
          ap[l].seq_len = d_len;
          ap[l].max_ctx = n;
          ap[l].out = ls[l].out;
          ap[l].impl = impl;
          wsz = std::max(wsz, attend_workspace_size(ap[l]));
        }
        void* ws = dalloc<char>(wsz, owned);
        workspace_clear(ws, wsz, s);
        const stats t = time_captured([&] { for (auto& a : ap) attend_run(a, ws, s); }, s, L, reps);
        const double bytes = 2.0 * B * n * HKV * D * 2;
        std::printf("%-3d %-7lld %-9s %-8s %10.1f %10s %10s %10.1f %10.1f %9.0f\n", B, (long long)n, "dense", "1",
                    t.med * 1e3, "-", "-", t.med * 1e3, bytes / 1e6, bytes / (t.med * 1e-3) / 1e9);
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "{\"B\":%d,\"n\":%lld,\"impl\":\"ours_dense\",\"layers\":%d,\"splits\":%d,\"ms\":%.6f,\"ms_min\":%.6f,"
                      "\"ms_max\":%.6f,\"bytes\":%.0f,\"gbps\":%.1f}",
                      B, (long long)n, L, attend_n_splits(ap[0]), t.med, t.min, t.max, bytes, bytes / (t.med * 1e-3) / 1e9);
        add(buf);
      }
      // Our sparse decode, both GQA modes, each density.
      for (int m = 0; m < 2; ++m)
        for (double de : dens) {
          std::vector<decode_params> dp(L);
          size_t wsz = 1;
          for (int l = 0; l < L; ++l) {
            decode_params& p = dp[l];
            p.batch = B;
            p.n_head = H;
            p.mode = m ? gqa_mode::per_group : gqa_mode::per_head;
            p.q = ls[l].q;
            p.k_new = ls[l].knew;
            p.v_new = ls[l].knew;
            p.kv_in_type = dtype::bf16;
            p.append_kv = false;
            p.kv = ls[l].kv;
            p.codes = ls[l].codes[m];
            p.key_mlp = ls[l].kmlp[m];
            p.query_mlp = ls[l].qmlp;
            p.seq_len = d_len;
            p.max_ctx = n;
            p.budget.density = de;
            p.budget.sinks = sinks;
            p.budget.window = window;
            p.out = ls[l].out;
            p.attend = impl;
            wsz = std::max(wsz, decode_workspace_size(p));
          }
          void* ws = dalloc<char>(wsz, owned);
          workspace_clear(ws, wsz, s);
          const stats tot = time_captured([&] { for (auto& p : dp) decode_run(p, ws, s); }, s, L, reps);
          stats st[5];
          for (int stage = 0; stage < 5; ++stage)
            st[stage] = time_captured([&] { for (auto& p : dp) decode_stage_run(p, stage, ws, s); }, s, L, reps);
          const int n_code = m ? HKV : H;
          const int n_lists = n_code;
          const double total_tok = (double)std::min<int64_t>(n, std::max<int64_t>((int64_t)std::floor(de * n + 1e-9), sinks + window));
          const double code_bytes = (double)B * n_code * n * 4;
          const double kv_sel = (double)B * n_lists * total_tok * 2 * D * 2;
          const double w_bytes = 4.0 * (n_code + H) * (D * HID + HID * HID + HID * BITS + 2 * HID + BITS);
          const double bytes = code_bytes + kv_sel + w_bytes;
          const char* mode = m ? "per_group" : "per_head";
          std::printf("%-3d %-7lld %-9s 1/%-6.0f %10.1f %10.1f %10.1f %10.1f %10.1f %9.0f\n", B, (long long)n, mode, 1 / de,
                      tot.med * 1e3, st[0].med * 1e3, st[1].med * 1e3, st[2].med * 1e3, bytes / 1e6,
                      bytes / (tot.med * 1e-3) / 1e9);
          char buf[1024];
          std::snprintf(buf, sizeof buf,
                        "{\"B\":%d,\"n\":%lld,\"impl\":\"ours_sparse\",\"mode\":\"%s\",\"density\":%.6f,\"layers\":%d,"
                        "\"ms\":%.6f,\"ms_min\":%.6f,\"ms_max\":%.6f,\"encode_ms\":%.6f,\"select_ms\":%.6f,\"attend_ms\":%.6f,\"select_hist_ms\":%.6f,\"select_compact_ms\":%.6f,"
                        "\"attended\":%.0f,\"code_bytes\":%.0f,\"kv_bytes\":%.0f,\"weight_bytes\":%.0f,\"bytes\":%.0f,"
                        "\"gbps\":%.1f,\"attend_gbps\":%.1f}",
                        B, (long long)n, mode, de, L, tot.med, tot.min, tot.max, st[0].med, st[1].med, st[2].med,
                        st[3].med, st[4].med, total_tok, code_bytes, kv_sel, w_bytes, bytes, bytes / (tot.med * 1e-3) / 1e9,
                        kv_sel / (st[2].med * 1e-3) / 1e9);
          add(buf);
        }
      CK(cudaDeviceSynchronize());
      for (void* p : owned) CK(cudaFree(p));
    }
  CK(cudaStreamDestroy(s));
  if (json_path) {
    FILE* f = std::fopen(json_path, "w");
    if (!f) {
      std::fprintf(stderr, "cuda-decode-bench: cannot write %s\n", json_path);
      return 1;
    }
    std::fprintf(f, "{\"device\":\"%s\",\"sms\":%d,\"attend\":\"%s\",\"records\":[\n%s\n]}\n", device_name().c_str(),
                 device_sm_count(), attend_impl_name(impl), records.c_str());
    std::fclose(f);
  }
  return 0;
}
