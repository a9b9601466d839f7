// GGUF reader/writer tests: round trips of every metadata type (nested arrays included) and
// several tensor types through writer -> bytes -> reader and through a file on disk, alignment,
// getters, streamed tensors (bytes from a filler, chunk by chunk), and files broken in one precise way
// each, whose errors must name the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "gguf/gguf-builder.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"

using namespace hashattn;
using namespace hashattn::gguf;
using hashattn::test::raw_gguf;

namespace {

value scalar(value_type t, int64_t x) {
  value v;
  v.type = t;
  v.i = x;
  v.u = (uint64_t)x;
  return v;
}

value f64(double x) {
  value v;
  v.type = value_type::FLOAT64;
  v.f = x;
  return v;
}

value arr(value_type et, std::vector<value> xs) {
  value v;
  v.type = value_type::ARRAY;
  v.arr_type = et;
  v.arr = std::move(xs);
  return v;
}

// Expects fn to throw hashattn::error whose message contains every needle.
template <typename F>
void expect_error(F fn, std::initializer_list<const char*> needles) {
  try {
    fn();
    ADD_FAILURE() << "expected hashattn::error";
  } catch (const hashattn::error& e) {
    const std::string m = e.what();
    for (const char* n : needles) EXPECT_NE(m.find(n), std::string::npos) << "message: " << m << "\nmissing: " << n;
  }
}

std::unique_ptr<file> parse(const std::vector<uint8_t>& b) { return file::from_buffer(b.data(), b.size()); }

writer sample_writer(uint32_t seed) {
  std::mt19937 rng(seed);
  writer w;
  w.set("general.architecture", value::from_string("llama"));
  w.set("t.u8", scalar(value_type::UINT8, 200));
  w.set("t.i8", scalar(value_type::INT8, -100));
  w.set("t.u16", scalar(value_type::UINT16, 60000));
  w.set("t.i16", scalar(value_type::INT16, -30000));
  w.set("t.u32", value::from_u32(4000000000u));
  w.set("t.i32", value::from_i32(-2000000000));
  w.set("t.u64", value::from_u64(18000000000000000000ull));
  w.set("t.i64", scalar(value_type::INT64, -9000000000000000000ll));
  w.set("t.f32", value::from_f32(3.25f));
  w.set("t.f64", f64(-1e300));
  w.set("t.bool", value::from_bool(true));
  w.set("t.str", value::from_string(std::string("h\xc3\xa9llo\n\0x", 9)));
  w.set("t.strs", value::from_strings({"a", "", "\xe4\xb8\xad"}));
  w.set("t.i32s", value::from_i32s({1, -2, 3}));
  w.set("t.f32s", value::from_f32s({0.5f, -0.25f}));
  w.set("t.empty", arr(value_type::UINT8, {}));
  w.set("t.nested", arr(value_type::ARRAY, {arr(value_type::INT16, {scalar(value_type::INT16, -5)}),
                                            arr(value_type::STRING, {value::from_string("x")})}));
  w.set("t.bools", arr(value_type::BOOL, {value::from_bool(false), value::from_bool(true)}));
  std::vector<float> a(8 * 3);
  for (auto& x : a) x = std::uniform_real_distribution<float>(-2, 2)(rng);
  w.add_tensor("a.f32", type::F32, {8, 3}, a.data(), a.size() * 4);
  std::vector<uint8_t> q(20 * 2 * 2);
  for (auto& x : q) x = (uint8_t)rng();
  // Keep the fp16 scales finite: exponent bits of d and m below 0x7c00.
  for (size_t blk = 0; blk < 4; blk++) {
    q[blk * 20 + 1] &= 0x3b;
    q[blk * 20 + 3] &= 0x3b;
  }
  w.add_tensor("b.q4_1", type::Q4_1, {64, 2}, q.data(), q.size());
  std::vector<uint8_t> h(5 * 2);
  for (auto& x : h) x = (uint8_t)(rng() & 0x3b);
  w.add_tensor("c.f16", type::F16, {5}, h.data(), h.size());
  std::vector<uint8_t> k(144 * 2, 7);
  w.add_tensor("d.q4_k", type::Q4_K, {256, 1, 2, 1}, k.data(), k.size());
  return w;
}

void check_sample(const file& f) {
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.find("t.u8")->type, value_type::UINT8);
  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u16"), 60000);
  EXPECT_EQ(f.get_int("t.i16"), -30000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000ll);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.find("t.u64")->u, 18000000000000000000ull);
  EXPECT_EQ(f.get_int("t.i64"), -9000000000000000000ll);
  EXPECT_EQ(f.get_float("t.f32"), 3.25);
  EXPECT_EQ(f.get_float("t.f64"), -1e300);
  EXPECT_TRUE(f.find("t.bool")->b);
  EXPECT_EQ(f.get_string("t.str"), std::string("h\xc3\xa9llo\n\0x", 9));
  EXPECT_EQ(f.get_strings("t.strs"), (std::vector<std::string>{"a", "", "\xe4\xb8\xad"}));
  EXPECT_EQ(f.get_ints("t.i32s"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.get_floats("t.f32s"), (std::vector<double>{0.5, -0.25}));
  EXPECT_EQ(f.find("t.empty")->arr.size(), 0u);
  EXPECT_EQ(f.find("t.empty")->arr_type, value_type::UINT8);
  const value* n = f.find("t.nested");
  ASSERT_NE(n, nullptr);
  ASSERT_EQ(n->arr.size(), 2u);
  EXPECT_EQ(n->arr[0].arr_type, value_type::INT16);
  EXPECT_EQ(n->arr[0].arr[0].i, -5);
  EXPECT_EQ(n->arr[1].arr[0].s, "x");
  EXPECT_EQ(f.find("t.bools")->arr[1].b, true);
  ASSERT_EQ(f.tensors().size(), 4u);
  const auto& a = f.tensor("a.f32");
  EXPECT_EQ(a.type, type::F32);
  EXPECT_EQ(a.ne, (std::vector<int64_t>{8, 3}));
  EXPECT_EQ(a.nbytes, 96u);
  EXPECT_EQ(a.n_rows(), 3);
  EXPECT_EQ(f.tensor("b.q4_1").nbytes, 80u);
  EXPECT_EQ(f.tensor("c.f16").n_elements(), 5);
  EXPECT_EQ(f.tensor("d.q4_k").ne, (std::vector<int64_t>{256, 1, 2, 1}));
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.offset % f.alignment(), 0u) << t.name;
  }
}

}  // namespace

