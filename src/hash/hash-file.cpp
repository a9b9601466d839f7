// Hash-encoder GGUF files (see include/hashattn/hash-file.h and docs/FORMATS.md): save and load of
// hash_weights with the binding to their model, the model tensor-layout digest, and a description for
// `hashattn info`. Tensors: blk.<l>.hash_{q,k}.weight.<i> [n_enc, in, out], .bias.<i> [n_enc, out], F32.
#include "hashattn/hash-file.h"

#include <cstring>

#include <fmt/core.h>

#include "hashattn/error.h"
#include "hashattn/gguf.h"

namespace hashattn {
namespace {

constexpr uint32_t kFormatVersion = 1;

std::string tensor_name(int layer, char role, bool bias, int i) {
  return fmt::format("blk.{}.hash_{}.{}.{}", layer, role, bias ? "bias" : "weight", i);
}

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

void fnv(uint64_t& h, const void* p, size_t n) {
  const uint8_t* b = (const uint8_t*)p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
}

// Adds (or checks and reads) the tensors of one role of one layer.
template <class F>
void for_each_tensor(const hash_weights& w, F&& f) {
  for (int l = 0; l < w.n_layer; l++)
    for (int r = 0; r < 2; r++) {
      const hash_mlp_view v = r == 0 ? w.query(l) : w.key(l);
      for (int i = 0; i < v.n_layers; i++) {
        f(tensor_name(l, r == 0 ? 'q' : 'k', false, i), std::vector<int64_t>{v.layer_out(i), v.layer_in(i), v.n_enc},
          v.w[i]);
        f(tensor_name(l, r == 0 ? 'q' : 'k', true, i), std::vector<int64_t>{v.layer_out(i), v.n_enc}, v.b[i]);
      }
    }
}

// The tensor `name` of a hash file: present, F32, of shape ne.
const gguf::tensor_info& check_tensor(const gguf::file& f, const std::string& who, const std::string& name,
                                      const std::vector<int64_t>& ne) {
  const gguf::tensor_info* t = f.find_tensor(name);
  if (!t) fail(who + ": tensor " + name, "missing", "present (" + std::to_string(ne.size()) + "-D F32)");
  if (t->type != gguf::type::F32) fail(who + ": tensor " + name + " type", gguf::type_name(t->type), "F32");
  if (t->ne != ne) {
    std::string g, e;
    for (size_t i = 0; i < t->ne.size(); i++) g += (i ? " x " : "") + std::to_string(t->ne[i]);
    for (size_t i = 0; i < ne.size(); i++) e += (i ? " x " : "") + std::to_string(ne[i]);
    fail(who + ": tensor " + name + " shape", g, e);
  }
  return *t;
}

// Bytes of F32 tensor data that a hash file's shape fields imply (in double: no overflow for any field
// values; the caller checks the fields are positive). Same layout as hash_weights::layer_floats.
double claimed_tensor_bytes(const hash_binding& b, int bits, int mlp_layers, int hidden, bool key_per_group) {
  double per_enc = 0;  // floats of one encoder (weights and biases of every linear layer)
  for (int i = 0; i < mlp_layers; i++) {
    const double in = i == 0 ? b.head_dim : hidden, out = i == mlp_layers - 1 ? bits : hidden;
    per_enc += in * out + out;
  }
  const double n_enc = (double)b.n_head + (key_per_group ? b.n_head_kv : b.n_head);
  return 4.0 * b.n_layer * n_enc * per_enc;
}

}  // namespace

std::string model_layout_digest(const gguf::file& f) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const gguf::tensor_info& t : f.tensors()) {
    fnv(h, t.name.data(), t.name.size());
    const uint32_t ty = (uint32_t)t.type;
    fnv(h, &ty, 4);
    const uint32_t nd = (uint32_t)t.ne.size();
    fnv(h, &nd, 4);
    for (int64_t e : t.ne) fnv(h, &e, 8);
  }
  return fmt::format("{:016x}", h);
}

