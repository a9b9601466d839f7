// Random weight rows in GGUF block formats for the mat-vec tests: random quant bytes, finite scales of
// both signs where the format keeps them (d, and the min / dmin of Q4_1, Q4_K, Q5_K), small normal values
// for F32, F16 and BF16.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "hashattn/gguf.h"

namespace hashattn::test {

std::vector<uint8_t> random_rows(gguf::type t, int64_t rows, int64_t cols, std::mt19937_64& rng);

}  // namespace hashattn::test
