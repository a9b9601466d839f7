// scan_stop (serve.h): what part of a request's pending output may be sent, by hand-made cases.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hashattn/serve.h"

namespace hashattn::serve {
namespace {

TEST(scan_stop, sends_everything_without_stop_strings) {
  const stop_scan r = scan_stop("hello world", {});
  EXPECT_EQ(r.emit, 11u);
  EXPECT_EQ(r.stop_at, std::string::npos);
}

TEST(scan_stop, holds_back_an_incomplete_utf8_tail) {
  const std::string s = "caf\xc3";  // the first byte of a two-byte character
  EXPECT_EQ(scan_stop(s, {}).emit, 3u);
  EXPECT_EQ(scan_stop(s + "\xa9", {}).emit, 5u);
}

TEST(scan_stop, holds_back_a_possible_start_of_a_stop_string) {
  const std::vector<std::string> stop = {"\n\nUser:", "END"};
  EXPECT_EQ(scan_stop("The answer\n\nUs", stop).emit, 10u);  // "\n\nUs" may become "\n\nUser:"
  EXPECT_EQ(scan_stop("The answer E", stop).emit, 11u);      // "E" may become "END"
  EXPECT_EQ(scan_stop("The answer EN", stop).emit, 11u);
  EXPECT_EQ(scan_stop("The answer ENd", stop).emit, 14u);    // no longer a prefix
}

TEST(scan_stop, cuts_at_the_earliest_stop_string) {
  const stop_scan r = scan_stop("one END two\n\nUser: three", {"\n\nUser:", "END"});
  EXPECT_EQ(r.stop_at, 4u);
  EXPECT_EQ(r.emit, 4u);
  EXPECT_EQ(scan_stop("abcEND", {"END", "cE"}).stop_at, 2u);
}

}  // namespace
}  // namespace hashattn::serve
