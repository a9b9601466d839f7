// CPU decode attention (attention.h): dense or over index lists, fp32 / fp16 / bf16 KV, GQA.
// q: [n_head, d] fp32; K/V element (t, h, j) at base + t*stride_tok + h*stride_head + j; out: [n_head, d].
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
#include "hashattn/attention.h"
#include "hashattn/error.h"
#include "hwy/base.h"
#include "hwy/cache_control.h"

#ifndef HASHATTN_ATTN_DECODE_SHARED
#define HASHATTN_ATTN_DECODE_SHARED
namespace hashattn::attn_detail {
constexpr int max_group = 8;  // query heads processed together per job
constexpr int block = 32;     // tokens per online-softmax block
struct job {
  int hk = 0;                     // KV head
  int q0 = 0;                     // first query head
  int ng = 0;                     // query heads in the job (1 .. max_group)
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
  float* part = nullptr;      // per item: acc [max_group, dp], m [max_group], l [max_group]
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

template <class T, int G>
void run_item(const ctx& c, int item_index) {
  const attn_decode_params& p = *c.p;
  const item& it = c.items[item_index];
  const job& jb = c.jobs[it.job];
  const kv_view& kv = p.kv;
  const int d = kv.head_dim, dp = c.dp;
  const DF df;
  const int N = (int)hn::Lanes(df);
  const int dt = d / N * N;  // SIMD part; [dt, d) is the scalar tail
  const T* kb = (const T*)kv.k + (int64_t)jb.hk * kv.stride_head;
  const T* vb = (const T*)kv.v + (int64_t)jb.hk * kv.stride_head;
  const float* q = c.qs + (int64_t)jb.q0 * dp;
  float* acc = c.part + (int64_t)item_index * c.part_stride;
  float* m = acc + max_group * dp;
  float* l = m + max_group;
  std::fill(acc, acc + G * dp, 0.f);
  for (int g = 0; g < G; g++) {
    m[g] = -INFINITY;
    l[g] = 0;
  }
  HWY_ALIGN float s[G][block];
  const T* vrow[block];
  for (int64_t b = it.b; b < it.e; b += block) {
    const int nb = (int)std::min<int64_t>(block, it.e - b);
    // Scores for the G queries, one K row read per token.
    for (int i = 0; i < nb; i++) {
      const int64_t t = jb.idx ? (int64_t)jb.idx[b + i] : b + i;
      const T* kr = kb + t * kv.stride_tok;
      vrow[i] = vb + t * kv.stride_tok;
      if (i + 1 < nb) {
        const int64_t tn = jb.idx ? (int64_t)jb.idx[b + i + 1] : b + i + 1;
        hwy::Prefetch(kb + tn * kv.stride_tok);
      }
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
        const auto e = hn::Exp(df, hn::Sub(hn::Load(df, &s[g][i]), vm));
        hn::Store(e, df, &s[g][i]);
        vsum = hn::Add(vsum, e);
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
  if (p.idx == nullptr || p.per_group) {
    for (int hk = 0; hk < kv.n_head_kv; hk++) {
      const int32_t* l = p.idx ? p.idx + (int64_t)hk * p.idx_stride : nullptr;
      const int64_t n = p.idx ? p.idx_count[hk] : kv.n_tok;
      for (int g0 = 0; g0 < G; g0 += max_group) jobs.push_back({hk, hk * G + g0, std::min(max_group, G - g0), l, n});
    }
  } else {
    for (int h = 0; h < p.n_head; h++)
      jobs.push_back({h / G, h, 1, p.idx + (int64_t)h * p.idx_stride, (int64_t)p.idx_count[h]});
  }
  int64_t total = 0;
  for (const job& j : jobs) total += j.n;
  int64_t chunk = INT64_MAX;
  if (nt > 1) {
    chunk = std::max<int64_t>(512, (total + 4 * nt - 1) / (4 * nt));
    chunk = (chunk + block - 1) / block * block;
  }
  items.clear();
  for (int ji = 0; ji < (int)jobs.size(); ji++)
    for (int64_t b = 0; b < jobs[ji].n; b += chunk) items.push_back({ji, b, std::min(jobs[ji].n, b + std::min(chunk, jobs[ji].n - b))});

  const int64_t part_stride = (int64_t)max_group * dp + 2 * max_group;
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
  for (size_t i = 0; i < items.size(); i++) {
    const job& jb = jobs[items[i].job];
    const float* m = part.data() + i * part_stride + (int64_t)max_group * dp;
    for (int g = 0; g < jb.ng; g++) hm[jb.q0 + g] = std::max(hm[jb.q0 + g], m[g]);
  }
  for (size_t i = 0; i < items.size(); i++) {
    const job& jb = jobs[items[i].job];
    const float* acc = part.data() + i * part_stride;
    const float* m = acc + (int64_t)max_group * dp;
    const float* l = m + max_group;
    for (int g = 0; g < jb.ng; g++) {
      const int h = jb.q0 + g;
      const float w = std::exp(m[g] - hm[h]);
      hl[h] += w * l[g];
      float* o = p.out + (int64_t)h * d;
      const float* a = acc + (int64_t)g * dp;
      for (int j = 0; j < d; j++) o[j] += w * a[j];
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
