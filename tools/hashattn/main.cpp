// hashattn: the command-line tool. Subcommands live in tools/hashattn/cmd-*.cpp and register
// themselves (command.h). Errors from the library become one clear line on stderr and exit code 1;
// bad usage exits with code 2.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

#include "command.h"
#include "hashattn/error.h"

namespace hashattn::cli {

std::vector<command>& command_registry() {
  static std::vector<command> r;
  return r;
}

std::string default_model_path() {
  if (const char* env = std::getenv("HASHATTN_MODEL")) return env;
  return std::string(HASHATTN_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace hashattn::cli

int main(int argc, char** argv) {
  using namespace hashattn::cli;
  CLI::App app{"hashattn: long-context LLM decoding with learned hash sparse attention"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "hashattn 0.1.0");
  std::map<CLI::App*, std::function<int()>> runners;
  auto& reg = command_registry();
  std::sort(reg.begin(), reg.end(), [](const command& a, const command& b) { return a.name < b.name; });
  for (auto& c : reg) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    runners[sub] = c.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const hashattn::error& e) {
    std::fprintf(stderr, "hashattn: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "hashattn: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hashattn: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
