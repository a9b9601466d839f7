// Budget arithmetic shared by every policy (policy.h): how many tokens a decode query attends to.
// total = count if count > 0, else floor(density * n); then raised to sinks + window and clamped to n.
#include <cmath>
#include <string>

#include "hashattn/error.h"
#include "hashattn/policy.h"

namespace hashattn {

void budget_validate(const budget_params& b) {
  if (b.count < 0) fail("budget: count", std::to_string(b.count), ">= 0 (0 = use density)");
  if (b.count == 0 && !(b.density > 0 && b.density <= 1))
    fail("budget: density", std::to_string(b.density), "in (0, 1] when count is 0", "e.g. 1/32 = 0.03125");
  if (b.sinks < 0) fail("budget: sinks", std::to_string(b.sinks), ">= 0");
  if (b.window < 0) fail("budget: window", std::to_string(b.window), ">= 0");
}

int64_t budget_tokens(const budget_params& b, int64_t n) {
  budget_validate(b);
  if (n <= 0) return 0;
  int64_t total = b.count > 0 ? b.count : (int64_t)std::floor(b.density * (double)n + 1e-9);
  total = std::max(total, b.sinks + b.window);
  return std::min(total, n);
}

}  // namespace hashattn
