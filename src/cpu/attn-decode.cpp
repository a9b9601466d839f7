// CPU decode attention (ops.h attend): dense or over index lists, fp32 / fp16 / bf16 KV, GQA.
// q: [n_head, d] fp32; K/V element (t, h, j) at base + kv_offset(kv, t, h) + j (core.h: contiguous or
// paged); out: [n_head, d].
// Work is split into jobs (one KV head and up to 8 of its query heads sharing a token set: dense or a
// per-group list; or one query head and its own list) and jobs into token chunks (split-KV). Each chunk
// runs an online softmax over blocks of 32 tokens (scores for all the job's queries from one K row read,
// then the V rows accumulated into all of them) and leaves (max, sum, acc) partials that are merged per
// head at the end. OpenMP over chunks; Highway SIMD with runtime dispatch (foreach_target).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "cpu/cpu-kernels.h"
#include "hashattn/error.h"
#include "hwy/base.h"
#include "hwy/cache_control.h"

#ifndef HASHATTN_ATTN_DECODE_SHARED
#define HASHATTN_ATTN_DECODE_SHARED
namespace hashattn::attn_detail {
constexpr int max_group = 8;  // query heads processed together per job
constexpr int block = 32;     // tokens per online-softmax block
constexpr int prefetch_dist = 8;  // K rows prefetched this many tokens ahead
constexpr int max_heads_per_job = 64;  // KV heads processed together by a dense job
// Floats of one head's partial state: acc [max_group, dp], m [max_group], l [max_group].
inline int64_t head_part_floats(int dp) { return (int64_t)max_group * dp + 2 * max_group; }
// A job: KV heads hk .. hk+nhk-1, each with its query heads hk*G+g0 .. hk*G+g0+ng-1, over one token
// set (dense, or one list shared by the job's heads).
struct job {
  int hk = 0;                     // first KV head
  int nhk = 1;                    // KV heads in the job (> 1 only for dense jobs)
  int g0 = 0;                     // first query head within each group
  int ng = 0;                     // query heads per KV head (1 .. max_group)
  const int32_t* idx = nullptr;   // token list, nullptr = dense [0, n)
  int64_t n = 0;                  // tokens in the job
};
struct item {
  int job = 0;
  int64_t b = 0, e = 0;  // token range [b, e) of the job
};
struct ctx {
  const attn_decode_params* p = nullptr;
  const float* qs = nullptr;  // scaled queries [n_head, dp], zero padded
  int dp = 0;                 // padded head dim (multiple of 16)
  const job* jobs = nullptr;
  const item* items = nullptr;
  int n_items = 0;
  float* part = nullptr;      // per item: nhk x head_part_floats(dp)
  int64_t part_stride = 0;
  int n_threads = 1;
};
inline float to_f32(float x) { return x; }
inline float to_f32(hwy::float16_t x) {
  uint16_t b;
  std::memcpy(&b, &x, 2);
  return fp16_to_fp32(b);
}
inline float to_f32(hwy::bfloat16_t x) {
  uint16_t b;
  std::memcpy(&b, &x, 2);
  return bf16_to_fp32(b);
}
}  // namespace hashattn::attn_detail
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/attn-decode.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hashattn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace attn_detail;
using DF = hn::ScalableTag<float>;

template <class T>
HWY_INLINE hn::Vec<DF> load_row(DF df, const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(df, p);
  } else {
    const hn::Rebind<T, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, p));
  }
}

HWY_INLINE void prefetch_row(const void* p, int bytes) {
  for (int o = 0; o < bytes; o += 64) hwy::Prefetch((const char*)p + o);
}

// Online-softmax state of the G query heads of one KV head within one item.
template <class T>
struct head_state {
  const T* kb;      // K of the KV head (token 0)
  const T* vb;      // V of the KV head (token 0)
  const float* q;   // [G, dp] scaled queries
  float* acc;       // [G, dp]
  float* m;         // [G] running max
  float* l;         // [G] running sum
};

