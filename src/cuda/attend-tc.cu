// Split-KV flash decoding on tensor cores (attend_params::impl = tensor_cores): the same grid, lists,
// splits and results as attend.cu, with the dot products on mma.sync m16n8k16 (bf16 or fp16 inputs,
// fp32 accumulation). A CTA of 4 warps walks its split in tiles of 64 tokens: whole K and V rows are
// gathered (through the index list and the page table) into shared memory with 16-byte cp.async, two
// tiles in flight, rows swizzled against bank conflicts; each warp takes 16 tokens of a tile:
//   S = Q K^T    A = the list's query heads (rows 0..nq-1 of 16; q * scale * log2 e), B = K rows (ldmatrix)
//   O += P V     A = P from S's accumulators (the FlashAttention-2 register reuse), B = V (ldmatrix.trans)
// Q and P are each split into a high and a low 16-bit part (two mma each), so the products keep about
// 16 bits of mantissa and the result matches the fp32 kernel's accuracy; K and V are exact.
#include <cuda_pipeline.h>

#include <utility>
#include <vector>

#include "cuda/attend-common.cuh"

namespace hashattn {
namespace cuda {
namespace detail {
namespace {

constexpr int TILE = 64;  // tokens per stage: 16 per warp

template <typename T> struct mma_type;
template <> struct mma_type<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t u) {
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&u));
  }
  static __device__ __forceinline__ void mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <> struct mma_type<__half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t u) { return __half22float2(*reinterpret_cast<__half2*>(&u)); }
  static __device__ __forceinline__ void mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// Splits (x0, x1) into packed high parts and packed low parts (x - high), both in T.
template <typename T>
__device__ __forceinline__ void split_pack(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  hi = mma_type<T>::pack(x0, x1);
  const float2 h = mma_type<T>::unpack(hi);
  lo = mma_type<T>::pack(x0 - h.x, x1 - h.y);
}

