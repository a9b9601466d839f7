// The backend registry (src/backend): the backends compiled into this build, by name. Each is a table
// of the ops of ops.h over the same params structs. Policies and the model reach kernels only through
// a table from here, never a backend's functions by name.
//   "cpu"  : every op (Highway SIMD, OpenMP); host memory.
//   "cuda" : builds with the CUDA backend, where a device can be used: attend, encode and select_codes
//            by the kernels of cuda.h, each call uploading its host inputs and waiting for the result
//            (the table's contract, for checking and for callers with host data; the GPU runtime, gpu.h,
//            keeps its pages on the device). score_codes and select_scores are missing (it says why);
//            f32 K/V, codes other than 32 bits and mixed code/list modes are refused with the reason.
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
