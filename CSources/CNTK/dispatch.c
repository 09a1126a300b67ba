/* dispatch.c — CPU feature detection and the choice of kernel table (BLIS's "reference first, then
 * overwrite"). The choice is made once (pthread_once) and never changes during a process. */
#include "CNTK.h"
#include "vec_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

static int g_has_avx2 = 0, g_has_fma = 0;

int ntk_cpu_has_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6) != 0xE6) return 0; /* XMM, YMM, opmask, ZMM state saved by the OS */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned need = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31); /* F, DQ, CD, BW, VL */
    return (b & need) == need;
}

int ntk_cpu_has_avx512_bf16(void) {
    unsigned a, b, c, d;
    if (!ntk_cpu_has_avx512() || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 5) & 1; /* CPUID.(EAX=7,ECX=1):EAX bit 5 = AVX512_BF16 */
}

static void detect_cpu(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    int ymm_enabled = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        ymm_enabled = (lo & 0x6) == 0x6; /* XMM and YMM state saved by the OS */
    }
    int avx2 = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) avx2 = (b >> 5) & 1;
    g_has_fma = fma && avx && ymm_enabled;
    g_has_avx2 = avx2 && avx && ymm_enabled;
}
#else
static int g_has_avx2 = 0, g_has_fma = 0;
static void detect_cpu(void) {}
int ntk_cpu_has_avx512(void) { return 0; }
int ntk_cpu_has_avx512_bf16(void) { return 0; }
#endif

static const ntk_vec_table *g_active = &ntk_vec_table_scalar_impl;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose_table(void) {
    detect_cpu();
    g_active = &ntk_vec_table_scalar_impl;
    const char *env = getenv("NTK_SIMD");
    const int forced_scalar = env != NULL && strcmp(env, "scalar") == 0;
#if defined(__x86_64__)
    const int forced_avx2 = env != NULL && strcmp(env, "avx2") == 0;
    if (!forced_scalar && g_has_avx2 && g_has_fma) g_active = &ntk_vec_table_avx2_impl;
    if (!forced_scalar && !forced_avx2 && g_has_avx2 && g_has_fma && ntk_cpu_has_avx512()) g_active = &ntk_vec_table_avx512_impl;
#else
    (void)forced_scalar;
#endif
}

static inline const ntk_vec_table *active(void) {
    pthread_once(&g_once, choose_table);
    return g_active;
}

const ntk_vec_table *ntk_vec_table_scalar(void) { return &ntk_vec_table_scalar_impl; }
const ntk_vec_table *ntk_vec_table_avx2(void) {
    pthread_once(&g_once, choose_table);
#if defined(__x86_64__)
    if (g_has_avx2 && g_has_fma) return &ntk_vec_table_avx2_impl;
#endif
    return NULL;
}
const ntk_vec_table *ntk_vec_table_avx512(void) {
    pthread_once(&g_once, choose_table);
#if defined(__x86_64__)
    if (g_has_avx2 && g_has_fma && ntk_cpu_has_avx512()) return &ntk_vec_table_avx512_impl;
#endif
    return NULL;
}
const ntk_vec_table *ntk_vec_table_active(void) { return active(); }
const char *ntk_simd_name(void) { return active()->name; }
int ntk_cpu_has_avx2(void) { pthread_once(&g_once, choose_table); return g_has_avx2; }
int ntk_cpu_has_fma(void) { pthread_once(&g_once, choose_table); return g_has_fma; }

/* ---- dispatched entry points ---- */
#define FORWARD(SFX, T)                                                                                   \
    double ntk_vec_dot_##SFX(const T *x, const T *y, size_t n) { return active()->SFX.dot(x, y, n); }    \
    double ntk_vec_sum_##SFX(const T *x, size_t n) { return active()->SFX.sum(x, n); }                   \
    double ntk_vec_sumsq_##SFX(const T *x, size_t n) { return active()->SFX.sumsq(x, n); }               \
    void ntk_vec_axpy_##SFX(T *y, T a, const T *x, size_t n) { active()->SFX.axpy(y, a, x, n); }         \
    void ntk_vec_scale_##SFX(T *y, T a, size_t n) { active()->SFX.scale(y, a, n); }                      \
    void ntk_vec_affine_##SFX(T *y, T a, T b, size_t n) { active()->SFX.affine(y, a, b, n); }            \
    void ntk_vec_hadamard_acc_##SFX(T *y, const T *a, const T *b, size_t n) {                            \
        active()->SFX.hadamard_acc(y, a, b, n);                                                           \
    }                                                                                                     \
    void ntk_vec_hadamard_##SFX(T *y, const T *a, const T *b, size_t n) { active()->SFX.hadamard(y, a, b, n); } \
    void ntk_vec_map_##SFX(T *y, const T *x, size_t n, ntk_map_op op) { active()->SFX.map(y, x, n, op); }

FORWARD(f64, double)
FORWARD(f32, float)

void ntk_kernel_abrelu_row(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c) {
    active()->kern.abrelu_row(nngp, ntk, d2, d1, n, c);
}
void ntk_kernel_erf_row(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c) {
    active()->kern.erf_row(nngp, ntk, d2, d1, n, c);
}
void ntk_cov_axis_map(double *out, const double *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                      const uint32_t *offsets, const uint32_t *src, const double *weights) {
    active()->kern.axis_map(out, in, outer, n_in, n_out, inner, offsets, src, weights);
}
void ntk_cov_axis_map_f32(float *out, const float *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                          const uint32_t *offsets, const uint32_t *src, const float *weights) {
    active()->kern.axis_map_f32(out, in, outer, n_in, n_out, inner, offsets, src, weights);
}

int ntk_cpus_allowed(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
#endif
    return 0;
}
