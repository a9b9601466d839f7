// Device plumbing of model-kernels.h: memory, streams, graphs, events, and the cuBLAS bf16 GEMM.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda/model-kernels.h"
#include "hashattn/error.h"

namespace hashattn {
namespace cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail(std::string("CUDA: ") + what, cudaGetErrorName(e), "cudaSuccess", cudaGetErrorString(e));
  }
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(std::string("cuBLAS: ") + what, cublasGetStatusName(s), "CUBLAS_STATUS_SUCCESS", cublasGetStatusString(s));
}

cudaStream_t st(void* s) { return static_cast<cudaStream_t>(s); }

struct blas_handle {
  cublasHandle_t h = nullptr;
  void* ws = nullptr;
};
constexpr size_t kBlasWorkspace = size_t(32) << 20;

}  // namespace

void* dev_alloc(size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    fail(std::string("GPU memory for ") + what, std::to_string(bytes >> 20) + " MiB asked",
         "at most the free " + std::to_string(fr >> 20) + " MiB of " + std::to_string(tot >> 20) + " MiB",
         "use a shorter context (--ctx) or fewer sequences");
  }
  return p;
}

void dev_free(void* p) {
  if (p) cudaFree(p);
}

void copy_h2d(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st(stream)), "copy to the device");
}
void copy_d2h(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st(stream)), "copy to the host");
}
void copy_d2d(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st(stream)), "copy on the device");
}
void mem_zero(void* p, size_t bytes, void* stream) {
  if (bytes) check(cudaMemsetAsync(p, 0, bytes, st(stream)), "memset");
}

void* stream_create() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream create");
  return s;
}
void stream_destroy(void* s) {
  if (s) cudaStreamDestroy(st(s));
}
void stream_sync(void* s) { check(cudaStreamSynchronize(st(s)), "stream synchronize (a kernel failed before)"); }

void device_mem_info(size_t* free_bytes, size_t* total_bytes) {
  check(cudaMemGetInfo(free_bytes, total_bytes), "memory info");
}

void graph_begin(void* stream) {
  check(cudaStreamBeginCapture(st(stream), cudaStreamCaptureModeThreadLocal), "graph capture begin");
}
void* graph_end(void* stream) {
  cudaGraph_t g = nullptr;
  check(cudaStreamEndCapture(st(stream), &g), "graph capture end");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  check(e, "graph instantiate");
  return exec;
}
void graph_launch(void* exec, void* stream) {
  check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), st(stream)), "graph launch");
}
void graph_destroy(void* exec) {
  if (exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

void* event_create() {
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "event create");
  return e;
}
void event_destroy(void* e) {
  if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}
void event_record(void* e, void* stream) { check(cudaEventRecord(static_cast<cudaEvent_t>(e), st(stream)), "event record"); }
float event_ms(void* start, void* stop) {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)), "event synchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)), "event time");
  return ms;
}

void* blas_create(void* stream) {
  auto* b = new blas_handle;
  check_blas(cublasCreate(&b->h), "create");
  b->ws = dev_alloc(kBlasWorkspace, "the cuBLAS workspace");
  check_blas(cublasSetStream(b->h, st(stream)), "set stream");
  check_blas(cublasSetWorkspace(b->h, b->ws, kBlasWorkspace), "set workspace");
  return b;
}

void blas_destroy(void* h) {
  auto* b = static_cast<blas_handle*>(h);
  if (!b) return;
  cublasDestroy(b->h);
  dev_free(b->ws);
  delete b;
}

void gemm_bf16(void* blas, int64_t n, int64_t n_out, int64_t n_in, const void* w, const void* x, float* y,
               int64_t ldy, float beta) {
  if (n <= 0) return;
  auto* b = static_cast<blas_handle*>(blas);
  const float alpha = 1.f;
  // Column-major view: Y^T [n_out, n] = W [n_out, n_in] (stored as W^T col-major, ld n_in) x X^T [n_in, n].
  check_blas(cublasGemmEx(b->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_out, (int)n, (int)n_in, &alpha, w, CUDA_R_16BF,
                          (int)n_in, x, CUDA_R_16BF, (int)n_in, &beta, y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                          CUBLAS_GEMM_DEFAULT),
             "bf16 GEMM");
}

}  // namespace cuda
}  // namespace hashattn
