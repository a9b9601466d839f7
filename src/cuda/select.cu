// Score + select over packed hash codes with a histogram of score levels (no sort), two kernels:
//  1. select_hist: grid (chunk, list, seq). Scores the middle tokens [sinks, n - window) of its chunk
//     (4 bytes/token, 16-byte loads), builds a per-warp shared histogram, writes the chunk's suffix
//     counts cum[c][lev] = #(score >= lev) and adds them to the list total. The last CTA of a list
//     (atomic ticket) finds the cutoff level L (#(> L) < k <= #(>= L)), how many tokens of level L
//     to take (the most recent ones), and each chunk's counts before it; it restores the totals
//     and the ticket to zero so the workspace is reusable (graph replay).
//  2. select_compact: grid (chunk, list, seq). Rescores its chunk in order and writes the selected
//     positions ascending with block scans; chunk 0 also writes the sinks, the window and the count.
// codes: [seq][code head][t] uint32; qcodes: [seq][n_head]; idx: [seq][list][idx_stride].
#include "cuda/common.cuh"

namespace hashattn {
namespace cuda {
namespace {

using namespace detail;
using plan::MAX_QPL;      // query heads per list
using plan::SEL_THREADS;
using plan::SEL_TILE;     // tokens per compaction tile (16 per thread)

constexpr int SEL_WARPS = SEL_THREADS / 32;
constexpr int MAX_LEVELS = MAX_QPL * 32 + 1;
// The workspace layout (plan::select_layout_of) counts int4 and int2 as 4 and 2 ints.
static_assert(sizeof(int4) == 4 * sizeof(int32_t) && sizeof(int2) == 2 * sizeof(int32_t), "workspace layout");

struct select_args {
  const uint32_t* qcodes;
  const uint32_t* codes;
  int64_t c_stride_seq, c_stride_head;
  const int32_t* seq_len;
  int n_head, n_lists, qpl, bits, levels;
  uint32_t mask;
  double density;
  int64_t count, sinks, window;
  int n_chunks;
  int64_t chunk;
  int32_t* idx;
  int32_t* idx_count;
  int64_t idx_stride;
  int* cum;           // [seq][list][n_chunks][levels]
  int* tot;           // [seq][list][levels]
  unsigned* ticket;   // [seq][list]
  int2* meta;         // [seq][list][n_chunks]: (gt before chunk, eq before chunk)
  int4* lp;           // [seq][list]: (L, take, E, mid)
};

__device__ __forceinline__ int score_of(uint32_t k, const uint32_t* qc, int qpl, int bits, uint32_t mask) {
  int s = 0;
#pragma unroll
  for (int j = 0; j < MAX_QPL; ++j)
    if (j < qpl) s += bits - __popc((qc[j] ^ k) & mask);
  return s;
}

__global__ void __launch_bounds__(SEL_THREADS) select_hist_kernel(select_args a) {
  __shared__ int hist[SEL_WARPS][MAX_LEVELS];
  __shared__ int red[MAX_LEVELS + 1];
  __shared__ int scan_sh[33];
  __shared__ int is_last;
  __shared__ int L_sh;
  const int c = blockIdx.x, r = blockIdx.y, b = blockIdx.z;
  const int64_t n = a.seq_len[b];
  const sel_plan pl = make_plan(a.density, a.count, a.sinks, a.window, n);
  const int64_t list = (int64_t)b * a.n_lists + r;
  const int LV = a.levels;
  const int64_t cbase = (int64_t)c * a.chunk;

  if (!pl.all && pl.mid > 0 && cbase < n) {
    uint32_t qc[MAX_QPL];
#pragma unroll
    for (int j = 0; j < MAX_QPL; ++j) qc[j] = j < a.qpl ? a.qcodes[(int64_t)b * a.n_head + r * a.qpl + j] : 0u;
    for (int i = threadIdx.x; i < SEL_WARPS * MAX_LEVELS; i += SEL_THREADS) (&hist[0][0])[i] = 0;
    __syncthreads();
    const int64_t lo = max(cbase, pl.s), hi = min(cbase + a.chunk, n - pl.w);
    int* hw = hist[threadIdx.x >> 5];
    if (lo < hi) {
      const uint32_t* row = a.codes + (int64_t)b * a.c_stride_seq + (int64_t)r * a.c_stride_head;
      const uint4* row4 = reinterpret_cast<const uint4*>(row);
      const int64_t v0 = lo >> 2, v1 = (hi + 3) >> 2;
      constexpr int U = 4;
      for (int64_t v = v0 + threadIdx.x; v < v1; v += (int64_t)SEL_THREADS * U) {
        uint4 w[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t vv = v + (int64_t)u * SEL_THREADS;
          w[u] = vv < v1 ? __ldcs(row4 + vv) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t t = (v + (int64_t)u * SEL_THREADS) * 4;
          const uint32_t ks[4] = {w[u].x, w[u].y, w[u].z, w[u].w};
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (t + e >= lo && t + e < hi) atomicAdd(&hw[score_of(ks[e], qc, a.qpl, a.bits, a.mask)], 1);
        }
      }
    }
    __syncthreads();
    // Suffix counts over levels (one warp): lane handles a run of consecutive levels.
    for (int lev = threadIdx.x; lev < LV; lev += SEL_THREADS) {
      int s = 0;
#pragma unroll
      for (int w = 0; w < SEL_WARPS; ++w) s += hist[w][lev];
      red[lev] = s;
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      const int per = (LV + 31) / 32;
      const int l0 = lane * per, l1 = min(LV, l0 + per);
      int run = 0;
      for (int lev = l1 - 1; lev >= l0; --lev) run += red[lev];
      // exclusive suffix over lanes above
      int x = run;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_down_sync(0xffffffffu, x, o);
        if (lane + o < 32) x += y;
      }
      int above = x - run;
      for (int lev = l1 - 1; lev >= l0; --lev) {
        above += red[lev];
        red[lev] = above;  // now #(score >= lev)
      }
    }
    __syncthreads();
    int* crow = a.cum + (list * a.n_chunks + c) * LV;
    int* trow = a.tot + list * LV;
    for (int lev = threadIdx.x; lev < LV; lev += SEL_THREADS) {
      const int v = red[lev];
      crow[lev] = v;
      if (v) atomicAdd(trow + lev, v);
    }
  }
  // Ticket: the last CTA of the list computes the cutoff.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(a.ticket + list, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  if (threadIdx.x == 0) a.ticket[list] = 0;
  if (pl.all || pl.mid == 0) {
    if (threadIdx.x == 0) a.lp[list] = make_int4(LV, 0, 0, 0);
    return;
  }
  const int64_t mid = pl.mid;
  int* trow = a.tot + list * LV;
  for (int lev = threadIdx.x; lev < LV; lev += SEL_THREADS) red[lev] = __ldcg(trow + lev);
  if (threadIdx.x == 0) {
    red[LV] = 0;
    L_sh = 0;
  }
  __syncthreads();
  for (int lev = threadIdx.x; lev < LV; lev += SEL_THREADS) {
    trow[lev] = 0;  // restore for the next call
    if (red[lev] >= mid && red[lev + 1] < mid) L_sh = lev;
  }
  __syncthreads();
  const int L = L_sh;
  const int gt_total = red[L + 1];
  const int E = red[L] - gt_total;
  const int take = (int)mid - gt_total;
  const int nvalid = (int)((n + a.chunk - 1) / a.chunk);
  int gt_run = 0, eq_run = 0;
  for (int base = 0; base < nvalid; base += SEL_THREADS) {
    const int cc = base + threadIdx.x;
    int gt = 0, eq = 0;
    if (cc < nvalid) {
      const int* crow = a.cum + (list * a.n_chunks + cc) * LV;
      gt = L + 1 < LV ? __ldcg(crow + L + 1) : 0;
      eq = __ldcg(crow + L) - gt;
    }
    int gt_tot, eq_tot;
    const int gt_pre = block_exclusive_scan(gt, scan_sh, &gt_tot);
    const int eq_pre = block_exclusive_scan(eq, scan_sh, &eq_tot);
    if (cc < nvalid) a.meta[list * a.n_chunks + cc] = make_int2(gt_run + gt_pre, eq_run + eq_pre);
    gt_run += gt_tot;
    eq_run += eq_tot;
  }
  if (threadIdx.x == 0) a.lp[list] = make_int4(L, take, E, (int)mid);
}

__global__ void __launch_bounds__(SEL_THREADS) select_compact_kernel(select_args a) {
  __shared__ int scan_sh[33];
  const int c = blockIdx.x, r = blockIdx.y, b = blockIdx.z;
  const int64_t n = a.seq_len[b];
  const sel_plan pl = make_plan(a.density, a.count, a.sinks, a.window, n);
  const int64_t list = (int64_t)b * a.n_lists + r;
  int32_t* out = a.idx + list * a.idx_stride;
  const int64_t cbase = (int64_t)c * a.chunk;
  if (c == 0 && threadIdx.x == 0) a.idx_count[list] = (int32_t)pl.total;
  if (cbase >= n) return;
  if (pl.all) {
    const int64_t e = min(cbase + a.chunk, n);
    for (int64_t t = cbase + threadIdx.x; t < e; t += SEL_THREADS) out[t] = (int32_t)t;
    return;
  }
  if (c == 0) {
    for (int64_t t = threadIdx.x; t < pl.s; t += SEL_THREADS) out[t] = (int32_t)t;
    for (int64_t i = threadIdx.x; i < pl.w; i += SEL_THREADS)
      out[pl.s + pl.mid + i] = (int32_t)(n - pl.w + i);
  }
  if (pl.mid == 0) return;
  const int64_t lo = max(cbase, pl.s), hi = min(cbase + a.chunk, n - pl.w);
  if (lo >= hi) return;
  const int4 lp = a.lp[list];
  const int L = lp.x, take = lp.y, E = lp.z;
  const int2 mt = a.meta[list * a.n_chunks + c];
  const int eq_skip = E - take;  // eq tokens with global rank < eq_skip are dropped
  int eq_run = mt.y;
  int64_t out_run = pl.s + mt.x + max(0, mt.y - eq_skip);
  uint32_t qc[MAX_QPL];
#pragma unroll
  for (int j = 0; j < MAX_QPL; ++j) qc[j] = j < a.qpl ? a.qcodes[(int64_t)b * a.n_head + r * a.qpl + j] : 0u;
  const uint32_t* row = a.codes + (int64_t)b * a.c_stride_seq + (int64_t)r * a.c_stride_head;
  const uint4* row4 = reinterpret_cast<const uint4*>(row);
  // Each thread scores 16 consecutive tokens of a tile; the next tile's codes load during this one.
  uint4 nx[4];
  auto load_tile = [&](int64_t tile) {
    const int64_t t0 = tile + (int64_t)threadIdx.x * 16;
#pragma unroll
    for (int u = 0; u < 4; ++u) nx[u] = t0 + 4 * u < hi ? __ldcs(row4 + (t0 >> 2) + u) : make_uint4(0, 0, 0, 0);
  };
  load_tile(lo & ~int64_t(3));
  for (int64_t tile = lo & ~int64_t(3); tile < hi; tile += SEL_TILE) {
    const int64_t t0 = tile + (int64_t)threadIdx.x * 16;
    uint4 w[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) w[u] = nx[u];
    if (tile + SEL_TILE < hi) load_tile(tile + SEL_TILE);
    uint32_t gt_mask = 0, eq_mask = 0;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const uint32_t ks[4] = {w[u].x, w[u].y, w[u].z, w[u].w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t t = t0 + 4 * u + e;
        if (t >= lo && t < hi) {
          const int s = score_of(ks[e], qc, a.qpl, a.bits, a.mask);
          if (s > L) gt_mask |= 1u << (4 * u + e);
          else if (s == L) eq_mask |= 1u << (4 * u + e);
        }
      }
    }
    int eq_tot;
    const int eq_pre = block_exclusive_scan(__popc(eq_mask), scan_sh, &eq_tot);
    // eq token with in-thread rank q has global rank eq_run + eq_pre + q
    uint32_t sel = gt_mask;
    {
      const int first_kept = eq_skip - (eq_run + eq_pre);  // in-thread eq ranks >= this are kept
      uint32_t m = eq_mask;
      int q = 0;
      while (m) {
        const int bit = __ffs(m) - 1;
        m &= m - 1;
        if (q >= first_kept) sel |= 1u << bit;
        ++q;
      }
    }
    int sel_tot;
    const int sel_pre = block_exclusive_scan(__popc(sel), scan_sh, &sel_tot);
    int64_t o = out_run + sel_pre;
    uint32_t m = sel;
    while (m) {
      const int bit = __ffs(m) - 1;
      m &= m - 1;
      out[o++] = (int32_t)(t0 + bit);
    }
    eq_run += eq_tot;
    out_run += sel_tot;
  }
}

}  // namespace

