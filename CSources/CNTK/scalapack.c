/* scalapack.c — Open MPI + ScaLAPACK, loaded at run time (dlopen) only when a run is distributed.
 *
 * The build never needs MPI or ScaLAPACK, and a single-process run never loads them. A distributed run
 * (`mpirun -np P ntk run …`) calls ntk_dist_load(), which opens Open MPI's libmpi (global, so its plugins resolve)
 * and Debian's libscalapack-openmpi, whose BLACS C interface (Cblacs_*, C?gsum2d) starts MPI, builds the process
 * grid and moves data between ranks — so no mpi.h is needed either. ScaLAPACK's local BLAS resolves to the
 * OpenBLAS this process already has loaded.
 *
 * The p* routines are Fortran: every argument by reference, and one hidden length (size_t, gfortran's ABI)
 * per character argument, appended at the end. Matrices are column-major local arrays described by a 9-integer
 * ScaLAPACK descriptor (DTYPE, CTXT, M, N, MB, NB, RSRC, CSRC, LLD). */
#include "CNTK.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*blacs_pinfo_fn)(int *, int *);
typedef void (*blacs_get_fn)(int, int, int *);
typedef void (*blacs_gridinit_fn)(int *, char *, int, int);
typedef void (*blacs_gridinfo_fn)(int, int *, int *, int *, int *);
typedef void (*blacs_ctxt_fn)(int);
typedef void (*blacs_barrier_fn)(int, char *);
typedef void (*blacs_abort_fn)(int, int);
typedef void (*dgsum_fn)(int, char *, char *, int, int, double *, int, int, int);
typedef void (*igsum_fn)(int, char *, char *, int, int, int *, int, int, int);
typedef void (*pdpotrf_fn)(const char *, const int *, double *, const int *, const int *, const int *, int *, size_t);
typedef void (*pdpotrs_fn)(const char *, const int *, const int *, const double *, const int *, const int *,
                           const int *, double *, const int *, const int *, const int *, int *, size_t);
typedef void (*pdgemm_fn)(const char *, const char *, const int *, const int *, const int *, const double *,
                          const double *, const int *, const int *, const int *, const double *, const int *,
                          const int *, const int *, const double *, double *, const int *, const int *, const int *,
                          size_t, size_t);
typedef void (*pdsymm_fn)(const char *, const char *, const int *, const int *, const double *, const double *,
                          const int *, const int *, const int *, const double *, const int *, const int *,
                          const int *, const double *, double *, const int *, const int *, const int *, size_t, size_t);
typedef void (*pdsyevd_fn)(const char *, const char *, const int *, double *, const int *, const int *, const int *,
                           double *, double *, const int *, const int *, const int *, double *, const int *, int *,
                           const int *, int *, size_t, size_t);

static struct {
    void *mpi, *lib;
    blacs_pinfo_fn pinfo;
    blacs_get_fn get;
    blacs_gridinit_fn gridinit;
    blacs_gridinfo_fn gridinfo;
    blacs_ctxt_fn gridexit, exit_;
    blacs_barrier_fn barrier;
    blacs_abort_fn abort_;
    dgsum_fn dgsum;
    igsum_fn igsum;
    pdpotrf_fn pdpotrf;
    pdpotrs_fn pdpotrs;
    pdgemm_fn pdgemm;
    pdsymm_fn pdsymm;
    pdsyevd_fn pdsyevd;
} S;

