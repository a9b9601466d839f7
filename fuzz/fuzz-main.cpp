// libFuzzer glue: one executable per target, HASHATTN_FUZZ_ENTRY names its entry function.
#include "fuzz-entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return hashattn::fuzz::HASHATTN_FUZZ_ENTRY(data, size);
}
