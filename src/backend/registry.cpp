// The backends of this build by name (backend.h): the list is written here, explicitly.
#include <string>

#include "cpu/cpu-kernels.h"
#include "hashattn/backend.h"
#include "hashattn/error.h"
#ifdef HASHATTN_HAVE_CUDA
#include "cuda/cuda-backend.h"
#endif

namespace hashattn {

std::vector<std::string> backend_names() {
  std::vector<std::string> v{cpu_backend().name};
#ifdef HASHATTN_HAVE_CUDA
  if (cuda::cuda_backend(nullptr)) v.push_back("cuda");
#endif
  return v;
}

const backend& backend_default() { return cpu_backend(); }

const backend& backend_get(const std::string& name) {
  if (name == cpu_backend().name) return cpu_backend();
  if (name == "cuda") {
#ifdef HASHATTN_HAVE_CUDA
    std::string why;
    if (const backend* b = cuda::cuda_backend(&why)) return *b;
    fail("backend 'cuda'", "requested", "one of: cpu", "no CUDA device can be used here: " + why);
#else
    fail("backend 'cuda'", "requested", "one of: cpu", "this build has no CUDA backend (cmake --preset cuda)");
#endif
  }
  std::string names;
  for (const auto& n : backend_names()) names += (names.empty() ? "" : ", ") + n;
  fail("backend", "'" + name + "'", "one of: " + names);
}

}  // namespace hashattn
