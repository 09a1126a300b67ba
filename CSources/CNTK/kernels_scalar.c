/* kernels_scalar.c — reference row kernels of the analytic NNGP/NTK recursion (contract in CNTK.h),
 * written with libm's atan2/asin/sqrt. The AVX2 versions in kernels_avx2.c must agree with these to a few
 * ulp; the closed forms themselves are tested against Monte Carlo and the paper's table. */
#include "CNTK.h"
#include "vec_internal.h"

#include <math.h>

void ntk_kernel_abrelu_row_scalar(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c) {
    const double ba2 = (c->b - c->a) * (c->b - c->a) / (2 * M_PI), ab = c->a * c->b;
    for (size_t j = 0; j < n; ++j) {
        const double q = nngp[j], p = d1 * d2[j];
        const double s = sqrt(fmax(p - q * q, 0.0));
        const double theta = p > 0 ? atan2(s, q) : M_PI / 2;
        const double t = ba2 * (s + (M_PI - theta) * q) + ab * q;
        const double tdot = ba2 * (M_PI - theta) + ab;
        nngp[j] = c->w_var * t + c->b_var;
        if (ntk) ntk[j] = c->ntk_t_scale * t + c->ntk_shift + c->w_var * tdot * ntk[j];
    }
}

void ntk_kernel_erf_row_scalar(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c) {
    for (size_t j = 0; j < n; ++j) {
        const double q = nngp[j], r = (1 + 2 * d1) * (1 + 2 * d2[j]);
        const double t = (2 / M_PI) * asin(fmin(fmax(2 * q / sqrt(r), -1.0), 1.0));
        const double tdot = (4 / M_PI) / sqrt(fmax(r - 4 * q * q, 0.0));
        nngp[j] = c->w_var * t + c->b_var;
        if (ntk) ntk[j] = c->ntk_t_scale * t + c->ntk_shift + c->w_var * tdot * ntk[j];
    }
}
