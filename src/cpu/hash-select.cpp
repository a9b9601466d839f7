// CPU hash scoring and selection (hash.h): XOR + popcount scores, then per list a histogram over the
// score levels (0 .. max_level), a prefix walk from the top level to the cutoff, and one compaction
// pass (no sort). Ties at the cutoff level go to the most recent positions: the first
// (hist[cut] - taken) cutoff-level tokens in position order are skipped.
// Codes (t, e) at word t*stride_tok + e*stride_enc; with stride_tok == 1 (the store's layout) every
// list streams its encoders' codes with Highway vectors (u16/u32/u64 lanes); otherwise a scalar path.
// Scores are kept as u8 (max level <= 255) or u16 per list in a per-thread buffer. OpenMP over lists.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "hashattn/error.h"
#include "cpu/cpu-kernels.h"

#ifndef HASHATTN_HASH_SELECT_SHARED
#define HASHATTN_HASH_SELECT_SHARED
namespace hashattn::select_detail {
// The (query code, key code stream) pairs whose matches sum to a list's score.
struct list_streams {
  int n = 0;
  uint64_t q[64];
  const void* k[64];  // code of token t at word t * stride_tok
};
inline list_streams streams_for(const hash_select_params& p, int r) {
  const code_view& kc = p.keys;
  const int G = p.n_head / p.n_head_kv;
  const bool per_head_codes = kc.n_enc == p.n_head;
  const size_t wb = hash_code_bytes(kc.bits);
  list_streams s;
  auto add = [&](int h, int e) {
    s.q[s.n] = code_get(p.q_codes, kc.bits, h);
    s.k[s.n] = (const char*)kc.codes + (size_t)e * kc.stride_enc * wb;
    s.n++;
  };
  if (p.mode == gqa_mode::per_head) {
    add(r, per_head_codes ? r : r / G);
  } else {
    for (int g = 0; g < G; g++) add(r * G + g, per_head_codes ? r * G + g : r);
  }
  return s;
}
}  // namespace hashattn::select_detail
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/hash-select.cpp"
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL  // native vector popcount (VPOPCNTDQ) where the CPU has it
#endif
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace hashattn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace select_detail;

// Scores of list r for tokens [lo, hi) -> out[0 .. hi-lo); hist[level] += 1 per token if hist.
template <class W, class S>
void score_range(const hash_select_params& p, const list_streams& ls, int64_t lo, int64_t hi, S* out,
                 uint32_t* hist) {
  const code_view& kc = p.keys;
  const uint32_t full = (uint32_t)(kc.bits * ls.n);
  if (kc.stride_tok != 1) {
    for (int64_t t = lo; t < hi; t++) {
      uint32_t m = 0;
      for (int i = 0; i < ls.n; i++)
        m += (uint32_t)__builtin_popcountll(ls.q[i] ^ code_get(ls.k[i], kc.bits, t * kc.stride_tok));
      const uint32_t sc = full - m;
      out[t - lo] = (S)sc;
      if (hist) hist[sc]++;
    }
    return;
  }
  const hn::ScalableTag<W> d;
  const int64_t N = (int64_t)hn::Lanes(d);
  HWY_ALIGN W tmp[HWY_MAX_BYTES / sizeof(W)];
  const uint32_t levels = full + 1;
  // 4 sub-histograms break store-to-load chains when the same level repeats.
  thread_local std::vector<uint32_t> hbuf;
  if (hist) hbuf.assign(4 * (size_t)levels, 0);
  uint32_t* h4[4] = {hbuf.data(), hbuf.data() + levels, hbuf.data() + 2 * levels, hbuf.data() + 3 * levels};
  int64_t t = lo;
  const auto vfull = hn::Set(d, (W)full);
  for (; t + N <= hi; t += N) {
    auto acc = hn::Zero(d);
    for (int i = 0; i < ls.n; i++) {
      const auto k = hn::LoadU(d, (const W*)ls.k[i] + t);
      acc = hn::Add(acc, hn::PopulationCount(hn::Xor(k, hn::Set(d, (W)ls.q[i]))));
    }
    hn::Store(hn::Sub(vfull, acc), d, tmp);
    S* o = out + (t - lo);
    for (int64_t j = 0; j < N; j++) o[j] = (S)tmp[j];
  }
  // Histogram in a separate tight pass over the stored scores (4 interleaved sub-histograms).
  if (hist) {
    const int64_t nv = (t - lo) & ~(int64_t)3;
    int64_t i = 0;
    for (; i < nv; i += 4) {
      h4[0][out[i]]++;
      h4[1][out[i + 1]]++;
      h4[2][out[i + 2]]++;
      h4[3][out[i + 3]]++;
    }
    for (; i < t - lo; i++) h4[0][out[i]]++;
  }
  for (; t < hi; t++) {
    uint32_t m = 0;
    for (int i = 0; i < ls.n; i++) m += (uint32_t)__builtin_popcountll(ls.q[i] ^ (uint64_t)((const W*)ls.k[i])[t]);
    const uint32_t sc = full - m;
    out[t - lo] = (S)sc;
    if (hist) h4[0][sc]++;
  }
  if (hist)
    for (uint32_t l = 0; l < levels; l++) hist[l] += h4[0][l] + h4[1][l] + h4[2][l] + h4[3][l];
}

