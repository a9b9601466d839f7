// Attention-policy options of generate and eval: parsing ("1/32" densities, lists), budgets (auto
// sinks and window from the budget), validation, and policy construction through make_policy with
// the hash encoders (hash file checked against the model) and Double Sparsity channels (calibrated
// on the first 1024 tokens of a training text, never on evaluation data).
#include "policy-options.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "command.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/hash.h"
#include "hashattn/tokenizer.h"

namespace hashattn::cli {

namespace {

int64_t parse_count(const std::string& what, const std::string& s) {
  try {
    size_t pos = 0;
    long long v = std::stoll(s, &pos);
    if (pos != s.size() || v < 0) throw std::invalid_argument("bad");
    return v;
  } catch (const std::exception&) {
    fail("--" + what, "'" + s + "'", "a token count >= 0 or 'auto'");
  }
}

std::string default_calib_text() { return std::string(HASHATTN_SOURCE_DIR) + "/data/texts/emma.txt"; }

}  // namespace

std::string canonical_method(const std::string& m) {
  try {
    return policy_method_canonical(m);
  } catch (const error&) {
    fail("--attn", "'" + m + "'", std::string("one of ") + policy_method_help());
  }
}

double parse_density_option(const std::string& s) {
  try {
    return policy_density_parse(s);
  } catch (const error&) {
    fail("--density", "'" + s + "'", "a number in (0, 1], e.g. 1/32 or 0.03125");
  }
}

bool is_hash_method(const std::string& method) { return policy_spec{method}.is_hash(); }

bool method_has_gqa_mode(const std::string& method) { return policy_spec{method}.has_gqa_mode(); }

void policy_options::add_to(CLI::App& app, bool lists) {
  app.add_option("--attn", attn,
                 lists ? "Policies, comma separated: dense,hash,hash-rr4,oracle,streaming,quest,dsparse,simhash-32,simhash-256 "
                         "(hash-rrC: hash codes pick C x the budget, exact q.k keeps the best)"
                       : "Attention policy for decode: dense|hash|hash-rrC|simhash[-BITS]|oracle|streaming|quest|dsparse "
                         "(hash-rrC: hash codes pick C x the budget as candidates, exact q.k over their keys keeps the best)")
      ->capture_default_str();
  app.add_option("--density", density,
                 lists ? "Densities (attended / context), comma separated, e.g. 1/4,1/8,1/16,1/32,1/64"
                       : "Density: attended tokens / context, e.g. 1/32 or 0.03125 (default 1/32)");
  app.add_option("--budget", budget, "Fixed attended tokens per head instead of a density (sinks and window included)");
  app.add_option("--sinks", sinks, "First tokens always attended (or auto: budget/8 clamped to 4..128)")
      ->capture_default_str();
  app.add_option("--window", window, "Last tokens always attended (or auto: as sinks; streaming: the rest of the budget)")
      ->capture_default_str();
  app.add_option("--gqa-mode", gqa_mode,
                 lists ? "GQA modes, comma separated: head,group (selection per query head or per KV group)"
                       : "GQA mode: head (per query head, the paper) or group (one selection per KV group)")
      ->capture_default_str();
  app.add_option("--hash", hash_file, "Hash-encoder file (hashattn train) matching the model; needed by --attn hash");
  app.add_option("--hash-group", hash_group_file,
                 "Hash-encoder file for group mode (hashattn train --gqa-mode group; default: the --hash file, "
                 "its per-head scores summed over the group)");
  app.add_option("--calib-text", calib_text,
                 "Training text for Double Sparsity channel calibration (default data/texts/emma.txt)");
  app.add_option("--ds-channels", ds_channels, "Double Sparsity: channels per KV head")->capture_default_str();
  app.add_option("--quest-page", quest_page, "Quest: page size in tokens")->capture_default_str();
}

policy_builder::policy_builder(const model& m, const policy_options& o) : m_(m), o_(o) {
  if (o_.calib_text.empty()) o_.calib_text = default_calib_text();
  for (const std::string& g : split_list(o_.gqa_mode))
    if (g != "head" && g != "group") fail("--gqa-mode", "'" + g + "'", "head or group");
  if (o_.budget < 0) fail("--budget", std::to_string(o_.budget), ">= 0");
  if (o_.sinks != "auto") parse_count("sinks", o_.sinks);
  if (o_.window != "auto") parse_count("window", o_.window);
}
policy_builder::~policy_builder() = default;

policy_spec policy_builder::spec_of(const std::string& method, const std::string& gqa, double density) const {
  policy_spec sp;
  sp.method = canonical_method(method);
  sp.gqa = gqa == "group" ? gqa_mode::per_group : gqa_mode::per_head;
  if (o_.budget > 0 && density <= 0) sp.count = o_.budget;
  else sp.density = density;
  sp.sinks = o_.sinks == "auto" ? -1 : parse_count("sinks", o_.sinks);
  sp.window = o_.window == "auto" ? -1 : parse_count("window", o_.window);
  return sp;
}

budget_params policy_builder::budget_for(const std::string& method, double density, int64_t n) const {
  const policy_spec sp = spec_of(method, "head", density);
  try {
    return policy_budget(sp, n);
  } catch (const error& e) {
    if (sp.count > 0) fail(std::string("--budget: ") + e.what());  // the option that set the count
    throw;
  }
}

std::shared_ptr<const hash_weights> policy_builder::need_hash(bool group) {
  const bool use_group_file = group && !o_.hash_group_file.empty();
  std::shared_ptr<const hash_weights>& slot = use_group_file ? hash_group_ : hash_;
  if (slot) return slot;
  if (!use_group_file && o_.hash_file.empty())
    fail("--attn hash needs --hash FILE (hint: hashattn train -o models/smollm2-hash.gguf, or make demo)");
  slot = hash_weights_load_for(m_, use_group_file ? o_.hash_group_file : o_.hash_file);
  return slot;
}

void policy_builder::need_ds() {
  if (!ds_channels_.empty()) return;
  // Capture post-RoPE q and k of every layer over the first tokens of a training text.
  std::ifstream f(o_.calib_text, std::ios::binary);
  if (!f) fail("Double Sparsity calibration text", "'" + o_.calib_text + "' (cannot open)", "a readable training text",
               "run scripts/setup --texts or pass --calib-text");
  std::stringstream ss;
  ss << f.rdbuf();
  auto tok = tokenizer::from_gguf(m_.file());
  std::vector<int32_t> ids = tok->encode(eval_text_normalize(ss.str()), false, false);
  ids.resize(std::min<size_t>(1024, ids.size()));
  ds_channels_ = double_sparsity_calibrate_model(m_, ids, o_.ds_channels, o_.n_threads);
}

std::unique_ptr<attention_policy> policy_builder::make(const std::string& method0, const std::string& gqa,
                                                       double density, int64_t n) {
  const policy_spec sp = spec_of(method0, gqa, density);
  if (sp.is_dense()) return nullptr;
  budget_for(method0, density, n);  // a bad budget is refused naming its option
  policy_config c = policy_config_for(sp, n);
  c.seed = o_.seed;
  c.page_size = o_.quest_page;
  c.channels = o_.ds_channels;
  c.n_threads = o_.n_threads;
  if (sp.is_hash()) c.weights = need_hash(sp.gqa == gqa_mode::per_group);
  if (sp.method == "dsparse") {
    need_ds();
    c.ds_channels = ds_channels_;
  }
  return make_policy(c);
}

void policy_builder::prepare(const std::vector<std::string>& methods, const std::vector<double>& densities,
                             const std::vector<int64_t>& contexts) {
  for (const auto& m0 : methods) {
    const std::string m = canonical_method(m0);
    if (is_hash_method(m))
      for (const std::string& g : split_list(o_.gqa_mode)) need_hash(g == "group");
    if (m == "dsparse") need_ds();
    if (m == "dense") continue;
    for (double d : densities)
      for (int64_t c : contexts) budget_for(m, d, c);
  }
}

std::vector<eval_policy_spec> policy_builder::eval_specs() {
  std::vector<std::string> methods;
  for (const auto& m : split_list(o_.attn)) methods.push_back(canonical_method(m));
  if (methods.empty()) fail("--attn", "''", "at least one policy");
  std::vector<double> dens;
  if (!o_.density.empty()) dens = parse_density_list(o_.density);
  else if (o_.budget > 0) dens = {0.0};  // fixed budget
  else dens = {1.0 / 32};
  std::vector<std::string> modes = split_list(o_.gqa_mode);
  if (modes.empty()) modes = {"head"};
  std::vector<eval_policy_spec> out;
  for (const auto& m : methods) {
    if (m == "dense") {
      eval_policy_spec s;
      s.method = "dense";
      out.push_back(s);
      continue;
    }
    for (const auto& g : method_has_gqa_mode(m) ? modes : std::vector<std::string>{""})
      for (double d : dens) {
        eval_policy_spec s;
        s.method = m;
        s.gqa = g;
        s.density = d;
        s.make = [this, m, g, d](int64_t n) { return make(m, g, d, n); };
        out.push_back(s);
      }
  }
  return out;
}

}  // namespace hashattn::cli
