// `hashattn policies`: the attention-policy vocabulary of the library (policy.h) for people and
// scripts: the methods and aliases, the standard comparison's methods (--comparison: one line, comma
// separated, as --attn takes them), a setting's canonical form (--parse SETTING) and its budget at a
// context (--context N).
#include <fmt/core.h>

#include "command.h"
#include "hashattn/error.h"
#include "hashattn/policy.h"

namespace hashattn::cli {
namespace {

struct opts {
  bool comparison = false;
  std::string parse;
  int64_t context = 0;
};

int run(const opts& o) {
  if (o.comparison) {
    std::string line;
    for (const auto& m : policy_comparison_methods()) line += (line.empty() ? "" : ",") + m;
    fmt::print("{}\n", line);
    return 0;
  }
  if (!o.parse.empty()) {
    const policy_spec sp = policy_spec_parse(o.parse);
    fmt::print("{}\n", sp.str());
    if (o.context > 0 && !sp.is_dense()) {
      const budget_params b = policy_budget(sp, o.context);
      const select_split s = select_split_for(b, o.context);
      fmt::print("context {}: attends {} of {} tokens (density {:.4f}): sinks {}, window {}, middle {}{}\n",
                 o.context, s.total, o.context, (double)s.total / (double)o.context, s.n_sinks, s.n_window, s.k_mid,
                 s.all() && s.total > 0 && s.k_mid == s.hi - s.lo ? " (every token: below the budget's floor or covered)"
                                                                 : "");
    }
    return 0;
  }
  fmt::print("methods: {}\n", policy_method_help());
  fmt::print("settings: METHOD[/head|/group][@DENSITY|@TOKENS], e.g. hash-rr4/group@1/32 (default density 1/32)\n");
  std::string line;
  for (const auto& m : policy_comparison_methods()) line += (line.empty() ? "" : ",") + m;
  fmt::print("comparison: {}\n", line);
  return 0;
}

HASHATTN_COMMAND(command{"policies", "List the attention policies, or parse a setting and show its budget",
                         [](CLI::App& sub) -> std::function<int()> {
                           auto o = std::make_shared<opts>();
                           sub.add_flag("--comparison", o->comparison,
                                        "Print the standard comparison's methods, comma separated");
                           sub.add_option("--parse", o->parse, "A setting to parse, e.g. hash-rr4/group@1/32");
                           sub.add_option("--context", o->context, "With --parse: show the budget at this context")
                               ->check(CLI::Range((int64_t)1, (int64_t)INT32_MAX));
                           return [o] { return run(*o); };
                         }});

}  // namespace
}  // namespace hashattn::cli