// Positions lo + i (i in [0, n)) with s[i] > cut, plus the level-cut ones after the first `skip`
// of them, written ascending to w (which has room for n + lanes). Returns the count.
template <class S>
int64_t compact(const S* s, int64_t n, int64_t lo, uint32_t cut, int64_t skip, int32_t* w) {
  const hn::ScalableTag<int32_t> di;
  const hn::Rebind<S, decltype(di)> ds;
  const int64_t N = (int64_t)hn::Lanes(di);
  const auto vcut = hn::Set(di, (int32_t)cut);
  const auto vcut_m1 = hn::Set(di, (int32_t)cut - 1);
  const auto iota = hn::Iota(di, 0);
  int64_t seen = 0, k = 0, i = 0;
  for (; i + N <= n; i += N) {
    const auto v = hn::BitCast(di, hn::PromoteTo(hn::RebindToUnsigned<decltype(di)>(), hn::LoadU(ds, s + i)));
    const auto pos = hn::Add(iota, hn::Set(di, (int32_t)(lo + i)));
    // Compress in registers + full store (w has room for a vector past the end): memory-destination
    // compress stores are slow on some CPUs. Most chunks select nothing at small densities.
    if (seen >= skip) {
      const auto m = hn::Gt(v, vcut_m1);
      if (hn::AllFalse(di, m)) continue;
      hn::StoreU(hn::Compress(pos, m), di, w + k);
      k += (int64_t)hn::CountTrue(di, m);
      continue;
    }
    const auto meq = hn::Eq(v, vcut);
    const int64_t neq = (int64_t)hn::CountTrue(di, meq);
    if (seen + neq <= skip) {
      seen += neq;
      const auto m = hn::Gt(v, vcut);
      if (hn::AllFalse(di, m)) continue;
      hn::StoreU(hn::Compress(pos, m), di, w + k);
      k += (int64_t)hn::CountTrue(di, m);
      continue;
    }
    for (int64_t j = i; j < i + N; j++) {
      const uint32_t x = s[j];
      if (x > cut || (x == cut && seen++ >= skip)) w[k++] = (int32_t)(lo + j);
    }
  }
  for (; i < n; i++) {
    const uint32_t x = s[i];
    if (x > cut || (x == cut && seen++ >= skip)) w[k++] = (int32_t)(lo + i);
  }
  return k;
}

