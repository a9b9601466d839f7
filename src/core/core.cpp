// The core contract's host side (core.h): element types, GQA mode names, shape / budget / KV-view
// validation, the validated selection split and index-list sizing.
#include <cmath>
#include <string>

#include "hashattn/core.h"
#include "hashattn/error.h"

namespace hashattn {

namespace {
std::string s(int64_t v) { return std::to_string(v); }
}  // namespace

size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::f32: return 4;
    case dtype::f16: return 2;
    case dtype::bf16: return 2;
  }
  fail("dtype", s((int)t), "f32 (0), f16 (1) or bf16 (2)");
}

const char* dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
  }
  return "unknown";
}

const char* gqa_mode_name(gqa_mode m) { return m == gqa_mode::per_group ? "group" : "head"; }

void layer_shape_validate(const layer_shape& sh, const char* who) {
  const std::string w = who;
  if (sh.n_head <= 0 || sh.n_head_kv <= 0 || sh.n_head % sh.n_head_kv != 0)
    fail(w + ": heads", s(sh.n_head) + "/" + s(sh.n_head_kv), "n_head a positive multiple of n_head_kv",
         "GQA groups must be equal in size");
  if (sh.head_dim <= 0 || sh.head_dim > 4096) fail(w + ": head_dim", s(sh.head_dim), "in [1, 4096]");
}

void budget_validate(const budget_params& b) {
  if (b.count < 0) fail("budget: count", s(b.count), ">= 0 (0 = use density)");
  if (b.count == 0 && !(b.density > 0 && b.density <= 1))
    fail("budget: density", std::to_string(b.density), "in (0, 1] when count is 0", "e.g. 1/32 = 0.03125");
  if (b.sinks < 0) fail("budget: sinks", s(b.sinks), ">= 0");
  if (b.window < 0) fail("budget: window", s(b.window), ">= 0");
  if (b.count > 0 && b.count < b.sinks + b.window)
    fail("budget: count", s(b.count), ">= sinks + window = " + s(b.sinks + b.window),
         "a fixed budget must hold the sinks and the window");
}

select_split select_split_for(const budget_params& b, int64_t n) {
  budget_validate(b);
  return select_split_of(b.density, b.count, b.sinks, b.window, n);
}

int64_t budget_tokens(const budget_params& b, int64_t n) { return select_split_for(b, n).total; }

double index_lists::mean_count() const {
  double sum = 0;
  for (int32_t c : count) sum += c;
  return count.empty() ? 0.0 : sum / (double)count.size();
}

void index_lists::reset(int n, int64_t stride_, bool per_group_) {
  if (n < 0 || stride_ < 0) fail("index lists", s(n) + " lists x " + s(stride_), "non-negative sizes");
  per_group = per_group_;
  stride = stride_;
  count.assign(n, 0);
  if ((int64_t)idx.size() < n * stride_) idx.resize((size_t)n * stride_);
}

void kv_view_validate(const kv_view& kv, const char* who) {
  const std::string w = who;
  if (kv.n_head_kv <= 0) fail(w + ": kv.n_head_kv", s(kv.n_head_kv), "> 0");
  if (kv.head_dim <= 0 || kv.head_dim > 4096) fail(w + ": kv.head_dim", s(kv.head_dim), "in [1, 4096]");
  if (kv.n_tok < 0 || kv.n_tok > INT32_MAX)
    fail(w + ": kv.n_tok", s(kv.n_tok), "in [0, 2^31)", "positions are int32 in index lists");
  if ((int)kv.type > 2) fail(w + ": kv.type", s((int)kv.type), "f32, f16 or bf16");
  if (kv.n_tok > 0 && (kv.k == nullptr || kv.v == nullptr))
    fail(w + ": kv.k / kv.v", "null pointer", "K and V data for n_tok = " + s(kv.n_tok) + " tokens");
  if (kv.stride_tok < 0 || kv.stride_head < 0)
    fail(w + ": kv strides", "stride_tok " + s(kv.stride_tok) + ", stride_head " + s(kv.stride_head),
         "non-negative element strides");
  if (kv.n_head_kv > 1 && kv.stride_head == 0)
    fail(w + ": kv.stride_head", "0", "> 0 when n_head_kv > 1", "elements between consecutive KV heads");
  if (kv.page_table == nullptr) {
    if (kv.n_tok > 1 && kv.stride_tok == 0)
      fail(w + ": kv.stride_tok", "0", "> 0 when n_tok > 1", "elements between consecutive tokens");
    return;
  }
  if (kv.page_size <= 0 || (kv.page_size & (kv.page_size - 1)) != 0)
    fail(w + ": kv.page_size", s(kv.page_size), "a power of two >= 1 with a page table");
  if (kv.page_size > 1 && kv.stride_tok == 0) fail(w + ": kv.stride_tok", "0", "> 0 when pages hold several tokens");
  if (kv.stride_page <= 0) fail(w + ": kv.stride_page", s(kv.stride_page), "> 0 (elements between pages)");
  const int64_t pages = (kv.n_tok + kv.page_size - 1) / kv.page_size;
  for (int64_t i = 0; i < pages; i++) {
    const int64_t id = kv.page_table[i];
    if (id < 0 || id >= kv.n_pages)
      fail(w + ": page table entry " + s(i), s(id), "a page id in [0, n_pages = " + s(kv.n_pages) + ")",
           "the page table is out of range of the page pool");
  }
}

}  // namespace hashattn