// One block of nb tokens (positions tok(b .. b+nb)) for one KV head and its G query heads.
template <class T, int G>
HWY_INLINE void run_block(const head_state<T>& st, const kv_view& kv, const kv_rows& rw, int dp, const int32_t* idx,
                          int64_t b, int nb, int64_t e) {
  const int d = kv.head_dim;
  const DF df;
  const int N = (int)hn::Lanes(df);
  const int dt = d / N * N;  // SIMD part; [dt, d) is the scalar tail
  const int row_bytes = d * (int)sizeof(T);
  const float* q = st.q;
  float* acc = st.acc;
  float* m = st.m;
  float* l = st.l;
  HWY_ALIGN float s[G][block];
  const T* vrow[block];
  // Scores for the G queries, one K row read per token.
  for (int i = 0; i < nb; i++) {
    const int64_t t = idx ? (int64_t)idx[b + i] : b + i;
    const int64_t off = rw.at(t);
    const T* kr = st.kb + off;
    vrow[i] = st.vb + off;
    // Rows are scattered (index lists) or strided by all KV heads: prefetch K rows ahead and this
    // block's V rows now, so that many cache misses are in flight at once.
    if (b + i + prefetch_dist < e) {
      const int64_t tn = idx ? (int64_t)idx[b + i + prefetch_dist] : b + i + prefetch_dist;
      prefetch_row(st.kb + rw.at(tn), row_bytes);
    }
    prefetch_row(vrow[i], row_bytes);
    hn::Vec<DF> a[G];
    for (int g = 0; g < G; g++) a[g] = hn::Zero(df);
    for (int j = 0; j < dt; j += N) {
      const auto kv_ = load_row(df, kr + j);
      for (int g = 0; g < G; g++) a[g] = hn::MulAdd(hn::LoadU(df, q + g * dp + j), kv_, a[g]);
    }
    for (int g = 0; g < G; g++) {
      float sg = hn::GetLane(hn::SumOfLanes(df, a[g]));
      for (int j = dt; j < d; j++) sg += q[g * dp + j] * to_f32(kr[j]);
      s[g][i] = sg;
    }
  }
  // Online softmax update per query.
  for (int g = 0; g < G; g++) {
    float bm = s[g][0];
    for (int i = 1; i < nb; i++) bm = std::max(bm, s[g][i]);
    if (bm > m[g]) {
      const float alpha = std::exp(m[g] - bm);  // 0 when m[g] = -inf
      l[g] *= alpha;
      float* ag = acc + g * dp;
      const auto va = hn::Set(df, alpha);
      for (int j = 0; j < dp; j += N) hn::StoreU(hn::Mul(hn::LoadU(df, ag + j), va), df, ag + j);
      m[g] = bm;
    }
    for (int i = nb; i < block; i++) s[g][i] = m[g] - 1000.f;  // exp underflows to 0
    const auto vm = hn::Set(df, m[g]);
    auto vsum = hn::Zero(df);
    for (int i = 0; i < block; i += N) {
      const auto ex = hn::Exp(df, hn::Sub(hn::Load(df, &s[g][i]), vm));
      hn::Store(ex, df, &s[g][i]);
      vsum = hn::Add(vsum, ex);
    }
    l[g] += hn::GetLane(hn::SumOfLanes(df, vsum));
  }
  // Accumulate p * V into the G outputs, one V row conversion per (token, lane group).
  for (int j = 0; j < dt; j += N) {
    hn::Vec<DF> a[G];
    for (int g = 0; g < G; g++) a[g] = hn::LoadU(df, acc + g * dp + j);
    for (int i = 0; i < nb; i++) {
      const auto vv = load_row(df, vrow[i] + j);
      for (int g = 0; g < G; g++) a[g] = hn::MulAdd(hn::Set(df, s[g][i]), vv, a[g]);
    }
    for (int g = 0; g < G; g++) hn::StoreU(a[g], df, acc + g * dp + j);
  }
  for (int j = dt; j < d; j++) {
    for (int i = 0; i < nb; i++) {
      const float vj = to_f32(vrow[i][j]);
      for (int g = 0; g < G; g++) acc[g * dp + j] += s[g][i] * vj;
    }
  }
}

