// Example: hash-sparse decode attention inside a serving engine's paged KV cache, through the C++ API
// on raw device pointers and strides (hashattn/cuda.h). The "engine" here owns:
//   a page pool  K/V: [n_pages][page_size][n_head_kv][head_dim] bf16, a page table per sequence,
//   a code store [seq][n_head_kv][max_ctx] uint32 (per_group mode: one code per key per KV head),
//   per-layer hash encoder weights (random here; trained ones come from `hashattn train`).
// It prefills a prompt per sequence (KV append + key codes for all prompt tokens in one launch),
// then decodes steps: one layer's decode attention (append the new token, encode the queries, select
// 1/32 of the context, attend) is captured once as a CUDA graph and replayed every step while the
// sequence lengths, which live in device memory, grow.
// Build: cmake --preset cuda && cmake --build build-cuda --target example-paged-decode
// Run:   ./build-cuda/bin/example-paged-decode [prompt_tokens] [steps]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "hashattn/cuda.h"
#include "hashattn/error.h"

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

__global__ void fill_uniform(float* p, size_t n, unsigned seed, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned x = (unsigned)i * 2654435761u ^ seed;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    p[i] = scale * ((x >> 8) * (1.f / 16777216.f) * 2.f - 1.f);
  }
}

__global__ void to_bf16(const float* src, __nv_bfloat16* dst, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

template <class T>
T* dev(size_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
  return static_cast<T*>(p);
}

float* random_dev(size_t n, unsigned seed, float scale) {
  float* p = dev<float>(n);
  fill_uniform<<<256, 256>>>(p, n, seed, scale);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hashattn;
  using namespace hashattn::cuda;
  const int prompt = argc > 1 ? std::atoi(argv[1]) : 32768;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 8;
  std::string why;
  if (!device_available(&why)) {
    std::fprintf(stderr, "example-paged-decode: %s\n", why.c_str());
    return 1;
  }
  try {
    // Engine configuration: Llama-3.1-8B attention, 4 sequences, pages of 16 tokens.
    const int B = 4, H = 32, HKV = 8, D = 128, PS = 16;
    const int64_t max_ctx = prompt + steps;
    const int64_t pages_per_seq = (max_ctx + PS - 1) / PS;
    const int64_t n_pages = B * pages_per_seq;

    // 1. The engine's memory: page pool, page tables (pages handed out interleaved), code store.
    const int64_t page_elems = (int64_t)PS * HKV * D;
    __nv_bfloat16* k_pool = dev<__nv_bfloat16>(n_pages * page_elems);
    __nv_bfloat16* v_pool = dev<__nv_bfloat16>(n_pages * page_elems);
    std::vector<int32_t> table(B * pages_per_seq);
    for (int b = 0; b < B; ++b)
      for (int64_t i = 0; i < pages_per_seq; ++i) table[b * pages_per_seq + i] = (int32_t)(i * B + b);
    int32_t* d_table = dev<int32_t>(table.size());
    check(cudaMemcpy(d_table, table.data(), table.size() * 4, cudaMemcpyHostToDevice), "page table");
    const int64_t code_row = (max_ctx + 3) / 4 * 4;
    uint32_t* codes = dev<uint32_t>((size_t)B * HKV * code_row);

    kv_view kv;  // the core view, batched: page table [B, pages_per_seq]
    kv.k = k_pool;
    kv.v = v_pool;
    kv.type = dtype::bf16;
    kv.n_head_kv = HKV;
    kv.head_dim = D;
    kv.page_size = PS;
    kv.stride_page = page_elems;
    kv.stride_tok = (int64_t)HKV * D;
    kv.stride_head = D;
    kv.page_table = d_table;
    kv.page_table_stride = pages_per_seq;
    code_view cs;  // 32-bit words, one row of tokens per code head
    cs.codes = codes;
    cs.n_enc = HKV;
    cs.stride_seq = HKV * code_row;
    cs.stride_enc = code_row;

    // 2. Hash encoders of this layer (d -> 128 -> 128 -> 32 bits): keys per KV head, queries per head.
    auto make_mlp = [&](int n_enc, unsigned seed) {
      mlp_device m;
      m.n_enc = n_enc;
      m.n_layers = 3;
      m.in_dim = D;
      m.hidden = 128;
      m.bits = 32;
      const int dims[4] = {D, 128, 128, 32};
      for (int l = 0; l < 3; ++l) {
        m.w[l] = random_dev((size_t)n_enc * dims[l] * dims[l + 1], seed + 2 * l, 1.7f / std::sqrt((float)dims[l]));
        m.b[l] = random_dev((size_t)n_enc * dims[l + 1], seed + 2 * l + 1, 0.1f);
      }
      return m;
    };
    const mlp_device key_mlp = make_mlp(HKV, 100), query_mlp = make_mlp(H, 200);

    // 3. Prefill: the prompt's post-RoPE K/V (random here) appended and key-encoded in one launch.
    const size_t pre = (size_t)B * prompt * HKV * D;
    float* k_f = random_dev(pre, 1, 1.f);
    float* v_f = random_dev(pre, 2, 1.f);
    __nv_bfloat16* k_pre = dev<__nv_bfloat16>(pre);
    __nv_bfloat16* v_pre = dev<__nv_bfloat16>(pre);
    to_bf16<<<1024, 256>>>(k_f, k_pre, pre);
    to_bf16<<<1024, 256>>>(v_f, v_pre, pre);
    int32_t* d_pos0 = dev<int32_t>(B);
    check(cudaMemset(d_pos0, 0, B * 4), "pos0");
    encode_params e;
    e.batch = B;
    e.n_head = H;
    e.n_head_kv = HKV;
    e.head_dim = D;
    e.mode = gqa_mode::per_group;
    e.n_new = prompt;
    e.k_new = k_pre;
    e.v_new = v_pre;
    e.kv_in_type = dtype::bf16;
    e.pos0 = d_pos0;
    e.kv = kv;
    e.key_mlp = key_mlp;
    e.codes = cs;
    encode_run(e, nullptr);
    check(cudaDeviceSynchronize(), "prefill");

    // 4. Decode: one layer's step as a CUDA graph; lengths in device memory grow between replays.
    std::vector<int32_t> len(B, prompt + 1);
    int32_t* d_len = dev<int32_t>(B);
    check(cudaMemcpy(d_len, len.data(), B * 4, cudaMemcpyHostToDevice), "lengths");
    float* q = random_dev((size_t)B * H * D, 3, 1.f);
    __nv_bfloat16* k_new = dev<__nv_bfloat16>((size_t)B * HKV * D);
    __nv_bfloat16* v_new = dev<__nv_bfloat16>((size_t)B * HKV * D);
    float* out = dev<float>((size_t)B * H * D);
    decode_params p;
    p.batch = B;
    p.n_head = H;
    p.mode = gqa_mode::per_group;
    p.q = q;
    p.k_new = k_new;
    p.v_new = v_new;
    p.kv_in_type = dtype::bf16;
    p.kv = kv;
    p.codes = cs;
    p.key_mlp = key_mlp;
    p.query_mlp = query_mlp;
    p.seq_len = d_len;
    p.max_ctx = max_ctx;
    p.budget.density = 1.0 / 32;
    p.budget.sinks = 128;
    p.budget.window = 128;
    p.out = out;
    const size_t ws_bytes = decode_workspace_size(p);
    void* ws = dev<char>(ws_bytes);
    cudaStream_t s;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
    workspace_clear(ws, ws_bytes, s);
    cudaGraph_t g;
    cudaGraphExec_t ge;
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), "capture");
    decode_run(p, ws, s);
    check(cudaStreamEndCapture(s, &g), "end capture");
    check(cudaGraphInstantiate(&ge, g, 0), "instantiate");
    cudaEvent_t t0, t1;
    check(cudaEventCreate(&t0), "event");
    check(cudaEventCreate(&t1), "event");
    std::vector<float> h_out((size_t)B * H * D);
    for (int step = 0; step < steps; ++step) {
      // The model would produce q, k_new, v_new here (post-RoPE); random stand-ins.
      fill_uniform<<<64, 256, 0, s>>>(q, (size_t)B * H * D, 1000 + step, 1.f);
      check(cudaMemcpyAsync(d_len, len.data(), B * 4, cudaMemcpyHostToDevice, s), "lengths");
      check(cudaEventRecord(t0, s), "record");
      check(cudaGraphLaunch(ge, s), "graph launch");
      check(cudaEventRecord(t1, s), "record");
      check(cudaMemcpyAsync(h_out.data(), out, h_out.size() * 4, cudaMemcpyDeviceToHost, s), "out");
      check(cudaStreamSynchronize(s), "step");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, t0, t1), "elapsed");
      double sum = 0;
      for (float x : h_out) sum += std::fabs(x);
      std::printf("step %d: context %d, attention of one layer %.1f us, mean |out| %.5f\n", step, len[0], ms * 1e3,
                  sum / h_out.size());
      for (auto& l : len) l += 1;
    }
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    cudaStreamDestroy(s);
  } catch (const hashattn::error& err) {
    std::fprintf(stderr, "example-paged-decode: %s\n", err.what());
    return 1;
  }
  return 0;
}
