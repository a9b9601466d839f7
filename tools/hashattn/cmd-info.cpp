// `hashattn info FILE`: prints a GGUF file's header (version, alignment, data offset), every
// metadata key with its type and value (long arrays abbreviated, with their length), then the
// tensor table (name, type, dims, offset in the data section, bytes) and totals per type.
// Model files first get the verdict of model_check: whether the model runs here, and if not exactly
// what is missing (architecture, RoPE scaling, tensor types, the loader's refusal), notes (sliding-window
// layers keep their window: sparse selection on global layers only), and whether the tokenizer builds.
// Hash-encoder files (architecture "hashattn") also get a summary: code width, MLP, model binding, training.
#include <fmt/core.h>

#include <map>
#include <memory>
#include <string>

#include "command.h"
#include "hashattn/gguf.h"
#include "hashattn/hash-file.h"
#include "hashattn/model.h"

namespace {

using namespace hashattn::gguf;

std::string type_of(const value& v) {
  if (v.type != value_type::ARRAY) return value_type_name(v.type);
  return std::string("arr[") + value_type_name(v.arr_type) + "," + std::to_string(v.arr.size()) + "]";
}

std::string dims(const std::vector<int64_t>& ne) {
  std::string s;
  for (size_t k = 0; k < ne.size(); k++) s += (k ? " x " : "") + std::to_string(ne[k]);
  return s;
}

std::string human(double bytes) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
  return u ? fmt::format("{:.2f} {}", bytes, unit[u]) : fmt::format("{:.0f} B", bytes);
}

int run_info(const std::string& path, size_t max_items, bool no_tensors) {
  auto f = file::open(path);
  fmt::print("file:        {}\n", path);
  fmt::print("size:        {} bytes ({})\n", f->size(), human((double)f->size()));
  fmt::print("version:     GGUF v{}\n", f->version());
  fmt::print("alignment:   {}\n", f->alignment());
  fmt::print("data offset: {}\n", f->data_offset());
  if (const std::string h = hashattn::hash_file_describe(*f); !h.empty()) {
    fmt::print("\n{}", h);
  } else {
    const hashattn::model_support ms = hashattn::model_check(*f);
    fmt::print("runs:        {}\n", ms.runs ? "yes: " + ms.summary : "no");
    for (const auto& m : ms.missing) fmt::print("  missing:   {}\n", m);
    for (const auto& n : ms.notes) fmt::print("  note:      {}\n", n);
    fmt::print("tokenizer:   {}{}\n", ms.tokenizer_ok ? "yes: " : "no: ", ms.tokenizer);
  }
  size_t key_w = 0, type_w = 0;
  for (const auto& e : f->metadata()) {
    key_w = std::max(key_w, e.key.size());
    type_w = std::max(type_w, type_of(e.val).size());
  }
  fmt::print("\nmetadata ({} keys):\n", f->metadata().size());
  for (const auto& e : f->metadata())
    fmt::print("  {:<{}}  {:<{}}  {}\n", e.key, key_w, type_of(e.val), type_w, e.val.to_string(max_items));

  std::map<std::string, std::pair<int64_t, uint64_t>> by_type;  // count, bytes
  int64_t total_el = 0;
  uint64_t total_bytes = 0;
  for (const auto& t : f->tensors()) {
    auto& bt = by_type[type_name(t.type)];
    bt.first++;
    bt.second += t.nbytes;
    total_el += t.n_elements();
    total_bytes += t.nbytes;
  }
  if (!no_tensors) {
    size_t name_w = 4, dims_w = 4;
    for (const auto& t : f->tensors()) {
      name_w = std::max(name_w, t.name.size());
      dims_w = std::max(dims_w, dims(t.ne).size());
    }
    fmt::print("\ntensors ({}):\n", f->tensors().size());
    fmt::print("  {:>5}  {:<{}}  {:<5}  {:<{}}  {:>12}  {:>12}\n", "#", "name", name_w, "type", "dims", dims_w,
               "offset", "bytes");
    size_t k = 0;
    for (const auto& t : f->tensors())
      fmt::print("  {:>5}  {:<{}}  {:<5}  {:<{}}  {:>12}  {:>12}\n", k++, t.name, name_w, type_name(t.type),
                 dims(t.ne), dims_w, t.offset, t.nbytes);
  }
  fmt::print("\ntotals: {} tensors, {} elements, {} bytes ({})\n", f->tensors().size(), total_el, total_bytes,
             human((double)total_bytes));
  for (const auto& [name, cb] : by_type)
    fmt::print("  {:<5} {:>5} tensors  {:>12} bytes ({})\n", name, cb.first, cb.second, human((double)cb.second));
  return 0;
}

HASHATTN_COMMAND(
    "info", "Print a GGUF file's metadata and tensor table",
    [](CLI::App& sub) -> std::function<int()> {
      auto path = std::make_shared<std::string>();
      auto max_items = std::make_shared<size_t>(8);
      auto no_tensors = std::make_shared<bool>(false);
      sub.add_option("file", *path, "GGUF file (model or hash encoder)")->required();
      sub.add_option("--max-items", *max_items, "array items to show before abbreviating")
          ->check(CLI::Range(0, 1000000))
          ->capture_default_str();
      sub.add_flag("--no-tensors", *no_tensors, "leave out the tensor table");
      return [=] { return run_info(*path, *max_items, *no_tensors); };
    });

}  // namespace
