// Fuzz target "args": the input is split at NUL bytes into an argv vector (at most 32 arguments,
// argv[0] = "hashattn") and parsed by the tool's CLI11 app (build_app() in tools/hashattn/cli.cpp,
// every registered subcommand with its options). Nothing runs: parsing must either succeed or throw
// a CLI::ParseError; anything else (a crash, CLI::ConstructionError, another exception) is a finding.
#include <string>
#include <vector>

#include "command.h"
#include "fuzz-entry.h"

namespace hashattn::fuzz {

int args_one(const uint8_t* data, size_t size) {
  std::vector<std::string> args{"hashattn"};
  std::string cur;
  for (size_t k = 0; k < size && args.size() < 32; k++) {
    if (data[k] == 0) {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += (char)data[k];
    }
  }
  if (args.size() < 32 && size > 0) args.push_back(cur);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  cli::cli_app app = cli::build_app();
  try {
    app.app->parse((int)args.size(), argv.data());
  } catch (const CLI::ParseError&) {
    return 0;
  }
  int chosen = 0;
  for (const auto& [sub, run] : app.runners) chosen += sub->parsed() ? 1 : 0;
  HASHATTN_FUZZ_CHECK(chosen == 1);
  return 0;
}

}  // namespace hashattn::fuzz