int select_n_lists(const select_params& p) { return plan::select_lists(p); }

void select_validate(const select_params& p) { plan::check_select(p); }

size_t select_workspace_size(const select_params& p) {
  select_validate(p);
  return plan::select_layout_of(p, detail::current_device()).bytes;
}

void select_run(const select_params& p, void* workspace, void* stream) {
  select_validate(p);
  if (!workspace) fail("select: workspace", "null", "select_workspace_size() bytes, zeroed once");
  const plan::select_layout l = plan::select_layout_of(p, detail::current_device());
  char* ws = static_cast<char*>(workspace);
  select_args a{};
  a.qcodes = p.qcodes;
  a.codes = static_cast<const uint32_t*>(p.codes.codes);
  a.c_stride_seq = p.codes.stride_seq;
  a.c_stride_head = p.codes.stride_enc;
  a.seq_len = p.seq_len;
  a.n_head = p.n_head;
  a.n_lists = l.n_lists;
  a.qpl = l.qpl;
  a.bits = p.bits;
  a.levels = l.levels;
  a.mask = p.bits == 32 ? 0xffffffffu : ((1u << p.bits) - 1);
  a.density = p.budget.density;
  a.count = p.budget.count;
  a.sinks = p.budget.sinks;
  a.window = p.budget.window;
  a.n_chunks = l.n_chunks;
  a.chunk = l.chunk;
  a.idx = p.idx;
  a.idx_count = p.idx_count;
  a.idx_stride = p.idx_stride;
  a.ticket = reinterpret_cast<unsigned*>(ws + l.off_ticket);
  a.tot = reinterpret_cast<int*>(ws + l.off_tot);
  a.lp = reinterpret_cast<int4*>(ws + l.off_lp);
  a.meta = reinterpret_cast<int2*>(ws + l.off_meta);
  a.cum = reinterpret_cast<int*>(ws + l.off_cum);
  const dim3 grid(l.n_chunks, l.n_lists, p.batch);
  cudaStream_t s = detail::as_stream(stream);
  if (p.only_pass != 2) {
    select_hist_kernel<<<grid, SEL_THREADS, 0, s>>>(a);
    HASHATTN_CUDA_LAUNCHED("select_hist_kernel");
  }
  if (p.only_pass != 1) {
    select_compact_kernel<<<grid, SEL_THREADS, 0, s>>>(a);
    HASHATTN_CUDA_LAUNCHED("select_compact_kernel");
  }
}

}  // namespace cuda
}  // namespace hashattn
