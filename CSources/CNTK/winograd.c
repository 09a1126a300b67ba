/* winograd.c — Winograd's F(2×2, 3×3) for 3×3, stride-1 convs: the tile transforms of winograd_body.h,
 * instantiated as the scalar reference and its AVX2 twin (chosen like the vector primitives: NTK_SIMD=scalar
 * forces the reference), and the filter transform U = G g Gᵀ with its transpose (scalar; once per pass).
 *
 * A conv with C_in → C_out channels then costs 16 GEMMs [tiles, C_in]·[C_in, C_out] per pass — 16 multiplies per
 * 2×2 outputs instead of 36, 2.25× fewer flops than im2col's [positions, 9·C_in]·[9·C_in, C_out]. */
#include "CNTK.h"

#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ---- the scalar reference (winograd_body.h undefines T and SFX after each instantiation) ---- */
#define VT T
#define EPR 1
#define LD(p) (*(p))
#define ST(p, v) (*(p) = (v))
#define ADD(a, b) ((a) + (b))
#define SUB(a, b) ((a) - (b))
#define ZEROV 0
#define T float
#define SFX f32_scalar
#include "winograd_body.h"
#define T double
#define SFX f64_scalar
#include "winograd_body.h"
#undef VT
#undef EPR
#undef LD
#undef ST
#undef ADD
#undef SUB
#undef ZEROV

/* ---- the AVX2 twins: 8 floats or 4 doubles per step ---- */
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define VT __m256
#define EPR 8
#define LD(p) _mm256_loadu_ps(p)
#define ST(p, v) _mm256_storeu_ps(p, v)
#define ADD _mm256_add_ps
#define SUB _mm256_sub_ps
#define ZEROV _mm256_setzero_ps()
#define T float
#define SFX f32_avx2
#include "winograd_body.h"
#undef VT
#undef EPR
#undef LD
#undef ST
#undef ADD
#undef SUB
#undef ZEROV
#define VT __m256d
#define EPR 4
#define LD(p) _mm256_loadu_pd(p)
#define ST(p, v) _mm256_storeu_pd(p, v)
#define ADD _mm256_add_pd
#define SUB _mm256_sub_pd
#define ZEROV _mm256_setzero_pd()
#define T double
#define SFX f64_avx2
#include "winograd_body.h"
#pragma clang attribute pop
#endif

/* ---- dispatch ---- */
static int use_avx2(void) {
#if defined(__x86_64__)
    return ntk_vec_table_active() != ntk_vec_table_scalar();
#else
    return 0;
#endif
}

#if defined(__x86_64__)
#define DISPATCH(S, name, args, call)                                                                          \
    void ntk_wino_##name##_##S args { if (use_avx2()) ntk_wino_##name##_##S##_avx2 call;                       \
                                      else ntk_wino_##name##_##S##_scalar call; }
#else
#define DISPATCH(S, name, args, call) void ntk_wino_##name##_##S args { ntk_wino_##name##_##S##_scalar call; }
#endif

#define DISPATCH_ALL(S, T)                                                                                     \
    DISPATCH(S, input, (const T *x, T *v, size_t ld, const T *zeros, const ntk_window *g), (x, v, ld, zeros, g)) \
    DISPATCH(S, output, (const T *m, size_t ld, T *z, size_t cout, const ntk_window *g, int accumulate),        \
             (m, ld, z, cout, g, accumulate))                                                                  \
    DISPATCH(S, output_adjoint, (const T *dy, T *dm, size_t ld, size_t cout, const T *zeros, const ntk_window *g), \
             (dy, dm, ld, cout, zeros, g))                                                                     \
    DISPATCH(S, input_adjoint, (const T *dv, size_t ld, T *dx, const ntk_window *g), (dv, ld, dx, g))

DISPATCH_ALL(f32, float)
DISPATCH_ALL(f64, double)

/* ---- the filter transform: U[4i + j][e] = (G g_e Gᵀ)[i][j] for the n = C_in·C_out filters g_e = W[·, ·, e] ---- */
#define FILTER(T, S)                                                                                           \
    void ntk_wino_filter_##S(const T *w, T *u, size_t n) {                                                    \
        for (size_t e = 0; e < n; ++e) {                                                                      \
            T g[3][3], t[4][3];                                                                               \
            for (int a = 0; a < 3; ++a)                                                                       \
                for (int b = 0; b < 3; ++b) g[a][b] = w[(size_t)(3 * a + b) * n + e];                         \
            for (int b = 0; b < 3; ++b) {                                                                     \
                t[0][b] = g[0][b];                                                                            \
                t[1][b] = (T)0.5 * (g[0][b] + g[1][b] + g[2][b]);                                             \
                t[2][b] = (T)0.5 * (g[0][b] - g[1][b] + g[2][b]);                                             \
                t[3][b] = g[2][b];                                                                            \
            }                                                                                                 \
            for (int i = 0; i < 4; ++i) {                                                                     \
                u[(size_t)(4 * i) * n + e] = t[i][0];                                                         \
                u[(size_t)(4 * i + 1) * n + e] = (T)0.5 * (t[i][0] + t[i][1] + t[i][2]);                      \
                u[(size_t)(4 * i + 2) * n + e] = (T)0.5 * (t[i][0] - t[i][1] + t[i][2]);                      \
                u[(size_t)(4 * i + 3) * n + e] = t[i][2];                                                     \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
    /* dW[a][b][e] += alpha·(Gᵀ dU_e G)[a][b]: the transpose of the filter transform. */                        \
    void ntk_wino_filter_adjoint_##S(const T *du, T *dw, size_t n, T alpha) {                                 \
        for (size_t e = 0; e < n; ++e) {                                                                      \
            T t[4][3];                                                                                        \
            for (int i = 0; i < 4; ++i) {                                                                     \
                const T u0 = du[(size_t)(4 * i) * n + e], u1 = du[(size_t)(4 * i + 1) * n + e];              \
                const T u2 = du[(size_t)(4 * i + 2) * n + e], u3 = du[(size_t)(4 * i + 3) * n + e];           \
                t[i][0] = u0 + (T)0.5 * (u1 + u2);                                                            \
                t[i][1] = (T)0.5 * (u1 - u2);                                                                 \
                t[i][2] = (T)0.5 * (u1 + u2) + u3;                                                            \
            }                                                                                                 \
            for (int b = 0; b < 3; ++b) {                                                                     \
                dw[(size_t)b * n + e] += alpha * (t[0][b] + (T)0.5 * (t[1][b] + t[2][b]));                    \
                dw[(size_t)(3 + b) * n + e] += alpha * ((T)0.5 * (t[1][b] - t[2][b]));                        \
                dw[(size_t)(6 + b) * n + e] += alpha * ((T)0.5 * (t[1][b] + t[2][b]) + t[3][b]);              \
            }                                                                                                 \
        }                                                                                                     \
    }

FILTER(float, f32)
FILTER(double, f64)
