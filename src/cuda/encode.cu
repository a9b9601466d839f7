// Fused KV append + key encode, and query encode, for all heads of a layer in one launch.
// Jobs (one CTA each): (code head, tile of 16 new tokens over batch x n_new) for keys, then
// (query head, tile of 16 sequences) for queries. A CTA copies its head's MLP weights into shared
// memory (cp.async), runs Linear -> SiLU -> ... -> Linear over the tile, and packs the sign bits
// of the last layer LSB-first with one warp ballot per token. Key jobs of the first code head of
// each KV head also write the tile's K and V rows into the paged cache (converted to its dtype).
// k_new/v_new: [batch, n_new, n_head_kv, d]; q: [batch, n_head, d]; weights: see mlp_device.
#include <cuda_pipeline.h>

#include "cuda/common.cuh"

namespace hashattn {
namespace cuda {
namespace {

using namespace detail;
using plan::ENC_THREADS;
using plan::ENC_TT;
using plan::mlp_args;
using plan::weight_floats;

constexpr int ENC_MAX_SPLIT = 16;  // threads that share one output's dot product (split over inputs)

struct encode_args {
  int n_new, n_head, n_head_kv, head_dim, group, per_group, n_code_head;
  int64_t n_key_tok;  // batch * n_new
  const void* k_new;
  const void* v_new;
  int in_type;
  const int32_t* pos0;
  const int32_t* seq_len;
  void* k;
  void* v;
  int kv_type;
  int64_t stride_page, stride_tok, stride_head, pt_stride;
  const int32_t* pt;
  int page_shift;
  int64_t page_mask;
  mlp_args kmlp;
  uint32_t* codes;
  int64_t c_stride_seq, c_stride_head;
  const float* q;
  int batch;
  mlp_args qmlp;
  uint32_t* qcodes;
  int key_tiles, q_tiles, n_key_jobs;
  int max_dim;
};

__device__ void copy_async(float* dst, const float* src, int64_t n) {
  const bool vec = ((reinterpret_cast<uintptr_t>(src) & 15) == 0) && (n % 4 == 0);
  if (vec) {
    for (int64_t i = threadIdx.x; i < n / 4; i += blockDim.x)
      __pipeline_memcpy_async(dst + 4 * i, src + 4 * i, 16);
  } else {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) __pipeline_memcpy_async(dst + i, src + i, 4);
  }
}

__global__ void __launch_bounds__(ENC_THREADS) encode_kernel(encode_args a) {
  extern __shared__ __align__(16) float sm[];
  const int job = blockIdx.x;
  const bool is_key = job < a.n_key_jobs;
  const mlp_args& m = is_key ? a.kmlp : a.qmlp;
  int head, tile;
  if (is_key) {
    head = job / a.key_tiles;
    tile = job % a.key_tiles;
  } else {
    head = (job - a.n_key_jobs) / a.q_tiles;
    tile = (job - a.n_key_jobs) % a.q_tiles;
  }
  const int64_t ntok_all = is_key ? a.n_key_tok : (int64_t)a.batch;
  const int64_t t0 = (int64_t)tile * ENC_TT;
  const int nt = (int)min((int64_t)ENC_TT, ntok_all - t0);

  // 1. weights of this head -> shared memory (asynchronous).
  float* sw[3];
  float* sb[3];
  {
    float* p = sm;
    for (int l = 0; l < m.n_layer; ++l) {
      const int64_t nw = (int64_t)m.dims[l] * m.dims[l + 1], nb = m.dims[l + 1];
      sw[l] = p;
      copy_async(p, m.w[l] + (int64_t)head * nw, nw);
      p += (nw + 3) / 4 * 4;
      sb[l] = p;
      copy_async(p, m.b[l] + (int64_t)head * nb, nb);
      p += (nb + 3) / 4 * 4;
      __pipeline_commit();  // one group per layer: layer l waits for its own weights only
    }
  }
  float* x0 = sm + weight_floats(m);
  float* x1 = x0 + ENC_TT * a.max_dim;
  float* red = x1 + ENC_TT * a.max_dim;  // [ENC_THREADS] partial sums
  const int d = a.head_dim;
  const int kvh = is_key ? (a.per_group ? head : head / a.group) : 0;

  // 2. inputs of the tile -> x0 (fp32); keys of the first code head of a KV head: append K/V.
  for (int e = threadIdx.x; e < nt * d; e += blockDim.x) {
    const int t = e / d, j = e % d;
    const int64_t ft = t0 + t;
    if (is_key) {
      const int64_t src = (ft * a.n_head_kv + kvh) * d + j;  // ft = b * n_new + i
      x0[t * d + j] = load_any(a.k_new, a.in_type, src);
    } else {
      x0[t * d + j] = a.q[(ft * a.n_head + head) * d + j];
    }
  }
  if (is_key && a.k != nullptr && (a.per_group || head % a.group == 0)) {
    for (int e = threadIdx.x; e < nt * d; e += blockDim.x) {
      const int t = e / d, j = e % d;
      const int64_t ft = t0 + t;
      const int b = (int)(ft / a.n_new), i = (int)(ft % a.n_new);
      const int64_t pos = (a.pos0 ? (int64_t)a.pos0[b] : (int64_t)a.seq_len[b] - a.n_new) + i;
      const int64_t page = a.pt[b * a.pt_stride + (pos >> a.page_shift)];
      const int64_t dst = page * a.stride_page + (pos & a.page_mask) * a.stride_tok + kvh * a.stride_head + j;
      const int64_t src = (ft * a.n_head_kv + kvh) * d + j;
      store_half_any(a.k, a.kv_type, dst, load_any(a.k_new, a.in_type, src));
      store_half_any(a.v, a.kv_type, dst, load_any(a.v_new, a.in_type, src));
    }
  }
  // 3. the MLP over the tile. With few outputs (decode), `ks` threads share each output's dot
  // product, each over a slice of the inputs, and the slices are summed through shared memory.
  float* cur = x0;
  float* nxt = x1;
  for (int l = 0; l < m.n_layer; ++l) {
    __pipeline_wait_prior(m.n_layer - 1 - l);
    __syncthreads();
    const int din = m.dims[l], dout = m.dims[l + 1];
    const float* W = sw[l];
    const float* B = sb[l];
    const bool last = l == m.n_layer - 1;
    const int total = nt * dout;
    int ks = 1;
    while (ks < ENC_MAX_SPLIT && total * ks * 2 <= ENC_THREADS && ks * 2 <= din) ks *= 2;
    const int groups = ENC_THREADS / ks;
    const int part = threadIdx.x / groups, g = threadIdx.x % groups;
    const int i0 = (int)((int64_t)din * part / ks), i1 = (int)((int64_t)din * (part + 1) / ks);
    for (int e = g; e < total; e += groups) {
      const int t = e / dout, o = e % dout;
      const float* xr = cur + t * din;
      float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f;
      int i = i0;
      for (; i + 4 <= i1; i += 4) {
        acc0 = fmaf(xr[i], W[(i + 0) * dout + o], acc0);
        acc1 = fmaf(xr[i + 1], W[(i + 1) * dout + o], acc1);
        acc2 = fmaf(xr[i + 2], W[(i + 2) * dout + o], acc2);
        acc3 = fmaf(xr[i + 3], W[(i + 3) * dout + o], acc3);
      }
      for (; i < i1; ++i) acc0 = fmaf(xr[i], W[i * dout + o], acc0);
      const float acc = (acc0 + acc1) + (acc2 + acc3);
      if (ks == 1) {
        float y = acc + B[o];
        if (!last) y = y / (1.f + __expf(-y));
        nxt[t * dout + o] = y;
      } else {
        red[part * total + e] = acc;
      }
    }
    if (ks > 1) {
      __syncthreads();
      for (int e = threadIdx.x; e < total; e += ENC_THREADS) {
        float y = B[e % dout];
        for (int q = 0; q < ks; ++q) y += red[q * total + e];
        if (!last) y = y / (1.f + __expf(-y));
        nxt[e] = y;
      }
    }
    __syncthreads();
    float* tmp = cur;
    cur = nxt;
    nxt = tmp;
  }

  // 4. sign bits -> packed code, one warp per token.
  const int bits = m.dims[m.n_layer];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int t = warp; t < nt; t += ENC_THREADS / 32) {
    const bool bit = lane < bits && cur[t * bits + lane] > 0.f;
    const uint32_t code = __ballot_sync(0xffffffffu, bit);
    if (lane == 0) {
      const int64_t ft = t0 + t;
      if (is_key) {
        const int b = (int)(ft / a.n_new), i = (int)(ft % a.n_new);
        const int64_t pos = (a.pos0 ? (int64_t)a.pos0[b] : (int64_t)a.seq_len[b] - a.n_new) + i;
        a.codes[b * a.c_stride_seq + head * a.c_stride_head + pos] = code;
      } else {
        a.qcodes[ft * a.n_head + head] = code;
      }
    }
  }
}

}  // namespace

