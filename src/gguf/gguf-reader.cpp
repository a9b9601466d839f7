// GGUF v2/v3 reader: maps a file (or copies a buffer) and parses header, metadata and tensor
// infos with every read bounds-checked. Validation: magic, version, counts that cannot fit in the
// remaining bytes, string/array lengths, nesting depth, bool values, duplicate keys and tensor
// names, general.alignment (a power of two), tensor dims (1..4, each >= 1, no overflow), known
// types, rows a multiple of the block size, aligned offsets, tensors inside the file and not
// overlapping. Tensor data pointers point into the mapping (no copies).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>

#include "hashattn/error.h"
#include "hashattn/gguf.h"

namespace hashattn::gguf {

namespace {

constexpr int k_max_array_depth = 8;
constexpr uint64_t k_max_alignment = uint64_t(1) << 30;
// Metadata arrays are held as one value per element; this caps the memory a file can ask for.
constexpr uint64_t k_max_array_elems = uint64_t(1) << 24;

std::string hex32(uint32_t x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", x);
  return buf;
}

// Smallest encoded size of one value of type t (used to reject counts that cannot fit).
uint64_t min_value_bytes(value_type t) {
  switch (t) {
    case value_type::UINT8: case value_type::INT8: case value_type::BOOL: return 1;
    case value_type::UINT16: case value_type::INT16: return 2;
    case value_type::UINT32: case value_type::INT32: case value_type::FLOAT32: return 4;
    case value_type::UINT64: case value_type::INT64: case value_type::FLOAT64: return 8;
    case value_type::STRING: return 8;
    case value_type::ARRAY: return 12;
  }
  return 1;
}

bool value_type_valid(uint32_t t) { return t <= 12; }

struct cursor {
  const uint8_t* base;
  size_t size;
  size_t pos = 0;
  uint64_t array_elems = 0;  // metadata array elements read so far

  size_t left() const { return size - pos; }

  void need(size_t n, const std::string& what) const {
    if (n > left())
      fail("gguf: file truncated while reading " + what + " at byte " + std::to_string(pos),
           std::to_string(left()) + " bytes left", std::to_string(n) + " bytes",
           "the file is incomplete or corrupt; download it again");
  }
  template <typename T>
  T rd(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    const uint64_t n = rd<uint64_t>("length of " + what);
    if (n > left())
      fail("gguf: length of " + what + " at byte " + std::to_string(pos - 8) + " exceeds the file",
           std::to_string(n), "<= " + std::to_string(left()) + " (bytes left)");
    std::string s((const char*)base + pos, (size_t)n);
    pos += (size_t)n;
    return s;
  }
};

void read_value(cursor& c, value_type t, value& v, const std::string& ctx, int depth) {
  v.type = t;
  switch (t) {
    case value_type::UINT8: v.u = c.rd<uint8_t>(ctx); v.i = (int64_t)v.u; return;
    case value_type::INT8: v.i = c.rd<int8_t>(ctx); v.u = (uint64_t)v.i; return;
    case value_type::UINT16: v.u = c.rd<uint16_t>(ctx); v.i = (int64_t)v.u; return;
    case value_type::INT16: v.i = c.rd<int16_t>(ctx); v.u = (uint64_t)v.i; return;
    case value_type::UINT32: v.u = c.rd<uint32_t>(ctx); v.i = (int64_t)v.u; return;
    case value_type::INT32: v.i = c.rd<int32_t>(ctx); v.u = (uint64_t)v.i; return;
    case value_type::UINT64: v.u = c.rd<uint64_t>(ctx); v.i = (int64_t)v.u; return;
    case value_type::INT64: v.i = c.rd<int64_t>(ctx); v.u = (uint64_t)v.i; return;
    case value_type::FLOAT32: v.f = c.rd<float>(ctx); return;
    case value_type::FLOAT64: v.f = c.rd<double>(ctx); return;
    case value_type::BOOL: {
      const uint8_t b = c.rd<uint8_t>(ctx);
      if (b > 1) fail("gguf: bad bool value in " + ctx, std::to_string(b), "0 or 1");
      v.b = b;
      v.u = b;
      v.i = b;
      return;
    }
    case value_type::STRING: v.s = c.str(ctx); return;
    case value_type::ARRAY: {
      if (depth >= k_max_array_depth)
        fail("gguf: arrays nested too deeply in " + ctx, std::to_string(depth + 1),
             "<= " + std::to_string(k_max_array_depth));
      const uint32_t et = c.rd<uint32_t>("array element type of " + ctx);
      if (!value_type_valid(et))
        fail("gguf: unknown array element type in " + ctx, std::to_string(et), "0..12");
      const uint64_t n = c.rd<uint64_t>("array length of " + ctx);
      const uint64_t min_b = min_value_bytes((value_type)et);
      if (n > c.left() / min_b)
        fail("gguf: array length of " + ctx + " cannot fit in the file", std::to_string(n),
             "<= " + std::to_string(c.left() / min_b) + " (" + std::to_string(c.left()) + " bytes left, " +
                 std::to_string(min_b) + " bytes per " + value_type_name((value_type)et) + ")");
      c.array_elems += n;
      if (c.array_elems > k_max_array_elems)
        fail("gguf: too many metadata array elements (at " + ctx + ")", std::to_string(c.array_elems),
             "<= " + std::to_string(k_max_array_elems) + " in all");
      v.arr_type = (value_type)et;
      v.arr.resize((size_t)n);
      for (uint64_t k = 0; k < n; k++) read_value(c, v.arr_type, v.arr[k], ctx, depth + 1);
      return;
    }
  }
  fail("gguf: unknown metadata value type in " + ctx, std::to_string((uint32_t)t), "0..12");
}

// Checked a*b for non-negative int64.
bool mul_ok(int64_t a, int64_t b, int64_t* out) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

}  // namespace

int64_t tensor_info::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return ne.empty() ? 0 : n;
}

