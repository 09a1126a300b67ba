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

/* The axis map (contract in CNTK.h) for element type T, accumulated in T in the SIMD twins' term order. */
#define NTK_AXIS_MAP_SCALAR(NAME, T)                                                                             \
    void NAME(T *out, const T *in, size_t outer, size_t n_in, size_t n_out, size_t inner, const uint32_t *offsets, \
              const uint32_t *src, const T *weights) {                                                           \
        for (size_t a = 0; a < outer; ++a) {                                                                     \
            const T *ia = in + a * n_in * inner;                                                                 \
            T *oa = out + a * n_out * inner;                                                                     \
            for (size_t o = 0; o < n_out; ++o) {                                                                 \
                T *y = oa + o * inner;                                                                           \
                for (size_t x = 0; x < inner; ++x) y[x] = 0;                                                     \
                for (uint32_t t = offsets[o]; t < offsets[o + 1]; ++t) {                                         \
                    const T w = weights[t], *s = ia + (size_t)src[t] * inner;                                    \
                    for (size_t x = 0; x < inner; ++x) y[x] += w * s[x];                                         \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
    }
NTK_AXIS_MAP_SCALAR(ntk_cov_axis_map_scalar, double)
NTK_AXIS_MAP_SCALAR(ntk_cov_axis_map_f32_scalar, float)

void ntk_kernel_row_f32(ntk_row_kind kind, float *nngp, float *ntk, const float *d2, double d1, size_t n,
                        const ntk_layer_coef *c, ntk_activation act, double alpha, const ntk_quadrature_rule *rule) {
    enum { CHUNK = 256 };
    double k[CHUNK], t[CHUNK], v[CHUNK];
    for (size_t j0 = 0; j0 < n; j0 += CHUNK) {
        const size_t m = n - j0 < CHUNK ? n - j0 : CHUNK;
        for (size_t j = 0; j < m; ++j) {
            k[j] = nngp[j0 + j];
            v[j] = d2[j0 + j];
            if (ntk) t[j] = ntk[j0 + j];
        }
        double *tp = ntk ? t : NULL;
        switch (kind) {
        case NTK_ROW_ABRELU: ntk_kernel_abrelu_row(k, tp, v, d1, m, c); break;
        case NTK_ROW_ERF: ntk_kernel_erf_row(k, tp, v, d1, m, c); break;
        case NTK_ROW_GELU: ntk_kernel_gelu_row(k, tp, v, d1, m, c); break;
        case NTK_ROW_QUADRATURE: ntk_kernel_quadrature_row(k, tp, v, d1, m, c, act, alpha, rule); break;
        }
        for (size_t j = 0; j < m; ++j) {
            nngp[j0 + j] = (float)k[j];
            if (ntk) ntk[j0 + j] = (float)t[j];
        }
    }
}

/* φ = gelu(x) = x·Φ(x) (Tsuchida et al. 2020, as neural-tangents writes it): with P = d1·d2,
 * P₁ = (1 + d1)(1 + d2), Δ = √(P₁ − q²) and θ = atan2(q, Δ),
 *   T = q/4 + ((q² + P·Δ²)/(P₁·Δ) + q·θ)/(2π),
 *   Ṫ = 1/4 + θ/(2π) + q/(2πΔ)·(1/Δ² + (1 − P)/P₁ + 1).
 * Checked against our polar quadrature and Monte Carlo (AnalyticKernelTests); one scalar version serves every
 * table (the layers it runs in are a small part of a CNN kernel's cost). */
void ntk_kernel_gelu_row(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c) {
    for (size_t j = 0; j < n; ++j) {
        const double q = nngp[j], p = d1 * d2[j], p1 = (1 + d1) * (1 + d2[j]);
        const double delta2 = fmax(p1 - q * q, 1e-300), delta = sqrt(delta2), theta = atan2(q, delta);
        const double t = 0.25 * q + ((q * q + p * delta2) / (p1 * delta) + q * theta) / (2 * M_PI);
        const double tdot = 0.25 + theta / (2 * M_PI) + q / (2 * M_PI * delta) * (1 / delta2 + (1 - p) / p1 + 1);
        nngp[j] = c->w_var * t + c->b_var;
        if (ntk) ntk[j] = c->ntk_t_scale * t + c->ntk_shift + c->w_var * tdot * ntk[j];
    }
}
