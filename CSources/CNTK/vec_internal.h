/* vec_internal.h — shared between the scalar and SIMD kernel files; not part of the public API. */
#ifndef CNTK_VEC_INTERNAL_H
#define CNTK_VEC_INTERNAL_H
#include "CNTK.h"

/* The scalar definition of each element-wise map. The SIMD tail loops use the same expression. */
#define NTK_MAP_SCALAR(T, op, v)                                                  \
    ((op) == NTK_MAP_RELU   ? ((v) > (T)0 ? (v) : (T)0)                           \
     : (op) == NTK_MAP_STEP ? ((v) > (T)0 ? (T)1 : (T)0)                          \
     : (op) == NTK_MAP_ABS  ? ((v) < (T)0 ? -(v) : (v))                           \
                            : (v) * (v))

/* Cephes' atan for the SIMD kernel rows: after the reduction at 0.66, atan(t) = t + t³·P(t²)/Q(t²), ~1 ulp.
 * Coefficients highest degree first; Q is monic (its leading 1 is implicit). */
static const double NTK_ATAN_P[5] = {-8.750608600031904122785E-1, -1.615753718733365076637E1, -7.500855792314704667340E1,
                                     -1.228866684490136173410E2, -6.485021904942025371773E1};
static const double NTK_ATAN_Q[5] = {2.485846490142306297962E1, 1.650270098316988542046E2, 4.328810604912902668951E2,
                                     4.853903996359136964868E2, 1.945506571482613964425E2};

void ntk_cov_axis_map_scalar(double *out, const double *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                             const uint32_t *offsets, const uint32_t *src, const double *weights);
void ntk_cov_axis_map_avx2(double *out, const double *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                           const uint32_t *offsets, const uint32_t *src, const double *weights);
void ntk_cov_axis_map_f32_scalar(float *out, const float *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                                 const uint32_t *offsets, const uint32_t *src, const float *weights);
void ntk_cov_axis_map_f32_avx2(float *out, const float *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                               const uint32_t *offsets, const uint32_t *src, const float *weights);
void ntk_kernel_abrelu_row_scalar(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);
void ntk_kernel_erf_row_scalar(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);

void ntk_act_smooth_f64_scalar(double *z, double *dz, size_t n, int act);
void ntk_act_smooth_f32_scalar(float *z, float *dz, size_t n, int act);
void ntk_act_smooth_f64_avx2(double *z, double *dz, size_t n, int act);
void ntk_act_smooth_f32_avx2(float *z, float *dz, size_t n, int act);

/* Whether the dispatched path is a SIMD one (not the scalar reference): the kernels outside the vector table
 * (winograd.c, smallk.c) follow the table's choice, so NTK_SIMD=scalar forces their references too. */
static inline int ntk_uses_simd(void) {
#if defined(__x86_64__)
    return ntk_vec_table_active() != ntk_vec_table_scalar();
#else
    return 0;
#endif
}

extern const ntk_vec_table ntk_vec_table_scalar_impl;
#if defined(__x86_64__)
extern const ntk_vec_table ntk_vec_table_avx2_impl;
extern const ntk_vec_table ntk_vec_table_avx512_impl;
void ntk_kernel_abrelu_row_avx512(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);
void ntk_kernel_abrelu_row_avx2(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);
void ntk_kernel_erf_row_avx2(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);
#endif
#endif
