// GGUF v3 writer: metadata in insertion order, tensor infos, padding to the alignment, then the
// tensor data, each tensor at an aligned offset (zero padding). write() goes through a temporary
// file in the same folder and rename(), so readers never see a half-written file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
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

void writer::add_tensor(const std::string& name, type t, const std::vector<int64_t>& ne, const void* data,
                        size_t nbytes) {
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
  const size_t want = row_bytes(t, ne[0]) * (size_t)rows;
  if (nbytes != want)
    fail("gguf writer: data size of tensor '" + name + "' does not match its shape and type", std::to_string(nbytes),
         std::to_string(want));
  if (nbytes && !data) fail("gguf writer: null data for tensor '" + name + "'");
  pending p{name, t, ne, {}};
  p.data.assign((const uint8_t*)data, (const uint8_t*)data + nbytes);
  tensors_.push_back(std::move(p));
}

std::vector<uint8_t> writer::to_bytes() const {
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
    off += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  o.pad(alignment_);
  for (const auto& t : tensors_) {
    o.b.insert(o.b.end(), t.data.begin(), t.data.end());
    o.pad(alignment_);
  }
  return o.b;
}

void writer::write(const std::string& path) const {
  const std::vector<uint8_t> bytes = to_bytes();
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) {
    const int e = errno;
    fail("gguf writer: cannot create a temporary file next to '" + path + "'", std::strerror(e), "",
         "check that the folder exists and is writable");
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("gguf writer: cannot write '" + tmp + "'", std::strerror(e));
    }
    done += (size_t)w;
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
