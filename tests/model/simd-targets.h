// Runs a test body once per SIMD target this CPU supports (Highway runtime dispatch is pointed
// at each target in turn), so every compiled kernel variant is checked, not only the best one.
#pragma once
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <string>

namespace hashattn::test {

template <class F>
void for_each_simd_target(F&& body) {
  const int64_t supported = hwy::SupportedTargets();
  for (int64_t bit = 1; bit != 0 && bit <= supported; bit <<= 1) {
    if (!(supported & bit)) continue;
    hwy::SetSupportedTargetsForTest(bit);
    SCOPED_TRACE(std::string("simd target ") + hwy::TargetName(bit));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace hashattn::test
