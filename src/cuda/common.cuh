// Shared helpers of the CUDA backend: error checks (device, statement, file:line), the device facts
// the host-only plan needs (cuda/host/cuda-plan.h: the checks and launch planning), the budget rule on
// the device, element loads/conversions for fp32/fp16/bf16, block-wide scans.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/host/cuda-plan.h"
#include "hashattn/cuda.h"
#include "hashattn/error.h"

namespace hashattn {
namespace cuda {
namespace detail {

[[noreturn]] void cuda_fail(cudaError_t e, const char* stmt, const char* file, int line);

#define HASHATTN_CUDA_CHECK(stmt)                                                          \
  do {                                                                                     \
    cudaError_t e_ = (stmt);                                                               \
    if (e_ != cudaSuccess) ::hashattn::cuda::detail::cuda_fail(e_, #stmt, __FILE__, __LINE__); \
  } while (0)
// After a launch: reports launch-configuration errors without synchronizing.
#define HASHATTN_CUDA_LAUNCHED(what) HASHATTN_CUDA_CHECK(cudaGetLastError())

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Streaming multiprocessors and opt-in shared memory of the current device (cached per device).
int sm_count();
int max_smem_optin();
// The current device as the plan sees it (SMs, shared memory, the attend kernel's occupancy).
plan::device_info current_device();
// CTAs of the attend kernel for (KV type, head_dim, query heads per list) resident on one SM (attend.cu).
int attend_ctas_per_sm(dtype type, int head_dim, int nq);


// Selection plan of one list for a context of n tokens: core's select_split_of (core.h), the one rule.
struct sel_plan {
  int64_t s;      // sinks kept
  int64_t w;      // window kept
  int64_t total;  // list length
  int64_t mid;    // tokens chosen from the middle [s, n - w)
  bool all;       // total == n: every token
};
__host__ __device__ inline sel_plan make_plan(double density, int64_t count, int64_t sinks,
                                              int64_t window, int64_t n) {
  const select_split sp = select_split_of(density, count, sinks, window, n);
  sel_plan p;
  p.s = sp.n_sinks;
  p.w = sp.n_window;
  p.total = sp.total;
  p.all = sp.all();
  p.mid = p.all ? 0 : sp.k_mid;
  return p;
}

// ---- element types ----
template <typename T> struct elem;
template <> struct elem<__nv_bfloat16> {
  static __device__ __forceinline__ float2 to_f2(uint32_t u) {
    __nv_bfloat162 h = *reinterpret_cast<__nv_bfloat162*>(&u);
    return __bfloat1622float2(h);
  }
  static __device__ __forceinline__ uint16_t from_f(float f) {
    __nv_bfloat16 h = __float2bfloat16_rn(f);
    return *reinterpret_cast<uint16_t*>(&h);
  }
};
template <> struct elem<__half> {
  static __device__ __forceinline__ float2 to_f2(uint32_t u) {
    __half2 h = *reinterpret_cast<__half2*>(&u);
    return __half22float2(h);
  }
  static __device__ __forceinline__ uint16_t from_f(float f) {
    __half h = __float2half_rn(f);
    return *reinterpret_cast<uint16_t*>(&h);
  }
};

// Element i of an fp32 / fp16 / bf16 array as float.
__device__ __forceinline__ float load_any(const void* p, int type, int64_t i) {
  if (type == (int)dtype::f32) return static_cast<const float*>(p)[i];
  const uint16_t u = static_cast<const uint16_t*>(p)[i];
  if (type == (int)dtype::f16) return __half2float(__ushort_as_half(u));
  return __bfloat162float(__ushort_as_bfloat16(u));
}
__device__ __forceinline__ void store_half_any(void* p, int type, int64_t i, float f) {
  uint16_t u = type == (int)dtype::f16 ? __half_as_ushort(__float2half_rn(f))
                                       : __bfloat16_as_ushort(__float2bfloat16_rn(f));
  static_cast<uint16_t*>(p)[i] = u;
}

// ---- block-wide exclusive scan of one int per thread (blockDim.x a multiple of 32, <= 1024) ----
// `sh` holds at least 33 ints. Returns the exclusive prefix; *total gets the block sum.
__device__ __forceinline__ int block_exclusive_scan(int v, int* sh, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  int x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) sh[warp] = x;
  __syncthreads();
  if (warp == 0) {
    int s = lane < nw ? sh[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, s, o);
      if (lane >= o) s += y;
    }
    if (lane < nw) sh[lane] = s;  // inclusive sums of warps
    if (lane == 31) sh[32] = s;
  }
  __syncthreads();
  const int res = x - v + (warp > 0 ? sh[warp - 1] : 0);
  *total = sh[32];
  __syncthreads();  // sh may be reused right after
  return res;
}

}  // namespace detail
}  // namespace cuda
}  // namespace hashattn
