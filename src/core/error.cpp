// hashattn::error helpers: message formatting and the always-on assertion.
#include "hashattn/error.h"

namespace hashattn {

std::string error_message(const std::string& what, const std::string& got,
                          const std::string& expected, const std::string& hint) {
  std::string m = what;
  if (!got.empty()) m += ": got " + got;
  if (!expected.empty()) m += (got.empty() ? ": expected " : ", expected ") + expected;
  if (!hint.empty()) m += " (hint: " + hint + ")";
  return m;
}

void fail(const std::string& what, const std::string& got, const std::string& expected,
          const std::string& hint) {
  throw error(error_message(what, got, expected, hint));
}

void assert_fail(const char* cond, const char* file, int line) {
  throw error(std::string("internal error: assertion '") + cond + "' failed at " + file + ":" +
              std::to_string(line));
}

}  // namespace hashattn
