// The hashattn tool's app: builds the CLI11 app from the subcommand registry (command.h) without
// running anything (main and the argument-parser fuzzer share it), parses argv and runs the chosen
// subcommand. Library errors become one line "hashattn: error: ..." on stderr and exit code 1;
// bad usage becomes one line "hashattn: usage error: ... (hint: ...)" and exit code 2;
// --help and --version print their text and exit 0.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <thread>

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

int max_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return 4 * (int)std::max(1u, hw);
}

CLI::Option* add_threads_option(CLI::App& sub, int& threads, const std::string& names) {
  const int hi = max_threads();
  return sub.add_option(names, threads, "threads (0: all cores; at most " + std::to_string(hi) + ")")
      ->capture_default_str()
      ->check(CLI::Validator(
          [hi](std::string& v) -> std::string {
            int n = -1;
            try {
              size_t used = 0;
              n = std::stoi(v, &used);
              if (used != v.size()) n = -1;
            } catch (const std::exception&) {
            }
            if (n >= 0 && n <= hi) return {};
            return "got " + v + ", expected 0 (all cores) to " + std::to_string(hi) + " (4 x the " +
                   std::to_string(hi / 4) + " hardware threads)";
          },
          "0.." + std::to_string(hi)));
}

void check_output_writable(const std::string& path, const std::string& option) {
  namespace fs = std::filesystem;
  if (path.empty()) return;
  const std::string what = option + " '" + path + "'";
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(what, "a folder", "a file to write");
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec))
    fail(what + ": folder '" + dir.string() + "'", "missing", "an existing folder",
         "create it first, or write the output elsewhere");
  // The writers write a temporary file next to the output and rename it: try the same.
  std::string probe = (dir / ".hashattn-write-check-XXXXXX").string();
  const int fd = mkstemp(probe.data());
  if (fd < 0) fail(what + ": folder '" + dir.string() + "'", std::strerror(errno), "writable");
  close(fd);
  unlink(probe.c_str());
  if (fs::exists(path, ec) && access(path.c_str(), W_OK) != 0)
    fail(what, std::string("exists and is not writable (") + std::strerror(errno) + ")", "a writable file");
}

cli_app build_app() {
  cli_app a;
  a.app = std::make_unique<CLI::App>("hashattn: long-context LLM decoding with learned hash sparse attention");
  a.app->require_subcommand(1);
  a.app->set_version_flag("--version", "hashattn 0.1.0");
  auto& reg = command_registry();
  std::sort(reg.begin(), reg.end(), [](const command& x, const command& y) { return x.name < y.name; });
  for (auto& c : reg) {
    CLI::App* sub = a.app->add_subcommand(c.name, c.help);
    a.runners.emplace_back(sub, c.setup(*sub));
  }
  return a;
}

namespace {

// One line: what is wrong, what was given and what was expected (CLI11's message names the
// offending argument or value), and where to look.
void print_usage_error(const cli_app& a, const CLI::ParseError& e, int argc, char** argv) {
  std::string msg = e.what();
  for (char& c : msg)
    if (c == '\n') c = ' ';
  const CLI::App* sub = nullptr;
  for (const auto& [s, run] : a.runners)
    if (s->parsed()) sub = s;
  const std::string help = sub ? "hashattn " + sub->get_name() + " --help" : "hashattn --help";
  std::string names;
  for (const auto& [s, run] : a.runners) names += (names.empty() ? "" : ", ") + s->get_name();
  std::string first_word;  // the first argument that is not an option: the intended command
  for (int k = 1; k < argc && first_word.empty(); k++)
    if (argv[k][0] != '-') first_word = argv[k];
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
    // "The following argument(s) was/were not expected: X Y"
    const size_t colon = msg.find(": ");
    const std::string got = colon == std::string::npos ? msg : msg.substr(colon + 2);
    if (sub)
      msg = "unknown argument: got '" + got + "', expected the options of 'hashattn " + sub->get_name() + "'";
    else
      msg = "unknown command or argument: got '" + got + "', expected one of " + names;
  } else if (!sub && dynamic_cast<const CLI::RequiredError*>(&e)) {
    if (!first_word.empty())
      msg = "unknown command: got '" + first_word + "', expected one of " + names;
    else if (argc > 1)
      msg = "unknown option: got '" + std::string(argv[1]) + "', expected a command first (one of " + names + ")";
    else
      msg = "no command given: expected one of " + names;
  }
  std::fprintf(stderr, "hashattn: usage error: %s (hint: see '%s')\n", msg.c_str(), help.c_str());
}

}  // namespace

int run_main(int argc, char** argv) {
  cli_app a = build_app();
  try {
    a.app->parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return a.app->exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return a.app->exit(e);
  } catch (const CLI::CallForVersion& e) {
    return a.app->exit(e);
  } catch (const CLI::ParseError& e) {
    print_usage_error(a, e, argc, argv);
    return 2;
  }
  try {
    for (auto& [sub, run] : a.runners)
      if (sub->parsed()) return run();
  } catch (const hashattn::error& e) {
    std::fprintf(stderr, "hashattn: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "hashattn: error: out of memory (hint: use a shorter context or a smaller model)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hashattn: error: %s\n", e.what());
    return 1;
  }
  return 2;
}

}  // namespace hashattn::cli
