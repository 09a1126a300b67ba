/* activations.c — the reference definitions of the point-wise activations and their derivatives, and the
 * quadrature row kernel that uses them for activations without a closed-form kernel (tanh, gelu, softplus).
 * Scalar only: quadrature is used for small kernels (e.g. Figure 2's ensemble), not the hot path. */
#include "CNTK.h"

#include <math.h>

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void ntk_fill_normal(double *out, size_t n, uint64_t *state) {
    for (size_t i = 0; i < n; i += 2) {
        const double u1 = ((double)(splitmix64(state) >> 11) + 0.5) * 0x1p-53;
        const double u2 = ((double)(splitmix64(state) >> 11) + 0.5) * 0x1p-53;
        const double r = sqrt(-2 * log(u1)), a = 2 * M_PI * u2;
        out[i] = r * cos(a);
        if (i + 1 < n) out[i + 1] = r * sin(a);
    }
}

void ntk_activation_apply(double *y, double *dy, const double *x, size_t n, ntk_activation act, double alpha) {
    for (size_t i = 0; i < n; ++i) {
        double f, d;
        ntk_activation_scalar(act, alpha, x[i], &f, &d);
        y[i] = f;
        if (dy) dy[i] = d;
    }
}

void ntk_activation_scalar(ntk_activation act, double alpha, double x, double *phi, double *dphi) {
    switch (act) {
    case NTK_ACT_IDENTITY: *phi = x; *dphi = 1; return;
    case NTK_ACT_RELU: *phi = x > 0 ? x : 0; *dphi = x > 0 ? 1 : 0; return;
    case NTK_ACT_LEAKY_RELU: *phi = x > 0 ? x : alpha * x; *dphi = x > 0 ? 1 : alpha; return;
    case NTK_ACT_ABS: *phi = fabs(x); *dphi = x > 0 ? 1 : (x < 0 ? -1 : 0); return;
    case NTK_ACT_ERF: *phi = erf(x); *dphi = M_2_SQRTPI * exp(-x * x); return;
    case NTK_ACT_TANH: { /* φ' = 1 − tanh² = 4e/(1 + e)² with e = e^{−2|x|}: no cancellation for large |x| */
        const double e = exp(-2 * fabs(x));
        *phi = tanh(x);
        *dphi = 4 * e / ((1 + e) * (1 + e));
        return;
    }
    case NTK_ACT_GELU: {
        const double cdf = 0.5 * erfc(-x * M_SQRT1_2), pdf = exp(-0.5 * x * x) * (M_2_SQRTPI * M_SQRT1_2 * 0.5);
        *phi = x * cdf;
        *dphi = cdf + x * pdf;
        return;
    }
    case NTK_ACT_SOFTPLUS: {
        *phi = x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
        *dphi = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
        return;
    }
    }
    *phi = NAN;
    *dphi = NAN;
}

/* T and Ṫ at one covariance [[d1, q], [q, d2]] (see ntk_kernel_quadrature_row). */
static void quadrature_expectations(double d1, double d2, double q, ntk_activation act, double alpha,
                                    const ntk_quadrature_rule *rule, double *t_out, double *tdot_out) {
    const double s1 = sqrt(fmax(d1, 0.0)), s2 = sqrt(fmax(d2, 0.0)), p = d1 * d2;
    double cc = p > 0 ? q / sqrt(p) : 0;
    cc = fmin(fmax(cc, -1.0), 1.0);
    const double ss = sqrt(fmax(1 - cc * cc, 0.0));
    /* Pieces of [0, π) between the kink directions: u = 0 at α = π/2, v = 0 at tan α = −c/s. */
    double cuts[4] = {0, M_PI / 2, fmod(atan2(-cc, ss) + 2 * M_PI, M_PI), M_PI};
    if (cuts[2] < cuts[1]) { const double tmp = cuts[1]; cuts[1] = cuts[2]; cuts[2] = tmp; }
    double t = 0, tdot = 0;
    for (int piece = 0; piece < 3; ++piece) {
        const double lo = cuts[piece], hi = cuts[piece + 1], half = 0.5 * (hi - lo);
        if (half <= 0) continue;
        for (size_t a = 0; a < rule->m_angle; ++a) {
            const double ang = lo + half * (rule->angle_x[a] + 1);
            const double ca = cos(ang), sa = sin(ang);
            const double eu = s1 * ca, ev = s2 * (cc * ca + ss * sa); /* (u, v) at r = 1 */
            double rt = 0, rd = 0;
            for (size_t k = 0; k < rule->m_radius; ++k) {
                const double r = sqrt(2 * rule->radius_x[k]);
                double fu, du, fv, dv, gu, hu, gv, hv;
                ntk_activation_scalar(act, alpha, r * eu, &fu, &du);
                ntk_activation_scalar(act, alpha, r * ev, &fv, &dv);
                ntk_activation_scalar(act, alpha, -r * eu, &gu, &hu);
                ntk_activation_scalar(act, alpha, -r * ev, &gv, &hv);
                rt += rule->radius_w[k] * (fu * fv + gu * gv);
                rd += rule->radius_w[k] * (du * dv + hu * hv);
            }
            t += half * rule->angle_w[a] * rt;
            tdot += half * rule->angle_w[a] * rd;
        }
    }
    *t_out = t / (2 * M_PI);
    *tdot_out = tdot / (2 * M_PI);
}

