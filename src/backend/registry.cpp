// The backends of this build by name (backend.h): the list is written here, explicitly.
#include <string>

#include "cpu/cpu-kernels.h"
#include "hashattn/backend.h"
#include "hashattn/error.h"

namespace hashattn {

std::vector<std::string> backend_names() { return {cpu_backend().name}; }

const backend& backend_default() { return cpu_backend(); }

const backend& backend_get(const std::string& name) {
  if (name == cpu_backend().name) return cpu_backend();
  if (name == "cuda")
#ifdef HASHATTN_HAVE_CUDA
    fail("backend 'cuda'", "requested", "one of: cpu",
         "this build has the CUDA decode-attention kernels (include/hashattn/cuda.h), but not yet as a backend "
         "of the model and the policies: they take batched device pages");
#else
    fail("backend 'cuda'", "requested", "one of: cpu", "this build has no CUDA backend (cmake --preset cuda)");
#endif
  fail("backend", "'" + name + "'", "one of: cpu");
}

}  // namespace hashattn
