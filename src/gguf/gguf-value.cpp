// GGUF metadata values: constructors for the common cases and the text form used by
// `hashattn info` (strings quoted and escaped, arrays abbreviated with their length).
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string>

#include "hashattn/gguf.h"

namespace hashattn::gguf {

value value::from_u32(uint32_t x) {
  value v;
  v.type = value_type::UINT32;
  v.u = x;
  v.i = x;
  return v;
}

value value::from_i32(int32_t x) {
  value v;
  v.type = value_type::INT32;
  v.i = x;
  v.u = (uint64_t)(int64_t)x;
  return v;
}

value value::from_u64(uint64_t x) {
  value v;
  v.type = value_type::UINT64;
  v.u = x;
  v.i = (int64_t)x;
  return v;
}

value value::from_f32(float x) {
  value v;
  v.type = value_type::FLOAT32;
  v.f = x;
  return v;
}

value value::from_bool(bool x) {
  value v;
  v.type = value_type::BOOL;
  v.b = x;
  v.u = x;
  v.i = x;
  return v;
}

value value::from_string(std::string x) {
  value v;
  v.type = value_type::STRING;
  v.s = std::move(x);
  return v;
}

value value::from_strings(const std::vector<std::string>& xs) {
  value v;
  v.type = value_type::ARRAY;
  v.arr_type = value_type::STRING;
  v.arr.reserve(xs.size());
  for (const auto& x : xs) v.arr.push_back(from_string(x));
  return v;
}

value value::from_i32s(const std::vector<int32_t>& xs) {
  value v;
  v.type = value_type::ARRAY;
  v.arr_type = value_type::INT32;
  v.arr.reserve(xs.size());
  for (int32_t x : xs) v.arr.push_back(from_i32(x));
  return v;
}

value value::from_f32s(const std::vector<float>& xs) {
  value v;
  v.type = value_type::ARRAY;
  v.arr_type = value_type::FLOAT32;
  v.arr.reserve(xs.size());
  for (float x : xs) v.arr.push_back(from_f32(x));
  return v;
}

bool value::is_integer() const {
  switch (type) {
    case value_type::UINT8: case value_type::INT8: case value_type::UINT16: case value_type::INT16:
    case value_type::UINT32: case value_type::INT32: case value_type::UINT64: case value_type::INT64:
      return true;
    default:
      return false;
  }
}

bool value::is_float() const { return type == value_type::FLOAT32 || type == value_type::FLOAT64; }

namespace {

bool is_signed(value_type t) {
  return t == value_type::INT8 || t == value_type::INT16 || t == value_type::INT32 || t == value_type::INT64;
}

std::string quote(const std::string& s, size_t max_chars) {
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : s) {
    if (n++ >= max_chars) {
      out += "...";
      break;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += (char)c;
        }
    }
  }
  out += "\"";
  return out;
}

std::string fmt_float(double f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", f);
  return buf;
}

}  // namespace

std::string value::to_string(size_t max_array_items) const {
  switch (type) {
    case value_type::BOOL: return b ? "true" : "false";
    case value_type::FLOAT32: case value_type::FLOAT64: return fmt_float(f);
    case value_type::STRING: return quote(s, 200);
    case value_type::ARRAY: {
      std::string out = "[";
      const size_t n = arr.size();
      const size_t shown = n < max_array_items ? n : max_array_items;
      for (size_t k = 0; k < shown; k++) {
        if (k) out += ", ";
        out += arr[k].to_string(max_array_items);
      }
      if (shown < n) out += (shown ? ", ..." : "...");
      out += "]";
      if (shown < n) out += " (" + std::to_string(n) + " items)";
      return out;
    }
    default:
      if (is_integer()) return is_signed(type) ? std::to_string(i) : std::to_string(u);
      return "?";
  }
}

}  // namespace hashattn::gguf
