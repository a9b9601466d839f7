// Subcommand registry of the hashattn tool: each tools/hashattn/cmd-*.cpp registers itself with
// a static HASHATTN_COMMAND object; main() builds the CLI11 app from the registry.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
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

}  // namespace hashattn::cli

#define HASHATTN_CONCAT_(a, b) a##b
#define HASHATTN_CONCAT(a, b) HASHATTN_CONCAT_(a, b)
#define HASHATTN_COMMAND(...) \
  static ::hashattn::cli::command_registrar HASHATTN_CONCAT(hashattn_cmd_, __LINE__)({__VA_ARGS__})
