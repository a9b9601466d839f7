// The backend registry (src/backend): the backends compiled into this build, by name. Each is a table
// of the ops of ops.h over the same params structs. Policies and the model reach kernels only through
// a table from here, never a backend's functions by name.
//   "cpu"  : every op (Highway SIMD, OpenMP); host memory.
// The CUDA kernels (include/hashattn/cuda.h) are not in this table yet: they take batched device pages;
// asking for "cuda" says so.
#pragma once
#include <string>
#include <vector>

#include "hashattn/ops.h"

namespace hashattn {

// Names of the backends of this build ("cpu" first).
std::vector<std::string> backend_names();
// The backend of that name; throws hashattn::error naming the backends of this build when unknown.
const backend& backend_get(const std::string& name);
// The default backend ("cpu").
const backend& backend_default();

}  // namespace hashattn