TEST(gguf, round_trip_every_value_type) {
  const uint32_t seed = 1234;
  SCOPED_TRACE("seed " + std::to_string(seed));
  writer w = sample_writer(seed);
  const auto bytes = w.to_bytes();
  auto f = parse(bytes);
  check_sample(*f);
  // Tensor bytes come back unchanged (compare against a second writer with the same seed).
  writer w2 = sample_writer(seed);
  EXPECT_EQ(w2.to_bytes(), bytes);
  // Writer output re-written from the reader is byte-identical.
  writer w3;
  for (const auto& e : f->metadata()) w3.set(e.key, e.val);
  for (const auto& t : f->tensors()) w3.add_tensor(t.name, t.type, t.ne, t.data, t.nbytes);
  EXPECT_EQ(w3.to_bytes(), bytes);
}

TEST(gguf, round_trip_file_on_disk_and_alignment) {
  for (uint64_t align : {1ull, 8ull, 32ull, 64ull, 4096ull}) {
    SCOPED_TRACE("alignment " + std::to_string(align));
    writer w = sample_writer(7);
    if (align != 32) w.set_alignment(align);
    const std::string path = testing::TempDir() + "hashattn-gguf-rt-" + std::to_string(getpid()) + ".gguf";
    w.write(path);
    auto f = file::open(path);
    check_sample(*f);
    EXPECT_EQ(f->alignment(), align);
    EXPECT_EQ(f->path(), path);
    for (const auto& t : f->tensors()) EXPECT_EQ((t.data - f->tensors()[0].data) % (int64_t)align, 0);
    // The data section starts at an aligned file offset: mapping base is page aligned.
    for (const auto& t : f->tensors()) EXPECT_EQ((uintptr_t)t.data % (align < 4096 ? align : 4096), 0u);
    f.reset();
    std::remove(path.c_str());
  }
}

TEST(gguf, v2_files_are_read) {
  raw_gguf r;
  r.header(1, 1, 2).kv_str("general.architecture", "llama").tensor("w", {4}, 0, 0).pad(32);
  for (int k = 0; k < 4; k++) r.put<float>(k + 0.5f);
  auto f = parse(r.b);
  EXPECT_EQ(f->version(), 2u);
  float out[4];
  dequantize_row(type::F32, f->tensor("w").data, out, 4);
  EXPECT_EQ(out[3], 3.5f);
}

