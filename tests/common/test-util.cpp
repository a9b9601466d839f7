// Shared test helpers (see test-util.h): random inputs, tolerances, comparisons, SIMD targets.
#include "common/test-util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "core/half.h"
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL  // iterate the AVX3_DL target too (kernels that opt in use it)
#endif
#include "hwy/highway.h"
#include "hwy/targets.h"

namespace hashattn::test {

const char* dist_name(dist d) {
  switch (d) {
    case dist::normal: return "normal";
    case dist::large: return "large";
    case dist::all_equal: return "all_equal";
    case dist::ties: return "ties";
    case dist::uniform: return "uniform";
  }
  return "?";
}

void fill(std::mt19937_64& rng, dist d, float* x, int64_t n, float scale, float large_factor) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(-1.f, 1.f);
  std::uniform_int_distribution<int> td(-1, 1);
  const float c = ud(rng) * scale;
  for (int64_t i = 0; i < n; i++) {
    switch (d) {
      case dist::normal: x[i] = nd(rng) * scale; break;
      case dist::large: x[i] = nd(rng) * scale * large_factor; break;
      case dist::all_equal: x[i] = c; break;
      case dist::ties: x[i] = (float)td(rng) * scale; break;
      case dist::uniform: x[i] = ud(rng) * scale; break;
    }
  }
}

std::vector<float> random_vec(std::mt19937_64& rng, dist d, int64_t n, float scale, float large_factor) {
  std::vector<float> v(n);
  fill(rng, d, v.data(), n, scale, large_factor);
  return v;
}

double atol_fp32(double mag, int64_t len) {
  return 8.0 * eps_fp32 * mag * std::sqrt((double)std::max<int64_t>(len, 1)) + 1e-30;
}

double attn_atol(int head_dim, int64_t n_attended, double logit_l1_max, double v_abs_max) {
  const double logit_err = 8.0 * eps_fp32 * std::sqrt((double)head_dim) * logit_l1_max + 4 * eps_fp32;
  const double acc_err = 8.0 * eps_fp32 * std::sqrt((double)std::max<int64_t>(n_attended, 1));
  return v_abs_max * (2.0 * logit_err + acc_err) + 1e-30;
}

attn_tolerance attn_tolerance_for(const float* q, int n_head, float scale, const test_kv& kv) {
  const kv_view& v = kv.view;
  const int G = n_head / v.n_head_kv, d = v.head_dim;
  double l1max = 0, vmax = 0;
  for (int h = 0; h < n_head; h++)
    for (int64_t t = 0; t < v.n_tok; t++) {
      double l1 = 0;
      for (int j = 0; j < d; j++) l1 += std::fabs(q[(int64_t)h * d + j] * kv.k_at(t, h / G, j));
      l1max = std::max(l1max, l1 * scale);
    }
  for (int64_t t = 0; t < v.n_tok; t++)
    for (int h = 0; h < v.n_head_kv; h++)
      for (int j = 0; j < d; j++) vmax = std::max(vmax, (double)std::fabs(kv.v_at(t, h, j)));
  attn_tolerance r;
  r.atol = attn_atol(d, v.n_tok, l1max, vmax);
  r.nmse = std::max(nmse_fp32, std::pow(r.atol / std::max(vmax, 1e-30), 2));
  return r;
}