// One item: a token range of a job, for each of the job's KV heads (blocks outer, heads inner, so
// that with interleaved [t][h][d] layouts one block's rows of all heads are read together).
template <class T, int G>
void run_item(const ctx& c, int item_index) {
  const attn_decode_params& p = *c.p;
  const item& it = c.items[item_index];
  const job& jb = c.jobs[it.job];
  const kv_view& kv = p.kv;
  const kv_rows rw(kv);  // core.h: the one addressing rule, set up once
  const int dp = c.dp;
  const int gq = p.n_head / kv.n_head_kv;
  head_state<T> st[max_heads_per_job];
  for (int u = 0; u < jb.nhk; u++) {
    const int hk = jb.hk + u;
    head_state<T>& h = st[u];
    h.kb = (const T*)kv.k + (int64_t)hk * kv.stride_head;
    h.vb = (const T*)kv.v + (int64_t)hk * kv.stride_head;
    h.q = c.qs + (int64_t)(hk * gq + jb.g0) * dp;
    h.acc = c.part + (int64_t)item_index * c.part_stride + (int64_t)u * head_part_floats(dp);
    h.m = h.acc + max_group * dp;
    h.l = h.m + max_group;
    std::fill(h.acc, h.acc + G * dp, 0.f);
    for (int g = 0; g < G; g++) {
      h.m[g] = -INFINITY;
      h.l[g] = 0;
    }
    const int row_bytes = kv.head_dim * (int)sizeof(T);
    for (int64_t i = it.b; i < std::min<int64_t>(it.e, it.b + prefetch_dist); i++)
      prefetch_row(h.kb + rw.at(jb.idx ? (int64_t)jb.idx[i] : i), row_bytes);
  }
  for (int64_t b = it.b; b < it.e; b += block) {
    const int nb = (int)std::min<int64_t>(block, it.e - b);
    for (int u = 0; u < jb.nhk; u++) run_block<T, G>(st[u], kv, rw, dp, jb.idx, b, nb, it.e);
  }
}

template <class T>
void run_item_t(const ctx& c, int i) {
  switch (c.jobs[c.items[i].job].ng) {
    case 1: return run_item<T, 1>(c, i);
    case 2: return run_item<T, 2>(c, i);
    case 3: return run_item<T, 3>(c, i);
    case 4: return run_item<T, 4>(c, i);
    case 5: return run_item<T, 5>(c, i);
    case 6: return run_item<T, 6>(c, i);
    case 7: return run_item<T, 7>(c, i);
    case 8: return run_item<T, 8>(c, i);
  }
  HASHATTN_ASSERT(false);
}

void run_items(const ctx& c) {
  const dtype t = c.p->kv.type;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c.n_threads)
  for (int i = 0; i < c.n_items; i++) {
    if (t == dtype::f16) {
      run_item_t<hwy::float16_t>(c, i);
    } else if (t == dtype::bf16) {
      run_item_t<hwy::bfloat16_t>(c, i);
    } else {
      run_item_t<float>(c, i);
    }
  }
}

