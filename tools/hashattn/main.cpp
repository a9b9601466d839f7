// hashattn: the command-line tool. Subcommands live in tools/hashattn/cmd-*.cpp and register
// themselves (command.h); cli.cpp builds the app, parses argv and runs the chosen subcommand.
// (run_main is declared here rather than through command.h so that this file does not compile CLI11.)

namespace hashattn::cli {
int run_main(int argc, char** argv);  // command.h
}

int main(int argc, char** argv) { return hashattn::cli::run_main(argc, argv); }