std::unique_ptr<file> file::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    fail("gguf: cannot open '" + path + "'", std::strerror(e), "a readable GGUF file",
         e == ENOENT ? "check the path; run scripts/setup to fetch the default model" : "");
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail("gguf: cannot stat '" + path + "'", std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("gguf: '" + path + "' is not a regular file", S_ISDIR(st.st_mode) ? "a directory" : "a special file",
         "a GGUF file");
  }
  if (st.st_size == 0) {
    ::close(fd);
    fail("gguf: '" + path + "' is empty", "0 bytes", "a GGUF file (at least 24 bytes)");
  }
  void* m = mmap(nullptr, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (m == MAP_FAILED) fail("gguf: cannot map '" + path + "'", std::strerror(e));
  std::unique_ptr<file> f(new file());
  f->path_ = path;
  f->map_ = m;
  f->base_ = (const uint8_t*)m;
  f->size_ = (size_t)st.st_size;
  try {
    f->parse();
  } catch (const error& err) {
    std::string m = err.what();
    if (m.rfind("gguf: ", 0) == 0) m = m.substr(6);
    throw error("gguf: '" + path + "': " + m);
  }
  return f;
}

std::unique_ptr<file> file::from_buffer(const void* data, size_t size) {
  std::unique_ptr<file> f(new file());
  f->path_ = "<buffer>";
  f->owned_.assign((const uint8_t*)data, (const uint8_t*)data + size);
  f->base_ = f->owned_.data();
  f->size_ = size;
  f->parse();
  return f;
}

file::~file() {
  if (map_) munmap(map_, size_);
}

