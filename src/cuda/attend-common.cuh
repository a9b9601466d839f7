// What the two decode-attention kernels share (attend.cu: CUDA cores; attend-tc.cu: tensor cores):
// their arguments and the end of a list's work: the warps' online-softmax states merged, then one
// split's result written out, or its partials written and the last CTA of the list (atomic ticket)
// combining the splits.
#pragma once
#include <utility>
#include <vector>

#include "cuda/common.cuh"

namespace hashattn {
namespace cuda {
namespace detail {

constexpr int ATT_THREADS = 128;
constexpr int ATT_WARPS = ATT_THREADS / 32;

struct attend_args {
  const float* q;
  const void* k;
  const void* v;
  int64_t stride_page, stride_tok, stride_head, pt_stride;
  const int32_t* pt;
  int page_shift;
  int64_t page_mask;
  const int32_t* seq_len;
  const int32_t* idx;
  const int32_t* idx_count;
  int64_t idx_stride;
  int n_head, n_lists, group, n_splits;
  float scale_log2;
  float* out;
  float* part_o;
  float2* part_ml;
  unsigned* ticket;
};

// The tokens [start, end) of list (b, r) that split `split` attends: a list is cut into n_splits equal parts.
struct split_range {
  int64_t list, start, end;
};
__device__ __forceinline__ split_range split_of(const attend_args& a, int b, int r, int split) {
  split_range s;
  s.list = (int64_t)b * a.n_lists + r;
  const int64_t count = a.idx ? (int64_t)a.idx_count[s.list] : (int64_t)a.seq_len[b];
  const int64_t per = (count + a.n_splits - 1) / a.n_splits;
  s.start = (int64_t)split * per;
  s.end = min(count, s.start + per);
  return s;
}

// Called by every thread of the CTA after the per-warp states are in shared memory:
// sm_acc [n_warps][nq_stride][D] (unnormalized outputs), sm_m / sm_l [n_warps][nq_stride] (running max in
// base 2 and sum), for query heads j < nq of list (b, r) starting at head0. sm_w: [nq][MAX_SPLITS] scratch.
template <int D>
__device__ __forceinline__ void attend_finish(const attend_args& a, int nq, int nq_stride, int n_warps,
                                              const float* sm_acc, const float* sm_m, const float* sm_l, float* sm_w,
                                              int* is_last, int split, int64_t list, int b, int head0) {
  constexpr int MS = plan::MAX_SPLITS;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nthreads = blockDim.x, nw = blockDim.x >> 5;
  // Merge the warps; one split's result per query head.
  for (int x = threadIdx.x; x < nq * D; x += nthreads) {
    const int j = x / D, e = x % D;
    float M = -INFINITY;
    for (int w = 0; w < n_warps; ++w) M = fmaxf(M, sm_m[w * nq_stride + j]);
    float L = 0.f, O = 0.f;
    if (M != -INFINITY) {
      for (int w = 0; w < n_warps; ++w) {
        const float c = exp2f(sm_m[w * nq_stride + j] - M);
        L += sm_l[w * nq_stride + j] * c;
        O += sm_acc[((int64_t)w * nq_stride + j) * D + e] * c;
      }
    }
    const int64_t hrow = (int64_t)b * a.n_head + head0 + j;
    if (a.n_splits == 1) {
      a.out[hrow * D + e] = L > 0.f ? O / L : 0.f;
    } else {
      a.part_o[(hrow * a.n_splits + split) * D + e] = O;
      if (e == 0) a.part_ml[hrow * a.n_splits + split] = make_float2(M, L);
    }
  }
  if (a.n_splits == 1) return;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) *is_last = atomicAdd(a.ticket + list, 1u) == (unsigned)a.n_splits - 1;
  __syncthreads();
  if (!*is_last) return;
  __threadfence();
  if (threadIdx.x == 0) a.ticket[list] = 0;
  // Combine the splits: weights exp2(m_s - M) / L per (head, split), then a weighted sum.
  for (int j = warp; j < nq; j += nw) {
    const int64_t hrow = (int64_t)b * a.n_head + head0 + j;
    float M = -INFINITY;
    for (int s = lane; s < a.n_splits; s += 32) {
      const float2 ml = __ldcg(a.part_ml + hrow * a.n_splits + s);
      M = fmaxf(M, ml.x);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float L = 0.f;
    for (int s = lane; s < a.n_splits; s += 32) {
      const float2 ml = __ldcg(a.part_ml + hrow * a.n_splits + s);
      const float c = M == -INFINITY ? 0.f : exp2f(ml.x - M);
      sm_w[j * MS + s] = c;
      L += ml.y * c;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) L += __shfl_xor_sync(0xffffffffu, L, o);
    const float inv = L > 0.f ? 1.f / L : 0.f;
    __syncwarp();
    for (int s = lane; s < a.n_splits; s += 32) sm_w[j * MS + s] *= inv;
  }
  __syncthreads();
  for (int x = threadIdx.x; x < nq * D / 4; x += nthreads) {
    const int j = x / (D / 4), e4 = x % (D / 4);
    const int64_t hrow = (int64_t)b * a.n_head + head0 + j;
    const float4* po = reinterpret_cast<const float4*>(a.part_o + hrow * a.n_splits * D) + e4;
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
    for (int s = 0; s < a.n_splits; ++s) {
      const float w = sm_w[j * MS + s];
      const float4 v = __ldcg(po + (int64_t)s * (D / 4));
      o.x = fmaf(w, v.x, o.x);
      o.y = fmaf(w, v.y, o.y);
      o.z = fmaf(w, v.z, o.z);
      o.w = fmaf(w, v.w, o.w);
    }
    reinterpret_cast<float4*>(a.out + hrow * D)[e4] = o;
  }
}

// Raises a kernel's dynamic shared-memory limit once per (device, kernel) and returns how many of its
// CTAs of ATT_THREADS fit on one SM (at least 1).
template <typename Fn>
int prepare_attend_kernel(Fn fn, size_t smem) {
  static thread_local std::vector<std::pair<std::pair<int, Fn>, int>> done;
  int dev = 0;
  HASHATTN_CUDA_CHECK(cudaGetDevice(&dev));
  for (const auto& d : done)
    if (d.first.first == dev && d.first.second == fn) return d.second;
  HASHATTN_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  int per_sm = 0;
  HASHATTN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, ATT_THREADS, smem));
  per_sm = std::max(per_sm, 1);
  done.push_back({{dev, fn}, per_sm});
  return per_sm;
}

// The tensor-core kernel's launch (attend-tc.cu): any nq in 1..8, head_dim 64 or 128.
void attend_tc_launch(const attend_args& a, dtype type, int head_dim, int nq, dim3 grid, cudaStream_t stream);
// Its CTAs per SM (for the split plan).
int attend_tc_ctas_per_sm(dtype type, int head_dim);

}  // namespace detail
}  // namespace cuda
}  // namespace hashattn