hash_binding hash_binding_for(const gguf::file& f, int n_layer, int n_head, int n_head_kv, int head_dim) {
  hash_binding b;
  b.arch = f.get_string("general.architecture");
  if (const gguf::value* v = f.find("general.name"); v && v->type == gguf::value_type::STRING) b.model_name = v->s;
  b.n_layer = n_layer;
  b.n_head = n_head;
  b.n_head_kv = n_head_kv;
  b.head_dim = head_dim;
  b.digest = model_layout_digest(f);
  return b;
}

namespace {
gguf::writer make_writer(const hash_weights& w, const hash_binding& b, const hash_train_info& info) {
  if (w.n_layer != b.n_layer || w.n_head != b.n_head || w.n_head_kv != b.n_head_kv || w.head_dim != b.head_dim)
    fail("hash file: weights shape",
         fmt::format("{} layers, {}/{} heads, d {}", w.n_layer, w.n_head, w.n_head_kv, w.head_dim),
         fmt::format("the model's {} layers, {}/{} heads, d {}", b.n_layer, b.n_head, b.n_head_kv, b.head_dim));
  if (w.data.size() != (size_t)w.n_layer * w.layer_floats())
    fail("hash file: weights", std::to_string(w.data.size()) + " floats",
         std::to_string((size_t)w.n_layer * w.layer_floats()));
  using gguf::value;
  gguf::writer wr;
  wr.set("general.architecture", value::from_string("hashattn"));
  wr.set("general.name", value::from_string("hash encoders for " + (b.model_name.empty() ? b.arch : b.model_name)));
  wr.set("hashattn.format_version", value::from_u32(kFormatVersion));
  wr.set("hashattn.model.architecture", value::from_string(b.arch));
  wr.set("hashattn.model.name", value::from_string(b.model_name));
  wr.set("hashattn.model.block_count", value::from_u32((uint32_t)b.n_layer));
  wr.set("hashattn.model.head_count", value::from_u32((uint32_t)b.n_head));
  wr.set("hashattn.model.head_count_kv", value::from_u32((uint32_t)b.n_head_kv));
  wr.set("hashattn.model.head_dim", value::from_u32((uint32_t)b.head_dim));
  wr.set("hashattn.model.layout_digest", value::from_string(b.digest));
  wr.set("hashattn.bits", value::from_u32((uint32_t)w.bits));
  wr.set("hashattn.mlp.layers", value::from_u32((uint32_t)w.mlp_layers));
  wr.set("hashattn.mlp.hidden", value::from_u32((uint32_t)w.hidden));
  wr.set("hashattn.mlp.activation", value::from_string("silu"));
  wr.set("hashattn.key_per_group", value::from_bool(w.key_per_group));
  wr.set("hashattn.train.texts", value::from_strings(info.texts));
  wr.set("hashattn.train.tokens", value::from_u64((uint64_t)info.tokens));
  wr.set("hashattn.train.settings", value::from_string(info.settings));
  wr.set("hashattn.train.layers", value::from_i32s(std::vector<int32_t>(info.layers.begin(), info.layers.end())));
  wr.set("hashattn.train.heads", value::from_i32s(std::vector<int32_t>(info.heads.begin(), info.heads.end())));
  wr.set("hashattn.train.seconds", value::from_f32((float)info.seconds));
  for_each_tensor(w, [&](const std::string& name, const std::vector<int64_t>& ne, const float* data) {
    int64_t n = 1;
    for (int64_t e : ne) n *= e;
    wr.add_tensor(name, gguf::type::F32, ne, data, (size_t)n * 4);
  });
  return wr;
}
}  // namespace

std::vector<uint8_t> hash_file_bytes(const hash_weights& w, const hash_binding& b, const hash_train_info& info) {
  return make_writer(w, b, info).to_bytes();
}

void hash_file_save(const std::string& path, const hash_weights& w, const hash_binding& b, const hash_train_info& info) {
  make_writer(w, b, info).write(path);  // atomic: temp file + rename
}