void ntk_kernel_quadrature_row(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c,
                               ntk_activation act, double alpha, const ntk_quadrature_rule *rule) {
    for (size_t j = 0; j < n; ++j) {
        double t, tdot;
        quadrature_expectations(d1, d2[j], nngp[j], act, alpha, rule, &t, &tdot);
        nngp[j] = c->w_var * t + c->b_var;
        if (ntk) ntk[j] = c->ntk_t_scale * t + c->ntk_shift + c->w_var * tdot * ntk[j];
    }
}

#define DEFINE_ACT_FORWARD(T, SFX)                                                                  \
    void ntk_act_forward_##SFX(T *z, T *dz, size_t n, ntk_activation act, double alpha) {           \
        switch (act) {                                                                              \
        case NTK_ACT_RELU: /* in blocks of 4096, so the second map reads z from L1 (one pass over z) */  \
            for (size_t i = 0; i < n; i += 4096) {                                                  \
                const size_t m = n - i < 4096 ? n - i : 4096;                                       \
                if (dz) ntk_vec_map_##SFX(dz + i, z + i, m, NTK_MAP_STEP);                          \
                ntk_vec_map_##SFX(z + i, z + i, m, NTK_MAP_RELU);                                   \
            }                                                                                       \
            return;                                                                                 \
        case NTK_ACT_ABS:                                                                           \
            if (dz) for (size_t i = 0; i < n; ++i) dz[i] = z[i] > 0 ? 1 : (z[i] < 0 ? -1 : 0);      \
            ntk_vec_map_##SFX(z, z, n, NTK_MAP_ABS);                                                \
            return;                                                                                 \
        case NTK_ACT_IDENTITY:                                                                      \
            if (dz) for (size_t i = 0; i < n; ++i) dz[i] = 1;                                       \
            return;                                                                                 \
        case NTK_ACT_LEAKY_RELU: /* φ' = α + (1 − α)·step(z), φ = z ⊙ φ' — all SIMD maps */          \
            if (dz) {                                                                               \
                ntk_vec_map_##SFX(dz, z, n, NTK_MAP_STEP);                                          \
                ntk_vec_affine_##SFX(dz, (T)(1 - alpha), (T)alpha, n);                              \
                ntk_vec_hadamard_##SFX(z, z, dz, n);                                                \
            } else {                                                                                \
                for (size_t i = 0; i < n; ++i) z[i] = z[i] > 0 ? z[i] : (T)alpha * z[i];           \
            }                                                                                       \
            return;                                                                                 \
        default:                                                                                    \
            ntk_vec_table_active()->SFX.smooth(z, dz, n, (int)act);                                 \
        }                                                                                           \
    }

DEFINE_ACT_FORWARD(double, f64)
DEFINE_ACT_FORWARD(float, f32)

/* The scalar reference of the `smooth` table entry: libm in double precision, rounded to T. */
#define DEFINE_SMOOTH_SCALAR(T, SFX)                                                                \
    void ntk_act_smooth_##SFX##_scalar(T *z, T *dz, size_t n, int act) {                            \
        for (size_t i = 0; i < n; ++i) {                                                            \
            double f, d;                                                                            \
            ntk_activation_scalar((ntk_activation)act, 0, (double)z[i], &f, &d);                    \
            z[i] = (T)f;                                                                            \
            if (dz) dz[i] = (T)d;                                                                   \
        }                                                                                           \
    }

DEFINE_SMOOTH_SCALAR(double, f64)
DEFINE_SMOOTH_SCALAR(float, f32)
