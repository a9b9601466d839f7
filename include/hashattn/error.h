// Errors of the hashattn library.
// User and API errors throw hashattn::error with a message of the form
//   "<what>: got <X>, expected <Y> (hint: <H>)".
// Internal invariants use HASHATTN_ASSERT, which is always on and names file:line.
// Library code never calls exit(); only tools/ turns errors into exit codes.
#pragma once
#include <stdexcept>
#include <string>

namespace hashattn {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Builds "what: got X, expected Y (hint: H)"; empty parts are left out.
std::string error_message(const std::string& what, const std::string& got = {},
                          const std::string& expected = {}, const std::string& hint = {});

[[noreturn]] void fail(const std::string& what, const std::string& got = {},
                       const std::string& expected = {}, const std::string& hint = {});

[[noreturn]] void assert_fail(const char* cond, const char* file, int line);

}  // namespace hashattn

#define HASHATTN_ASSERT(cond) \
  ((cond) ? (void)0 : ::hashattn::assert_fail(#cond, __FILE__, __LINE__))