hash_file_contents hash_file_read(const gguf::file& f, const hash_binding* expect, int expect_bits) {
  const std::string who = "hash file " + (f.path().empty() ? std::string("(buffer)") : f.path());
  const gguf::value* arch = f.find("general.architecture");
  if (!arch || arch->type != gguf::value_type::STRING || arch->s != "hashattn")
    fail(who + ": general.architecture", arch && arch->type == gguf::value_type::STRING ? arch->s : "missing",
         "hashattn", "this looks like a model file; pass the file written by `hashattn train`");
  const int64_t ver = f.get_int("hashattn.format_version");
  if (ver != kFormatVersion)
    fail(who + ": format version", std::to_string(ver), std::to_string(kFormatVersion), "retrain with this version");
  hash_file_contents c;
  hash_binding& b = c.binding;
  b.arch = f.get_string("hashattn.model.architecture");
  b.model_name = f.get_string("hashattn.model.name");
  b.n_layer = (int)f.get_int("hashattn.model.block_count");
  b.n_head = (int)f.get_int("hashattn.model.head_count");
  b.n_head_kv = (int)f.get_int("hashattn.model.head_count_kv");
  b.head_dim = (int)f.get_int("hashattn.model.head_dim");
  b.digest = f.get_string("hashattn.model.layout_digest");
  const int bits = (int)f.get_int("hashattn.bits");
  const int mlp_layers = (int)f.get_int("hashattn.mlp.layers");
  const int hidden = (int)f.get_int("hashattn.mlp.hidden");
  const gguf::value* kpg = f.find("hashattn.key_per_group");
  if (!kpg || kpg->type != gguf::value_type::BOOL) fail(who + ": hashattn.key_per_group", "missing or not a bool", "bool");
  if (const gguf::value* act = f.find("hashattn.mlp.activation"); act && act->s != "silu")
    fail(who + ": hashattn.mlp.activation", act->s, "silu");

  if (expect) {
    std::vector<std::string> diff;
    auto cmp_i = [&](const char* what, int got, int want) {
      if (got != want) diff.push_back(fmt::format("{} {} (file) vs {} (model)", what, got, want));
    };
    if (b.arch != expect->arch) diff.push_back(fmt::format("architecture {} (file) vs {} (model)", b.arch, expect->arch));
    cmp_i("layers", b.n_layer, expect->n_layer);
    cmp_i("heads", b.n_head, expect->n_head);
    cmp_i("KV heads", b.n_head_kv, expect->n_head_kv);
    cmp_i("head dim", b.head_dim, expect->head_dim);
    if (b.digest != expect->digest)
      diff.push_back(fmt::format("tensor layout digest {} (file) vs {} (model)", b.digest, expect->digest));
    if (!diff.empty()) {
      std::string d;
      for (size_t i = 0; i < diff.size(); i++) d += (i ? "; " : "") + diff[i];
      fail(who + ": trained for another model" +
               (b.model_name.empty() ? std::string() : " (" + b.model_name + ")"),
           d, "the model's shape and tensor layout",
           "train encoders for this model with `hashattn train -m MODEL --text FILE -o H.gguf`");
    }
  }
  if (expect_bits != 0 && bits != expect_bits)
    fail(who + ": code width", std::to_string(bits) + " bits", std::to_string(expect_bits) + " bits (as asked)",
         "use a file trained with --bits " + std::to_string(expect_bits) + ", or ask for " + std::to_string(bits));
  // Every allocation is sized from what the file holds: when the shape fields are in range, the tensor
  // bytes they imply must fit in the file, and every tensor is checked, before the weights are
  // allocated; otherwise hash_weights_alloc refuses the shape without allocating. So a few bytes of
  // metadata (a huge layer or head count) cannot make us allocate more than the file's size.
  const bool shape_in_range = b.n_layer > 0 && b.n_head > 0 && b.n_head_kv > 0 && b.head_dim > 0 && bits > 0 &&
                              mlp_layers >= 1 && mlp_layers <= 3 && (mlp_layers == 1 || hidden > 0);
  if (shape_in_range) {
    const double claimed = claimed_tensor_bytes(b, bits, mlp_layers, hidden, kpg->b);
    if (claimed > (double)f.size())
      fail(who + ": tensor data the metadata describes",
           fmt::format("{:.0f} bytes ({} layers, {}/{} heads, head dim {}, {} bits, {}-layer MLP)", claimed, b.n_layer,
                       b.n_head, b.n_head_kv, b.head_dim, bits, mlp_layers),
           fmt::format("at most the file's {} bytes", f.size()), "the file is truncated or its metadata is corrupt");
    const int64_t n_key = kpg->b ? b.n_head_kv : b.n_head;
    for (int l = 0; l < b.n_layer; l++)
      for (int r = 0; r < 2; r++)
        for (int i = 0; i < mlp_layers; i++) {
          const int64_t in = i == 0 ? b.head_dim : hidden, out = i == mlp_layers - 1 ? bits : hidden;
          const int64_t n_enc = r == 0 ? b.n_head : n_key;
          check_tensor(f, who, tensor_name(l, r == 0 ? 'q' : 'k', false, i), {out, in, n_enc});
          check_tensor(f, who, tensor_name(l, r == 0 ? 'q' : 'k', true, i), {out, n_enc});
        }
  }
  c.weights = hash_weights_alloc(b.n_layer, b.n_head, b.n_head_kv, b.head_dim, bits, mlp_layers, hidden, kpg->b);
  hash_weights& w = c.weights;
  size_t n_expected = 0;
  for_each_tensor(w, [&](const std::string& name, const std::vector<int64_t>& ne, const float* dst) {
    n_expected++;
    const gguf::tensor_info& t = check_tensor(f, who, name, ne);
    std::memcpy(const_cast<float*>(dst), t.data, t.nbytes);
  });
  if (f.tensors().size() != n_expected)
    fail(who + ": tensor count", std::to_string(f.tensors().size()), std::to_string(n_expected));
  if (const gguf::value* v = f.find("hashattn.train.texts"))
    for (const auto& e : v->arr) c.info.texts.push_back(e.s);
  c.info.tokens = f.get_int("hashattn.train.tokens", 0);
  if (const gguf::value* v = f.find("hashattn.train.settings")) c.info.settings = v->s;
  if (const gguf::value* v = f.find("hashattn.train.layers"))
    for (const auto& e : v->arr) c.info.layers.push_back((int)e.i);
  if (const gguf::value* v = f.find("hashattn.train.heads"))
    for (const auto& e : v->arr) c.info.heads.push_back((int)e.i);
  c.info.seconds = f.get_float("hashattn.train.seconds", 0.0);
  return c;
}