__device__ __forceinline__ void ldsm_x4(uint32_t* r, const void* p) {
  const unsigned a = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t* r, const void* p) {
  const unsigned a = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// Dynamic shared memory: [2 stages][K, V][TILE rows][D / 8 chunks of 16 bytes]; chunk c of row r is
// stored at c ^ (r & 7). After the loop it holds the warps' states for attend_finish.
template <int D>
constexpr size_t tc_smem_bytes() {
  return (size_t)2 * 2 * TILE * (D / 8) * 16;
}

template <typename T, int D>
__global__ void __launch_bounds__(ATT_THREADS) attend_tc_kernel(attend_args a, int nq) {
  constexpr int CH = D / 8;       // 16-byte chunks per row
  constexpr int KSTEPS = D / 16;  // k-steps of Q K^T
  constexpr int NT = D / 8;       // 8-wide column tiles of O
  static_assert(tc_smem_bytes<D>() >= sizeof(float) * (ATT_WARPS * 8 * D + 2 * ATT_WARPS * 8), "final states fit");
  extern __shared__ uint4 smem[];
  __shared__ int64_t sm_off[TILE];
  __shared__ float sm_w[8 * plan::MAX_SPLITS];
  __shared__ int is_last;

  const int split = blockIdx.x, r = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int head0 = r * nq;
  const int kvh = head0 / a.group;
  const split_range sr = split_of(a, b, r, split);
  const int64_t list = sr.list, start = sr.start, end = sr.end;
  const int64_t n_tiles = end > start ? (end - start + TILE - 1) / TILE : 0;

  // Query fragments (A of Q K^T): row g is query head head0 + g (zero for g >= nq); k-step ks covers
  // dims 16 ks .. 16 ks + 15: qa[ks][0] = dims 2t, 2t+1 and qa[ks][1] = dims 2t+8, 2t+9, high and low.
  uint32_t qhi[KSTEPS][2], qlo[KSTEPS][2];
  {
    const float* qrow = a.q + ((int64_t)b * a.n_head + head0 + min(g, nq - 1)) * D;
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ++ks)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float x0 = 0.f, x1 = 0.f;
        if (g < nq) {
          const float2 v = *reinterpret_cast<const float2*>(qrow + ks * 16 + h * 8 + 2 * t);
          x0 = v.x * a.scale_log2;
          x1 = v.y * a.scale_log2;
        }
        split_pack<T>(x0, x1, qhi[ks][h], qlo[ks][h]);
      }
  }
  float o[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m_run = -INFINITY, l_run = 0.f;  // row g's running max (base 2) and this thread's part of the sum

  const T* K = static_cast<const T*>(a.k);
  const T* V = static_cast<const T*>(a.v);
  const int32_t* il = a.idx ? a.idx + list * a.idx_stride : nullptr;
  const int32_t* ptb = a.pt + (int64_t)b * a.pt_stride;
  const int64_t head_off = (int64_t)kvh * a.stride_head;
  // Element offset of the K/V row of list position i, or -1 past the split's end.
  auto row_off = [&](int64_t i) -> int64_t {
    if (i >= end) return -1;
    const int32_t tk = il ? __ldg(il + i) : (int32_t)i;
    const int32_t pg = __ldg(ptb + (tk >> a.page_shift));
    return (int64_t)pg * a.stride_page + (tk & a.page_mask) * a.stride_tok + head_off;
  };
  // Gathers the rows named in sm_off into a stage (rows past the end are zero-filled).
  auto issue = [&](int stage) {
#pragma unroll 4
    for (int c = threadIdx.x; c < TILE * CH; c += ATT_THREADS) {
      const int row = c / CH, ch = c % CH;
      const int64_t off = sm_off[row];
      const int slot = row * CH + (ch ^ (row & 7));
      const size_t fill = off >= 0 ? 0 : 16;
      __pipeline_memcpy_async(smem + (stage * 2 + 0) * TILE * CH + slot, off >= 0 ? K + off + ch * 8 : K, 16, fill);
      __pipeline_memcpy_async(smem + (stage * 2 + 1) * TILE * CH + slot, off >= 0 ? V + off + ch * 8 : V, 16, fill);
    }
    __pipeline_commit();
  };
  // Prologue: tiles 0 and 1 in flight.
  for (int j = 0; j < 2; ++j) {
    if (threadIdx.x < TILE) sm_off[threadIdx.x] = row_off(start + (int64_t)j * TILE + threadIdx.x);
    __syncthreads();
    if (j < n_tiles) issue(j);
    else __pipeline_commit();
    __syncthreads();
  }

  for (int64_t j = 0; j < n_tiles; ++j) {
    const int st = (int)(j & 1);
    __pipeline_wait_prior(1);
    __syncthreads();  // tile j is in stage st for every thread
    int64_t next_off = -1;  // tile j + 2's row (its lookups overlap the math below)
    if (threadIdx.x < TILE && j + 2 < n_tiles) next_off = row_off(start + (j + 2) * TILE + threadIdx.x);

    const uint4* Ks = smem + (st * 2 + 0) * TILE * CH;
    const uint4* Vs = smem + (st * 2 + 1) * TILE * CH;
    const int kr0 = warp * 16;  // this warp's 16 rows of the tile
    // S = Q K^T for tokens kr0 .. kr0 + 15: s[nt] covers tokens kr0 + 8 nt + 2t, +1 (rows g, g + 8).
    float s[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      const int row = kr0 + nt * 8 + (lane & 7);
#pragma unroll
      for (int qd = 0; qd < KSTEPS / 2; ++qd) {
        uint32_t kb[4];  // b0, b1 of k-step 2 qd, then of k-step 2 qd + 1
        ldsm_x4(kb, Ks + row * CH + ((4 * qd + (lane >> 3)) ^ (row & 7)));
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int ks = 2 * qd + h;
          const uint32_t ahi[4] = {qhi[ks][0], 0u, qhi[ks][1], 0u};
          const uint32_t alo[4] = {qlo[ks][0], 0u, qlo[ks][1], 0u};
          mma_type<T>::mma(s[nt], ahi, kb[2 * h], kb[2 * h + 1]);
          mma_type<T>::mma(s[nt], alo, kb[2 * h], kb[2 * h + 1]);
        }
      }
    }
    // Online softmax of row g over this warp's 16 tokens (4 per thread; the row's 4 threads agree).
    const int64_t tok0 = start + j * TILE + kr0 + 2 * t;
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (tok0 + nt * 8 + e >= end) s[nt][e] = -INFINITY;
        mx = fmaxf(mx, s[nt][e]);
      }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run, mx);
    const float corr = m_new == -INFINITY ? 1.f : exp2f(m_run - m_new);
    float p[2][2];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) p[nt][e] = m_new == -INFINITY ? 0.f : exp2f(s[nt][e] - m_new);
    l_run = l_run * corr + (p[0][0] + p[0][1] + p[1][0] + p[1][1]);
    m_run = m_new;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      o[n][0] *= corr;
      o[n][1] *= corr;
    }
    // O += P V: A = P (row g: tokens 2t, 2t+1 then 2t+8, 2t+9), B = V rows kr0 .. kr0 + 15.
    uint32_t phi[4], plo[4];
    split_pack<T>(p[0][0], p[0][1], phi[0], plo[0]);
    split_pack<T>(p[1][0], p[1][1], phi[2], plo[2]);
    phi[1] = phi[3] = plo[1] = plo[3] = 0u;
    const int vrow = kr0 + ((lane >> 3) & 1) * 8 + (lane & 7);
