/* vec_scalar.c — the reference vector primitives. Plain loops, no intrinsics: this file is the
 * specification that the AVX2 kernels in vec_avx2.c must reproduce (up to summation order). */
#include "CNTK.h"
#include "vec_internal.h"

#define DEFINE_SCALAR_OPS(T, SFX)                                                                   \
    static double dot_##SFX(const T *x, const T *y, size_t n) {                                     \
        double s = 0.0;                                                                             \
        for (size_t i = 0; i < n; ++i) s += (double)x[i] * (double)y[i];                            \
        return s;                                                                                   \
    }                                                                                               \
    static double sum_##SFX(const T *x, size_t n) {                                                 \
        double s = 0.0;                                                                             \
        for (size_t i = 0; i < n; ++i) s += (double)x[i];                                           \
        return s;                                                                                   \
    }                                                                                               \
    static double sumsq_##SFX(const T *x, size_t n) {                                               \
        double s = 0.0;                                                                             \
        for (size_t i = 0; i < n; ++i) s += (double)x[i] * (double)x[i];                            \
        return s;                                                                                   \
    }                                                                                               \
    static void axpy_##SFX(T *y, T a, const T *x, size_t n) {                                       \
        for (size_t i = 0; i < n; ++i) y[i] += a * x[i];                                            \
    }                                                                                               \
    static void scale_##SFX(T *y, T a, size_t n) {                                                  \
        for (size_t i = 0; i < n; ++i) y[i] *= a;                                                   \
    }                                                                                               \
    static void affine_##SFX(T *y, T a, T b, size_t n) {                                            \
        for (size_t i = 0; i < n; ++i) y[i] = a * y[i] + b;                                         \
    }                                                                                               \
    static void hadamard_acc_##SFX(T *y, const T *a, const T *b, size_t n) {                        \
        for (size_t i = 0; i < n; ++i) y[i] += a[i] * b[i];                                         \
    }                                                                                               \
    static void hadamard_##SFX(T *y, const T *a, const T *b, size_t n) {                            \
        for (size_t i = 0; i < n; ++i) y[i] = a[i] * b[i];                                          \
    }                                                                                               \
    static void map_##SFX(T *y, const T *x, size_t n, ntk_map_op op) {                              \
        for (size_t i = 0; i < n; ++i) y[i] = NTK_MAP_SCALAR(T, op, x[i]);                          \
    }

DEFINE_SCALAR_OPS(double, f64)
DEFINE_SCALAR_OPS(float, f32)

const ntk_vec_table ntk_vec_table_scalar_impl = {
    .name = "scalar",
    .f64 = {dot_f64, sum_f64, sumsq_f64, axpy_f64, scale_f64, affine_f64, hadamard_acc_f64, hadamard_f64, map_f64, ntk_act_smooth_f64_scalar},
    .f32 = {dot_f32, sum_f32, sumsq_f32, axpy_f32, scale_f32, affine_f32, hadamard_acc_f32, hadamard_f32, map_f32, ntk_act_smooth_f32_scalar},
    .kern = {ntk_kernel_abrelu_row_scalar, ntk_kernel_erf_row_scalar, ntk_cov_axis_map_scalar,
             ntk_cov_axis_map_f32_scalar},
};

void ntk_convert_u8_f64(double *y, const uint8_t *x, double scale, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] = scale * (double)x[i];
}
void ntk_convert_f64_f32(float *y, const double *x, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] = (float)x[i];
}
void ntk_convert_f32_f64(double *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] = (double)x[i];
}

#define DEFINE_MIRROR(NAME, T)                                                                       \
    void NAME(T *a, size_t n, size_t i0, size_t i1) {                                                \
        enum { TILE = 32 };                                                                          \
        if (i1 > n) i1 = n;                                                                          \
        for (size_t ib = i0; ib < i1; ib += TILE) {                                                  \
            for (size_t jb = ib; jb < n; jb += TILE) {                                               \
                const size_t ie = ib + TILE < i1 ? ib + TILE : i1, je = jb + TILE < n ? jb + TILE : n; \
                for (size_t i = ib; i < ie; ++i) {                                                   \
                    for (size_t j = (jb > i + 1 ? jb : i + 1); j < je; ++j) a[j * n + i] = a[i * n + j]; \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }

DEFINE_MIRROR(ntk_mirror_upper, double)
DEFINE_MIRROR(ntk_mirror_upper_f32, float)

#define DEFINE_TRANSPOSE(NAME, T)                                                                    \
    void NAME(T *dst, size_t ldd, const T *src, size_t lds, size_t rows, size_t cols) {              \
        enum { TILE = 32 };                                                                          \
        for (size_t ib = 0; ib < rows; ib += TILE) {                                                 \
            const size_t ie = ib + TILE < rows ? ib + TILE : rows;                                   \
            for (size_t jb = 0; jb < cols; jb += TILE) {                                             \
                const size_t je = jb + TILE < cols ? jb + TILE : cols;                               \
                for (size_t j = jb; j < je; ++j) {                                                   \
                    for (size_t i = ib; i < ie; ++i) dst[j * ldd + i] = src[i * lds + j];            \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }

DEFINE_TRANSPOSE(ntk_transpose, double)
DEFINE_TRANSPOSE(ntk_transpose_f32, float)