testing::AssertionResult all_close(const float* got, const double* ref, int64_t n, double atol,
                                   double rtol, double max_nmse) {
  double se = 0, sr = 0;
  int64_t bad = 0, first_bad = -1;
  double worst = 0;
  int64_t worst_i = -1;
  for (int64_t i = 0; i < n; i++) {
    const double e = (double)got[i] - ref[i];
    se += e * e;
    sr += ref[i] * ref[i];
    const double lim = atol + rtol * std::fabs(ref[i]);
    const double ratio = std::fabs(e) / lim;
    if (!(std::fabs(e) <= lim)) {  // also catches NaN
      if (first_bad < 0) first_bad = i;
      bad++;
    }
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_i = i;
    }
  }
  const double nmse = se / std::max(sr, 1e-300);
  const bool nmse_ok = sr == 0 ? se == 0 : nmse <= max_nmse;
  if (bad == 0 && nmse_ok) return testing::AssertionSuccess();
  std::ostringstream os;
  os << bad << " of " << n << " elements outside atol " << atol << " + rtol " << rtol
     << "; nmse " << nmse << " (limit " << max_nmse << ")";
  if (worst_i >= 0)
    os << "; worst at " << worst_i << ": got " << got[worst_i] << ", ref " << ref[worst_i] << " ("
       << worst << "x the limit)";
  return testing::AssertionFailure() << os.str();
}

void for_each_simd_target(const std::function<void(const char*)>& fn) {
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(t);
    SCOPED_TRACE(::testing::Message() << "simd target " << hwy::TargetName(t));
    fn(hwy::TargetName(t));
  }
  hwy::SetSupportedTargetsForTest(0);
}

namespace {
float load_as_float(const std::vector<uint8_t>& buf, dtype t, int64_t off) {
  uint16_t h;
  switch (t) {
    case dtype::f32: {
      float f;
      std::memcpy(&f, buf.data() + off * 4, 4);
      return f;
    }
    case dtype::f16: std::memcpy(&h, buf.data() + off * 2, 2); return fp16_to_fp32(h);
    case dtype::bf16: std::memcpy(&h, buf.data() + off * 2, 2); return bf16_to_fp32(h);
  }
  return 0;
}
void store_float(std::vector<uint8_t>& buf, dtype t, int64_t off, float x) {
  uint16_t h;
  switch (t) {
    case dtype::f32: std::memcpy(buf.data() + off * 4, &x, 4); return;
    case dtype::f16: h = fp32_to_fp16(x); std::memcpy(buf.data() + off * 2, &h, 2); return;
    case dtype::bf16: h = fp32_to_bf16(x); std::memcpy(buf.data() + off * 2, &h, 2); return;
  }
}
}  // namespace

float test_kv::k_at(int64_t t, int h, int j) const {
  return load_as_float(kbuf, view.type, t * view.stride_tok + h * view.stride_head + j);
}
float test_kv::v_at(int64_t t, int h, int j) const {
  return load_as_float(vbuf, view.type, t * view.stride_tok + h * view.stride_head + j);
}

test_kv make_test_kv(std::mt19937_64& rng, dtype type, int64_t n_tok, int n_kv, int d, int layout,
                     dist kd, dist vd, float kscale, float vscale) {
  test_kv r;
  kv_view& v = r.view;
  v.type = type;
  v.n_tok = n_tok;
  v.n_head_kv = n_kv;
  v.head_dim = d;
  int64_t total = 0;
  if (layout == 0) {
    v.stride_head = d;
    v.stride_tok = (int64_t)n_kv * d;
    total = n_tok * v.stride_tok;
  } else if (layout == 1) {
    v.stride_tok = d;
    v.stride_head = n_tok * d;
    total = (int64_t)n_kv * v.stride_head;
  } else {
    v.stride_head = d + 5;
    v.stride_tok = (int64_t)n_kv * (d + 5) + 3;
    total = n_tok * v.stride_tok;
  }
  const size_t es = type == dtype::f32 ? 4 : 2;
  r.kbuf.assign((size_t)std::max<int64_t>(total, 1) * es, 0);
  r.vbuf.assign((size_t)std::max<int64_t>(total, 1) * es, 0);
  // Fill padding with NaN-ish garbage so that reading outside the rows shows up.
  std::vector<float> row(d);
  for (int64_t i = 0; i < total; i++) {
    store_float(r.kbuf, type, i, NAN);
    store_float(r.vbuf, type, i, NAN);
  }
  for (int64_t t = 0; t < n_tok; t++)
    for (int h = 0; h < n_kv; h++) {
      const int64_t off = t * v.stride_tok + h * v.stride_head;
      fill(rng, kd, row.data(), d, kscale);
      for (int j = 0; j < d; j++) store_float(r.kbuf, type, off + j, row[j]);
      fill(rng, vd, row.data(), d, vscale, 1000.f);
      for (int j = 0; j < d; j++) store_float(r.vbuf, type, off + j, row[j]);
    }
  v.k = r.kbuf.data();
  v.v = r.vbuf.data();
  return r;
}

