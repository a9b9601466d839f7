// Split-KV flash decoding over index lists (sparse) or over all tokens (dense), bf16/fp16 paged KV.
// grid (split, list, seq), 128 threads. A list serves NQ query heads that share one KV head
// (per_group lists and dense: NQ = n_head / n_head_kv, so one gather serves the group; per_head
// lists: NQ = 1). A token's K (and V) row of head_dim elements is read by D/8 lanes with 16-byte
// loads; the index and page-table lookups of the next batch are issued before the current batch
// is computed. Online softmax in base 2 per lane group, merged across lanes, warps, then splits:
// the last CTA of a list to finish (atomic ticket) combines the splits' partials and writes out.
// q: [seq][n_head][D] fp32; out: [seq][n_head][D] fp32; partials: [seq][n_head][split](D + 2).
#include <cuda_pipeline.h>

#include <utility>
#include <vector>

#include "cuda/attend-common.cuh"

namespace hashattn {
namespace cuda {
namespace {

using namespace detail;
using plan::MAX_SPLITS;

// The workspace layout (plan::attend_layout_of) counts a float2 as 2 floats.
static_assert(sizeof(float2) == 2 * sizeof(float), "workspace layout");

__device__ __forceinline__ void merge_state(float& m, float& l, float* acc, float mo, float lo, const float* acco) {
  const float mn = fmaxf(m, mo);
  if (mn == -INFINITY) return;
  const float c1 = exp2f(m - mn), c2 = exp2f(mo - mn);
  l = l * c1 + lo * c2;
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = acc[e] * c1 + acco[e] * c2;
  m = mn;
}

template <typename T>
__device__ __forceinline__ void to_float8(const uint4& u, float* f) {
  const float2 a = elem<T>::to_f2(u.x), b = elem<T>::to_f2(u.y), c = elem<T>::to_f2(u.z), d = elem<T>::to_f2(u.w);
  f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y; f[4] = c.x; f[5] = c.y; f[6] = d.x; f[7] = d.y;
}

template <typename T, int D, int NQ>
__global__ void __launch_bounds__(ATT_THREADS) attend_kernel(attend_args a) {
  constexpr int LPT = D / 8;          // lanes per token
  constexpr int TPW = 32 / LPT;       // tokens per warp step
  constexpr int U = NQ <= 4 ? 8 : 4;  // warp steps per batch
  constexpr int STEP = ATT_WARPS * TPW;
  constexpr int BATCH = STEP * U;
  __shared__ float sm_acc[ATT_WARPS][NQ][D];
  __shared__ float sm_m[ATT_WARPS][NQ], sm_l[ATT_WARPS][NQ];
  __shared__ float sm_w[NQ][MAX_SPLITS];
  __shared__ int is_last;
  extern __shared__ uint4 kvbuf[];  // [2 stages][U][K, V][ATT_THREADS]: each thread's own 16-byte slots

  const int split = blockIdx.x, r = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane / LPT, part = lane % LPT;
  const int head0 = r * NQ;
  const int kvh = head0 / a.group;
  const split_range sr = split_of(a, b, r, split);
  const int64_t list = sr.list, start = sr.start, end = sr.end;

  float qf[NQ][8];
#pragma unroll
  for (int j = 0; j < NQ; ++j) {
    const float4* qp = reinterpret_cast<const float4*>(a.q + ((int64_t)b * a.n_head + head0 + j) * D + part * 8);
    const float4 x = qp[0], y = qp[1];
    qf[j][0] = x.x * a.scale_log2; qf[j][1] = x.y * a.scale_log2; qf[j][2] = x.z * a.scale_log2; qf[j][3] = x.w * a.scale_log2;
    qf[j][4] = y.x * a.scale_log2; qf[j][5] = y.y * a.scale_log2; qf[j][6] = y.z * a.scale_log2; qf[j][7] = y.w * a.scale_log2;
  }
  float m[NQ], l[NQ], acc[NQ][8];
#pragma unroll
  for (int j = 0; j < NQ; ++j) {
    m[j] = -INFINITY;
    l[j] = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[j][e] = 0.f;
  }
  const T* K = static_cast<const T*>(a.k);
  const T* V = static_cast<const T*>(a.v);
  const int32_t* il = a.idx ? a.idx + list * a.idx_stride : nullptr;
  const int32_t* ptb = a.pt + (int64_t)b * a.pt_stride;
  const int64_t head_off = (int64_t)kvh * a.stride_head + part * 8;
  const int64_t my0 = warp * TPW + sub;

  // Software pipeline over batches of BATCH tokens: while batch j is computed, batch j+1 is in flight
  // (cp.async into the other stage), the page ids of batch j+2 and the token ids of batch j+3 load.
  auto tok_at = [&](int64_t i) -> int32_t { return i < end ? (il ? __ldg(il + i) : (int32_t)i) : -1; };
  auto page_of = [&](int32_t t) -> int32_t { return t >= 0 ? __ldg(ptb + (t >> a.page_shift)) : 0; };
  auto issue = [&](int stage, const int32_t* tk, const int32_t* pg) {
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (tk[u] >= 0) {
        const int64_t off = (int64_t)pg[u] * a.stride_page + (tk[u] & a.page_mask) * a.stride_tok + head_off;
        __pipeline_memcpy_async(kvbuf + ((stage * U + u) * 2 + 0) * ATT_THREADS + threadIdx.x, K + off, 16);
        __pipeline_memcpy_async(kvbuf + ((stage * U + u) * 2 + 1) * ATT_THREADS + threadIdx.x, V + off, 16);
      }
    __pipeline_commit();
  };
  const int64_t nb = end > start ? (end - start + BATCH - 1) / BATCH : 0;
  int32_t tk1[U], pg1[U], tk2[U], pg2[U], tk3[U];
  {
    int32_t tk0[U], pg0[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      tk0[u] = tok_at(start + u * STEP + my0);
      tk1[u] = tok_at(start + BATCH + u * STEP + my0);
      tk2[u] = tok_at(start + 2 * BATCH + u * STEP + my0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      pg0[u] = page_of(tk0[u]);
      pg1[u] = page_of(tk1[u]);
    }
    if (nb > 0) issue(0, tk0, pg0);
  }
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t base = start + j * BATCH;
    issue((int)((j + 1) & 1), tk1, pg1);  // an empty group when batch j+1 does not exist
#pragma unroll
    for (int u = 0; u < U; ++u) {
      pg2[u] = page_of(tk2[u]);
      tk3[u] = tok_at(base + 3 * BATCH + u * STEP + my0);
    }
    __pipeline_wait_prior(1);
    const int st = (int)(j & 1);
    float s[U][NQ];
    bool val[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      val[u] = base + u * STEP + my0 < end;
      const uint4 kr = val[u] ? kvbuf[((st * U + u) * 2 + 0) * ATT_THREADS + threadIdx.x] : make_uint4(0, 0, 0, 0);
      float kf[8];
      to_float8<T>(kr, kf);
#pragma unroll
      for (int jq = 0; jq < NQ; ++jq) {
        float d = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) d = fmaf(kf[e], qf[jq][e], d);
#pragma unroll
        for (int o = LPT / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        s[u][jq] = val[u] ? d : -INFINITY;
      }
    }
    // New running max per head, rescale once per batch, then one pass over the V rows.
    float mn[NQ];
#pragma unroll
    for (int jq = 0; jq < NQ; ++jq) {
      float mb = s[0][jq];
#pragma unroll
      for (int u = 1; u < U; ++u) mb = fmaxf(mb, s[u][jq]);
      mn[jq] = fmaxf(m[jq], mb);
      const float corr = mn[jq] == -INFINITY ? 1.f : exp2f(m[jq] - mn[jq]);
      l[jq] *= corr;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[jq][e] *= corr;
      m[jq] = mn[jq];
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (!val[u]) continue;
      float vf[8];
      to_float8<T>(kvbuf[((st * U + u) * 2 + 1) * ATT_THREADS + threadIdx.x], vf);
#pragma unroll
      for (int jq = 0; jq < NQ; ++jq) {
        const float p = exp2f(s[u][jq] - mn[jq]);
        l[jq] += p;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[jq][e] = fmaf(p, vf[e], acc[jq][e]);
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      tk1[u] = tk2[u];
      pg1[u] = pg2[u];
      tk2[u] = tk3[u];
    }
  }
  __pipeline_wait_prior(0);
  // Merge the token slots of a warp (lanes with the same part).
#pragma unroll
  for (int o = LPT; o < 32; o <<= 1) {
#pragma unroll
    for (int j = 0; j < NQ; ++j) {
      const float mo = __shfl_xor_sync(0xffffffffu, m[j], o);
      const float lo = __shfl_xor_sync(0xffffffffu, l[j], o);
      float ao[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) ao[e] = __shfl_xor_sync(0xffffffffu, acc[j][e], o);
      merge_state(m[j], l[j], acc[j], mo, lo, ao);
    }
  }
  if (sub == 0) {
#pragma unroll
    for (int j = 0; j < NQ; ++j) {
#pragma unroll
      for (int e = 0; e < 8; ++e) sm_acc[warp][j][part * 8 + e] = acc[j][e];
      if (part == 0) {
        sm_m[warp][j] = m[j];
        sm_l[warp][j] = l[j];
      }
    }
  }
  __syncthreads();
  attend_finish<D>(a, NQ, NQ, ATT_WARPS, &sm_acc[0][0][0], &sm_m[0][0], &sm_l[0][0], &sm_w[0][0], &is_last, split,
                   list, b, head0);
}

using kernel_fn = void (*)(attend_args);

// Dynamic shared memory of attend_kernel<.., NQ>: two stages of U 16-byte K and V slots per thread.
constexpr size_t kv_smem_bytes(int nq) { return 2 * (size_t)(nq <= 4 ? 8 : 4) * 2 * ATT_THREADS * 16; }

template <typename T, int D>
kernel_fn pick_nq(int nq) {
  switch (nq) {
    case 1: return attend_kernel<T, D, 1>;
    case 2: return attend_kernel<T, D, 2>;
    case 3: return attend_kernel<T, D, 3>;
    case 4: return attend_kernel<T, D, 4>;
    case 6: return attend_kernel<T, D, 6>;
    case 7: return attend_kernel<T, D, 7>;
    case 8: return attend_kernel<T, D, 8>;
    default: return nullptr;
  }
}

kernel_fn pick(dtype t, int d, int nq) {
  if (t == dtype::bf16) return d == 64 ? pick_nq<__nv_bfloat16, 64>(nq) : d == 128 ? pick_nq<__nv_bfloat16, 128>(nq) : nullptr;
  if (t == dtype::f16) return d == 64 ? pick_nq<__half, 64>(nq) : d == 128 ? pick_nq<__half, 128>(nq) : nullptr;
  return nullptr;
}

// The plan asks the device only when it picks the split count itself (from the chosen kernel's
// occupancy: decode's plan asks the same device_info, so its workspace matches).
plan::attend_layout layout_of(const attend_params& p) {
  return plan::attend_layout_of(p, p.n_splits > 0 ? plan::device_info{} : detail::current_device());
}

}  // namespace

namespace detail {
int attend_ctas_per_sm(dtype type, int head_dim, int nq) {
  return prepare_attend_kernel(pick(type, head_dim, nq), kv_smem_bytes(nq));
}
}  // namespace detail

void attend_validate(const attend_params& p) { plan::check_attend(p); }

int attend_n_splits(const attend_params& p) {
  attend_validate(p);
  return layout_of(p).n_splits;
}

size_t attend_workspace_size(const attend_params& p) {
  attend_validate(p);
  return layout_of(p).bytes;
}

void attend_run(const attend_params& p, void* workspace, void* stream) {
  attend_validate(p);
  const plan::attend_layout l = layout_of(p);
  if (l.bytes > 0 && !workspace) fail("attend: workspace", "null", "attend_workspace_size() bytes, zeroed once");
  kernel_fn fn = pick(p.kv.type, p.kv.head_dim, l.nq);
  HASHATTN_ASSERT(fn != nullptr);
  char* ws = static_cast<char*>(workspace);
  attend_args a{};
  a.q = p.q;
  a.k = p.kv.k;
  a.v = p.kv.v;
  a.stride_page = p.kv.stride_page;
  a.stride_tok = p.kv.stride_tok;
  a.stride_head = p.kv.stride_head;
  a.pt_stride = p.kv.page_table_stride;
  a.pt = p.kv.page_table;
  a.page_shift = plan::log2_int(p.kv.page_size);
  a.page_mask = (int64_t)p.kv.page_size - 1;
  a.seq_len = p.seq_len;
  a.idx = p.idx;
  a.idx_count = p.idx_count;
  a.idx_stride = p.idx_stride;
  a.n_head = p.n_head;
  a.n_lists = l.n_lists;
  a.group = p.n_head / p.kv.n_head_kv;
  a.n_splits = l.n_splits;
  const float scale = p.scale > 0 ? p.scale : 1.f / std::sqrt((float)p.kv.head_dim);
  a.scale_log2 = scale * 1.4426950408889634f;
  a.out = p.out;
  a.ticket = l.bytes ? reinterpret_cast<unsigned*>(ws + l.off_ticket) : nullptr;
  a.part_ml = l.bytes ? reinterpret_cast<float2*>(ws + l.off_ml) : nullptr;
  a.part_o = l.bytes ? reinterpret_cast<float*>(ws + l.off_o) : nullptr;
  const dim3 grid(l.n_splits, l.n_lists, p.batch);
  if (plan::uses_tensor_cores(p.impl, l.nq)) {
    detail::attend_tc_launch(a, p.kv.type, p.kv.head_dim, l.nq, grid, detail::as_stream(stream));
    return;
  }
  const size_t smem = kv_smem_bytes(l.nq);
  prepare_attend_kernel(fn, smem);
  fn<<<grid, ATT_THREADS, smem, detail::as_stream(stream)>>>(a);
  HASHATTN_CUDA_LAUNCHED("attend_kernel");
}

}  // namespace cuda
}  // namespace hashattn
