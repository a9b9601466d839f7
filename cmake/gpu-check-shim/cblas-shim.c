/* Plain-loop sgemm / dgemm for builds without a BLAS (see cblas.h beside it). */
#include "cblas.h"

#define SHIM_GEMM(NAME, T)                                                                                     \
  void NAME(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,     \
            T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c, int ldc) {                        \
    for (int i = 0; i < m; ++i)                                                                                \
      for (int j = 0; j < n; ++j) {                                                                            \
        T s = 0;                                                                                               \
        for (int p = 0; p < k; ++p) {                                                                          \
          const int ai = order == CblasRowMajor ? (ta == CblasNoTrans ? i * lda + p : p * lda + i)             \
                                                : (ta == CblasNoTrans ? p * lda + i : i * lda + p);            \
          const int bi = order == CblasRowMajor ? (tb == CblasNoTrans ? p * ldb + j : j * ldb + p)             \
                                                : (tb == CblasNoTrans ? j * ldb + p : p * ldb + j);            \
          s += a[ai] * b[bi];                                                                                  \
        }                                                                                                      \
        T* cp = order == CblasRowMajor ? &c[i * ldc + j] : &c[j * ldc + i];                                    \
        *cp = alpha * s + (beta == 0 ? 0 : beta * *cp);                                                        \
      }                                                                                                        \
  }

SHIM_GEMM(cblas_sgemm, float)
SHIM_GEMM(cblas_dgemm, double)

int openblas_get_num_threads(void) { return 1; }
void openblas_set_num_threads(int n) { (void)n; }
