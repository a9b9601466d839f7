// GGUF v3 writer: metadata in insertion order, tensor infos, padding to the alignment, then the
// tensor data, each tensor at an aligned offset (zero padding). write() goes through a temporary
// file in the same folder and rename(), so readers never see a half-written file. The bytes go through
// a sink: memory (to_bytes) or two chunk buffers, one filled while a second thread writes the other
// (write), so that streamed tensors (their bytes made by a filler, chunk by chunk) never sit in memory whole.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>

#include "hashattn/error.h"
#include "hashattn/gguf.h"

namespace hashattn::gguf {

namespace {

struct out_buf {
  std::vector<uint8_t> b;
  template <typename T>
  void put(T v) {
    const size_t n = b.size();
    b.resize(n + sizeof(T));
    std::memcpy(b.data() + n, &v, sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void pad(uint64_t a) {
    while (b.size() % a) b.push_back(0);
  }
};

void put_value(out_buf& o, value_type t, const value& v, const std::string& key) {
  if (v.type != t)
    fail("gguf writer: value of '" + key + "' has an inconsistent type", value_type_name(v.type),
         value_type_name(t), "array elements must all have the array's element type");
  switch (t) {
    case value_type::UINT8: o.put<uint8_t>((uint8_t)v.u); return;
    case value_type::INT8: o.put<int8_t>((int8_t)v.i); return;
    case value_type::UINT16: o.put<uint16_t>((uint16_t)v.u); return;
    case value_type::INT16: o.put<int16_t>((int16_t)v.i); return;
    case value_type::UINT32: o.put<uint32_t>((uint32_t)v.u); return;
    case value_type::INT32: o.put<int32_t>((int32_t)v.i); return;
    case value_type::UINT64: o.put<uint64_t>(v.u); return;
    case value_type::INT64: o.put<int64_t>(v.i); return;
    case value_type::FLOAT32: o.put<float>((float)v.f); return;
    case value_type::FLOAT64: o.put<double>(v.f); return;
    case value_type::BOOL: o.put<uint8_t>(v.b ? 1 : 0); return;
    case value_type::STRING: o.str(v.s); return;
    case value_type::ARRAY:
      o.put<uint32_t>((uint32_t)v.arr_type);
      o.put<uint64_t>(v.arr.size());
      for (const auto& e : v.arr) put_value(o, v.arr_type, e, key);
      return;
  }
  fail("gguf writer: unknown value type for '" + key + "'", std::to_string((uint32_t)t));
}

}  // namespace

void writer::set(const std::string& key, value v) {
  if (key.empty()) fail("gguf writer: empty metadata key");
  if (key == "general.alignment") {
    if (!v.is_integer()) fail("gguf writer: general.alignment must be an integer", value_type_name(v.type));
    set_alignment(v.u);
    return;
  }
  for (auto& e : kvs_)
    if (e.key == key) {
      e.val = std::move(v);
      return;
    }
  kvs_.push_back({key, std::move(v)});
}

void writer::set_alignment(uint64_t a) {
  if (a == 0 || (a & (a - 1)) != 0 || a > (uint64_t(1) << 30))
    fail("gguf writer: alignment is not a power of two in 1..2^30", std::to_string(a), "e.g. 32");
  alignment_ = a;
  for (auto& e : kvs_)
    if (e.key == "general.alignment") {
      e.val = value::from_u32((uint32_t)a);
      return;
    }
  kvs_.push_back({"general.alignment", value::from_u32((uint32_t)a)});
}

size_t writer::check_new_tensor(const std::string& name, type t, const std::vector<int64_t>& ne) const {
  if (name.empty()) fail("gguf writer: empty tensor name");
  for (const auto& p : tensors_)
    if (p.name == name) fail("gguf writer: duplicate tensor name '" + name + "'");
  if (!type_known((uint32_t)t)) fail("gguf writer: unknown tensor type for '" + name + "'", std::to_string((uint32_t)t));
  if (ne.empty() || ne.size() > 4)
    fail("gguf writer: tensor '" + name + "' has a bad dimension count", std::to_string(ne.size()), "1..4");
  int64_t rows = 1;
  for (int64_t d : ne)
    if (d <= 0) fail("gguf writer: tensor '" + name + "' has a non-positive dimension", std::to_string(d), ">= 1");
  for (size_t k = 1; k < ne.size(); k++) rows *= ne[k];
  return row_bytes(t, ne[0]) * (size_t)rows;
}

void writer::add_tensor(const std::string& name, type t, const std::vector<int64_t>& ne, const void* data,
                        size_t nbytes) {
  const size_t want = check_new_tensor(name, t, ne);
  if (nbytes != want)
    fail("gguf writer: data size of tensor '" + name + "' does not match its shape and type", std::to_string(nbytes),
         std::to_string(want));
  if (nbytes && !data) fail("gguf writer: null data for tensor '" + name + "'");
  pending p{name, t, ne, nbytes, false, {}};
  p.data.assign((const uint8_t*)data, (const uint8_t*)data + nbytes);
  tensors_.push_back(std::move(p));
}

void writer::add_tensor_streamed(const std::string& name, type t, const std::vector<int64_t>& ne) {
  const size_t nbytes = check_new_tensor(name, t, ne);
  tensors_.push_back(pending{name, t, ne, nbytes, true, {}});
}

std::vector<uint8_t> writer::header() const {
  out_buf o;
  o.b.reserve(4096);
  for (char ch : {'G', 'G', 'U', 'F'}) o.b.push_back((uint8_t)ch);
  o.put<uint32_t>(3);
  o.put<uint64_t>(tensors_.size());
  o.put<uint64_t>(kvs_.size());
  for (const auto& e : kvs_) {
    o.str(e.key);
    o.put<uint32_t>((uint32_t)e.val.type);
    put_value(o, e.val.type, e.val, e.key);
  }
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    o.str(t.name);
    o.put<uint32_t>((uint32_t)t.ne.size());
    for (int64_t d : t.ne) o.put<uint64_t>((uint64_t)d);
    o.put<uint32_t>((uint32_t)t.t);
    o.put<uint64_t>(off);
    off += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  o.pad(alignment_);
  return o.b;
}

uint64_t writer::file_size() const {
  uint64_t n = header().size();
  for (const auto& t : tensors_) n += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  return n;
}

// Where the bytes of a file go, in order: room() hands out space (at least `min` bytes, at most
// `want`), commit() says how much of it was written.
class writer::sink {
 public:
  virtual ~sink() = default;
  virtual uint8_t* room(size_t want, size_t min, size_t* got) = 0;
  virtual void commit(size_t n) = 0;
  void put(const uint8_t* p, size_t n) {
    while (n) {
      size_t got = 0;
      uint8_t* dst = room(n, 1, &got);
      got = std::min(got, n);
      std::memcpy(dst, p, got);
      commit(got);
      p += got;
      n -= got;
    }
  }
  void zeros(size_t n) {
    static const uint8_t z[64] = {};
    while (n) {
      const size_t k = std::min(n, sizeof z);
      put(z, k);
      n -= k;
    }
  }
};

void writer::emit(sink& out, const tensor_filler& fill) const {
  for (const auto& t : tensors_)
    if (t.streamed && !fill)
      fail("gguf writer: tensor '" + t.name + "' is streamed but no filler was given", {}, {},
           "pass the function that produces its bytes to write() or to_bytes()");
  const std::vector<uint8_t> h = header();
  out.put(h.data(), h.size());
  for (size_t i = 0; i < tensors_.size(); i++) {
    const pending& t = tensors_[i];
    if (!t.streamed) {
      out.put(t.data.data(), t.data.size());
    } else {
      const size_t blk = type_block_bytes(t.t);
      for (size_t off = 0; off < t.nbytes;) {
        size_t got = 0;
        uint8_t* dst = out.room(t.nbytes - off, blk, &got);
        got = std::min(got, t.nbytes - off) / blk * blk;
        HASHATTN_ASSERT(got > 0);
        fill(i, off, dst, got);
        out.commit(got);
        off += got;
      }
    }
    out.zeros((alignment_ - t.nbytes % alignment_) % alignment_);
  }
}

std::vector<uint8_t> writer::to_bytes(const tensor_filler& fill) const {
  struct memory final : sink {
    std::vector<uint8_t> b;
    size_t used = 0;
    uint8_t* room(size_t want, size_t min, size_t* got) override {
      b.resize(used + want);
      *got = want;
      return b.data() + used;
    }
    void commit(size_t n) override {
      used += n;
      b.resize(used);
    }
  } out;
  emit(out, fill);
  return std::move(out.b);
}

namespace {

void write_all(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n) {
    const ssize_t w = ::write(fd, p, std::min(n, size_t(1) << 30));
    if (w < 0) {
      const int e = errno;
      if (e == EINTR) continue;
      fail("gguf writer: cannot write '" + path + "'", std::strerror(e), "", e == ENOSPC ? "the disk is full" : "");
    }
    p += w;
    n -= (size_t)w;
  }
}

}  // namespace

void writer::write(const std::string& path, const tensor_filler& fill, size_t chunk_bytes) const {
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) {
    const int e = errno;
    fail("gguf writer: cannot create a temporary file next to '" + path + "'", std::strerror(e), "",
         "check that the folder exists and is writable");
  }
  // Two buffers: one is filled while a second thread writes the other.
  struct file_out final : sink {
    int fd;
    const std::string& tmp;
    size_t cap;
    std::vector<uint8_t> buf[2];
    int cur = 0;
    size_t used = 0;
    std::future<void> busy;  // the write of buf[cur ^ 1]
    file_out(int fd_, const std::string& tmp_, size_t cap_) : fd(fd_), tmp(tmp_), cap(std::max(cap_, size_t(4096))) {
      buf[0].resize(cap);
      buf[1].resize(cap);
    }
    ~file_out() override {
      if (busy.valid()) busy.wait();
    }
    void flush() {
      if (busy.valid()) busy.get();  // rethrows a failed write
      if (!used) return;
      busy = std::async(std::launch::async, write_all, fd, buf[cur].data(), used, std::cref(tmp));
      cur ^= 1;
      used = 0;
    }
    uint8_t* room(size_t want, size_t min, size_t* got) override {
      if (cap - used < min) flush();
      *got = std::min(want, cap - used);
      return buf[cur].data() + used;
    }
    void commit(size_t n) override { used += n; }
  };
  try {
    file_out out(fd, tmp, (size_t)std::min<uint64_t>(chunk_bytes, file_size()));
    emit(out, fill);
    out.flush();
    out.flush();  // waits for the last write
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  fchmod(fd, 0644);
  const int rs = fsync(fd);
  const int es = errno;
  const int rc = ::close(fd);
  if (rs != 0 || rc != 0) {
    const int e = rs != 0 ? es : errno;
    ::unlink(tmp.c_str());
    fail("gguf writer: cannot flush '" + tmp + "'", std::strerror(e));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail("gguf writer: cannot rename the temporary file to '" + path + "'", std::strerror(e));
  }
}

}  // namespace hashattn::gguf
