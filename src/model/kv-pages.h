// The KV cache of several sequences in pages (the layout of a serving engine; core.h kv_view).
// kv_pages: one pool of fp16 pages for every layer; page p of layer l holds K and V rows of page_size
//   tokens: K row (p, slot) at k(l) + (p * page_size + slot) * kv_dim (V alike). Pages carry a
//   reference count: a sequence's page table holds one reference per entry, and a forked sequence
//   shares its parent's full pages (count + 1) instead of copying them.
// kv_seq: a page table over a pool and a length. fork() shares every full page and copies the last,
//   partly written one (a new page), so that both sequences can append. release() gives the pages back.
// Misuse (a page freed twice, a page id out of range, a full pool, a sequence used after release) is a
// hashattn::error, never a crash.
// Storage: one anonymous memory mapping per layer and K/V, grown and shrunk in place by the kernel
// (mremap): adding the branches' pages copies nothing, and pages nobody wrote take no memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hashattn/core.h"

namespace hashattn {

// A zero-filled anonymous mapping that can grow and shrink (contents kept up to the smaller size).
class mapped_buffer {
 public:
  mapped_buffer() = default;
  ~mapped_buffer();
  mapped_buffer(const mapped_buffer&) = delete;
  mapped_buffer& operator=(const mapped_buffer&) = delete;
  mapped_buffer(mapped_buffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  void resize(size_t bytes);  // throws hashattn::error when the system refuses
  uint16_t* data() const { return static_cast<uint16_t*>(p_); }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;  // mapped bytes (a multiple of the system page size)
};

class kv_pages {
 public:
  kv_pages(int n_layer, int n_head_kv, int head_dim, int page_size, int64_t n_pages);
  int n_layer() const { return n_layer_; }
  int kv_dim() const { return n_head_kv_ * head_dim_; }
  int page_size() const { return page_size_; }
  int64_t n_pages() const { return (int64_t)refs_.size(); }
  int64_t n_free() const { return (int64_t)free_.size(); }
  int32_t alloc();               // a free page, reference count 1 (a fresh pool: 0, 1, 2, ...); throws when none is free
  void ref(int32_t page);        // one more holder of a page in use
  void unref(int32_t page);      // one holder less; the page is free at 0; throws for a free page
  int refs(int32_t page) const;
  // Adds pages (ids n_pages() ..); the storage moves: pointers and views taken before are stale.
  void grow(int64_t more);
  // Drops the pages from id n on; they must all be free.
  void shrink(int64_t n);
  uint16_t* k(int layer) const { return k_[layer].data(); }
  uint16_t* v(int layer) const { return v_[layer].data(); }
  // Element offset of row (page, slot) in k(l) / v(l).
  int64_t row_offset(int32_t page, int64_t slot) const { return ((int64_t)page * page_size_ + slot) * kv_dim(); }

 private:
  void check_page(int32_t page, const char* who) const;
  int n_layer_, n_head_kv_, head_dim_, page_size_;
  void resize_storage(int64_t n_pages);
  std::vector<mapped_buffer> k_, v_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // free page ids, the next one last
  friend class kv_seq;
};

class kv_seq {
 public:
  explicit kv_seq(kv_pages& pool) : pool_(&pool) {}
  ~kv_seq();
  kv_seq(const kv_seq&) = delete;
  kv_seq& operator=(const kv_seq&) = delete;
  kv_seq(kv_seq&& o) noexcept;
  int64_t n_tok() const { return n_tok_; }
  int64_t capacity() const { return (int64_t)table_.size() * pool_->page_size(); }
  const std::vector<int32_t>& table() const { return table_; }
  // Pages for positions [0, n) (allocated as needed).
  void reserve(int64_t n);
  // The length after rows up to n have been written (n <= capacity()).
  void set_length(int64_t n);
  // Row of position pos (pos < capacity()), K or V of a layer.
  uint16_t* k_row(int layer, int64_t pos);
  uint16_t* v_row(int layer, int64_t pos);
  // A sequence with the same first n_tok() tokens: full pages shared, the partial last page copied.
  kv_seq fork() const { return fork(n_tok_); }
  // The same with the first n <= n_tok() tokens.
  kv_seq fork(int64_t n) const;
  // Gives every page back; a second release is an error.
  void release();
  bool released() const { return released_; }
  // One layer's fp16 K/V of the first n tokens as a paged view.
  kv_view view(int layer, int64_t n) const;

 private:
  void check_live(const char* who) const;
  kv_pages* pool_;
  std::vector<int32_t> table_;
  int64_t n_tok_ = 0;
  bool released_ = false;
};

}  // namespace hashattn
