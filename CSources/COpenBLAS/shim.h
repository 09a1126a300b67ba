/* COpenBLAS: CBLAS from Debian's libopenblas-dev plus the Fortran LAPACK entry points we call.
 *
 * Debian's OpenBLAS is built with NO_LAPACKE=1 (no C LAPACK interface) but libopenblas.so exports the
 * Fortran symbols, so we declare the few we need here. Fortran conventions: every argument by pointer,
 * column-major matrices, character flags as `const char *`, hidden string-length arguments omitted
 * (safe for single-character flags with gfortran on x86-64). */
#ifndef NTK_COPENBLAS_SHIM_H
#define NTK_COPENBLAS_SHIM_H

#include <cblas.h>

/* Cholesky factorisation of a symmetric positive definite matrix: A = Uᵀ U or L Lᵀ. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
/* Solve A X = B with the factor from dpotrf_. */
void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda,
             double *b, const int *ldb, int *info);
/* Symmetric eigendecomposition (divide and conquer): eigenvalues ascending in w, eigenvectors in a. */
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info);

/* OpenBLAS extensions (declared in cblas.h on most builds; repeated here so the shim is explicit). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_config(void);
char *openblas_get_corename(void);

#endif
