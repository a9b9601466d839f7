// The model's layers on the GPU (model-kernels.h): embedding rows, RMSNorm, SwiGLU, bias + RoPE + K/V
// store, streaming lists, sampling, synthetic fills. Row kernels use one block per token row.
#include <cfloat>

#include "cuda/common.cuh"
#include "cuda/model-kernels.h"

namespace hashattn {
namespace cuda {
namespace {

using detail::as_stream;

__device__ __forceinline__ float bf16_to_f(uint16_t u) { return __bfloat162float(__ushort_as_bfloat16(u)); }
__device__ __forceinline__ uint16_t f_to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

// Block-wide sum (blockDim.x a multiple of 32, <= 1024).
__device__ float block_sum(float v, float* sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float s = 0;
  if (warp == 0) {
    s = lane < nw ? sh[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) sh[32] = s;
  }
  __syncthreads();
  s = sh[32];
  __syncthreads();
  return s;
}

__global__ void embed_kernel(const uint16_t* table, int64_t n_vocab, int dim, const int32_t* ids, float* x,
                             int32_t* advance) {
  const int64_t i = blockIdx.x;
  int32_t id = ids[i];
  if (id < 0 || id >= n_vocab) id = 0;  // the host checks ids before they reach the device
  const uint16_t* row = table + (int64_t)id * dim;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) x[i * dim + j] = bf16_to_f(row[j]);
  if (advance && threadIdx.x == 0) advance[i] += 1;
}

__global__ void rms_norm_kernel(const float* x, const float* w, int dim, float eps, uint16_t* y) {
  __shared__ float sh[33];
  const float* xr = x + (int64_t)blockIdx.x * dim;
  float ss = 0;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) ss += xr[j] * xr[j];
  ss = block_sum(ss, sh);
  const float r = rsqrtf(ss / (float)dim + eps);
  uint16_t* yr = y + (int64_t)blockIdx.x * dim;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) yr[j] = f_to_bf16(xr[j] * r * w[j]);
}

__global__ void to_bf16_kernel(const float* x, int64_t count, uint16_t* y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = f_to_bf16(x[i]);
}

__global__ void swiglu_kernel(const float* gu, int n_ff, uint16_t* h) {
  const float* g = gu + (int64_t)blockIdx.x * 2 * n_ff;
  const float* u = g + n_ff;
  uint16_t* hr = h + (int64_t)blockIdx.x * n_ff;
  for (int j = threadIdx.x; j < n_ff; j += blockDim.x) {
    const float a = g[j];
    hr[j] = f_to_bf16(a / (1.f + __expf(-a)) * u[j]);
  }
}

// One block per token row; threads over (head, pair). Angles in double: positions up to 2^31.
__global__ void qkv_rope_kernel(qkv_params p) {
  const int64_t t = blockIdx.x;
  const int d = p.head_dim, H = p.n_head, G = p.n_head_kv;
  const int width = (H + 2 * G) * d;
  int seq;
  int64_t pos;
  if (p.seq_len) {
    seq = (int)t;
    pos = (int64_t)p.seq_len[t] - 1;
  } else {
    seq = p.seq;
    pos = p.pos0 + t;
  }
  extern __shared__ float row[];  // [width] after bias and RoPE
  const float* src = p.qkv + t * width;
  for (int j = threadIdx.x; j < width; j += blockDim.x) row[j] = src[j] + (p.bias ? p.bias[j] : 0.f);
  __syncthreads();
  const int half = p.rope_dims / 2;
  // q heads then k heads get RoPE; each thread takes (head, pair) items.
  for (int it = threadIdx.x; it < (H + G) * half; it += blockDim.x) {
    const int h = it / half, i = it % half;
    double theta = (double)pos * pow((double)p.rope_base, -2.0 * i / (double)p.rope_dims);
    if (p.freq_factors) theta /= (double)p.freq_factors[i];
    double sd, cd;
    sincos(theta, &sd, &cd);
    const float c = (float)cd, s = (float)sd;
    float* v = row + h * d;
    const int ia = p.neox ? i : 2 * i, ib = p.neox ? i + half : 2 * i + 1;
    const float a = v[ia], b = v[ib];
    v[ia] = a * c - b * s;
    v[ib] = a * s + b * c;
  }
  __syncthreads();
  for (int j = threadIdx.x; j < H * d; j += blockDim.x) p.q_out[t * H * d + j] = row[j];
  const int64_t page = p.kv.page_table[(int64_t)seq * p.kv.page_table_stride + pos / p.kv.page_size];
  const int64_t base = page * p.kv.stride_page + (pos % p.kv.page_size) * p.kv.stride_tok;
  uint16_t* K = static_cast<uint16_t*>(const_cast<void*>(p.kv.k));  // the append writes through the view
  uint16_t* V = static_cast<uint16_t*>(const_cast<void*>(p.kv.v));
  for (int j = threadIdx.x; j < G * d; j += blockDim.x) {
    const int g = j / d, e = j % d;
    const float kval = row[H * d + j], vval = row[(H + G) * d + j];
    const int64_t off = base + g * p.kv.stride_head + e;
    const bool f16 = p.kv.type == dtype::f16;
    const uint16_t kh = f16 ? __half_as_ushort(__float2half_rn(kval)) : f_to_bf16(kval);
    K[off] = kh;
    V[off] = f16 ? __half_as_ushort(__float2half_rn(vval)) : f_to_bf16(vval);
    // The key as the cache holds it: its code is what a policy computes from the cache (as on the CPU).
    if (p.k_out)
      p.k_out[t * G * d + j] = f16 ? __half2float(__ushort_as_half(kh)) : __bfloat162float(__ushort_as_bfloat16(kh));
  }
}

