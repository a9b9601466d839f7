// GGUF v2/v3 reader (mmap or in-memory buffer, fully validated) and writer.
// Layout of a file: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv metadata
// (string key, u32 value type, value), then n_tensors infos (name, u32 n_dims, u64 ne[n_dims],
// u32 type, u64 offset), padding to general.alignment (default 32), then the tensor data.
// ne[0] is the contiguous axis. Every malformed input throws hashattn::error naming the problem.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace hashattn::gguf {

// Tensor element types (ggml numbering).
enum class type : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};

// Metadata value types.
enum class value_type : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

const char* type_name(type t);            // "Q4_1"; "?" for unknown
const char* value_type_name(value_type t);
bool type_known(uint32_t t);              // a type this library can size
bool type_dequantizable(type t);          // a type dequantize_row supports
int64_t type_block_elems(type t);         // elements per block (32 for Q4_1, 256 for Q4_K, 1 for F32)
size_t type_block_bytes(type t);          // bytes per block
size_t row_bytes(type t, int64_t n);      // bytes of n elements (n a multiple of the block size)

// Dequantizes n elements (a multiple of the block size) of type t into float.
void dequantize_row(type t, const void* src, float* dst, int64_t n);
// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the block's 12 packed scale bytes.
void k4_scale_min(int j, const uint8_t* scales, int* sc, int* mn);

// One metadata value. Scalars live in the field matching the type (integers of every width in
// i or u, floats in f, bool in b); arrays hold arr_type and arr (nested arrays allowed).
struct value {
  value_type type = value_type::UINT8;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  value_type arr_type = value_type::UINT8;
  std::vector<value> arr;

  static value from_u32(uint32_t x);
  static value from_i32(int32_t x);
  static value from_u64(uint64_t x);
  static value from_f32(float x);
  static value from_bool(bool x);
  static value from_string(std::string x);
  static value from_strings(const std::vector<std::string>& xs);
  static value from_i32s(const std::vector<int32_t>& xs);
  static value from_f32s(const std::vector<float>& xs);

  bool is_integer() const;
  bool is_float() const;
  std::string to_string(size_t max_array_items = 8) const;  // for `hashattn info`
};

struct kv {
  std::string key;
  value val;
};

struct tensor_info {
  std::string name;
  gguf::type type = gguf::type::F32;
  std::vector<int64_t> ne;    // ne[0] contiguous
  uint64_t offset = 0;        // relative to the data section
  const uint8_t* data = nullptr;  // points into the mapping
  size_t nbytes = 0;
  int64_t n_elements() const;
  int64_t n_rows() const { return ne.empty() ? 0 : n_elements() / ne[0]; }
};

class file {
 public:
  // Opens and validates a file (mmap). Throws hashattn::error on any problem.
  static std::unique_ptr<file> open(const std::string& path);
  // Parses a copy of an in-memory buffer (used by tests and fuzzers).
  static std::unique_ptr<file> from_buffer(const void* data, size_t size);
  ~file();
  file(const file&) = delete;
  file& operator=(const file&) = delete;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }
  size_t size() const { return size_; }
  size_t data_offset() const { return data_offset_; }  // file offset of the tensor data section
  const std::vector<kv>& metadata() const { return kvs_; }
  const std::vector<tensor_info>& tensors() const { return tensors_; }

  const value* find(const std::string& key) const;              // nullptr when absent
  const tensor_info* find_tensor(const std::string& name) const;  // nullptr when absent
  // Typed getters: throw a clear error when the key is absent or of the wrong type.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double fallback) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<int64_t> get_ints(const std::string& key) const;
  std::vector<double> get_floats(const std::string& key) const;
  const tensor_info& tensor(const std::string& name) const;  // throws when absent

 private:
  file() = default;
  void parse();
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;                 // mmap'ed region, or nullptr
  std::vector<uint8_t> owned_;          // buffer copy for from_buffer
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<kv> kvs_;
  std::vector<tensor_info> tensors_;
  std::unordered_map<std::string, size_t> kv_index_, tensor_index_;
};

// Writes GGUF v3 files. A tensor either holds its bytes (add_tensor: copied) or is streamed
// (add_tensor_streamed: only name, type and shape): its bytes come from a filler while the file is
// written, chunk by chunk, so that a file larger than memory can be written.
class writer {
 public:
  // Fills dst[0, n) with the bytes [offset, offset + n) of streamed tensor `index` (the order in which
  // tensors were added, every tensor counted). offset and n are multiples of the type's block bytes;
  // the calls come in file order, one at a time, from the thread that called write() / to_bytes().
  using tensor_filler = std::function<void(size_t index, uint64_t offset, uint8_t* dst, size_t n)>;

  void set(const std::string& key, value v);  // replaces an existing key
  // Adds a tensor; data is copied. nbytes must equal row_bytes(t, ne[0]) * rows.
  void add_tensor(const std::string& name, type t, const std::vector<int64_t>& ne, const void* data,
                  size_t nbytes);
  // Adds a tensor whose bytes the filler of write() / to_bytes() produces.
  void add_tensor_streamed(const std::string& name, type t, const std::vector<int64_t>& ne);
  void set_alignment(uint64_t a);
  size_t n_tensors() const { return tensors_.size(); }
  uint64_t file_size() const;  // bytes of the whole file (header, padding, tensor data)
  // fill: required when a tensor is streamed.
  std::vector<uint8_t> to_bytes(const tensor_filler& fill = {}) const;
  // Atomically (temp file + rename); the bytes go out in chunks of chunk_bytes, written by a second
  // thread while the next chunk is filled.
  void write(const std::string& path, const tensor_filler& fill = {}, size_t chunk_bytes = size_t(64) << 20) const;

 private:
  struct pending {
    std::string name;
    type t;
    std::vector<int64_t> ne;
    size_t nbytes = 0;
    bool streamed = false;
    std::vector<uint8_t> data;  // empty when streamed
  };
  class sink;
  size_t check_new_tensor(const std::string& name, type t, const std::vector<int64_t>& ne) const;
  std::vector<uint8_t> header() const;  // metadata, tensor infos, padding to the alignment
  void emit(sink& out, const tensor_filler& fill) const;
  uint64_t alignment_ = 32;
  std::vector<kv> kvs_;
  std::vector<pending> tensors_;
};

}  // namespace hashattn::gguf
