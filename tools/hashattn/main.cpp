// hashattn: the command-line tool. Subcommands live in tools/hashattn/cmd-*.cpp and register
// themselves (command.h); cli.cpp builds the app, parses argv and runs the chosen subcommand.
#include "command.h"

int main(int argc, char** argv) { return hashattn::cli::run_main(argc, argv); }
