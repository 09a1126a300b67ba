/* activations_avx2.c — the AVX2 twin of the smooth activations (erf, tanh, gelu, softplus) and their
 * derivatives, in the working precision, built on glibc's libmvec AVX2 entry points (`_ZGVdN4v_*` for 4 doubles,
 * `_ZGVdN8v_*f` for 8 floats; glibc ≥ 2.35 documents ≤ 4 ulp for each). The scalar reference is
 * ntk_act_smooth_*_scalar in activations.c; tails use it too.
 *
 *   erf:      φ = erf(z),                         φ' = (2/√π)·e^{−z²}
 *   tanh:     φ = tanh(z),                        φ' = 4e/(1 + e)², e = e^{−2|z|}  (= 1 − φ², without cancellation)
 *   gelu:     Φ = erfc(−z/√2)/2, φ = z·Φ,         φ' = Φ + z·e^{−z²/2}/√(2π)
 *   softplus: e = e^{−|z|}, φ = max(z,0) + log1p(e), φ' = (z ≥ 0 ? 1 : e)/(1 + e) */
#include "CNTK.h"
#include "vec_internal.h"

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#include <math.h>

#define AVX2_FN __attribute__((target("avx2,fma")))

/* libmvec (AVX2 variants) */
AVX2_FN __m256d _ZGVdN4v_erf(__m256d);
AVX2_FN __m256d _ZGVdN4v_erfc(__m256d);
AVX2_FN __m256d _ZGVdN4v_exp(__m256d);
AVX2_FN __m256d _ZGVdN4v_tanh(__m256d);
AVX2_FN __m256d _ZGVdN4v_log1p(__m256d);
AVX2_FN __m256 _ZGVdN8v_erff(__m256);
AVX2_FN __m256 _ZGVdN8v_erfcf(__m256);
AVX2_FN __m256 _ZGVdN8v_expf(__m256);
AVX2_FN __m256 _ZGVdN8v_tanhf(__m256);
AVX2_FN __m256 _ZGVdN8v_log1pf(__m256);

/* One vector of φ and φ' for 4 doubles. */
static AVX2_FN void smooth_pd(__m256d x, int act, __m256d *f, __m256d *d) {
    const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd(), sign = _mm256_set1_pd(-0.0);
    switch (act) {
    case NTK_ACT_ERF:
        *f = _ZGVdN4v_erf(x);
        *d = _mm256_mul_pd(_mm256_set1_pd(M_2_SQRTPI), _ZGVdN4v_exp(_mm256_sub_pd(zero, _mm256_mul_pd(x, x))));
        return;
    case NTK_ACT_TANH:
        *f = _ZGVdN4v_tanh(x);
        { /* 4e/(1 + e)², e = e^{−2|x|} (1 − tanh² would cancel for large |x|) */
            const __m256d e = _ZGVdN4v_exp(_mm256_mul_pd(_mm256_set1_pd(-2.0), _mm256_andnot_pd(sign, x)));
            const __m256d q = _mm256_add_pd(one, e);
            *d = _mm256_div_pd(_mm256_mul_pd(_mm256_set1_pd(4.0), e), _mm256_mul_pd(q, q));
        }
        return;
    case NTK_ACT_GELU: {
        const __m256d cdf = _mm256_mul_pd(_mm256_set1_pd(0.5), _ZGVdN4v_erfc(_mm256_mul_pd(_mm256_set1_pd(-M_SQRT1_2), x)));
        const __m256d pdf = _mm256_mul_pd(_mm256_set1_pd(0.5 * M_2_SQRTPI * M_SQRT1_2),
                                          _ZGVdN4v_exp(_mm256_mul_pd(_mm256_set1_pd(-0.5), _mm256_mul_pd(x, x))));
        *f = _mm256_mul_pd(x, cdf);
        *d = _mm256_fmadd_pd(x, pdf, cdf);
        return;
    }
    default: { /* softplus */
        const __m256d e = _ZGVdN4v_exp(_mm256_sub_pd(zero, _mm256_andnot_pd(sign, x)));
        *f = _mm256_add_pd(_mm256_max_pd(x, zero), _ZGVdN4v_log1p(e));
        const __m256d num = _mm256_blendv_pd(e, one, _mm256_cmp_pd(x, zero, _CMP_GE_OQ));
        *d = _mm256_div_pd(num, _mm256_add_pd(one, e));
    }
    }
}

/* One vector of φ and φ' for 8 floats. */
static AVX2_FN void smooth_ps(__m256 x, int act, __m256 *f, __m256 *d) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
    switch (act) {
    case NTK_ACT_ERF:
        *f = _ZGVdN8v_erff(x);
        *d = _mm256_mul_ps(_mm256_set1_ps((float)M_2_SQRTPI), _ZGVdN8v_expf(_mm256_sub_ps(zero, _mm256_mul_ps(x, x))));
        return;
    case NTK_ACT_TANH:
        *f = _ZGVdN8v_tanhf(x);
        {
            const __m256 e = _ZGVdN8v_expf(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_andnot_ps(sign, x)));
            const __m256 q = _mm256_add_ps(one, e);
            *d = _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(4.0f), e), _mm256_mul_ps(q, q));
        }
        return;
    case NTK_ACT_GELU: {
        const __m256 cdf = _mm256_mul_ps(_mm256_set1_ps(0.5f), _ZGVdN8v_erfcf(_mm256_mul_ps(_mm256_set1_ps((float)-M_SQRT1_2), x)));
        const __m256 pdf = _mm256_mul_ps(_mm256_set1_ps((float)(0.5 * M_2_SQRTPI * M_SQRT1_2)),
                                         _ZGVdN8v_expf(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x))));
        *f = _mm256_mul_ps(x, cdf);
        *d = _mm256_fmadd_ps(x, pdf, cdf);
        return;
    }
    default: { /* softplus */
        const __m256 e = _ZGVdN8v_expf(_mm256_sub_ps(zero, _mm256_andnot_ps(sign, x)));
        *f = _mm256_add_ps(_mm256_max_ps(x, zero), _ZGVdN8v_log1pf(e));
        const __m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(x, zero, _CMP_GE_OQ));
        *d = _mm256_div_ps(num, _mm256_add_ps(one, e));
    }
    }
}

AVX2_FN void ntk_act_smooth_f64_avx2(double *z, double *dz, size_t n, int act) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d f, d;
        smooth_pd(_mm256_loadu_pd(z + i), act, &f, &d);
        _mm256_storeu_pd(z + i, f);
        if (dz) _mm256_storeu_pd(dz + i, d);
    }
    ntk_act_smooth_f64_scalar(z + i, dz ? dz + i : NULL, n - i, act);
}

AVX2_FN void ntk_act_smooth_f32_avx2(float *z, float *dz, size_t n, int act) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 f, d;
        smooth_ps(_mm256_loadu_ps(z + i), act, &f, &d);
        _mm256_storeu_ps(z + i, f);
        if (dz) _mm256_storeu_ps(dz + i, d);
    }
    ntk_act_smooth_f32_scalar(z + i, dz ? dz + i : NULL, n - i, act);
}

#else
/* No libmvec: the AVX2 table uses the scalar reference for the smooth activations. */
void ntk_act_smooth_f64_avx2(double *z, double *dz, size_t n, int act) { ntk_act_smooth_f64_scalar(z, dz, n, act); }
void ntk_act_smooth_f32_avx2(float *z, float *dz, size_t n, int act) { ntk_act_smooth_f32_scalar(z, dz, n, act); }
#endif