__global__ void window_lists_kernel(const int32_t* seq_len, int n_lists, int64_t sinks, int64_t window, int32_t* idx,
                                    int32_t* idx_count, int64_t idx_stride) {
  const int b = blockIdx.y, r = blockIdx.x;
  const int64_t n = seq_len[b];
  const int64_t s = sinks < n ? sinks : n;
  const int64_t w = window < n - s ? window : n - s;
  int32_t* l = idx + ((int64_t)b * n_lists + r) * idx_stride;
  for (int64_t i = threadIdx.x; i < s + w; i += blockDim.x) l[i] = (int32_t)(i < s ? i : n - w + (i - s));
  if (threadIdx.x == 0) idx_count[(int64_t)b * n_lists + r] = (int32_t)(s + w);
}

__device__ __forceinline__ uint64_t mix64(uint64_t x) {  // splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Better key first: larger value, then lower id.
__device__ __forceinline__ bool better(float v, int32_t i, float bv, int32_t bi) {
  return v > bv || (v == bv && i < bi);
}

__global__ void sample_kernel(const float* logits, int64_t n_vocab, float temp, uint64_t seed, const int32_t* seq_len,
                              int32_t* out, int32_t* feed) {
  const int b = blockIdx.x;
  const float* l = logits + (int64_t)b * n_vocab;
  const uint64_t stream_key = mix64(seed ^ mix64(((uint64_t)b << 32) ^ (uint64_t)(seq_len ? seq_len[b] : 0)));
  float bv = -FLT_MAX;
  int32_t bi = INT32_MAX;
  for (int64_t v = threadIdx.x; v < n_vocab; v += blockDim.x) {
    float key = l[v];
    if (temp > 0) {
      const uint64_t h = mix64(stream_key + (uint64_t)v * 0x9e3779b97f4a7c15ull);
      const double u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);  // (0, 1)
      key = (float)((double)key / temp - log(-log(u)));
    }
    if (key != key) key = -FLT_MAX;  // NaN never wins
    if (better(key, (int32_t)v, bv, bi)) {
      bv = key;
      bi = (int32_t)v;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
  __shared__ float sv[32];
  __shared__ int32_t si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) {
    sv[warp] = bv;
    si[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    bv = lane < nw ? sv[lane] : -FLT_MAX;
    bi = lane < nw ? si[lane] : INT32_MAX;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (better(ov, oi, bv, bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      if (bi == INT32_MAX) bi = 0;  // every logit NaN: token 0 (the host sees garbage logits anyway)
      out[b] = bi;
      if (feed) feed[b] = bi;
    }
  }
}

__device__ __forceinline__ uint4 load_stream(const uint4* p) {  // read once: no L1 allocation
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ void bf16x8(const uint4& u, float* f) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

// One warp per output row: lanes stride over the row in 16-byte pieces; each W piece meets the N rows
// of x (read through L1: every warp reads the same x).
template <int N>
__global__ void __launch_bounds__(256) gemv_kernel(const uint16_t* W, const uint16_t* X, float* Y, int64_t n_out,
                                                   int n_in, int64_t ldy, float beta) {
  const int lane = threadIdx.x & 31;
  const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= n_out) return;
  const uint4* w = reinterpret_cast<const uint4*>(W + row * (int64_t)n_in);
  const int n8 = n_in / 8;
  float acc[N];
#pragma unroll
  for (int b = 0; b < N; ++b) acc[b] = 0.f;
#pragma unroll 4
  for (int i = lane; i < n8; i += 32) {
    float wf[8];
    bf16x8(load_stream(w + i), wf);
#pragma unroll
    for (int b = 0; b < N; ++b) {
      float xf[8];
      bf16x8(__ldg(reinterpret_cast<const uint4*>(X + (int64_t)b * n_in) + i), xf);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[b] = fmaf(wf[e], xf[e], acc[b]);
    }
  }
#pragma unroll
  for (int b = 0; b < N; ++b) {
    float v = acc[b];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) {
      float* y = Y + (int64_t)b * ldy + row;
      *y = beta == 0.f ? v : v + beta * *y;
    }
  }
}

__global__ void fill_half_kernel(uint16_t* p, int64_t count, uint64_t seed, float scale, bool f16) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
    const uint64_t h = mix64(seed ^ mix64((uint64_t)i));
    const float u = ((float)((h >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f) * scale;
    p[i] = f16 ? __half_as_ushort(__float2half_rn(u)) : f_to_bf16(u);
  }
}

__global__ void fill_u32_kernel(uint32_t* p, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    p[i] = (uint32_t)(mix64(seed ^ mix64((uint64_t)i)) >> 32);
}

__global__ void fill_i32_kernel(int32_t* p, int64_t count, int32_t value) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    p[i] = value;
}

int grid_for(int64_t count, int block) {
  const int64_t g = (count + block - 1) / block;
  const int64_t cap = (int64_t)detail::sm_count() * 32;
  return (int)std::max<int64_t>(1, std::min(g, cap));
}

int row_block(int64_t width) { return width >= 1024 ? 1024 : width >= 512 ? 512 : width >= 256 ? 256 : 128; }

}  // namespace

