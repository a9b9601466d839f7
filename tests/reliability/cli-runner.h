// Test helper: runs the real hashattn binary (HASHATTN_CLI, set by CMake) with arguments and
// captures its exit code, stdout and stderr; plus checks for the one-line error contract.
#pragma once
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace hashattn::test {

struct cli_result {
  int code = -1;  // exit code; 128 + signal when killed
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// env: extra "NAME=value" entries (HASHATTN_MODEL, CUDA_VISIBLE_DEVICES, ...).
inline cli_result run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                          const std::string& stdin_text = "") {
  char dir_tmpl[] = "/tmp/hashattn-cli-XXXXXX";
  const std::string dir = mkdtemp(dir_tmpl);
  const std::string out_p = dir + "/out", err_p = dir + "/err", in_p = dir + "/in";
  std::ofstream(in_p, std::ios::binary) << stdin_text;
  const pid_t pid = fork();
  if (pid == 0) {
    const int in = open(in_p.c_str(), O_RDONLY);
    const int out = open(out_p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = open(err_p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv{const_cast<char*>(HASHATTN_CLI)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(HASHATTN_CLI, argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  cli_result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out_p);
  r.err = slurp(err_p);
  std::remove(out_p.c_str());
  std::remove(err_p.c_str());
  std::remove(in_p.c_str());
  rmdir(dir.c_str());
  return r;
}

// The error line of a run: the last line of stderr (progress lines may come before it).
inline std::string last_line(const std::string& s) {
  if (s.empty()) return s;
  const size_t end = s.back() == '\n' ? s.size() - 1 : s.size();
  const size_t nl = s.rfind('\n', end == 0 ? 0 : end - 1);
  return s.substr(nl == std::string::npos ? 0 : nl + 1, end - (nl == std::string::npos ? 0 : nl + 1));
}

inline int count_error_lines(const std::string& s) {
  int n = 0;
  size_t at = 0;
  while (at < s.size()) {
    const size_t nl = s.find('\n', at);
    const std::string line = s.substr(at, (nl == std::string::npos ? s.size() : nl) - at);
    if (line.rfind("hashattn: error: ", 0) == 0 || line.rfind("hashattn: usage error: ", 0) == 0) n++;
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return n;
}

}  // namespace hashattn::test

// The error contract of the tool: a non-zero exit code (`code`); stderr ends with exactly one error
// line, starting "hashattn: error:" (or "hashattn: usage error:"), that holds every needle (informative
// progress lines may come before it); no sanitizer report, no abort.
#define EXPECT_ONE_LINE_ERROR(r, want_code, ...)                                                       \
  do {                                                                                                 \
    const auto& r_ = (r);                                                                              \
    const std::string line_ = ::hashattn::test::last_line(r_.err);                                     \
    EXPECT_EQ(r_.code, (want_code)) << "stderr: " << r_.err;                                           \
    EXPECT_TRUE(!r_.err.empty() && r_.err.back() == '\n') << "stderr: " << r_.err;                    \
    EXPECT_EQ(::hashattn::test::count_error_lines(r_.err), 1) << "stderr: " << r_.err;                 \
    EXPECT_TRUE(line_.rfind("hashattn: error: ", 0) == 0 || line_.rfind("hashattn: usage error: ", 0) == 0) \
        << "stderr: " << r_.err;                                                                       \
    for (const char* needle_ : {__VA_ARGS__})                                                          \
      EXPECT_NE(line_.find(needle_), std::string::npos) << "missing '" << needle_ << "' in: " << line_; \
  } while (0)