TEST(gguf, getters_report_missing_and_wrong_types) {
  auto f = parse(sample_writer(1).to_bytes());
  expect_error([&] { f->get_string("nope"); }, {"'nope'", "missing"});
  expect_error([&] { f->get_string("t.u32"); }, {"'t.u32'", "wrong type", "u32"});
  expect_error([&] { f->get_int("t.str"); }, {"wrong type", "str"});
  expect_error([&] { f->get_strings("t.i32s"); }, {"arr of i32"});
  expect_error([&] { f->get_ints("t.strs"); }, {"wrong type"});
  expect_error([&] { f->tensor("missing.weight"); }, {"'missing.weight'", "not found"});
  EXPECT_EQ(f->get_int("nope", 17), 17);
  EXPECT_EQ(f->get_float("nope", 2.5), 2.5);
  EXPECT_EQ(f->get_float("t.u32"), 4e9);
  EXPECT_EQ(f->find("nope"), nullptr);
  EXPECT_EQ(f->find_tensor("nope"), nullptr);
}

TEST(gguf, value_to_string) {
  EXPECT_EQ(value::from_u32(7).to_string(), "7");
  EXPECT_EQ(value::from_i32(-7).to_string(), "-7");
  EXPECT_EQ(value::from_bool(false).to_string(), "false");
  EXPECT_EQ(value::from_f32(0.5f).to_string(), "0.5");
  EXPECT_EQ(value::from_string("a\"b\n").to_string(), "\"a\\\"b\\n\"");
  EXPECT_EQ(value::from_i32s({1, 2, 3}).to_string(), "[1, 2, 3]");
  EXPECT_EQ(value::from_i32s({1, 2, 3, 4}).to_string(2), "[1, 2, ...] (4 items)");
}

TEST(gguf, writer_rejects_bad_input) {
  writer w;
  float x[4] = {};
  expect_error([&] { w.add_tensor("t", type::F32, {4}, x, 12); }, {"data size", "12", "16"});
  expect_error([&] { w.add_tensor("t", type::Q4_0, {16}, x, 9); }, {"multiple of 32"});
  expect_error([&] { w.add_tensor("t", type::F32, {}, x, 0); }, {"dimension count"});
  expect_error([&] { w.add_tensor("t", type::F32, {1, 1, 1, 1, 1}, x, 4); }, {"dimension count"});
  expect_error([&] { w.add_tensor("t", type::F32, {0}, x, 0); }, {"non-positive"});
  expect_error([&] { w.add_tensor("t", (type)99, {4}, x, 16); }, {"unknown tensor type"});
  w.add_tensor("t", type::F32, {4}, x, 16);
  expect_error([&] { w.add_tensor("t", type::F32, {4}, x, 16); }, {"duplicate", "'t'"});
  expect_error([&] { w.set_alignment(24); }, {"power of two", "24"});
  expect_error([&] { w.set_alignment(0); }, {"power of two"});
  w.set("k", arr(value_type::INT32, {value::from_u32(1)}));
  expect_error([&] { w.to_bytes(); }, {"inconsistent type", "'k'"});
  writer w2;
  expect_error([&] { w2.write("/nonexistent-dir-hashattn/x.gguf"); }, {"temporary file"});
}

TEST(gguf, set_replaces_existing_key) {
  writer w;
  w.set("a", value::from_u32(1));
  w.set("b", value::from_u32(2));
  w.set("a", value::from_string("x"));
  auto f = parse(w.to_bytes());
  ASSERT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(f->metadata()[0].key, "a");
  EXPECT_EQ(f->get_string("a"), "x");
}

