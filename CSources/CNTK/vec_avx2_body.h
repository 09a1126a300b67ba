/* vec_avx2_body.h — the AVX2+FMA kernels, written once and instantiated per precision by vec_avx2.c.
 *
 * The including file defines:
 *   T, SFX            element type and name suffix (double/f64, float/f32)
 *   V, EPR            native vector type and elements per register (__m256d/4, __m256/8)
 *   LOADU, STOREU, SET1, ADD, MUL, FMADD, MAX, CMPGT, AND, ANDNOT, ZERO
 *   LOAD4D(p)         load 4 elements starting at p as an __m256d (reductions accumulate in double)
 *
 * Each kernel: a SIMD main loop over the largest multiple of its step, then a scalar tail that uses
 * exactly the expression of vec_scalar.c (ggml's "leftovers"). Unaligned loads and stores throughout. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define AVX2_FN __attribute__((target("avx2,fma")))

static AVX2_FN double CAT(hsum4_, SFX)(__m256d v) {
    __m128d lo = _mm256_castpd256_pd128(v), hi = _mm256_extractf128_pd(v, 1);
    lo = _mm_add_pd(lo, hi);
    return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

static AVX2_FN double CAT(dot_, SFX)(const T *x, const T *y, size_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_pd(LOAD4D(x + i), LOAD4D(y + i), s0);
        s1 = _mm256_fmadd_pd(LOAD4D(x + i + 4), LOAD4D(y + i + 4), s1);
        s2 = _mm256_fmadd_pd(LOAD4D(x + i + 8), LOAD4D(y + i + 8), s2);
        s3 = _mm256_fmadd_pd(LOAD4D(x + i + 12), LOAD4D(y + i + 12), s3);
    }
    for (; i + 4 <= n; i += 4) s0 = _mm256_fmadd_pd(LOAD4D(x + i), LOAD4D(y + i), s0);
    double s = CAT(hsum4_, SFX)(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
    for (; i < n; ++i) s += (double)x[i] * (double)y[i];
    return s;
}

static AVX2_FN double CAT(sum_, SFX)(const T *x, size_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_add_pd(LOAD4D(x + i), s0);
        s1 = _mm256_add_pd(LOAD4D(x + i + 4), s1);
        s2 = _mm256_add_pd(LOAD4D(x + i + 8), s2);
        s3 = _mm256_add_pd(LOAD4D(x + i + 12), s3);
    }
    for (; i + 4 <= n; i += 4) s0 = _mm256_add_pd(LOAD4D(x + i), s0);
    double s = CAT(hsum4_, SFX)(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
    for (; i < n; ++i) s += (double)x[i];
    return s;
}

static AVX2_FN double CAT(sumsq_, SFX)(const T *x, size_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256d a = LOAD4D(x + i), b = LOAD4D(x + i + 4), c = LOAD4D(x + i + 8), d = LOAD4D(x + i + 12);
        s0 = _mm256_fmadd_pd(a, a, s0);
        s1 = _mm256_fmadd_pd(b, b, s1);
        s2 = _mm256_fmadd_pd(c, c, s2);
        s3 = _mm256_fmadd_pd(d, d, s3);
    }
    for (; i + 4 <= n; i += 4) {
        __m256d a = LOAD4D(x + i);
        s0 = _mm256_fmadd_pd(a, a, s0);
    }
    double s = CAT(hsum4_, SFX)(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
    for (; i < n; ++i) s += (double)x[i] * (double)x[i];
    return s;
}

static AVX2_FN void CAT(axpy_, SFX)(T *y, T a, const T *x, size_t n) {
    const V va = SET1(a);
    size_t i = 0;
    for (; i + 2 * EPR <= n; i += 2 * EPR) {
        STOREU(y + i, FMADD(va, LOADU(x + i), LOADU(y + i)));
        STOREU(y + i + EPR, FMADD(va, LOADU(x + i + EPR), LOADU(y + i + EPR)));
    }
    for (; i + EPR <= n; i += EPR) STOREU(y + i, FMADD(va, LOADU(x + i), LOADU(y + i)));
    for (; i < n; ++i) y[i] += a * x[i];
}

static AVX2_FN void CAT(scale_, SFX)(T *y, T a, size_t n) {
    const V va = SET1(a);
    size_t i = 0;
    for (; i + EPR <= n; i += EPR) STOREU(y + i, MUL(va, LOADU(y + i)));
    for (; i < n; ++i) y[i] *= a;
}

static AVX2_FN void CAT(affine_, SFX)(T *y, T a, T b, size_t n) {
    const V va = SET1(a), vb = SET1(b);
    size_t i = 0;
    for (; i + EPR <= n; i += EPR) STOREU(y + i, FMADD(va, LOADU(y + i), vb));
    for (; i < n; ++i) y[i] = a * y[i] + b;
}

static AVX2_FN void CAT(hadamard_acc_, SFX)(T *y, const T *a, const T *b, size_t n) {
    size_t i = 0;
    for (; i + 2 * EPR <= n; i += 2 * EPR) {
        STOREU(y + i, FMADD(LOADU(a + i), LOADU(b + i), LOADU(y + i)));
        STOREU(y + i + EPR, FMADD(LOADU(a + i + EPR), LOADU(b + i + EPR), LOADU(y + i + EPR)));
    }
    for (; i + EPR <= n; i += EPR) STOREU(y + i, FMADD(LOADU(a + i), LOADU(b + i), LOADU(y + i)));
    for (; i < n; ++i) y[i] += a[i] * b[i];
}

static AVX2_FN void CAT(hadamard_, SFX)(T *y, const T *a, const T *b, size_t n) {
    size_t i = 0;
    for (; i + EPR <= n; i += EPR) STOREU(y + i, MUL(LOADU(a + i), LOADU(b + i)));
    for (; i < n; ++i) y[i] = a[i] * b[i];
}

static AVX2_FN void CAT(map_, SFX)(T *y, const T *x, size_t n, ntk_map_op op) {
    const V zero = ZERO(), one = SET1((T)1), sign = SET1((T)-0.0);
    size_t i = 0;
    switch (op) {
    case NTK_MAP_RELU: /* max(x, 0) returns the second operand (0) for NaN, like the scalar ternary */
        for (; i + EPR <= n; i += EPR) STOREU(y + i, MAX(LOADU(x + i), zero));
        break;
    case NTK_MAP_STEP: /* ordered compare: NaN > 0 is false → 0 */
        for (; i + EPR <= n; i += EPR) STOREU(y + i, AND(CMPGT(LOADU(x + i), zero), one));
        break;
    case NTK_MAP_ABS:
        for (; i + EPR <= n; i += EPR) STOREU(y + i, ANDNOT(sign, LOADU(x + i)));
        break;
    case NTK_MAP_SQUARE:
        for (; i + EPR <= n; i += EPR) {
            V v = LOADU(x + i);
            STOREU(y + i, MUL(v, v));
        }
        break;
    }
    for (; i < n; ++i) y[i] = NTK_MAP_SCALAR(T, op, x[i]);
}

#undef AVX2_FN
