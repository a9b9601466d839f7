// Attention-policy options shared by `hashattn generate` and `hashattn eval`: parsing, validation
// and construction of the policies (core's make_policy) with their inputs (hash encoders from a
// hash file bound to the model; Double Sparsity channels calibrated on a training text).
// generate takes one value per option; eval takes comma-separated lists (every combination runs).
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hashattn/eval.h"
#include "hashattn/model.h"
#include "hashattn/policy.h"

namespace hashattn {
struct hash_weights;
}

namespace hashattn::cli {

struct policy_options {
  std::string attn = "dense";    // dense|hash|simhash[-BITS]|oracle|streaming|quest|dsparse (eval: a list)
  std::string density;           // "1/32" or "0.03125" (eval: a list); empty: 1/32 unless --budget
  int64_t budget = 0;            // fixed attended tokens (instead of a density)
  std::string sinks = "auto";    // tokens, or auto = clamp(budget / 8, 4, 128)
  std::string window = "auto";   // tokens, or auto = same as sinks (streaming: the rest of the budget)
  std::string gqa_mode = "head"; // head|group (eval: a list; methods without modes ignore it)
  std::string hash_file;         // learned encoders (required by hash)
  std::string hash_group_file;   // encoders trained per KV group, used in group mode (default: hash_file)
  std::string calib_text;        // Double Sparsity calibration text (a training text)
  int ds_channels = 16;
  int quest_page = 16;
  uint64_t seed = 0;
  int n_threads = 0;
  // Adds the options to a subcommand; lists: eval's comma-separated forms.
  void add_to(CLI::App& app, bool lists);
};

using hashattn::parse_density_list;
using hashattn::split_list;
// --density's value (policy_density_parse, with the option named in the error).
double parse_density_option(const std::string& s);
// The library's vocabulary (policy.h): canonical method name; throws if unknown.
std::string canonical_method(const std::string& m);
bool method_has_gqa_mode(const std::string& method);
// "hash" or "hash-rrC" (learned encoders, optionally with exact re-ranking of C x the budget).
bool is_hash_method(const std::string& method);

// Builds policies for one model; loads the hash file and calibrates Double Sparsity lazily.
class policy_builder {
 public:
  policy_builder(const model& m, const policy_options& o);
  ~policy_builder();
  // The setting of a method, GQA mode ("head" / "group") and density (o.budget when density <= 0).
  policy_spec spec_of(const std::string& method, const std::string& gqa, double density) const;
  // Its budget for a context of n tokens (policy_budget: below the floor every token is attended).
  budget_params budget_for(const std::string& method, double density, int64_t n) const;
  std::unique_ptr<attention_policy> make(const std::string& method, const std::string& gqa, double density,
                                         int64_t n);
  // Every (method, gqa mode, density) of the options, for eval.
  std::vector<eval_policy_spec> eval_specs();
  // Loads what the methods of the options need (hash file, calibration) and checks every budget
  // at the given contexts, so that mistakes fail before any work.
  void prepare(const std::vector<std::string>& methods, const std::vector<double>& densities,
               const std::vector<int64_t>& contexts);
  // The hash weights of a GQA mode (the --hash-group file in group mode when given), loaded once.
  std::shared_ptr<const hash_weights> need_hash(bool group);

 private:
  const model& m_;
  policy_options o_;
  std::shared_ptr<const hash_weights> hash_, hash_group_;
  std::vector<int32_t> ds_channels_;
  void need_ds();
};

}  // namespace hashattn::cli