// Streamed tensors: the same tensors added with their bytes or streamed from a filler give the same
// file, in memory and on disk, for chunk sizes that cut tensors anywhere (the filler still sees whole
// blocks: 34 bytes for Q8_0), and file_size() is the file's size.
TEST(gguf, streamed_tensors_give_the_same_bytes) {
  std::mt19937 rng(5);
  struct spec {
    std::string name;
    type t;
    std::vector<int64_t> ne;
    std::vector<uint8_t> data;
  };
  std::vector<spec> specs = {{"a.f32", type::F32, {37, 3}, {}}, {"b.q8_0", type::Q8_0, {64, 300}, {}},
                             {"c.bf16", type::BF16, {4099}, {}}, {"d.f16", type::F16, {1000, 9}, {}}};
  for (auto& s : specs) {
    int64_t rows = 1;
    for (size_t k = 1; k < s.ne.size(); k++) rows *= s.ne[k];
    s.data.resize(row_bytes(s.t, s.ne[0]) * rows);
    for (auto& x : s.data) x = (uint8_t)(rng() & 0x3b);  // finite fp16 / bf16 halves
  }
  writer whole, streamed;
  for (writer* w : {&whole, &streamed}) w->set("general.architecture", value::from_string("x"));
  for (const auto& s : specs) {
    whole.add_tensor(s.name, s.t, s.ne, s.data.data(), s.data.size());
    streamed.add_tensor_streamed(s.name, s.t, s.ne);
  }
  int calls = 0;
  const writer::tensor_filler fill = [&](size_t i, uint64_t off, uint8_t* dst, size_t n) {
    ASSERT_LT(i, specs.size());
    const size_t blk = type_block_bytes(specs[i].t);
    EXPECT_EQ(off % blk, 0u);
    EXPECT_EQ(n % blk, 0u);
    ASSERT_LE(off + n, specs[i].data.size());
    std::memcpy(dst, specs[i].data.data() + off, n);
    calls++;
  };
  const auto want = whole.to_bytes();
  EXPECT_EQ(streamed.to_bytes(fill), want);
  EXPECT_EQ(streamed.file_size(), want.size());
  EXPECT_EQ(whole.file_size(), want.size());
  const std::string path = testing::TempDir() + "hashattn-gguf-stream-" + std::to_string(getpid()) + ".gguf";
  for (size_t chunk : {size_t(1), size_t(4096), size_t(5000), size_t(64) << 20}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    calls = 0;
    streamed.write(path, fill, chunk);
    std::ifstream in(path, std::ios::binary);
    const std::vector<uint8_t> got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(got, want);
    if (chunk == 4096) {
      EXPECT_GT(calls, (int)specs.size());  // tensors cut across chunks
    }
    whole.write(path, {}, chunk);
    std::ifstream in2(path, std::ios::binary);
    EXPECT_EQ(std::vector<uint8_t>((std::istreambuf_iterator<char>(in2)), std::istreambuf_iterator<char>()), want);
  }
  std::remove(path.c_str());
}

// A streamed tensor without a filler is refused; a filler that throws leaves no file (nor temporary file).
TEST(gguf, streamed_tensor_errors) {
  writer w;
  w.add_tensor_streamed("s", type::F32, {1 << 20});
  expect_error([&] { w.to_bytes(); }, {"'s'", "streamed", "no filler"});
  char tmpl[] = "/tmp/hashattn-gguf-stream-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/m.gguf";
  expect_error([&] { w.write(path); }, {"'s'", "streamed"});
  const writer::tensor_filler bad = [](size_t, uint64_t off, uint8_t*, size_t) {
    if (off > 0) fail("filler failed on purpose");
  };
  expect_error([&] { w.write(path, bad, 4096); }, {"on purpose"});
  int left = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) left++, ADD_FAILURE() << e.path();
  EXPECT_EQ(left, 0);
  std::filesystem::remove_all(dir);
}

TEST(gguf, open_reports_missing_and_bad_files) {
  expect_error([] { file::open("/nonexistent/hashattn/model.gguf"); }, {"cannot open", "model.gguf", "No such file"});
  expect_error([] { file::open(testing::TempDir()); }, {"not a regular file"});
  const std::string path = testing::TempDir() + "hashattn-gguf-bad-" + std::to_string(getpid()) + ".gguf";
  { std::ofstream(path) << ""; }
  expect_error([&] { file::open(path); }, {"empty"});
  { std::ofstream(path) << "not a gguf file at all, just text"; }
  expect_error([&] { file::open(path); }, {"bad magic", "GGUF", path.c_str()});
  std::remove(path.c_str());
}

// ---- files broken in one precise way each ----

TEST(gguf_broken, header) {
  expect_error([] { parse({}); }, {"truncated", "magic"});
  expect_error([] { parse({'G', 'G', 'U'}); }, {"truncated", "magic"});
  raw_gguf r;
  r.bytes("GGML").put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(0);
  expect_error([&] { parse(r.b); }, {"bad magic", "\"GGUF\""});
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u}) {
    raw_gguf h;
    h.header(0, 0, v);
    expect_error([&] { parse(h.b); }, {"unsupported version", std::to_string(v).c_str(), "2 or 3"});
  }
  raw_gguf big;
  big.header(0, 0, 0x03000000u);
  expect_error([&] { parse(big.b); }, {"big-endian"});
  raw_gguf t;
  t.bytes("GGUF").put<uint32_t>(3).put<uint32_t>(0);
  expect_error([&] { parse(t.b); }, {"truncated", "tensor count"});
}