int ntk_dist_load(char *error, size_t error_size) {
    if (S.lib) return 0;
    /* a name given in the environment is the only one tried */
    const char *mpi_env = getenv("NTK_MPI_LIB"), *lib_env = getenv("NTK_SCALAPACK_LIB");
    const char *mpi[] = {mpi_env && *mpi_env ? mpi_env : "libmpi.so.40", mpi_env && *mpi_env ? NULL : "libmpi.so"};
    const char *lib[] = {lib_env && *lib_env ? lib_env : "libscalapack-openmpi.so.2.2",
                         lib_env && *lib_env ? NULL : "libscalapack-openmpi.so"};
    for (size_t i = 0; i < sizeof mpi / sizeof *mpi && !S.mpi; ++i)
        if (mpi[i] && *mpi[i]) S.mpi = dlopen(mpi[i], RTLD_NOW | RTLD_GLOBAL);
    if (!S.mpi) {
        snprintf(error, error_size, "cannot load Open MPI's %s (%s)", mpi[0], dlerror());
        return 1;
    }
    for (size_t i = 0; i < sizeof lib / sizeof *lib && !S.lib; ++i)
        if (lib[i] && *lib[i]) S.lib = dlopen(lib[i], RTLD_NOW | RTLD_GLOBAL);
    if (!S.lib) {
        snprintf(error, error_size, "cannot load ScaLAPACK for Open MPI, libscalapack-openmpi.so.2.2 (%s)", dlerror());
        return 1;
    }
    struct { void **slot; const char *name; } syms[] = {
        {(void **)&S.pinfo, "Cblacs_pinfo"},     {(void **)&S.get, "Cblacs_get"},
        {(void **)&S.gridinit, "Cblacs_gridinit"}, {(void **)&S.gridinfo, "Cblacs_gridinfo"},
        {(void **)&S.gridexit, "Cblacs_gridexit"}, {(void **)&S.exit_, "Cblacs_exit"},
        {(void **)&S.barrier, "Cblacs_barrier"}, {(void **)&S.abort_, "Cblacs_abort"},
        {(void **)&S.dgsum, "Cdgsum2d"},         {(void **)&S.igsum, "Cigsum2d"},
        {(void **)&S.pdpotrf, "pdpotrf_"},       {(void **)&S.pdpotrs, "pdpotrs_"},
        {(void **)&S.pdgemm, "pdgemm_"},         {(void **)&S.pdsymm, "pdsymm_"},
        {(void **)&S.pdsyevd, "pdsyevd_"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof *syms; ++i) {
        *syms[i].slot = dlsym(S.lib, syms[i].name);
        if (!*syms[i].slot) {
            snprintf(error, error_size, "ScaLAPACK library lacks %s", syms[i].name);
            S.lib = NULL;
            return 1;
        }
    }
    return 0;
}

int ntk_dist_loaded(void) { return S.lib != NULL; }

void ntk_blacs_pinfo(int *rank, int *size) { S.pinfo(rank, size); }

int ntk_blacs_grid(int rows, int cols) {
    int ctxt = 0;
    char order[] = "Row";
    S.get(-1, 0, &ctxt);
    S.gridinit(&ctxt, order, rows, cols);
    return ctxt;
}

void ntk_blacs_gridinfo(int ctxt, int *rows, int *cols, int *row, int *col) { S.gridinfo(ctxt, rows, cols, row, col); }

void ntk_blacs_barrier(int ctxt) {
    char scope[] = "All";
    S.barrier(ctxt, scope);
}

void ntk_blacs_dsum(int ctxt, double *a, size_t n) {
    char scope[] = "All", top[] = " ";
    for (size_t i = 0; i < n; i += 1 << 24) {  /* BLACS counts in int */
        int m = (int)(n - i < (size_t)1 << 24 ? n - i : (size_t)1 << 24);
        S.dgsum(ctxt, scope, top, m, 1, a + i, m, -1, -1);
    }
}

void ntk_blacs_isum(int ctxt, int *a, size_t n) {
    char scope[] = "All", top[] = " ";
    for (size_t i = 0; i < n; i += 1 << 24) {
        int m = (int)(n - i < (size_t)1 << 24 ? n - i : (size_t)1 << 24);
        S.igsum(ctxt, scope, top, m, 1, a + i, m, -1, -1);
    }
}

void ntk_blacs_abort(int ctxt, int code) { S.abort_(ctxt, code); }

void ntk_blacs_exit(void) {
    if (S.lib) S.exit_(0);
}

int ntk_pdpotrf(double *a, const int desca[9], int n) {
    int info = 0;
    const int one = 1;
    S.pdpotrf("L", &n, a, &one, &one, desca, &info, 1);
    return info;
}

int ntk_pdpotrs(double *b, const int descb[9], const double *a, const int desca[9], int n, int nrhs) {
    int info = 0;
    const int one = 1;
    S.pdpotrs("L", &n, &nrhs, a, &one, &one, desca, b, &one, &one, descb, &info, 1);
    return info;
}

void ntk_pdgemm(char transa, char transb, int m, int n, int k, double alpha, const double *a, const int desca[9],
                const double *b, const int descb[9], double beta, double *c, const int descc[9]) {
    const int one = 1;
    const char ta[2] = {transa, 0}, tb[2] = {transb, 0};
    S.pdgemm(ta, tb, &m, &n, &k, &alpha, a, &one, &one, desca, b, &one, &one, descb, &beta, c, &one, &one, descc, 1, 1);
}

void ntk_pdsymm_lower(int m, int n, double alpha, const double *a, const int desca[9], const double *b,
                      const int descb[9], double beta, double *c, const int descc[9]) {
    const int one = 1;
    S.pdsymm("L", "L", &m, &n, &alpha, a, &one, &one, desca, b, &one, &one, descb, &beta, c, &one, &one, descc, 1, 1);
}

void ntk_pdsyevd_workspace(int *lwork, int *liwork, double *w, double *a, const int desca[9], double *z,
                           const int descz[9], int n) {
    int info = 0, lw = -1, liw = -1, iq = 0;
    const int one = 1;
    double wq = 0;
    S.pdsyevd("V", "L", &n, a, &one, &one, desca, w, z, &one, &one, descz, &wq, &lw, &iq, &liw, &info, 1, 1);
    *lwork = wq + 1 < 2147483647.0 ? (int)wq + 1 : -1; /* -1: more than ScaLAPACK's 32-bit sizes */
    *liwork = iq > 1 ? iq : 1;
}

int ntk_pdsyevd(double *w, double *z, const int descz[9], double *a, const int desca[9], int n, double *work,
                int lwork, int *iwork, int liwork) {
    int info = 0;
    const int one = 1;
    S.pdsyevd("V", "L", &n, a, &one, &one, desca, w, z, &one, &one, descz, work, &lwork, iwork, &liwork, &info, 1, 1);
    return info;
}
