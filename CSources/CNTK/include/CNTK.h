/* CNTK — the C core of ntk: vector primitives (and, as the project grows, layer passes and kernel maps).
 *
 * Rules for everything in this target:
 *   - pure computation: no file I/O, no printing, no exit/abort, no hidden allocation;
 *   - every exported symbol starts with `ntk_`;
 *   - outputs first, then inputs, then sizes (llm.c order); sizes are size_t;
 *   - arrays are contiguous and need no alignment (Swift arrays are not 32-byte aligned);
 *   - every SIMD function has a scalar twin in vec_scalar.c, which is its specification.
 *
 * Shape letters used in comments: n = vector length.
 *
 * SIMD dispatch (BLIS style): a table is filled with the scalar kernels first, then overwritten with the
 * AVX2+FMA kernels when the CPU supports them (cpuid + xgetbv). NTK_SIMD=scalar in the environment forces
 * the scalar table. The choice is made once, on first use, and reported by ntk_simd_name().
 */
#ifndef CNTK_H
#define CNTK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element-wise maps y = φ(x) available through ntk_vec_map_*. */
typedef enum {
    NTK_MAP_RELU = 0,   /* φ(x) = max(x, 0); NaN maps to 0                       */
    NTK_MAP_STEP = 1,   /* φ(x) = 1 if x > 0 else 0 (relu derivative); NaN → 0 */
    NTK_MAP_ABS = 2,    /* φ(x) = |x|                                            */
    NTK_MAP_SQUARE = 3, /* φ(x) = x²                                             */
} ntk_map_op;

/* One precision's primitives. Reductions accumulate in double whatever the element type. */
#define NTK_VEC_OPS(T)                                                                           \
    struct {                                                                                     \
        double (*dot)(const T *x, const T *y, size_t n);        /* Σ x_i y_i                  */ \
        double (*sum)(const T *x, size_t n);                    /* Σ x_i                      */ \
        double (*sumsq)(const T *x, size_t n);                  /* Σ x_i²                     */ \
        void (*axpy)(T *y, T a, const T *x, size_t n);          /* y ← y + a·x                */ \
        void (*scale)(T *y, T a, size_t n);                     /* y ← a·y                    */ \
        void (*affine)(T *y, T a, T b, size_t n);               /* y ← a·y + b                */ \
        void (*hadamard_acc)(T *y, const T *a, const T *b, size_t n); /* y ← y + a ⊙ b       */ \
        void (*map)(T *y, const T *x, size_t n, ntk_map_op op); /* y ← φ(x); y may alias x    */ \
    }

typedef NTK_VEC_OPS(double) ntk_vec_ops_f64;
typedef NTK_VEC_OPS(float) ntk_vec_ops_f32;

typedef struct {
    const char *name; /* "scalar" or "avx2+fma" */
    ntk_vec_ops_f64 f64;
    ntk_vec_ops_f32 f32;
} ntk_vec_table;

/* The scalar table (always available), the AVX2+FMA table (NULL if the CPU lacks AVX2, FMA or OS YMM
 * support), and the table in use (AVX2+FMA when available unless NTK_SIMD=scalar). */
const ntk_vec_table *ntk_vec_table_scalar(void);
const ntk_vec_table *ntk_vec_table_avx2(void);
const ntk_vec_table *ntk_vec_table_active(void);

/* "scalar" or "avx2+fma": the path ntk_vec_* calls take. */
const char *ntk_simd_name(void);
/* CPU features found by cpuid/xgetbv (independent of NTK_SIMD). */
int ntk_cpu_has_avx2(void);
int ntk_cpu_has_fma(void);

/* Dispatched entry points (the active table). */
double ntk_vec_dot_f64(const double *x, const double *y, size_t n);
double ntk_vec_sum_f64(const double *x, size_t n);
double ntk_vec_sumsq_f64(const double *x, size_t n);
void ntk_vec_axpy_f64(double *y, double a, const double *x, size_t n);
void ntk_vec_scale_f64(double *y, double a, size_t n);
void ntk_vec_affine_f64(double *y, double a, double b, size_t n);
void ntk_vec_hadamard_acc_f64(double *y, const double *a, const double *b, size_t n);
void ntk_vec_map_f64(double *y, const double *x, size_t n, ntk_map_op op);

double ntk_vec_dot_f32(const float *x, const float *y, size_t n);
double ntk_vec_sum_f32(const float *x, size_t n);
double ntk_vec_sumsq_f32(const float *x, size_t n);
void ntk_vec_axpy_f32(float *y, float a, const float *x, size_t n);
void ntk_vec_scale_f32(float *y, float a, size_t n);
void ntk_vec_affine_f32(float *y, float a, float b, size_t n);
void ntk_vec_hadamard_acc_f32(float *y, const float *a, const float *b, size_t n);
void ntk_vec_map_f32(float *y, const float *x, size_t n, ntk_map_op op);

/* Conversions (trivial loops the compiler vectorises; no SIMD twin needed). */
void ntk_convert_u8_f64(double *y, const uint8_t *x, double scale, size_t n); /* y_i = scale·x_i */
void ntk_convert_f64_f32(float *y, const double *x, size_t n);
void ntk_convert_f32_f64(double *y, const float *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