TEST(gguf_broken, absurd_counts) {
  raw_gguf a;
  a.header(0, 1ull << 60);
  expect_error([&] { parse(a.b); }, {"metadata count cannot fit", "1152921504606846976"});
  raw_gguf b;
  b.header(~0ull, 0);
  expect_error([&] { parse(b.b); }, {"tensor count cannot fit"});
  raw_gguf c;
  c.header(0, 1).put<uint64_t>(~0ull).zeros(16);
  expect_error([&] { parse(c.b); }, {"length of key", "exceeds the file"});
  raw_gguf d;
  d.header(0, 1).str("k").put<uint32_t>(8).put<uint64_t>(1000).bytes("short");
  expect_error([&] { parse(d.b); }, {"length of metadata 'k'", "1000"});
  raw_gguf e;
  e.header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(1ull << 40).zeros(16);
  expect_error([&] { parse(e.b); }, {"array length of metadata 'k' cannot fit", "1099511627776"});
  raw_gguf big;  // fits in the file but exceeds the cap on metadata array elements
  big.header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(0).put<uint64_t>((1ull << 24) + 1).zeros((1 << 24) + 1);
  expect_error([&] { parse(big.b); }, {"too many metadata array elements", "'k'"});
  raw_gguf s;  // array of strings: each needs at least 8 bytes
  s.header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(3).zeros(16);
  expect_error([&] { parse(s.b); }, {"array length", "cannot fit"});
}

TEST(gguf_broken, metadata_values) {
  raw_gguf a;
  a.header(0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0);
  expect_error([&] { parse(a.b); }, {"unknown value type of metadata 'k'", "13"});
  raw_gguf b;
  b.header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(77).put<uint64_t>(0);
  expect_error([&] { parse(b.b); }, {"unknown array element type", "77"});
  raw_gguf c;
  c.header(0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2);
  expect_error([&] { parse(c.b); }, {"bad bool", "'k'", "0 or 1"});
  raw_gguf d;
  d.header(0, 2).kv_u32("k", 1).kv_u32("k", 2);
  expect_error([&] { parse(d.b); }, {"duplicate metadata key 'k'"});
  raw_gguf e;
  e.header(0, 1).str("").put<uint32_t>(4).put<uint32_t>(0);
  expect_error([&] { parse(e.b); }, {"empty key"});
  raw_gguf n;  // arrays nested 9 deep
  n.header(0, 1).str("k").put<uint32_t>(9);
  for (int k = 0; k < 9; k++) n.put<uint32_t>(9).put<uint64_t>(1);
  n.put<uint32_t>(0).put<uint64_t>(0);
  expect_error([&] { parse(n.b); }, {"nested too deeply"});
  raw_gguf t;
  t.header(0, 1).str("k").put<uint32_t>(4).put<uint16_t>(1);
  expect_error([&] { parse(t.b); }, {"truncated", "metadata 'k'"});
}

TEST(gguf_broken, alignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    raw_gguf r;
    r.header(0, 1).kv_u32("general.alignment", a);
    expect_error([&] { parse(r.b); }, {"general.alignment", "power of two", std::to_string(a).c_str()});
  }
  raw_gguf s;
  s.header(0, 1).kv_str("general.alignment", "32");
  expect_error([&] { parse(s.b); }, {"general.alignment", "wrong type", "str"});
  raw_gguf ok;
  ok.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {16}, 0, 0).pad(64).zeros(64);
  EXPECT_EQ(parse(ok.b)->alignment(), 64u);
}

