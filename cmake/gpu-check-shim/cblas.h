// Minimal CBLAS declarations for the GPU-machine build (HASHATTN_GPU_CHECK) on machines without a
// BLAS, and for the portable build (HASHATTN_PORTABLE): only what src/cpu uses. The CPU kernels are
// neither tested nor timed in those builds.
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 };
void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);
void cblas_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                 double alpha, const double* a, int lda, const double* b, int ldb, double beta, double* c, int ldc);
// OpenBLAS's thread controls: the plain loops run on the caller's thread.
int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);
#ifdef __cplusplus
}
#endif
