/* kernels_avx2.c — AVX2+FMA twins of kernels_scalar.c. atan2 is evaluated with Cephes' rational
 * approximation of atan (range reduction at 0.66, then t + t³·P(t²)/Q(t²)), accurate to ~1 ulp; asin(x) is
 * atan2(x, √((1−x)(1+x))). The tails use the scalar expressions. */
#include "CNTK.h"
#include "vec_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#define AVX2_FN __attribute__((target("avx2,fma")))

/* atan2(y, x) for y, x ≥ 0, in [0, π/2], with two divisions: let lo = min(y, x), hi = max(y, x); atan(lo/hi)
 * is reduced (Cephes) to t = lo/hi if lo ≤ 0.66·hi, else π/4 + atan(t) with t = (lo − hi)/(lo + hi), which
 * is one division either way; then atan(t) = t + t³·P(t²)/Q(t²) (~1 ulp); y > x gives π/2 minus that.
 * (0, 0) gives 0; callers blend their own value for that case. */
static AVX2_FN __m256d atan2_nonneg_pd(__m256d y, __m256d x) {
    const __m256d lo = _mm256_min_pd(y, x), hi = _mm256_max_pd(y, x);
    const __m256d mid = _mm256_cmp_pd(lo, _mm256_mul_pd(_mm256_set1_pd(0.66), hi), _CMP_GT_OQ);
    const __m256d num = _mm256_blendv_pd(lo, _mm256_sub_pd(lo, hi), mid);
    __m256d den = _mm256_blendv_pd(hi, _mm256_add_pd(lo, hi), mid);
    den = _mm256_blendv_pd(den, _mm256_set1_pd(1.0), _mm256_cmp_pd(den, _mm256_setzero_pd(), _CMP_EQ_OQ)); /* (0,0) */
    const __m256d t = _mm256_div_pd(num, den);
    const __m256d z = _mm256_mul_pd(t, t);
    __m256d p = _mm256_set1_pd(NTK_ATAN_P[0]), q = _mm256_add_pd(z, _mm256_set1_pd(NTK_ATAN_Q[0]));
    for (int i = 1; i < 5; ++i) {
        p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(NTK_ATAN_P[i]));
        q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(NTK_ATAN_Q[i]));
    }
    const __m256d r = _mm256_fmadd_pd(_mm256_mul_pd(t, z), _mm256_div_pd(p, q), t);
    /* π/4 = 0.785398163397448279 + 3.06161699786838301e-17 (the second part restores the last bits) */
    const __m256d base = _mm256_blendv_pd(_mm256_setzero_pd(), _mm256_set1_pd(M_PI_4), mid);
    const __m256d tail = _mm256_blendv_pd(_mm256_setzero_pd(), _mm256_set1_pd(3.061616997868383018e-17), mid);
    const __m256d a = _mm256_add_pd(base, _mm256_add_pd(r, tail));
    /* y > x: atan2 = π/2 − atan(x/y) */
    const __m256d swap = _mm256_cmp_pd(y, x, _CMP_GT_OQ);
    return _mm256_blendv_pd(a, _mm256_sub_pd(_mm256_set1_pd(M_PI_2), a), swap);
}

/* atan2(s, q) for s ≥ 0: angle in [0, π]. */
static AVX2_FN __m256d atan2_upper_pd(__m256d s, __m256d q) {
    const __m256d sign = _mm256_set1_pd(-0.0);
    const __m256d a = atan2_nonneg_pd(s, _mm256_andnot_pd(sign, q));
    const __m256d neg = _mm256_cmp_pd(q, _mm256_setzero_pd(), _CMP_LT_OQ);
    return _mm256_blendv_pd(a, _mm256_sub_pd(_mm256_set1_pd(M_PI), a), neg);
}

