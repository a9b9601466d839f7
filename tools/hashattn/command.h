// Subcommand registry of the hashattn tool: each tools/hashattn/cmd-*.cpp registers itself with
// a static HASHATTN_COMMAND object; build_app() (cli.cpp) builds the CLI11 app from the registry.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace hashattn::cli {

struct command {
  std::string name;
  std::string help;
  // Adds options to `sub` and returns the function that runs the command (its exit code).
  std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<command>& command_registry();

struct command_registrar {
  explicit command_registrar(command c) { command_registry().push_back(std::move(c)); }
};

// Path of the default model fetched by scripts/setup.
std::string default_model_path();

// Most threads a command accepts: 4 x the machine's hardware threads (more only slow decoding down:
// `-t 1000` ran 1000 threads at 1.8 s per token).
int max_threads();
// Adds the threads option `names` ("-t,--threads") to sub, 0 (all cores) .. max_threads(); a value
// outside is a usage error naming the range.
CLI::Option* add_threads_option(CLI::App& sub, int& threads, const std::string& names);

// Throws hashattn::error unless `path` can be written (its folder exists and takes a new file; path
// is not a folder nor a read-only file). Commands call it before any long work, for every output.
void check_output_writable(const std::string& path, const std::string& option);

// The CLI11 app with one subcommand per registered command and the function that runs each
// (parsing runs nothing: the argument-parser fuzzer parses argv vectors with it).
struct cli_app {
  std::unique_ptr<CLI::App> app;
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
};
cli_app build_app();

// Parses argv and runs the chosen subcommand: 0 ok, 1 error (one line on stderr), 2 bad usage.
int run_main(int argc, char** argv);

}  // namespace hashattn::cli

#define HASHATTN_CONCAT_(a, b) a##b
#define HASHATTN_CONCAT(a, b) HASHATTN_CONCAT_(a, b)
#define HASHATTN_COMMAND(...) \
  static ::hashattn::cli::command_registrar HASHATTN_CONCAT(hashattn_cmd_, __LINE__)({__VA_ARGS__})