TEST(gguf_broken, tensor_infos) {
  auto one = [](const std::vector<uint64_t>& ne, uint32_t type, uint64_t off, size_t data = 4096) {
    raw_gguf r;
    r.header(1, 0).tensor("blk.0.attn_q.weight", ne, type, off).pad(32).zeros(data);
    return r.b;
  };
  expect_error([&] { parse(one({}, 0, 0)); }, {"'blk.0.attn_q.weight'", "dimension count", "1..4"});
  expect_error([&] { parse(one({1, 1, 1, 1, 1}, 0, 0)); }, {"dimension count", "got 5"});
  expect_error([&] { parse(one({4, 0}, 0, 0)); }, {"bad size in dimension 1", "got 0"});
  expect_error([&] { parse(one({1ull << 63}, 0, 0)); }, {"bad size in dimension 0"});
  expect_error([&] { parse(one({1ull << 32, 1ull << 32}, 0, 0)); }, {"element count", "overflows"});
  expect_error([&] { parse(one({4}, 99, 0)); }, {"unknown type", "99"});
  expect_error([&] { parse(one({4}, 4, 0)); }, {"unknown type", "got 4"});
  expect_error([&] { parse(one({48}, 3, 0)); }, {"not a multiple", "Q4_1", "48", "32"});
  expect_error([&] { parse(one({4}, 0, 16)); }, {"not aligned", "16", "multiple of 32"});
  expect_error([&] { parse(one({1025}, 0, 0)); },
               {"tensor 'blk.0.attn_q.weight' extends past end of file", "offset+size 0+4100", "<= 4096"});
  // 1024 floats = 4096 bytes fits exactly only when the data holds 4096 bytes: past end by one.
  expect_error([&] { parse(one({1024}, 0, 0, 4095)); }, {"extends past end of file", "<= 4095"});
  EXPECT_NO_THROW(parse(one({1024}, 0, 0, 4096)));
  expect_error([&] { parse(one({4}, 0, 1ull << 62)); }, {"extends past end of file"});
  expect_error([&] { parse(one({4}, 0, ~0ull & ~31ull)); }, {"extends past end of file"});

  raw_gguf ov;
  ov.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).pad(32).zeros(128);
  expect_error([&] { parse(ov.b); }, {"'a' and 'b' overlap", "offset 32", ">= 64"});
  raw_gguf dup;
  dup.header(2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).pad(32).zeros(64);
  expect_error([&] { parse(dup.b); }, {"duplicate tensor name 'a'"});
  raw_gguf empty_name;
  empty_name.header(1, 0).tensor("", {8}, 0, 0).pad(32).zeros(32);
  expect_error([&] { parse(empty_name.b); }, {"empty name"});
  raw_gguf no_data;
  no_data.header(1, 0).tensor("a", {8}, 0, 0);
  expect_error([&] { parse(no_data.b); }, {"truncated before the tensor data"});
}

// Every truncation of a valid file fails cleanly unless it only drops trailing padding, and every
// single-byte corruption either parses into a consistent file or fails with hashattn::error.
TEST(gguf_broken, every_truncation_and_byte_corruption) {
  const auto good = sample_writer(99).to_bytes();
  const auto ref = parse(good);
  size_t needed = 0;  // a valid prefix must keep every tensor's data
  for (const auto& t : ref->tensors()) needed = std::max(needed, ref->data_offset() + (size_t)(t.offset + t.nbytes));
  ASSERT_LE(needed, good.size());
  size_t ok = 0, failed = 0;
  for (size_t len = 0; len < good.size(); len++) {
    std::vector<uint8_t> b(good.begin(), good.begin() + len);
    try {
      parse(b);
      ok++;
      EXPECT_GE(len, needed) << "truncation to " << len << " bytes parsed";
    } catch (const hashattn::error&) {
      failed++;
    }
  }
  EXPECT_GT(failed, good.size() / 2);
  const uint8_t patterns[] = {0x00, 0xff, 0x80, 0x01};
  size_t n_err = 0;
  for (size_t pos = 0; pos < good.size(); pos++) {
    for (uint8_t p : patterns) {
      for (int mode = 0; mode < 2; mode++) {
        std::vector<uint8_t> b = good;
        b[pos] = mode ? (uint8_t)(b[pos] ^ p) : p;
        try {
          auto f = parse(b);
          // Whatever parsed must be self-consistent.
          for (const auto& t : f->tensors()) {
            ASSERT_LE(f->data_offset() + t.offset + t.nbytes, f->size()) << t.name;
            ASSERT_EQ(t.nbytes, row_bytes(t.type, t.ne[0]) * (size_t)t.n_rows()) << t.name;
          }
        } catch (const hashattn::error&) {
          n_err++;
        }
      }
    }
  }
  EXPECT_GT(n_err, 0u);
  std::printf("truncations: %zu ok, %zu errors; corruptions with errors: %zu\n", ok, failed, n_err);
}
