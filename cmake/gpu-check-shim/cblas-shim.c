/* Plain-loop sgemm for the GPU-machine build when no BLAS is installed (see cblas.h beside it). */
#include "cblas.h"

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float s = 0.f;
      for (int p = 0; p < k; ++p) {
        const int ai = order == CblasRowMajor ? (ta == CblasNoTrans ? i * lda + p : p * lda + i)
                                              : (ta == CblasNoTrans ? p * lda + i : i * lda + p);
        const int bi = order == CblasRowMajor ? (tb == CblasNoTrans ? p * ldb + j : j * ldb + p)
                                              : (tb == CblasNoTrans ? j * ldb + p : p * ldb + j);
        s += a[ai] * b[bi];
      }
      float* cp = order == CblasRowMajor ? &c[i * ldc + j] : &c[j * ldc + i];
      *cp = alpha * s + (beta == 0.f ? 0.f : beta * *cp);
    }
}