hash_file_contents hash_file_load(const std::string& path, const hash_binding* expect, int expect_bits) {
  auto f = gguf::file::open(path);
  return hash_file_read(*f, expect, expect_bits);
}

std::string hash_file_describe(const gguf::file& f) {
  const gguf::value* arch = f.find("general.architecture");
  if (!arch || arch->type != gguf::value_type::STRING || arch->s != "hashattn") return {};
  const hash_file_contents c = hash_file_read(f);
  const hash_weights& w = c.weights;
  const hash_binding& b = c.binding;
  std::string mlp = std::to_string(w.head_dim);
  for (int i = 1; i < w.mlp_layers; i++) mlp += "-" + std::to_string(w.hidden);
  mlp += "-" + std::to_string(w.bits);
  std::string texts;
  for (size_t i = 0; i < c.info.texts.size(); i++) texts += (i ? ", " : "") + c.info.texts[i];
  std::string o;
  o += fmt::format("hash encoders: {} bits per token per {}; MLP {} ({} linear layer{}, SiLU)\n", w.bits,
                   w.key_per_group ? "KV head (key encoders per KV group)" : "query head (key encoders per query head)",
                   mlp, w.mlp_layers, w.mlp_layers > 1 ? "s" : "");
  o += fmt::format("for model:     {} '{}': {} layers, {}/{} heads, head dim {}, layout digest {}\n", b.arch,
                   b.model_name, b.n_layer, b.n_head, b.n_head_kv, b.head_dim, b.digest);
  o += fmt::format("trained on:    {} ({} tokens) in {:.0f} s; layers {}; heads {}\n", texts.empty() ? "?" : texts,
                   c.info.tokens, c.info.seconds, c.info.layers.empty() ? "all" : join_ints(c.info.layers),
                   c.info.heads.empty() ? "all" : join_ints(c.info.heads));
  o += fmt::format("settings:      {}\n", c.info.settings);
  return o;
}

}  // namespace hashattn
