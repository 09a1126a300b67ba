/* smallk.c — products with a short inner dimension k: the conv of an image network's first layer, whose patches are
 * short (3×3×1 = 9 on MNIST, 3×3×3 = 27 on CIFAR) and whose output is large. A GEMM does 9 multiply-adds per output
 * after a bias fill — three passes over z, memory-bound; these write z once, and the backward pass reads δ once for
 * both ∂W and ∂b. Scalar reference and AVX2 twin (NTK_SIMD=scalar forces the reference):
 *
 *     forward   z[i, j] (+)= alpha·Σ_p a[i, p]·w[p, j] + beta·b[j]       a [m, k], w [k, n], z [m, n], b [n] or NULL
 *     backward  dw[p, j] += Σ_i a[i, p]·dz[i, j]      db[j] += Σ_i dz[i, j]      dz [m, n], dw [k, n], db [n] or NULL
 *
 * Each output element is summed in the same order by both (over p, then the bias; over i), so the twin differs
 * from the reference only by its fused multiply-adds. */
#include "CNTK.h"
#include "vec_internal.h"

#include <stddef.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* The references, on columns [0, n) of row-major arrays with leading dimension ld (≥ n): the AVX2 twins call them
 * for their last n mod L columns. */
#define SCALAR_BODY(T)                                                                                         \
    static void small_k_forward_##T##_scalar(const T *a, size_t m, size_t k, const T *w, size_t n, size_t ld,  \
                                            T alpha, const T *b, T beta, T *z, int accumulate) {              \
        for (size_t i = 0; i < m; ++i)                                                                         \
            for (size_t j = 0; j < n; ++j) {                                                                   \
                T acc = 0;                                                                                     \
                for (size_t p = 0; p < k; ++p) acc += a[i * k + p] * w[p * ld + j];                            \
                T v = alpha * acc + (b ? beta * b[j] : (T)0);                                                  \
                z[i * ld + j] = accumulate ? z[i * ld + j] + v : v;                                            \
            }                                                                                                  \
    }                                                                                                          \
    static void small_k_backward_##T##_scalar(const T *a, size_t m, size_t k, const T *dz, size_t n,           \
                                             size_t ld, T *dw, T *db) {                                        \
        for (size_t j = 0; j < n; ++j) {                                                                       \
            for (size_t p = 0; p < k; ++p) {                                                                   \
                T acc = 0;                                                                                     \
                for (size_t i = 0; i < m; ++i) acc += a[i * k + p] * dz[i * ld + j];                           \
                dw[p * ld + j] += acc;                                                                         \
            }                                                                                                  \
            if (db) {                                                                                          \
                T acc = 0;                                                                                     \
                for (size_t i = 0; i < m; ++i) acc += dz[i * ld + j];                                          \
                db[j] += acc;                                                                                  \
            }                                                                                                  \
        }                                                                                                      \
    }

SCALAR_BODY(float)
SCALAR_BODY(double)

#if defined(__x86_64__)
#define AVX2_FN __attribute__((target("avx2,fma")))

/* The AVX2 twins, for float (8 lanes) and double (4 lanes). Forward: two rows of z at a time, 4 vectors of columns
 * each (8 independent accumulators), then one vector, then single columns. Backward: one vector of columns, up to
 * 12 rows of dw at a time (12 accumulators and Σ dz), over all i. */
