// Helpers of the CUDA tests: checked device buffers, a host-side KV cache of B sequences that is
// scattered into a randomly permuted paged layout on the device, random encoder weights, and the
// float64 references of the hash path from src/ref (hash_mlp_ref, hash_score_ref, select_rule_ref).
// host KV: k/v [B][cap][n_kv][d] as fp16/bf16 bits; device: pages [page][slot][n_kv][d] (+ padding).
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/test-util.h"
#include "core/half.h"
#include "hashattn/cuda.h"
#include "hashattn/error.h"
#include "ref/reference.h"

namespace hashattn::cudatest {
using namespace hashattn::cuda;

inline void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
#define CUDA_OK(x) ::hashattn::cudatest::ck((x), #x)

template <class T>
struct dbuf {
  T* p = nullptr;
  size_t n = 0;
  dbuf() = default;
  explicit dbuf(size_t count) { alloc(count); }
  void alloc(size_t count) {
    free_();
    n = count;
    if (n) CUDA_OK(cudaMalloc(&p, n * sizeof(T)));
  }
  ~dbuf() { free_(); }
  dbuf(const dbuf&) = delete;
  dbuf& operator=(const dbuf&) = delete;
  void free_() {
    if (p) cudaFree(p);
    p = nullptr;
  }
  void upload(const std::vector<T>& h) {
    if (h.size() != n) alloc(h.size());
    if (n) CUDA_OK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    if (n) CUDA_OK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  // Fills with a byte pattern (poison) so unwritten outputs show.
  void poison(int byte = 0x7f) {
    if (n) CUDA_OK(cudaMemset(p, byte, n * sizeof(T)));
  }
};

inline const char* type_str(dtype t) { return t == dtype::bf16 ? "bf16" : t == dtype::f16 ? "f16" : "f32"; }
inline uint16_t to_bits(dtype t, float f) { return t == dtype::f16 ? fp32_to_fp16(f) : fp32_to_bf16(f); }
inline float from_bits(dtype t, uint16_t u) { return t == dtype::f16 ? fp16_to_fp32(u) : bf16_to_fp32(u); }

// KV of B sequences, each with room for cap tokens.
struct host_kv {
  dtype type = dtype::bf16;
  int B = 0, n_kv = 0, d = 0;
  int64_t cap = 0;
  std::vector<uint16_t> k, v;
  int64_t off(int b, int64_t t, int h) const { return (((int64_t)b * cap + t) * n_kv + h) * d; }
  // kv_view of sequence b with n tokens (for ref::attn_decode_ref).
  kv_view view(int b, int64_t n) const {
    kv_view w;
    w.k = k.data() + off(b, 0, 0);
    w.v = v.data() + off(b, 0, 0);
    w.type = type;
    w.n_tok = n;
    w.n_head_kv = n_kv;
    w.head_dim = d;
    w.stride_tok = (int64_t)n_kv * d;
    w.stride_head = d;
    return w;
  }
};

inline host_kv make_host_kv(std::mt19937_64& rng, dtype type, int B, int64_t cap, int n_kv, int d,
                            float kscale = 1.f, float vscale = 1.f) {
  host_kv h;
  h.type = type;
  h.B = B;
  h.cap = cap;
  h.n_kv = n_kv;
  h.d = d;
  const size_t n = (size_t)B * cap * n_kv * d;
  h.k.resize(n);
  h.v.resize(n);
  // Fast uniform(-1, 1) from raw generator bits (long contexts need hundreds of millions of values).
  auto u = [&rng]() { return (float)((rng() >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f; };
  // Keys with a per-token magnitude spread (some tokens dominate the softmax) and plain values.
  for (size_t row = 0; row < n / d; ++row) {
    const float m = kscale * (1.f + 2.f * (u() > 0.8f));
    for (int j = 0; j < d; ++j) {
      h.k[row * d + j] = to_bits(type, m * u());
      h.v[row * d + j] = to_bits(type, vscale * u());
    }
  }
  return h;
}

// The host KV on the device in a paged layout with randomly permuted pages.
struct dev_paged {
  dbuf<uint16_t> k, v;
  dbuf<int32_t> pt;
  kv_view view;
};

inline void make_dev_paged(std::mt19937_64& rng, const host_kv& h, int page_size, bool pad, dev_paged& out) {
  const int64_t npp = (h.cap + page_size - 1) / page_size;
  const int64_t n_pages = npp * h.B + 3;  // a few unused pages
  const int64_t stride_head = h.d + (pad ? 8 : 0);
  const int64_t stride_tok = h.n_kv * stride_head + (pad ? 8 : 0);
  const int64_t stride_page = page_size * stride_tok;
  std::vector<int32_t> perm(n_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  const int64_t pt_stride = npp + 1;
  std::vector<int32_t> pt((size_t)h.B * pt_stride, -1);
  for (int b = 0; b < h.B; ++b)
    for (int64_t i = 0; i < npp; ++i) pt[b * pt_stride + i] = perm[b * npp + i];
  std::vector<uint16_t> pk((size_t)n_pages * stride_page, 0xffff), pv((size_t)n_pages * stride_page, 0xffff);
  for (int b = 0; b < h.B; ++b)
    for (int64_t t = 0; t < h.cap; ++t)
      for (int g = 0; g < h.n_kv; ++g) {
        const int64_t dst = (int64_t)pt[b * pt_stride + t / page_size] * stride_page + (t % page_size) * stride_tok +
                            g * stride_head;
        std::copy_n(h.k.begin() + h.off(b, t, g), h.d, pk.begin() + dst);
        std::copy_n(h.v.begin() + h.off(b, t, g), h.d, pv.begin() + dst);
      }
  out.k.upload(pk);
  out.v.upload(pv);
  out.pt.upload(pt);
  kv_view& w = out.view;
  w.k = out.k.p;
  w.v = out.v.p;
  w.type = h.type;
  w.n_head_kv = h.n_kv;
  w.head_dim = h.d;
  w.page_size = page_size;
  w.stride_page = stride_page;
  w.stride_tok = stride_tok;
  w.stride_head = stride_head;
  w.page_table = out.pt.p;
  w.page_table_stride = pt_stride;
}

// ---- hash encoder: weights (host, fp32) and the float64 reference ----
struct host_mlp {
  int n_enc = 0, n_layer = 3, in = 0, hidden = 128, bits = 32;
  std::vector<float> w[3], b[3];
  int dim(int l) const { return l == 0 ? in : l == n_layer ? bits : hidden; }
};

inline host_mlp make_host_mlp(std::mt19937_64& rng, int n_enc, int n_layer, int in, int hidden, int bits) {
  host_mlp m;
  m.n_enc = n_enc;
  m.n_layer = n_layer;
  m.in = in;
  m.hidden = hidden;
  m.bits = bits;
  for (int l = 0; l < n_layer; ++l) {
    const int di = m.dim(l), dout = m.dim(l + 1);
    std::uniform_real_distribution<float> u(-1.f / std::sqrt((float)di) * 1.7f, 1.f / std::sqrt((float)di) * 1.7f);
    m.w[l].resize((size_t)n_enc * di * dout);
    m.b[l].resize((size_t)n_enc * dout);
    for (auto& x : m.w[l]) x = u(rng);
    for (auto& x : m.b[l]) x = 0.1f * u(rng);
  }
  return m;
}

struct dev_mlp {
  dbuf<float> w[3], b[3];
  mlp_device view;
};
// The weights as a hash_mlp_view over host memory (for the float64 reference).
inline hash_mlp_view host_view(const host_mlp& h) {
  hash_mlp_view v;
  v.n_enc = h.n_enc;
  v.n_layers = h.n_layer;
  v.in_dim = h.in;
  v.hidden = h.hidden;
  v.bits = h.bits;
  for (int l = 0; l < h.n_layer; ++l) {
    v.w[l] = h.w[l].data();
    v.b[l] = h.b[l].data();
  }
  return v;
}

inline void upload_mlp(const host_mlp& h, dev_mlp& d) {
  d.view.n_enc = h.n_enc;
  d.view.n_layers = h.n_layer;
  d.view.in_dim = h.in;
  d.view.hidden = h.hidden;
  d.view.bits = h.bits;
  for (int l = 0; l < h.n_layer; ++l) {
    d.w[l].upload(h.w[l]);
    d.b[l].upload(h.b[l]);
    d.view.w[l] = d.w[l].p;
    d.view.b[l] = d.b[l].p;
  }
}

// Float64 forward of encoder e on x[in] through src/ref: the last layer's outputs.
inline std::vector<double> ref_mlp(const host_mlp& m, int e, const double* x) {
  std::vector<float> xf(x, x + m.in);  // inputs are fp32 values (exact in double)
  std::vector<double> out(m.bits);
  ref::hash_mlp_ref(host_view(m), e, xf.data(), out.data());
  return out;
}

// Bits where the float64 output is within `margin` of zero may legitimately differ in fp32.
inline uint32_t code_of(const std::vector<double>& y, double margin, uint32_t* uncertain) {
  uint32_t c = 0, u = 0;
  for (size_t j = 0; j < y.size(); ++j) {
    if (y[j] > 0) c |= 1u << j;
    if (std::fabs(y[j]) <= margin) u |= 1u << j;
  }
  *uncertain = u;
  return c;
}

// ---- selection: scores by src/ref's hash_score_ref, the rule by src/ref's select_rule_ref ----
inline int ref_score(const uint32_t* qc, int qpl, uint32_t k, int bits) {
  int s = 0;
  for (int j = 0; j < qpl; ++j) s += ref::hash_score_ref(qc[j], k, bits);
  return s;
}

// Sinks + window + top-(budget - sinks - window) of the middle by score, ties to the most recent.
inline std::vector<int32_t> ref_select(const budget_params& bp, int64_t n, const uint32_t* qc, int qpl,
                                       const uint32_t* codes, int bits) {
  std::vector<double> score(n);
  for (int64_t t = 0; t < n; ++t) score[t] = ref_score(qc, qpl, codes[t], bits);
  return ref::select_rule_ref(score.data(), n, bp);
}

}  // namespace hashattn::cudatest