void encode_validate(const encode_params& p) { plan::check_encode(p, detail::current_device()); }

void encode_run(const encode_params& p, void* stream) {
  encode_validate(p);
  if (p.n_new <= 0 && !p.q) return;
  const plan::encode_layout l = plan::encode_layout_of(p);
  encode_args a{};
  a.n_new = p.n_new > 0 ? p.n_new : 1;
  a.n_head = p.n_head;
  a.n_head_kv = p.n_head_kv;
  a.head_dim = p.head_dim;
  a.group = p.n_head / p.n_head_kv;
  a.per_group = p.mode == gqa_mode::per_group;
  a.n_code_head = l.n_code_head;
  a.batch = p.batch;
  a.n_key_tok = l.n_key_tok;
  a.k_new = p.k_new;
  a.v_new = p.v_new;
  a.in_type = (int)p.kv_in_type;
  a.pos0 = p.pos0;
  a.seq_len = p.seq_len;
  // The views are read-only for readers; the append writes K/V and codes through them.
  a.k = p.n_new > 0 ? const_cast<void*>(p.kv.k) : nullptr;
  a.v = const_cast<void*>(p.kv.v);
  a.kv_type = (int)p.kv.type;
  a.stride_page = p.kv.stride_page;
  a.stride_tok = p.kv.stride_tok;
  a.stride_head = p.kv.stride_head;
  a.pt = p.kv.page_table;
  a.pt_stride = p.kv.page_table_stride;
  a.page_shift = a.k ? plan::log2_int(p.kv.page_size) : 0;
  a.page_mask = a.k ? (int64_t)p.kv.page_size - 1 : 0;
  if (p.n_new > 0) a.kmlp = plan::to_args(p.key_mlp);  // an MLP without jobs is never read
  a.codes = static_cast<uint32_t*>(const_cast<void*>(p.codes.codes));
  a.c_stride_seq = p.codes.stride_seq;
  a.c_stride_head = p.codes.stride_enc;
  a.q = p.q;
  if (p.q) a.qmlp = plan::to_args(p.query_mlp);
  a.qcodes = p.qcodes;
  a.key_tiles = l.key_tiles;
  a.q_tiles = l.q_tiles;
  a.n_key_jobs = l.n_key_jobs;
  a.max_dim = l.max_dim;
  static thread_local int configured_device = -1;
  int dev = 0;
  HASHATTN_CUDA_CHECK(cudaGetDevice(&dev));
  if (configured_device != dev) {
    HASHATTN_CUDA_CHECK(cudaFuncSetAttribute(encode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             detail::max_smem_optin()));
    configured_device = dev;
  }
  encode_kernel<<<l.jobs, ENC_THREADS, l.smem, detail::as_stream(stream)>>>(a);
  HASHATTN_CUDA_LAUNCHED("encode_kernel");
}

}  // namespace cuda
}  // namespace hashattn