std::vector<float> keys_f32(const test_kv& kv) {
  const kv_view& v = kv.view;
  std::vector<float> k((size_t)v.n_tok * v.n_head_kv * v.head_dim);
  for (int64_t t = 0; t < v.n_tok; t++)
    for (int h = 0; h < v.n_head_kv; h++)
      for (int j = 0; j < v.head_dim; j++) k[((size_t)t * v.n_head_kv + h) * v.head_dim + j] = kv.k_at(t, h, j);
  return k;
}

testing::AssertionResult selection_consistent(const std::vector<int32_t>& sel, const double* score, int64_t n,
                                              const budget_params& b, double tol) {
  const select_split sp = select_split_for(b, n);
  if ((int64_t)sel.size() != sp.total)
    return testing::AssertionFailure() << "selection has " << sel.size() << " tokens, budget " << sp.total;
  std::vector<char> in(n, 0);
  for (size_t i = 0; i < sel.size(); i++) {
    if (sel[i] < 0 || sel[i] >= n) return testing::AssertionFailure() << "position " << sel[i] << " out of range";
    if (i > 0 && sel[i] <= sel[i - 1])
      return testing::AssertionFailure() << "not ascending/unique at " << i << ": " << sel[i - 1] << ", " << sel[i];
    in[sel[i]] = 1;
  }
  for (int64_t t = 0; t < sp.lo; t++)
    if (!in[t]) return testing::AssertionFailure() << "sink " << t << " missing";
  for (int64_t t = sp.hi; t < n; t++)
    if (!in[t]) return testing::AssertionFailure() << "window position " << t << " missing";
  double min_in = INFINITY, max_out = -INFINITY;
  int64_t at_in = -1, at_out = -1;
  for (int64_t t = sp.lo; t < sp.hi; t++) {
    if (in[t] && score[t] < min_in) min_in = score[t], at_in = t;
    if (!in[t] && score[t] > max_out) max_out = score[t], at_out = t;
  }
  if (at_in >= 0 && at_out >= 0 && min_in < max_out - tol)
    return testing::AssertionFailure() << "selected " << at_in << " (score " << min_in << ") below unselected "
                                       << at_out << " (score " << max_out << "), tol " << tol;
  return testing::AssertionSuccess();
}

testing::AssertionResult same_selection(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  if (got == want) return testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) i++;
  auto at = [](const std::vector<int32_t>& v, size_t i) { return i < v.size() ? std::to_string(v[i]) : "end"; };
  return testing::AssertionFailure() << "selections differ (sizes " << got.size() << " vs " << want.size()
                                     << ") first at entry " << i << ": got " << at(got, i) << ", want " << at(want, i);
}

std::vector<int32_t> random_subset(std::mt19937_64& rng, int64_t n, int64_t c) {
  c = std::min(c, n);
  std::vector<int32_t> r;
  if (c <= 0) return r;
  if (c * 4 >= n) {
    std::vector<int32_t> all(n);
    for (int64_t i = 0; i < n; i++) all[i] = (int32_t)i;
    std::shuffle(all.begin(), all.end(), rng);
    r.assign(all.begin(), all.begin() + c);
  } else {
    std::uniform_int_distribution<int64_t> u(0, n - 1);
    std::vector<char> used(n, 0);
    while ((int64_t)r.size() < c) {
      const int64_t t = u(rng);
      if (!used[t]) {
        used[t] = 1;
        r.push_back((int32_t)t);
      }
    }
  }
  std::sort(r.begin(), r.end());
  return r;
}

}  // namespace hashattn::test