AVX2_FN void ntk_kernel_abrelu_row_avx2(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c) {
    const __m256d ba2 = _mm256_set1_pd((c->b - c->a) * (c->b - c->a) / (2 * M_PI)), ab = _mm256_set1_pd(c->a * c->b);
    const __m256d vd1 = _mm256_set1_pd(d1), pi = _mm256_set1_pd(M_PI), zero = _mm256_setzero_pd();
    const __m256d w = _mm256_set1_pd(c->w_var), bv = _mm256_set1_pd(c->b_var);
    const __m256d ts = _mm256_set1_pd(c->ntk_t_scale), sh = _mm256_set1_pd(c->ntk_shift);
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const __m256d q = _mm256_loadu_pd(nngp + j), p = _mm256_mul_pd(vd1, _mm256_loadu_pd(d2 + j));
        /* p − q·q without FMA, like the scalar code: exactly 0 when q² = p (parallel inputs, the diagonal) */
        const __m256d s = _mm256_sqrt_pd(_mm256_max_pd(_mm256_sub_pd(p, _mm256_mul_pd(q, q)), zero));
        const __m256d pos = _mm256_cmp_pd(p, zero, _CMP_GT_OQ);
        const __m256d theta = _mm256_blendv_pd(_mm256_set1_pd(M_PI / 2), atan2_upper_pd(s, q), pos);
        const __m256d pmt = _mm256_sub_pd(pi, theta);
        const __m256d t = _mm256_fmadd_pd(ba2, _mm256_fmadd_pd(pmt, q, s), _mm256_mul_pd(ab, q));
        const __m256d tdot = _mm256_fmadd_pd(ba2, pmt, ab);
        _mm256_storeu_pd(nngp + j, _mm256_fmadd_pd(w, t, bv));
        if (ntk) {
            const __m256d k = _mm256_loadu_pd(ntk + j);
            _mm256_storeu_pd(ntk + j, _mm256_fmadd_pd(_mm256_mul_pd(w, tdot), k, _mm256_fmadd_pd(ts, t, sh)));
        }
    }
    ntk_kernel_abrelu_row_scalar(nngp + j, ntk ? ntk + j : NULL, d2 + j, d1, n - j, c);
}

AVX2_FN void ntk_kernel_erf_row_avx2(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c) {
    const __m256d one = _mm256_set1_pd(1.0), two = _mm256_set1_pd(2.0), zero = _mm256_setzero_pd();
    const __m256d e1 = _mm256_set1_pd(1 + 2 * d1);
    const __m256d w = _mm256_set1_pd(c->w_var), bv = _mm256_set1_pd(c->b_var);
    const __m256d ts = _mm256_set1_pd(c->ntk_t_scale), sh = _mm256_set1_pd(c->ntk_shift);
    const __m256d sign = _mm256_set1_pd(-0.0);
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const __m256d q = _mm256_loadu_pd(nngp + j);
        const __m256d r = _mm256_mul_pd(e1, _mm256_fmadd_pd(two, _mm256_loadu_pd(d2 + j), one));
        __m256d x = _mm256_div_pd(_mm256_mul_pd(two, q), _mm256_sqrt_pd(r));
        x = _mm256_min_pd(_mm256_max_pd(x, _mm256_set1_pd(-1.0)), one);
        /* asin(x) = sign(x)·atan2(|x|, √((1−|x|)(1+|x|))) */
        const __m256d ax = _mm256_andnot_pd(sign, x);
        const __m256d cosv = _mm256_sqrt_pd(_mm256_mul_pd(_mm256_sub_pd(one, ax), _mm256_add_pd(one, ax)));
        const __m256d as = _mm256_or_pd(atan2_nonneg_pd(ax, cosv), _mm256_and_pd(sign, x));
        const __m256d t = _mm256_mul_pd(_mm256_set1_pd(2 / M_PI), as);
        const __m256d tdot = _mm256_div_pd(_mm256_set1_pd(4 / M_PI),
                                           _mm256_sqrt_pd(_mm256_max_pd(_mm256_fnmadd_pd(_mm256_mul_pd(two, two), _mm256_mul_pd(q, q), r), zero)));
        _mm256_storeu_pd(nngp + j, _mm256_fmadd_pd(w, t, bv));
        if (ntk) {
            const __m256d k = _mm256_loadu_pd(ntk + j);
            _mm256_storeu_pd(ntk + j, _mm256_fmadd_pd(_mm256_mul_pd(w, tdot), k, _mm256_fmadd_pd(ts, t, sh)));
        }
    }
    ntk_kernel_erf_row_scalar(nngp + j, ntk ? ntk + j : NULL, d2 + j, d1, n - j, c);
}