template <class W, class S>
void select_lists(const hash_select_params& p) {
  const int n_lists = hash_select_n_lists(p);
  const int64_t n = p.keys.n_tok;
  const select_split sp = select_split_for(p.budget, n);
  const int nt = p.n_threads > 0 ? p.n_threads : omp_get_max_threads();
  const hn::ScalableTag<int32_t> di;
  const int64_t pad = (int64_t)hn::Lanes(di);
#pragma omp parallel num_threads(std::max(1, std::min(nt, n_lists)))
  {
    std::vector<S> sc;
    std::vector<int32_t> tmp;
    std::vector<uint32_t> hist;
#pragma omp for schedule(dynamic, 1)
    for (int r = 0; r < n_lists; r++) {
      int32_t* out = p.idx + (int64_t)r * p.idx_stride;
      int64_t k = 0;
      for (int64_t t = 0; t < sp.lo; t++) out[k++] = (int32_t)t;
      const int64_t n_mid = sp.hi - sp.lo;
      if (sp.k_mid >= n_mid) {
        for (int64_t t = sp.lo; t < sp.hi; t++) out[k++] = (int32_t)t;
      } else if (sp.k_mid > 0) {
        const list_streams ls = streams_for(p, r);
        const uint32_t levels = (uint32_t)(p.keys.bits * ls.n) + 1;
        sc.resize(n_mid);
        hist.assign(levels, 0);
        score_range<W, S>(p, ls, sp.lo, sp.hi, sc.data(), hist.data());
        // Walk down from the top level until the budget is reached.
        int64_t above = 0;  // tokens strictly above the cutoff
        uint32_t cut = levels - 1;
        while (above + hist[cut] < sp.k_mid) above += hist[cut--];
        const int64_t skip = hist[cut] - (sp.k_mid - above);
        tmp.resize(sp.k_mid + 2 * pad);
        const int64_t got = compact<S>(sc.data(), n_mid, sp.lo, cut, skip, tmp.data());
        HASHATTN_ASSERT(got == sp.k_mid);
        std::memcpy(out + k, tmp.data(), got * sizeof(int32_t));
        k += got;
      }
      for (int64_t t = sp.hi; t < n; t++) out[k++] = (int32_t)t;
      p.count[r] = (int32_t)k;
    }
  }
}

void select_dispatch(const hash_select_params& p) {
  const bool wide = hash_select_max_level(p) > 255;
  switch (p.keys.bits) {
    case 16: return wide ? select_lists<uint16_t, uint16_t>(p) : select_lists<uint16_t, uint8_t>(p);
    case 32: return wide ? select_lists<uint32_t, uint16_t>(p) : select_lists<uint32_t, uint8_t>(p);
    default: return wide ? select_lists<uint64_t, uint16_t>(p) : select_lists<uint64_t, uint8_t>(p);
  }
}

template <class W>
void score_all(const hash_select_params& p, uint16_t* scores) {
  const int n_lists = hash_select_n_lists(p);
  const int nt = p.n_threads > 0 ? p.n_threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, std::min(nt, n_lists)))
  for (int r = 0; r < n_lists; r++)
    score_range<W, uint16_t>(p, streams_for(p, r), 0, p.keys.n_tok, scores + (int64_t)r * p.keys.n_tok, nullptr);
}

void score_dispatch(const hash_select_params& p, uint16_t* scores) {
  switch (p.keys.bits) {
    case 16: return score_all<uint16_t>(p, scores);
    case 32: return score_all<uint32_t>(p, scores);
    default: return score_all<uint64_t>(p, scores);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hashattn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hashattn {
HWY_EXPORT(select_dispatch);
HWY_EXPORT(score_dispatch);

void hash_score_cpu(const hash_select_params& p, uint16_t* scores) {
  hash_select_validate(p);
  if (scores == nullptr) fail("hash_score: scores", "null pointer", "[n_lists, n_tok] u16");
  if (p.keys.n_tok > 0) HWY_DYNAMIC_DISPATCH(score_dispatch)(p, scores);
}

void hash_select_cpu(const hash_select_params& p) {
  hash_select_validate(p);
  HWY_DYNAMIC_DISPATCH(select_dispatch)(p);
}

}  // namespace hashattn
#endif  // HWY_ONCE