#define AVX2_BODY(T, V, L, LOAD, STORE, SET1, ZERO, FMA, MUL, ADD)                                              \
    AVX2_FN static void small_k_forward_##T##_avx2(const T *a, size_t m, size_t k, const T *w, size_t n,        \
                                                  T alpha, const T *b, T beta, T *z, int accumulate) {        \
        const V va = SET1(alpha), vb = SET1(beta);                                                             \
        for (size_t i = 0; i < m; i += 2) {                                                                    \
            const int two = i + 1 < m;                                                                         \
            const T *a0 = a + i * k, *a1 = two ? a0 + k : a0;                                                  \
            T *z0 = z + i * n, *z1 = two ? z0 + n : z0;                                                        \
            size_t j = 0;                                                                                      \
            for (; j + 4 * L <= n; j += 4 * L) {                                                               \
                V c0[4], c1[4];                                                                                \
                for (int q = 0; q < 4; ++q) c0[q] = c1[q] = ZERO();                                            \
                for (size_t p = 0; p < k; ++p) {                                                               \
                    const V x0 = SET1(a0[p]), x1 = SET1(a1[p]);                                                \
                    for (int q = 0; q < 4; ++q) {                                                              \
                        const V wv = LOAD(w + p * n + j + (size_t)q * L);                                      \
                        c0[q] = FMA(x0, wv, c0[q]);                                                            \
                        c1[q] = FMA(x1, wv, c1[q]);                                                            \
                    }                                                                                          \
                }                                                                                              \
                for (int q = 0; q < 4; ++q) {                                                                  \
                    const size_t o = j + (size_t)q * L;                                                        \
                    V v0 = MUL(va, c0[q]), v1 = MUL(va, c1[q]);                                                \
                    if (b) { const V bv = MUL(vb, LOAD(b + o)); v0 = ADD(v0, bv); v1 = ADD(v1, bv); }          \
                    if (accumulate) { v0 = ADD(LOAD(z0 + o), v0); if (two) v1 = ADD(LOAD(z1 + o), v1); }        \
                    STORE(z0 + o, v0);                                                                         \
                    if (two) STORE(z1 + o, v1);                                                                \
                }                                                                                              \
            }                                                                                                  \
            for (; j + L <= n; j += L) {                                                                       \
                V c0 = ZERO(), c1 = ZERO();                                                                    \
                for (size_t p = 0; p < k; ++p) {                                                               \
                    const V wv = LOAD(w + p * n + j);                                                          \
                    c0 = FMA(SET1(a0[p]), wv, c0);                                                             \
                    c1 = FMA(SET1(a1[p]), wv, c1);                                                             \
                }                                                                                              \
                V v0 = MUL(va, c0), v1 = MUL(va, c1);                                                          \
                if (b) { const V bv = MUL(vb, LOAD(b + j)); v0 = ADD(v0, bv); v1 = ADD(v1, bv); }              \
                if (accumulate) { v0 = ADD(LOAD(z0 + j), v0); if (two) v1 = ADD(LOAD(z1 + j), v1); }            \
                STORE(z0 + j, v0);                                                                             \
                if (two) STORE(z1 + j, v1);                                                                    \
            }                                                                                                  \
            if (j < n) small_k_forward_##T##_scalar(a0, 1 + two, k, w + j, n - j, n, alpha, b ? b + j : NULL,    \
                                                   beta, z0 + j, accumulate);                                   \
        }                                                                                                      \
    }                                                                                                          \
    AVX2_FN static void small_k_backward_##T##_avx2(const T *a, size_t m, size_t k, const T *dz, size_t n,      \
                                                   T *dw, T *db) {                                             \
        size_t j = 0;                                                                                          \
        for (; j + L <= n; j += L)                                                                             \
            for (size_t p0 = 0; p0 < k; p0 += 12) {                                                            \
                const size_t pn = k - p0 < 12 ? k - p0 : 12;                                                   \
                const int bias = db && p0 == 0;                                                                \
                V acc[12], s = ZERO();                                                                         \
                for (size_t p = 0; p < pn; ++p) acc[p] = ZERO();                                               \
                for (size_t i = 0; i < m; ++i) {                                                               \
                    const V d = LOAD(dz + i * n + j);                                                          \
                    const T *ai = a + i * k + p0;                                                              \
                    for (size_t p = 0; p < pn; ++p) acc[p] = FMA(SET1(ai[p]), d, acc[p]);                      \
                    if (bias) s = ADD(s, d);                                                                   \
                }                                                                                              \
                for (size_t p = 0; p < pn; ++p) {                                                              \
                    T *o = dw + (p0 + p) * n + j;                                                              \
                    STORE(o, ADD(LOAD(o), acc[p]));                                                            \
                }                                                                                              \
                if (bias) STORE(db + j, ADD(LOAD(db + j), s));                                                 \
            }                                                                                                  \
        if (j < n) small_k_backward_##T##_scalar(a, m, k, dz + j, n - j, n, dw + j, db ? db + j : NULL);        \
    }

AVX2_BODY(float, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_fmadd_ps,
          _mm256_mul_ps, _mm256_add_ps)
AVX2_BODY(double, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, _mm256_setzero_pd, _mm256_fmadd_pd,
          _mm256_mul_pd, _mm256_add_pd)
#endif

#if defined(__x86_64__)
#define SIMD(call) if (ntk_uses_simd()) { call; return; }
#else
#define SIMD(call)
#endif

void ntk_small_k_forward_f32(const float *a, size_t m, size_t k, const float *w, size_t n, float alpha,
                             const float *b, float beta, float *z, int accumulate) {
    SIMD(small_k_forward_float_avx2(a, m, k, w, n, alpha, b, beta, z, accumulate))
    small_k_forward_float_scalar(a, m, k, w, n, n, alpha, b, beta, z, accumulate);
}
void ntk_small_k_forward_f64(const double *a, size_t m, size_t k, const double *w, size_t n, double alpha,
                             const double *b, double beta, double *z, int accumulate) {
    SIMD(small_k_forward_double_avx2(a, m, k, w, n, alpha, b, beta, z, accumulate))
    small_k_forward_double_scalar(a, m, k, w, n, n, alpha, b, beta, z, accumulate);
}
void ntk_small_k_backward_f32(const float *a, size_t m, size_t k, const float *dz, size_t n, float *dw, float *db) {
    SIMD(small_k_backward_float_avx2(a, m, k, dz, n, dw, db))
    small_k_backward_float_scalar(a, m, k, dz, n, n, dw, db);
}
void ntk_small_k_backward_f64(const double *a, size_t m, size_t k, const double *dz, size_t n, double *dw,
                              double *db) {
    SIMD(small_k_backward_double_avx2(a, m, k, dz, n, dw, db))
    small_k_backward_double_scalar(a, m, k, dz, n, n, dw, db);
}
