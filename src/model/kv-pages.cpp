// KV pages and sequences (kv-pages.h).
#include "model/kv-pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "hashattn/error.h"

namespace hashattn {

namespace {
std::string s(int64_t v) { return std::to_string(v); }
}  // namespace

mapped_buffer::~mapped_buffer() {
  if (p_) munmap(p_, bytes_);
}

void mapped_buffer::resize(size_t bytes) {
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  const size_t want = (bytes + pg - 1) / pg * pg;
  if (want == bytes_) return;
  void* q = nullptr;
  if (want == 0) {
    munmap(p_, bytes_);
  } else if (p_ == nullptr) {
    q = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  } else {
    q = mremap(p_, bytes_, want, MREMAP_MAYMOVE);
  }
  if (q == MAP_FAILED)
    fail("kv pages: memory for " + s((int64_t)want) + " bytes", std::string("refused (") + std::strerror(errno) + ")",
         "memory for the KV cache", "a smaller context or fewer sequences");
  p_ = q;
  bytes_ = want;
}

void kv_pages::resize_storage(int64_t n) {
  const size_t bytes = (size_t)n * page_size_ * kv_dim() * sizeof(uint16_t);
  for (int l = 0; l < n_layer_; l++) {
    k_[l].resize(bytes);
    v_[l].resize(bytes);
  }
}

kv_pages::kv_pages(int n_layer, int n_head_kv, int head_dim, int page_size, int64_t n_pages)
    : n_layer_(n_layer), n_head_kv_(n_head_kv), head_dim_(head_dim), page_size_(page_size) {
  if (n_layer < 1 || n_head_kv < 1 || head_dim < 1)
    fail("kv pages: shape", s(n_layer) + " layers x " + s(n_head_kv) + " heads x " + s(head_dim), "all >= 1");
  if (page_size < 1 || page_size > 4096 || (page_size & (page_size - 1)) != 0)
    fail("kv pages: page size", s(page_size), "a power of two in [1, 4096]");
  if (n_pages < 0 || n_pages > INT32_MAX) fail("kv pages: pages", s(n_pages), "in [0, 2^31)");
  k_.resize(n_layer);
  v_.resize(n_layer);
  grow(n_pages);
}

void kv_pages::check_page(int32_t page, const char* who) const {
  if (page < 0 || page >= n_pages())
    fail(std::string("kv pages: ") + who + " of page", s(page), "a page id in [0, " + s(n_pages()) + ")");
}

int32_t kv_pages::alloc() {
  if (free_.empty())
    fail("kv pages: no free page", s(n_pages()) + " pages in use", "a free page", "a larger context or fewer sequences");
  const int32_t p = free_.back();
  free_.pop_back();
  refs_[p] = 1;
  return p;
}

void kv_pages::ref(int32_t page) {
  check_page(page, "reference");
  if (refs_[page] == 0) fail("kv pages: reference of page " + s(page), "a free page", "a page in use");
  refs_[page]++;
}

void kv_pages::unref(int32_t page) {
  check_page(page, "release");
  if (refs_[page] == 0) fail("kv pages: release of page " + s(page), "a free page", "a page in use", "freed twice?");
  if (--refs_[page] == 0) free_.push_back(page);
}

int kv_pages::refs(int32_t page) const {
  check_page(page, "count");
  return refs_[page];
}

void kv_pages::grow(int64_t more) {
  if (more < 0 || n_pages() + more > INT32_MAX) fail("kv pages: grow by", s(more), ">= 0 pages, at most 2^31 in all");
  const int64_t n0 = n_pages(), n1 = n0 + more;
  resize_storage(n1);  // new pages read as zeros
  refs_.resize(n1, 0);
  // New pages go under the free ones, highest first: a fresh pool hands out 0, 1, 2, ... in order.
  std::vector<int32_t> add;
  for (int64_t p = n1 - 1; p >= n0; p--) add.push_back((int32_t)p);
  free_.insert(free_.begin(), add.begin(), add.end());
}

void kv_pages::shrink(int64_t n) {
  if (n < 0 || n > n_pages()) fail("kv pages: shrink to", s(n), "in [0, " + s(n_pages()) + "]");
  for (int64_t p = n; p < n_pages(); p++)
    if (refs_[p] != 0) fail("kv pages: shrink to " + s(n) + " pages", "page " + s(p) + " in use", "free pages only");
  free_.erase(std::remove_if(free_.begin(), free_.end(), [n](int32_t p) { return p >= n; }), free_.end());
  refs_.resize(n);
  resize_storage(n);
}

kv_seq::kv_seq(kv_seq&& o) noexcept
    : pool_(o.pool_), table_(std::move(o.table_)), n_tok_(o.n_tok_), released_(o.released_) {
  o.table_.clear();
  o.released_ = true;
}

kv_seq::~kv_seq() {
  if (released_) return;
  for (int32_t p : table_) {
    if (p >= 0 && p < pool_->n_pages() && pool_->refs_[p] > 0) pool_->unref(p);
  }
}

void kv_seq::check_live(const char* who) const {
  if (released_) fail(std::string("kv sequence: ") + who, "a released sequence", "a live one", "released twice?");
}

void kv_seq::reserve(int64_t n) {
  check_live("reserve");
  if (n < 0) fail("kv sequence: reserve", s(n), ">= 0");
  while (capacity() < n) table_.push_back(pool_->alloc());
}

void kv_seq::set_length(int64_t n) {
  check_live("length");
  if (n < 0 || n > capacity()) fail("kv sequence: length", s(n), "in [0, " + s(capacity()) + "] (reserve first)");
  n_tok_ = n;
}

uint16_t* kv_seq::k_row(int layer, int64_t pos) {
  check_live("row");
  if (pos < 0 || pos >= capacity()) fail("kv sequence: position", s(pos), "in [0, " + s(capacity()) + ")");
  const int ps = pool_->page_size();
  return pool_->k(layer) + pool_->row_offset(table_[pos / ps], pos % ps);
}

uint16_t* kv_seq::v_row(int layer, int64_t pos) {
  check_live("row");
  if (pos < 0 || pos >= capacity()) fail("kv sequence: position", s(pos), "in [0, " + s(capacity()) + ")");
  const int ps = pool_->page_size();
  return pool_->v(layer) + pool_->row_offset(table_[pos / ps], pos % ps);
}

kv_seq kv_seq::fork(int64_t n_keep) const {
  check_live("fork");
  if (n_keep < 0 || n_keep > n_tok_) fail("kv sequence: fork of", s(n_keep) + " tokens", "in [0, " + s(n_tok_) + "]");
  kv_seq c(*pool_);
  const int ps = pool_->page_size();
  const int64_t full = n_keep / ps, part = n_keep % ps;
  for (int64_t i = 0; i < full; i++) {
    pool_->ref(table_[i]);
    c.table_.push_back(table_[i]);
  }
  if (part > 0) {  // the partly written page: the child appends into its own copy
    const int32_t p = pool_->alloc();
    const size_t n = (size_t)part * pool_->kv_dim() * sizeof(uint16_t);
    for (int l = 0; l < pool_->n_layer(); l++) {
      std::memcpy(pool_->k(l) + pool_->row_offset(p, 0), pool_->k(l) + pool_->row_offset(table_[full], 0), n);
      std::memcpy(pool_->v(l) + pool_->row_offset(p, 0), pool_->v(l) + pool_->row_offset(table_[full], 0), n);
    }
    c.table_.push_back(p);
  }
  c.n_tok_ = n_keep;
  return c;
}

void kv_seq::release() {
  check_live("release");
  for (int32_t p : table_) pool_->unref(p);
  table_.clear();
  n_tok_ = 0;
  released_ = true;
}

kv_view kv_seq::view(int layer, int64_t n) const {
  check_live("view");
  if (layer < 0 || layer >= pool_->n_layer()) fail("kv sequence: layer", s(layer), "in [0, " + s(pool_->n_layer()) + ")");
  if (n < 0 || n > capacity()) fail("kv sequence: view of", s(n) + " tokens", "at most " + s(capacity()));
  kv_view kv;
  kv.k = pool_->k(layer);
  kv.v = pool_->v(layer);
  kv.type = dtype::f16;
  kv.n_tok = n;
  kv.n_head_kv = pool_->n_head_kv_;
  kv.head_dim = pool_->head_dim_;
  kv.stride_tok = pool_->kv_dim();
  kv.stride_head = pool_->head_dim_;
  kv.page_table = table_.data();
  kv.page_size = pool_->page_size();
  kv.stride_page = (int64_t)pool_->page_size() * pool_->kv_dim();
  kv.n_pages = pool_->n_pages();
  return kv;
}

}  // namespace hashattn