void embed_rows(const void* table, int64_t n_vocab, int dim, const int32_t* ids, int64_t n, float* x,
                int32_t* advance, void* stream) {
  if (n <= 0) return;
  embed_kernel<<<(unsigned)n, 256, 0, as_stream(stream)>>>(static_cast<const uint16_t*>(table), n_vocab, dim, ids, x,
                                                           advance);
  HASHATTN_CUDA_LAUNCHED("embed_rows");
}

bool gemv_bf16(int64_t n, int64_t n_out, int64_t n_in, const void* w, const void* x, float* y, int64_t ldy, float beta,
               void* stream) {
  static_assert(gemv_max_rows == 8, "one kernel instance per row count below");
  if (n < 1 || n > gemv_max_rows || n_in % 8 || n_in > (int64_t(1) << 30) ||
      (reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(x)) & 15)
    return false;
  const uint16_t* W = static_cast<const uint16_t*>(w);
  const uint16_t* X = static_cast<const uint16_t*>(x);
  const unsigned grid = (unsigned)((n_out + 7) / 8);
  cudaStream_t s = as_stream(stream);
  switch (n) {
    case 1: gemv_kernel<1><<<grid, 256, 0, s>>>(W, X, y, n_out, (int)n_in, ldy, beta); break;
    case 2: gemv_kernel<2><<<grid, 256, 0, s>>>(W, X, y, n_out, (int)n_in, ldy, beta); break;
    case 3: gemv_kernel<3><<<grid, 256, 0, s>>>(W, X, y, n_out, (int)n_in, ldy, beta); break;
    case 4: gemv_kernel<4><<<grid, 256, 0, s>>>(W, X, y, n_out, (int)n_in, ldy, beta); break;
    case 5: gemv_kernel<5><<<grid, 256, 0, s>>>(W, X, y, n_out, (int)n_in, ldy, beta); break;
    case 6: gemv_kernel<6><<<grid, 256, 0, s>>>(W, X, y, n_out, (int)n_in, ldy, beta); break;
    case 7: gemv_kernel<7><<<grid, 256, 0, s>>>(W, X, y, n_out, (int)n_in, ldy, beta); break;
    default: gemv_kernel<8><<<grid, 256, 0, s>>>(W, X, y, n_out, (int)n_in, ldy, beta); break;
  }
  HASHATTN_CUDA_LAUNCHED("gemv_bf16");
  return true;
}