const char* target_name() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace hashattn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hashattn {
HWY_EXPORT(run_items);
HWY_EXPORT(target_name);

const char* cpu_simd_target() { return HWY_DYNAMIC_DISPATCH(target_name)(); }

void attn_decode_cpu(const attn_decode_params& p) {
  using namespace attn_detail;
  attn_decode_validate(p);
  const kv_view& kv = p.kv;
  const int d = kv.head_dim;
  const int dp = (d + 15) / 16 * 16;
  const int G = p.n_head / kv.n_head_kv;
  const int nt = p.n_threads > 0 ? p.n_threads : omp_get_max_threads();

  thread_local std::vector<float> qs, part;
  thread_local std::vector<job> jobs;
  thread_local std::vector<item> items;
  qs.assign((size_t)p.n_head * dp, 0.f);
  for (int h = 0; h < p.n_head; h++)
    for (int j = 0; j < d; j++) qs[(size_t)h * dp + j] = p.q[(int64_t)h * d + j] * p.scale;

  jobs.clear();
  if (p.idx == nullptr) {
    for (int hk = 0; hk < kv.n_head_kv; hk += max_heads_per_job)
      for (int g0 = 0; g0 < G; g0 += max_group)
        jobs.push_back({hk, std::min(max_heads_per_job, kv.n_head_kv - hk), g0, std::min(max_group, G - g0),
                        nullptr, kv.n_tok});
  } else if (p.per_group) {
    for (int hk = 0; hk < kv.n_head_kv; hk++)
      for (int g0 = 0; g0 < G; g0 += max_group)
        jobs.push_back({hk, 1, g0, std::min(max_group, G - g0), p.idx + (int64_t)hk * p.idx_stride,
                        (int64_t)p.idx_count[hk]});
  } else {
    for (int h = 0; h < p.n_head; h++)
      jobs.push_back({h / G, 1, h % G, 1, p.idx + (int64_t)h * p.idx_stride, (int64_t)p.idx_count[h]});
  }
  // Split jobs into token chunks of about equal work (tokens x KV heads), ~4 per thread.
  int64_t total = 0;
  for (const job& j : jobs) total += j.n * j.nhk;
  const int64_t per_item = nt > 1 ? std::max<int64_t>(1024, (total + 4 * nt - 1) / (4 * nt)) : INT64_MAX;
  items.clear();
  for (int ji = 0; ji < (int)jobs.size(); ji++) {
    const job& j = jobs[ji];
    int64_t chunk = per_item == INT64_MAX ? j.n : (per_item + j.nhk - 1) / j.nhk;
    chunk = std::max<int64_t>(block, (chunk + block - 1) / block * block);
    for (int64_t b = 0; b < j.n; b += chunk) items.push_back({ji, b, std::min(j.n, b + chunk)});
  }
  int max_nhk = 1;
  for (const job& j : jobs) max_nhk = std::max(max_nhk, j.nhk);
  const int64_t part_stride = max_nhk * head_part_floats(dp);
  part.resize((size_t)std::max<size_t>(1, items.size()) * part_stride);
  ctx c;
  c.p = &p;
  c.qs = qs.data();
  c.dp = dp;
  c.jobs = jobs.data();
  c.items = items.data();
  c.n_items = (int)items.size();
  c.part = part.data();
  c.part_stride = part_stride;
  c.n_threads = std::max(1, std::min<int>(nt, (int)items.size()));
  if (!items.empty()) HWY_DYNAMIC_DISPATCH(run_items)(c);

  // Merge the partials per query head: out = sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M).
  thread_local std::vector<float> hm, hl;
  hm.assign(p.n_head, -INFINITY);
  hl.assign(p.n_head, 0.f);
  std::fill(p.out, p.out + (int64_t)p.n_head * d, 0.f);
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < items.size(); i++) {
      const job& jb = jobs[items[i].job];
      for (int u = 0; u < jb.nhk; u++) {
        const float* acc = part.data() + i * part_stride + u * head_part_floats(dp);
        const float* m = acc + (int64_t)max_group * dp;
        const float* l = m + max_group;
        for (int g = 0; g < jb.ng; g++) {
          const int h = (jb.hk + u) * G + jb.g0 + g;
          if (pass == 0) {
            hm[h] = std::max(hm[h], m[g]);
            continue;
          }
          const float w = std::exp(m[g] - hm[h]);
          hl[h] += w * l[g];
          float* o = p.out + (int64_t)h * d;
          const float* a = acc + (int64_t)g * dp;
          for (int j = 0; j < d; j++) o[j] += w * a[j];
        }
      }
    }
  }
  for (int h = 0; h < p.n_head; h++) {
    if (hl[h] <= 0) continue;
    const float inv = 1.f / hl[h];
    float* o = p.out + (int64_t)h * d;
    for (int j = 0; j < d; j++) o[j] *= inv;
  }
}

}  // namespace hashattn
#endif  // HWY_ONCE
