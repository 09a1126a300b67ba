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


/* The axis map with the terms accumulated in registers, 16 doubles of x at a time (4 accumulators hide the FMA
 * latency); the x tail and inner < 16 in 4-wide steps, then scalar. The order of the terms per element is the
 * scalar twin's, but FMA rounds once: the two agree to a few ulp. */
AVX2_FN void ntk_cov_axis_map_avx2(double *out, const double *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                                   const uint32_t *offsets, const uint32_t *src, const double *weights) {
    for (size_t a = 0; a < outer; ++a) {
        const double *ia = in + a * n_in * inner;
        double *oa = out + a * n_out * inner;
        for (size_t o = 0; o < n_out; ++o) {
            double *y = oa + o * inner;
            const uint32_t t0 = offsets[o], t1 = offsets[o + 1];
            size_t x = 0;
            for (; x + 16 <= inner; x += 16) {
                __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
                for (uint32_t t = t0; t < t1; ++t) {
                    const __m256d w = _mm256_set1_pd(weights[t]);
                    const double *p = ia + (size_t)src[t] * inner + x;
                    s0 = _mm256_fmadd_pd(w, _mm256_loadu_pd(p), s0);
                    s1 = _mm256_fmadd_pd(w, _mm256_loadu_pd(p + 4), s1);
                    s2 = _mm256_fmadd_pd(w, _mm256_loadu_pd(p + 8), s2);
                    s3 = _mm256_fmadd_pd(w, _mm256_loadu_pd(p + 12), s3);
                }
                _mm256_storeu_pd(y + x, s0);
                _mm256_storeu_pd(y + x + 4, s1);
                _mm256_storeu_pd(y + x + 8, s2);
                _mm256_storeu_pd(y + x + 12, s3);
            }
            for (; x + 4 <= inner; x += 4) {
                __m256d s0 = _mm256_setzero_pd();
                for (uint32_t t = t0; t < t1; ++t)
                    s0 = _mm256_fmadd_pd(_mm256_set1_pd(weights[t]), _mm256_loadu_pd(ia + (size_t)src[t] * inner + x),
                                         s0);
                _mm256_storeu_pd(y + x, s0);
            }
            for (; x < inner; ++x) {
                double s0 = 0;
                for (uint32_t t = t0; t < t1; ++t) s0 = fma(weights[t], ia[(size_t)src[t] * inner + x], s0);
                y[x] = s0;
            }
        }
    }
}

/* The float32 twin: 8 floats per register, 32 of x at a time in 4 accumulators (ntk_cov_axis_map_f32_scalar is the
 * reference; FMA rounds once, so they agree to a few float32 ulp). */
AVX2_FN void ntk_cov_axis_map_f32_avx2(float *out, const float *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                                       const uint32_t *offsets, const uint32_t *src, const float *weights) {
    for (size_t a = 0; a < outer; ++a) {
        const float *ia = in + a * n_in * inner;
        float *oa = out + a * n_out * inner;
        for (size_t o = 0; o < n_out; ++o) {
            float *y = oa + o * inner;
            const uint32_t t0 = offsets[o], t1 = offsets[o + 1];
            size_t x = 0;
            for (; x + 32 <= inner; x += 32) {
                __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
                for (uint32_t t = t0; t < t1; ++t) {
                    const __m256 w = _mm256_set1_ps(weights[t]);
                    const float *p = ia + (size_t)src[t] * inner + x;
                    s0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p), s0);
                    s1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p + 8), s1);
                    s2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p + 16), s2);
                    s3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p + 24), s3);
                }
                _mm256_storeu_ps(y + x, s0);
                _mm256_storeu_ps(y + x + 8, s1);
                _mm256_storeu_ps(y + x + 16, s2);
                _mm256_storeu_ps(y + x + 24, s3);
            }
            for (; x + 8 <= inner; x += 8) {
                __m256 s0 = _mm256_setzero_ps();
                for (uint32_t t = t0; t < t1; ++t)
                    s0 = _mm256_fmadd_ps(_mm256_set1_ps(weights[t]), _mm256_loadu_ps(ia + (size_t)src[t] * inner + x), s0);
                _mm256_storeu_ps(y + x, s0);
            }
            for (; x < inner; ++x) {
                float s0 = 0;
                for (uint32_t t = t0; t < t1; ++t) s0 = fmaf(weights[t], ia[(size_t)src[t] * inner + x], s0);
                y[x] = s0;
            }
        }
    }
}

#endif