void file::parse() {
  cursor c{base_, size_};
  c.need(4, "magic");
  if (std::memcmp(base_, "GGUF", 4) != 0) {
    uint32_t m;
    std::memcpy(&m, base_, 4);
    std::string shown((const char*)base_, 4);
    for (char& ch : shown)
      if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f) ch = '.';
    fail("gguf: bad magic", hex32(m) + " (\"" + shown + "\")",
         "\"GGUF\"", "not a GGUF file");
  }
  c.pos = 4;
  version_ = c.rd<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    std::string hint = version_ == 1 ? "GGUF v1 is obsolete; convert the model again"
                       : (version_ == 0x02000000u || version_ == 0x03000000u)
                           ? "this looks like a big-endian GGUF file, which is not supported"
                           : "";
    fail("gguf: unsupported version", std::to_string(version_), "2 or 3", hint);
  }
  const uint64_t n_tensors = c.rd<uint64_t>("tensor count");
  const uint64_t n_kv = c.rd<uint64_t>("metadata count");
  // A key-value needs at least 8 (key length) + 4 (type) + 1 bytes; a tensor info 8 + 4 + 8 + 4 + 8.
  if (n_kv > c.left() / 13)
    fail("gguf: metadata count cannot fit in the file", std::to_string(n_kv),
         "<= " + std::to_string(c.left() / 13) + " for " + std::to_string(c.left()) + " bytes left");
  if (n_tensors > c.left() / 32)
    fail("gguf: tensor count cannot fit in the file", std::to_string(n_tensors),
         "<= " + std::to_string(c.left() / 32) + " for " + std::to_string(c.left()) + " bytes left");

  kvs_.clear();
  kvs_.reserve((size_t)n_kv);
  kv_index_.clear();
  for (uint64_t k = 0; k < n_kv; k++) {
    kv e;
    e.key = c.str("key of metadata entry " + std::to_string(k));
    if (e.key.empty()) fail("gguf: empty key in metadata entry " + std::to_string(k));
    const std::string ctx = "metadata '" + e.key + "'";
    const uint32_t t = c.rd<uint32_t>("value type of " + ctx);
    if (!value_type_valid(t)) fail("gguf: unknown value type of " + ctx, std::to_string(t), "0..12");
    read_value(c, (value_type)t, e.val, ctx, 0);
    if (!kv_index_.emplace(e.key, kvs_.size()).second) fail("gguf: duplicate metadata key '" + e.key + "'");
    kvs_.push_back(std::move(e));
  }

  alignment_ = 32;
  if (const value* a = find("general.alignment")) {
    if (!a->is_integer())
      fail("gguf: general.alignment has the wrong type", value_type_name(a->type), "an unsigned integer (u32)");
    if (a->i <= 0 || (a->u & (a->u - 1)) != 0 || a->u > k_max_alignment)
      fail("gguf: general.alignment is not a power of two in 1..2^30", a->to_string(), "a power of two");
    alignment_ = a->u;
  }

  tensors_.clear();
  tensors_.reserve((size_t)n_tensors);
  tensor_index_.clear();
  for (uint64_t k = 0; k < n_tensors; k++) {
    tensor_info ti;
    ti.name = c.str("name of tensor " + std::to_string(k));
    const std::string ctx = "tensor '" + ti.name + "'";
    if (ti.name.empty()) fail("gguf: empty name of tensor " + std::to_string(k));
    if (!tensor_index_.emplace(ti.name, tensors_.size()).second)
      fail("gguf: duplicate tensor name '" + ti.name + "'");
    const uint32_t n_dims = c.rd<uint32_t>("dimension count of " + ctx);
    if (n_dims < 1 || n_dims > 4) fail("gguf: " + ctx + " has a bad dimension count", std::to_string(n_dims), "1..4");
    ti.ne.resize(n_dims);
    int64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
      const uint64_t v = c.rd<uint64_t>("dimensions of " + ctx);
      if (v == 0 || v > (uint64_t)std::numeric_limits<int64_t>::max())
        fail("gguf: " + ctx + " has a bad size in dimension " + std::to_string(d), std::to_string(v), ">= 1");
      ti.ne[d] = (int64_t)v;
      if (!mul_ok(n_el, ti.ne[d], &n_el))
        fail("gguf: element count of " + ctx + " overflows", "", "< 2^63 elements");
    }
    const uint32_t t = c.rd<uint32_t>("type of " + ctx);
    if (!type_known(t))
      fail("gguf: " + ctx + " has an unknown type", std::to_string(t), "a supported ggml type id",
           "the model uses a quantization this library does not support");
    ti.type = (type)t;
    const int64_t be = type_block_elems(ti.type);
    if (ti.ne[0] % be != 0)
      fail("gguf: " + ctx + " row length is not a multiple of the " + type_name(ti.type) + " block size",
           std::to_string(ti.ne[0]), "a multiple of " + std::to_string(be));
    int64_t nb;
    if (!mul_ok(n_el / be, (int64_t)type_block_bytes(ti.type), &nb))
      fail("gguf: byte size of " + ctx + " overflows");
    ti.nbytes = (size_t)nb;
    ti.offset = c.rd<uint64_t>("offset of " + ctx);
    if (ti.offset % alignment_ != 0)
      fail("gguf: " + ctx + " data offset is not aligned", std::to_string(ti.offset),
           "a multiple of " + std::to_string(alignment_));
    tensors_.push_back(std::move(ti));
  }

  // Data section: after the infos, padded to the alignment.
  const size_t data_start = (c.pos + alignment_ - 1) / alignment_ * alignment_;
  if (!tensors_.empty() && data_start > size_)
    fail("gguf: file truncated before the tensor data section", std::to_string(size_) + " bytes",
         ">= " + std::to_string(data_start) + " bytes");
  data_offset_ = data_start;
  const uint64_t data_size = data_start <= size_ ? size_ - data_start : 0;
  for (auto& ti : tensors_) {
    if (ti.offset > data_size || ti.nbytes > data_size - ti.offset)
      fail("gguf: tensor '" + ti.name + "' extends past end of file",
           "offset+size " + std::to_string((unsigned long long)ti.offset) + "+" + std::to_string(ti.nbytes),
           "<= " + std::to_string(data_size) + " (bytes in the data section)");
    ti.data = base_ + data_start + ti.offset;
  }
  std::vector<const tensor_info*> by_off;
  by_off.reserve(tensors_.size());
  for (const auto& ti : tensors_) by_off.push_back(&ti);
  std::sort(by_off.begin(), by_off.end(), [](const tensor_info* a, const tensor_info* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->name < b->name;
  });
  for (size_t k = 1; k < by_off.size(); k++) {
    const tensor_info* a = by_off[k - 1];
    const tensor_info* b = by_off[k];
    if (a->offset + a->nbytes > b->offset)
      fail("gguf: tensors '" + a->name + "' and '" + b->name + "' overlap",
           "'" + b->name + "' at offset " + std::to_string((unsigned long long)b->offset),
           ">= " + std::to_string((unsigned long long)(a->offset + a->nbytes)) + " (end of '" + a->name + "')");
  }
}