void rms_norm(const float* x, const float* w, int64_t n, int dim, float eps, void* y, void* stream) {
  if (n <= 0) return;
  rms_norm_kernel<<<(unsigned)n, row_block(dim), 0, as_stream(stream)>>>(x, w, dim, eps, static_cast<uint16_t*>(y));
  HASHATTN_CUDA_LAUNCHED("rms_norm");
}

void to_bf16(const float* x, int64_t count, void* y, void* stream) {
  if (count <= 0) return;
  to_bf16_kernel<<<grid_for(count, 256), 256, 0, as_stream(stream)>>>(x, count, static_cast<uint16_t*>(y));
  HASHATTN_CUDA_LAUNCHED("to_bf16");
}

void swiglu(const float* gu, int64_t n, int n_ff, void* h, void* stream) {
  if (n <= 0) return;
  swiglu_kernel<<<(unsigned)n, row_block(n_ff), 0, as_stream(stream)>>>(gu, n_ff, static_cast<uint16_t*>(h));
  HASHATTN_CUDA_LAUNCHED("swiglu");
}

void qkv_rope_store(const qkv_params& p, void* stream) {
  if (p.n <= 0) return;
  if (p.kv.type != dtype::bf16 && p.kv.type != dtype::f16)
    fail("qkv_rope_store: kv.type", dtype_name(p.kv.type), "bf16 or f16");
  if (p.rope_dims % 2 || p.rope_dims > p.head_dim || p.rope_dims < 0)
    fail("qkv_rope_store: rope_dims", std::to_string(p.rope_dims), "even, <= head_dim");
  if (!p.qkv || !p.q_out || !p.kv.k || !p.kv.v || !p.kv.page_table)
    fail("qkv_rope_store: pointers", "null", "device pointers (qkv, q_out, kv.k, kv.v, kv.page_table)");
  const size_t smem = (size_t)(p.n_head + 2 * p.n_head_kv) * p.head_dim * sizeof(float);
  if (smem > 48 * 1024) fail("qkv_rope_store: row width", std::to_string(smem) + " bytes", "<= 48 KiB of shared memory");
  qkv_rope_kernel<<<(unsigned)p.n, 256, smem, as_stream(stream)>>>(p);
  HASHATTN_CUDA_LAUNCHED("qkv_rope_store");
}

void window_lists(const int32_t* seq_len, int batch, int n_lists, int64_t sinks, int64_t window, int32_t* idx,
                  int32_t* idx_count, int64_t idx_stride, void* stream) {
  if (idx_stride < sinks + window) fail("window_lists: idx_stride", std::to_string(idx_stride), ">= sinks + window");
  window_lists_kernel<<<dim3((unsigned)n_lists, (unsigned)batch), 128, 0, as_stream(stream)>>>(
      seq_len, n_lists, sinks, window, idx, idx_count, idx_stride);
  HASHATTN_CUDA_LAUNCHED("window_lists");
}

void sample_tokens(const float* logits, int batch, int64_t n_vocab, float temp, uint64_t seed,
                   const int32_t* seq_len, int32_t* out, int32_t* feed, void* stream) {
  if (batch <= 0) return;
  sample_kernel<<<(unsigned)batch, 1024, 0, as_stream(stream)>>>(logits, n_vocab, temp, seed, seq_len, out, feed);
  HASHATTN_CUDA_LAUNCHED("sample_tokens");
}

void fill_random_half(void* p, dtype type, int64_t count, uint64_t seed, float scale, void* stream) {
  if (count <= 0) return;
  if (type != dtype::bf16 && type != dtype::f16) fail("fill_random_half: type", dtype_name(type), "bf16 or f16");
  fill_half_kernel<<<grid_for(count, 256), 256, 0, as_stream(stream)>>>(static_cast<uint16_t*>(p), count, seed, scale,
                                                                        type == dtype::f16);
  HASHATTN_CUDA_LAUNCHED("fill_random_half");
}

void fill_random_u32(uint32_t* p, int64_t count, uint64_t seed, void* stream) {
  if (count <= 0) return;
  fill_u32_kernel<<<grid_for(count, 256), 256, 0, as_stream(stream)>>>(p, count, seed);
  HASHATTN_CUDA_LAUNCHED("fill_random_u32");
}

void fill_i32(int32_t* p, int64_t count, int32_t value, void* stream) {
  if (count <= 0) return;
  fill_i32_kernel<<<grid_for(count, 256), 256, 0, as_stream(stream)>>>(p, count, value);
  HASHATTN_CUDA_LAUNCHED("fill_i32");
}

}  // namespace cuda
}  // namespace hashattn
