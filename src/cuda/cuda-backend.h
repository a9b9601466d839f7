// The CUDA backend's table (backend.h) over host memory: nullptr with *why when no device can be used.
#pragma once
#include <string>

#include "hashattn/ops.h"

namespace hashattn {
namespace cuda {
const backend* cuda_backend(std::string* why);
}  // namespace cuda
}  // namespace hashattn
