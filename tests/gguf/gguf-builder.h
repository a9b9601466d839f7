// Test helper: emits raw GGUF bytes field by field (little-endian), so tests can build both valid
// files and files broken in one precise way without going through the library's writer.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace hashattn::test {

struct raw_gguf {
  std::vector<uint8_t> b;
  template <typename T>
  raw_gguf& put(T v) {
    const size_t n = b.size();
    b.resize(n + sizeof(T));
    std::memcpy(b.data() + n, &v, sizeof(T));
    return *this;
  }
  raw_gguf& bytes(const std::string& s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  raw_gguf& str(const std::string& s) {
    put<uint64_t>(s.size());
    return bytes(s);
  }
  raw_gguf& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    bytes("GGUF");
    put<uint32_t>(version);
    put<uint64_t>(n_tensors);
    return put<uint64_t>(n_kv);
  }
  raw_gguf& kv_u32(const std::string& key, uint32_t v) {
    str(key);
    put<uint32_t>(4);
    return put<uint32_t>(v);
  }
  raw_gguf& kv_str(const std::string& key, const std::string& v) {
    str(key);
    put<uint32_t>(8);
    return str(v);
  }
  // Tensor info: name, dims, type, offset.
  raw_gguf& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
    str(name);
    put<uint32_t>((uint32_t)ne.size());
    for (uint64_t d : ne) put<uint64_t>(d);
    put<uint32_t>(type);
    return put<uint64_t>(offset);
  }
  raw_gguf& pad(size_t a) {
    while (b.size() % a) b.push_back(0);
    return *this;
  }
  raw_gguf& zeros(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

}  // namespace hashattn::test
