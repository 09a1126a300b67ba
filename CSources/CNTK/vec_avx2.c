/* vec_avx2.c — AVX2+FMA twins of the primitives in vec_scalar.c, selected at run time by dispatch.c.
 * Only this file's functions carry target("avx2,fma"); the package builds without global ISA flags and
 * runs on CPUs without AVX2 (the table is simply never selected there). */
#include "CNTK.h"
#include "vec_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* ---- double precision: 4 lanes ---- */
#define T double
#define SFX f64
#define V __m256d
#define EPR 4
#define LOADU _mm256_loadu_pd
#define STOREU _mm256_storeu_pd
#define SET1 _mm256_set1_pd
#define ZERO _mm256_setzero_pd
#define ADD _mm256_add_pd
#define MUL _mm256_mul_pd
#define FMADD _mm256_fmadd_pd
#define MAX _mm256_max_pd
#define CMPGT(a, b) _mm256_cmp_pd(a, b, _CMP_GT_OQ)
#define AND _mm256_and_pd
#define ANDNOT _mm256_andnot_pd
#define LOAD4D(p) _mm256_loadu_pd(p)
#include "vec_avx2_body.h"
#undef T
#undef SFX
#undef V
#undef EPR
#undef LOADU
#undef STOREU
#undef SET1
#undef ZERO
#undef ADD
#undef MUL
#undef FMADD
#undef MAX
#undef CMPGT
#undef AND
#undef ANDNOT
#undef LOAD4D

/* ---- single precision: 8 lanes; reductions widen 4 floats at a time to double ---- */
#define T float
#define SFX f32
#define V __m256
#define EPR 8
#define LOADU _mm256_loadu_ps
#define STOREU _mm256_storeu_ps
#define SET1 _mm256_set1_ps
#define ZERO _mm256_setzero_ps
#define ADD _mm256_add_ps
#define MUL _mm256_mul_ps
#define FMADD _mm256_fmadd_ps
#define MAX _mm256_max_ps
#define CMPGT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define AND _mm256_and_ps
#define ANDNOT _mm256_andnot_ps
#define LOAD4D(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
#include "vec_avx2_body.h"

#define AVX2_VEC_OPS                                                                                                      \
    .f64 = {dot_f64, sum_f64, sumsq_f64, axpy_f64, scale_f64, affine_f64, hadamard_acc_f64, hadamard_f64, map_f64, ntk_act_smooth_f64_avx2}, \
    .f32 = {dot_f32, sum_f32, sumsq_f32, axpy_f32, scale_f32, affine_f32, hadamard_acc_f32, hadamard_f32, map_f32, ntk_act_smooth_f32_avx2}

const ntk_vec_table ntk_vec_table_avx2_impl = {
    .name = "avx2+fma",
    AVX2_VEC_OPS,
    /* kernels_avx2.c */
    .kern = {ntk_kernel_abrelu_row_avx2, ntk_kernel_erf_row_avx2, ntk_cov_axis_map_avx2, ntk_cov_axis_map_f32_avx2},
};

/* The same with the arc-cosine rows 8-wide (kernels_avx512.c), for CPUs with AVX-512. */
const ntk_vec_table ntk_vec_table_avx512_impl = {
    .name = "avx2+fma+avx512",
    AVX2_VEC_OPS,
    .kern = {ntk_kernel_abrelu_row_avx512, ntk_kernel_erf_row_avx2, ntk_cov_axis_map_avx2,
             ntk_cov_axis_map_f32_avx2},
};
#endif
