/* winograd.c — Winograd's F(m×m, 3×3), m = 2 or 4, for 3×3, stride-1 convs: the tile transforms of winograd_body.h,
 * instantiated as the scalar reference and its AVX2 twin (chosen like the vector primitives: NTK_SIMD=scalar
 * forces the reference), and the filter transform U = G g Gᵀ with its transpose (scalar; once per pass).
 *
 * A conv with C_in → C_out channels then costs (m + 2)² GEMMs [tiles, C_in]·[C_in, C_out] per pass — (m + 2)²
 * multiplies per m×m outputs instead of 9·m²: 2.25× fewer flops than im2col's [positions, 9·C_in]·[9·C_in, C_out]
 * with m = 2, 4× fewer with m = 4. */
#include "CNTK.h"
#include "vec_internal.h"

#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Every body is included for m = 2 and m = 4 (WM) and both precisions; it undefines T and SFX after each. */

/* ---- the scalar reference ---- */
#define VT T
#define EPR 1
#define LD(p) (*(p))
#define ST(p, v) (*(p) = (v))
#define ADD(a, b) ((a) + (b))
#define SUB(a, b) ((a) - (b))
#define MULC(a, c) ((a) * (T)(c))
#define WM 2
#define T float
#define SFX f32_scalar
#include "winograd_body.h"
#define T double
#define SFX f64_scalar
#include "winograd_body.h"
#undef WM
#define WM 4
#define T float
#define SFX f32_scalar
#include "winograd_body.h"
#define T double
#define SFX f64_scalar
#include "winograd_body.h"
#undef WM
#undef VT
#undef EPR
#undef LD
#undef ST
#undef ADD
#undef SUB
#undef MULC

/* ---- the AVX2 twins: 8 floats or 4 doubles per step ---- */
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define VT __m256
#define EPR 8
#define LD(p) _mm256_loadu_ps(p)
#define ST(p, v) _mm256_storeu_ps(p, v)
#define ADD _mm256_add_ps
#define SUB _mm256_sub_ps
#define MULC(a, c) _mm256_mul_ps(a, _mm256_set1_ps((float)(c)))
#define T float
#define SFX f32_avx2
#define WM 2
#include "winograd_body.h"
#undef WM
#define T float
#define SFX f32_avx2
#define WM 4
#include "winograd_body.h"
#undef WM
#undef VT
#undef EPR
#undef LD
#undef ST
#undef ADD
#undef SUB
#undef MULC
#define VT __m256d
#define EPR 4
#define LD(p) _mm256_loadu_pd(p)
#define ST(p, v) _mm256_storeu_pd(p, v)
#define ADD _mm256_add_pd
#define SUB _mm256_sub_pd
#define MULC(a, c) _mm256_mul_pd(a, _mm256_set1_pd((double)(c)))
#define T double
#define SFX f64_avx2
#define WM 2
#include "winograd_body.h"
#undef WM
#define T double
#define SFX f64_avx2
#define WM 4
#include "winograd_body.h"
#undef WM
#pragma clang attribute pop
#endif

/* ---- dispatch: tile size m, then the SIMD path ---- */
#if defined(__x86_64__)
#define PICK(name, S, M, call)                                                                                 \
    (ntk_uses_simd() ? ntk_wino_##name##M##_##S##_avx2 call : ntk_wino_##name##M##_##S##_scalar call)
#else
#define PICK(name, S, M, call) ntk_wino_##name##M##_##S##_scalar call
#endif
#define DISPATCH(S, name, args, call)                                                                          \
    void ntk_wino_##name##_##S args {                                                                          \
        if (m == 4) PICK(name, S, 4, call);                                                                    \
        else PICK(name, S, 2, call);                                                                           \
    }

#define DISPATCH_ALL(S, T)                                                                                     \
    DISPATCH(S, input, (int m, const T *x, T *v, size_t ld, const T *zeros, const ntk_window *g),              \
             (x, v, ld, zeros, g))                                                                             \
    DISPATCH(S, output, (int m, const T *mm, size_t ld, T *z, size_t cout, const ntk_window *g, int accumulate), \
             (mm, ld, z, cout, g, accumulate))                                                                 \
    DISPATCH(S, output_adjoint,                                                                                \
             (int m, const T *dy, T *dm, size_t ld, size_t cout, const T *zeros, const ntk_window *g),         \
             (dy, dm, ld, cout, zeros, g))                                                                     \
    DISPATCH(S, input_adjoint, (int m, const T *dv, size_t ld, T *dx, const ntk_window *g), (dv, ld, dx, g))

DISPATCH_ALL(f32, float)
DISPATCH_ALL(f64, double)

/* ---- the filter transform: U[n·i + j][e] = (G g_e Gᵀ)[i][j] for the count filters g_e = W[·, ·, e] (scalar C,
 * vectorised by the compiler; once per pass) ---- */
static const double g_matrix_2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double g_matrix_4[6][3] = {{0.25, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                        {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                        {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

/* G [n, 3] of F(m×m, 3×3) as n·3 doubles, row-major. */
static const double *g_matrix(int m) { return m == 4 ? &g_matrix_4[0][0] : &g_matrix_2[0][0]; }

/* U_ξ = Σ_{a,b} G[i][a]·G[j][b]·W[a][b] for plane ξ = n·i + j, vectorised over the count filters (the coefficients
 * G[i][a]·G[j][b] rounded to T once; zero ones skipped). The adjoint adds alpha times the transpose:
 * dW[a][b] += Σ_ξ alpha·G[i][a]·G[j][b]·dU_ξ, planes in order. */
#define FILTER(T, S)                                                                                           \
    void ntk_wino_filter_##S(int m, const T *w, T *u, size_t count) {                                          \
        const int n = m + 2;                                                                                   \
        const double *G = g_matrix(m);                                                                         \
        for (int i = 0; i < n; ++i)                                                                            \
            for (int j = 0; j < n; ++j) {                                                                      \
                T *out = u + (size_t)(n * i + j) * count;                                                      \
                memset(out, 0, count * sizeof(T));                                                             \
                for (int q = 0; q < 9; ++q) {                                                                  \
                    const T c = (T)(G[3 * i + q / 3] * G[3 * j + q % 3]);                                      \
                    if (c == 0) continue;                                                                      \
                    const T *src = w + (size_t)q * count;                                                      \
                    for (size_t e = 0; e < count; ++e) out[e] += c * src[e];                                   \
                }                                                                                              \
            }                                                                                                  \
    }                                                                                                          \
    void ntk_wino_filter_adjoint_##S(int m, const T *du, T *dw, size_t count, T alpha) {                       \
        const int n = m + 2;                                                                                   \
        const double *G = g_matrix(m);                                                                         \
        for (int q = 0; q < 9; ++q) {                                                                          \
            T *out = dw + (size_t)q * count;                                                                   \
            for (int xi = 0; xi < n * n; ++xi) {                                                               \
                const T c = (T)((double)alpha * G[3 * (xi / n) + q / 3] * G[3 * (xi % n) + q % 3]);            \
                if (c == 0) continue;                                                                          \
                const T *src = du + (size_t)xi * count;                                                        \
                for (size_t e = 0; e < count; ++e) out[e] += c * src[e];                                       \
            }                                                                                                  \
        }                                                                                                      \
    }

FILTER(float, f32)
FILTER(double, f64)