/* The axis map with the terms accumulated in registers, 4 vectors of x at a time (4 accumulators hide the FMA
 * latency: 16 doubles or 32 floats); the x tail and short inner sizes one vector at a time, then scalar. The order
 * of the terms per element is the scalar twin's (kernels_scalar.c), but FMA rounds once: the two agree to a few
 * ulp. One body for both element types: VT the vector type, W its lanes. */
#define NTK_AXIS_MAP_AVX2(NAME, T, VT, W, ZERO, SET1, LOAD, STORE, FMADD, FMA1)                                  \
    AVX2_FN void NAME(T *out, const T *in, size_t outer, size_t n_in, size_t n_out, size_t inner,                \
                      const uint32_t *offsets, const uint32_t *src, const T *weights) {                          \
        for (size_t a = 0; a < outer; ++a) {                                                                     \
            const T *ia = in + a * n_in * inner;                                                                 \
            T *oa = out + a * n_out * inner;                                                                     \
            for (size_t o = 0; o < n_out; ++o) {                                                                 \
                T *y = oa + o * inner;                                                                           \
                const uint32_t t0 = offsets[o], t1 = offsets[o + 1];                                             \
                size_t x = 0;                                                                                    \
                for (; x + 4 * W <= inner; x += 4 * W) {                                                         \
                    VT s0 = ZERO(), s1 = s0, s2 = s0, s3 = s0;                                                   \
                    for (uint32_t t = t0; t < t1; ++t) {                                                         \
                        const VT w = SET1(weights[t]);                                                           \
                        const T *p = ia + (size_t)src[t] * inner + x;                                            \
                        s0 = FMADD(w, LOAD(p), s0);                                                              \
                        s1 = FMADD(w, LOAD(p + W), s1);                                                          \
                        s2 = FMADD(w, LOAD(p + 2 * W), s2);                                                      \
                        s3 = FMADD(w, LOAD(p + 3 * W), s3);                                                      \
                    }                                                                                            \
                    STORE(y + x, s0);                                                                            \
                    STORE(y + x + W, s1);                                                                        \
                    STORE(y + x + 2 * W, s2);                                                                    \
                    STORE(y + x + 3 * W, s3);                                                                    \
                }                                                                                                \
                for (; x + W <= inner; x += W) {                                                                 \
                    VT s0 = ZERO();                                                                              \
                    for (uint32_t t = t0; t < t1; ++t)                                                           \
                        s0 = FMADD(SET1(weights[t]), LOAD(ia + (size_t)src[t] * inner + x), s0);                 \
                    STORE(y + x, s0);                                                                            \
                }                                                                                                \
                for (; x < inner; ++x) {                                                                         \
                    T s0 = 0;                                                                                    \
                    for (uint32_t t = t0; t < t1; ++t) s0 = FMA1(weights[t], ia[(size_t)src[t] * inner + x], s0); \
                    y[x] = s0;                                                                                   \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
    }
NTK_AXIS_MAP_AVX2(ntk_cov_axis_map_avx2, double, __m256d, 4, _mm256_setzero_pd, _mm256_set1_pd, _mm256_loadu_pd,
                  _mm256_storeu_pd, _mm256_fmadd_pd, fma)
NTK_AXIS_MAP_AVX2(ntk_cov_axis_map_f32_avx2, float, __m256, 8, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps,
                  _mm256_storeu_ps, _mm256_fmadd_ps, fmaf)

#endif