const value* file::find(const std::string& key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].val;
}

const tensor_info* file::find_tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

[[noreturn]] void missing(const std::string& key, const std::string& what) {
  fail("gguf: metadata key '" + key + "' is missing", "", what, "the model file may be incomplete");
}

[[noreturn]] void wrong(const std::string& key, const value& v, const std::string& what) {
  std::string got = value_type_name(v.type);
  if (v.type == value_type::ARRAY) got += std::string(" of ") + value_type_name(v.arr_type);
  fail("gguf: metadata key '" + key + "' has the wrong type", got, what);
}

double num(const value& v) {
  if (v.is_float()) return v.f;
  if (v.type == value_type::UINT64) return (double)v.u;
  return (double)v.i;
}

}  // namespace

std::string file::get_string(const std::string& key) const {
  const value* v = find(key);
  if (!v) missing(key, "a string");
  if (v->type != value_type::STRING) wrong(key, *v, "str");
  return v->s;
}

int64_t file::get_int(const std::string& key) const {
  const value* v = find(key);
  if (!v) missing(key, "an integer");
  if (!v->is_integer()) wrong(key, *v, "an integer");
  if (v->type == value_type::UINT64 && v->u > (uint64_t)std::numeric_limits<int64_t>::max())
    fail("gguf: metadata key '" + key + "' is out of range", std::to_string(v->u), "< 2^63");
  return v->i;
}

int64_t file::get_int(const std::string& key, int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}

double file::get_float(const std::string& key) const {
  const value* v = find(key);
  if (!v) missing(key, "a number");
  if (!v->is_float() && !v->is_integer()) wrong(key, *v, "a float or integer");
  return num(*v);
}

double file::get_float(const std::string& key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}

std::vector<std::string> file::get_strings(const std::string& key) const {
  const value* v = find(key);
  if (!v) missing(key, "an array of strings");
  if (v->type != value_type::ARRAY || v->arr_type != value_type::STRING) wrong(key, *v, "arr of str");
  std::vector<std::string> out;
  out.reserve(v->arr.size());
  for (const auto& e : v->arr) out.push_back(e.s);
  return out;
}

std::vector<int64_t> file::get_ints(const std::string& key) const {
  const value* v = find(key);
  if (!v) missing(key, "an array of integers");
  value probe;
  probe.type = v->arr_type;
  if (v->type != value_type::ARRAY || !probe.is_integer()) wrong(key, *v, "arr of integers");
  std::vector<int64_t> out;
  out.reserve(v->arr.size());
  for (const auto& e : v->arr) out.push_back(e.i);
  return out;
}

std::vector<double> file::get_floats(const std::string& key) const {
  const value* v = find(key);
  if (!v) missing(key, "an array of numbers");
  value probe;
  probe.type = v->arr_type;
  if (v->type != value_type::ARRAY || !(probe.is_integer() || probe.is_float()))
    wrong(key, *v, "arr of floats or integers");
  std::vector<double> out;
  out.reserve(v->arr.size());
  for (const auto& e : v->arr) out.push_back(num(e));
  return out;
}

const tensor_info& file::tensor(const std::string& name) const {
  const tensor_info* t = find_tensor(name);
  if (!t) fail("gguf: tensor '" + name + "' not found in " + path_, "", "", "the model file may be incomplete or of another architecture");
  return *t;
}

}  // namespace hashattn::gguf
