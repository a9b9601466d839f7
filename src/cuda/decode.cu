// The CUDA backend's glue: device queries (the plan's device_info), error reporting, workspace clearing,
// and decode_run -- one layer's decode step as four kernels (encode, select x2, attend) on one stream,
// with every intermediate (query codes, index lists, select/attend scratch) inside one workspace laid
// out by plan::decode_layout_of (cuda/host/cuda-plan.h).
#include "cuda/attend-common.cuh"

namespace hashattn {
namespace cuda {
namespace detail {

void cuda_fail(cudaError_t e, const char* stmt, const char* file, int line) {
  int dev = -1;
  cudaGetDevice(&dev);
  fail(std::string("CUDA call failed on device ") + std::to_string(dev) + ": " + stmt + " at " + file + ":" +
           std::to_string(line),
       std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")", "cudaSuccess");
}

namespace {
struct dev_props {
  int sms = 0;
  int smem = 0;
};
dev_props& props() {
  static thread_local dev_props cache[64];
  int dev = 0;
  HASHATTN_CUDA_CHECK(cudaGetDevice(&dev));
  HASHATTN_ASSERT(dev >= 0 && dev < 64);
  dev_props& p = cache[dev];
  if (p.sms == 0) {
    HASHATTN_CUDA_CHECK(cudaDeviceGetAttribute(&p.sms, cudaDevAttrMultiProcessorCount, dev));
    HASHATTN_CUDA_CHECK(cudaDeviceGetAttribute(&p.smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  }
  return p;
}
}  // namespace

int sm_count() { return props().sms; }
int max_smem_optin() { return props().smem; }

plan::device_info current_device() {
  const dev_props& d = props();
  plan::device_info i;
  i.sm_count = d.sms;
  i.max_smem_optin = d.smem;
  i.attend_ctas_per_sm = attend_ctas_per_sm;
  i.attend_tc_ctas_per_sm = attend_tc_ctas_per_sm;
  return i;
}

}  // namespace detail

bool device_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why) *why = e != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e) : "no CUDA device";
    cudaGetLastError();
    return false;
  }
  return true;
}

std::string device_name() {
  int dev = 0;
  HASHATTN_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  HASHATTN_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  return prop.name;
}

int device_sm_count() { return detail::sm_count(); }

void workspace_clear(void* workspace, size_t bytes, void* stream) {
  if (bytes == 0) return;
  if (!workspace) fail("workspace_clear: workspace", "null", "a device pointer");
  HASHATTN_CUDA_CHECK(cudaMemsetAsync(workspace, 0, bytes, detail::as_stream(stream)));
}

namespace {
plan::decode_layout layout_of(const decode_params& p) { return plan::decode_layout_of(p, detail::current_device()); }
}  // namespace

size_t decode_workspace_size(const decode_params& p) { return layout_of(p).bytes; }

encode_params decode_encode_params(const decode_params& p, void* workspace) {
  return plan::decode_encode_of(p, static_cast<char*>(workspace), layout_of(p));
}

select_params decode_select_params(const decode_params& p, void* workspace) {
  return plan::decode_select_of(p, static_cast<char*>(workspace), layout_of(p));
}

attend_params decode_attend_params(const decode_params& p, void* workspace) {
  return plan::decode_attend_of(p, static_cast<char*>(workspace), layout_of(p));
}

void decode_stage_run(const decode_params& p, int stage, void* workspace, void* stream) {
  if (!workspace) fail("decode: workspace", "null", "decode_workspace_size() bytes, zeroed once");
  if (stage < 0 || stage > 4)
    fail("decode_stage_run: stage", std::to_string(stage), "0 encode, 1 select, 2 attend, 3/4 select's passes");
  const plan::decode_layout l = layout_of(p);
  char* ws = static_cast<char*>(workspace);
  if (stage == 0) encode_run(decode_encode_params(p, workspace), stream);
  if (stage == 1 || stage >= 3) {
    select_params sp = plan::decode_select_of(p, ws, l);
    sp.only_pass = stage >= 3 ? stage - 2 : 0;
    select_run(sp, ws + l.off_sel, stream);
  }
  if (stage == 2) attend_run(plan::decode_attend_of(p, ws, l), ws + l.off_att, stream);
}

void decode_run(const decode_params& p, void* workspace, void* stream) {
  if (!workspace) fail("decode: workspace", "null", "decode_workspace_size() bytes, zeroed once");
  const plan::decode_layout l = layout_of(p);
  char* ws = static_cast<char*>(workspace);
  encode_run(decode_encode_params(p, workspace), stream);
  select_run(plan::decode_select_of(p, ws, l), ws + l.off_sel, stream);
  attend_run(plan::decode_attend_of(p, ws, l), ws + l.off_att, stream);
}

}  // namespace cuda
}  // namespace hashattn