#pragma unroll
    for (int c = 0; c < NT; c += 2) {
      uint32_t vb[4];  // b0, b1 of column tile c, then of c + 1
      ldsm_x4_trans(vb, Vs + vrow * CH + ((c + (lane >> 4)) ^ (vrow & 7)));
      mma_type<T>::mma(o[c], phi, vb[0], vb[1]);
      mma_type<T>::mma(o[c], plo, vb[0], vb[1]);
      mma_type<T>::mma(o[c + 1], phi, vb[2], vb[3]);
      mma_type<T>::mma(o[c + 1], plo, vb[2], vb[3]);
    }
    __syncthreads();  // stage st is free, and sm_off is read by nobody
    if (threadIdx.x < TILE) sm_off[threadIdx.x] = next_off;
    __syncthreads();
    if (j + 2 < n_tiles) issue(st);
    else __pipeline_commit();
  }
  __pipeline_wait_prior(0);
  __syncthreads();
  // The warps' states into shared memory: [warp][8][D] outputs, [warp][8] max and sum.
  float* sm_acc = reinterpret_cast<float*>(smem);
  float* sm_m = sm_acc + ATT_WARPS * 8 * D;
  float* sm_l = sm_m + ATT_WARPS * 8;
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
  if (g < nq) {
    float* acc = sm_acc + (warp * 8 + g) * D;
#pragma unroll
    for (int n = 0; n < NT; ++n) *reinterpret_cast<float2*>(acc + n * 8 + 2 * t) = make_float2(o[n][0], o[n][1]);
    if (t == 0) {
      sm_m[warp * 8 + g] = m_run;
      sm_l[warp * 8 + g] = l_run;
    }
  }
  __syncthreads();
  attend_finish<D>(a, nq, 8, ATT_WARPS, sm_acc, sm_m, sm_l, sm_w, &is_last, split, list, b, head0);
}

using tc_fn = void (*)(attend_args, int);

tc_fn pick_tc(dtype t, int d) {
  if (t == dtype::bf16) return d == 64 ? attend_tc_kernel<__nv_bfloat16, 64> : d == 128 ? attend_tc_kernel<__nv_bfloat16, 128> : nullptr;
  if (t == dtype::f16) return d == 64 ? attend_tc_kernel<__half, 64> : d == 128 ? attend_tc_kernel<__half, 128> : nullptr;
  return nullptr;
}

size_t tc_smem(int d) { return d == 64 ? tc_smem_bytes<64>() : tc_smem_bytes<128>(); }

}  // namespace

int attend_tc_ctas_per_sm(dtype type, int head_dim) {
  tc_fn fn = pick_tc(type, head_dim);
  HASHATTN_ASSERT(fn != nullptr);
  return prepare_attend_kernel(fn, tc_smem(head_dim));
}

void attend_tc_launch(const attend_args& a, dtype type, int head_dim, int nq, dim3 grid, cudaStream_t stream) {
  tc_fn fn = pick_tc(type, head_dim);
  HASHATTN_ASSERT(fn != nullptr && nq >= 1 && nq <= 8);
  const size_t smem = tc_smem(head_dim);
  prepare_attend_kernel(fn, smem);
  fn<<<grid, ATT_THREADS, smem, stream>>>(a, nq);
  HASHATTN_CUDA_LAUNCHED("attend_tc_kernel");
}

}  // namespace detail
}  // namespace cuda
}  // namespace hashattn
