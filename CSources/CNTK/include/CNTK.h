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
        void (*hadamard)(T *y, const T *a, const T *b, size_t n);   /* y ← a ⊙ b; y may alias */ \
        void (*map)(T *y, const T *x, size_t n, ntk_map_op op); /* y ← φ(x); y may alias x    */ \
        /* z ← φ(z), dz ← φ'(z) (dz may be NULL) for the smooth activations erf, tanh, gelu, softplus */ \
        void (*smooth)(T *z, T *dz, size_t n, int act);                                           \
    }

typedef NTK_VEC_OPS(double) ntk_vec_ops_f64;
typedef NTK_VEC_OPS(float) ntk_vec_ops_f32;

/* ---- Analytic (infinite-width) kernels: one layer of the NNGP/NTK recursion (PAPER §2.10) ----
 *
 * A row kernel updates one row of the [N1, N2] kernel matrices in place, for an activation φ followed by a
 * Dense layer. For entry j, with q = nngp[j] the covariance of the pre-activations at (x_i, x'_j) and
 * d1, d2[j] their variances, T = E[φ(u)φ(v)] and Ṫ = E[φ'(u)φ'(v)] over (u, v) ~ N(0, [[d1, q], [q, d2[j]]]):
 *
 *   nngp[j] ← w_var·T + b_var
 *   ntk[j]  ← ntk_t_scale·T + ntk_shift + w_var·Ṫ·ntk[j]          (skipped when ntk is NULL)
 *
 * NTK parameterization: ntk_t_scale = w_var, ntk_shift = b_var (so ntk ← nngp + w_var·Ṫ·ntk).
 * Standard parameterization (neural-tangents' Dense, s = 1): ntk_t_scale = fan_in, ntk_shift = 1 with a
 * bias, 0 without. */
typedef struct {
    double w_var, b_var;            /* σ_w², σ_b² of the Dense layer after the activation */
    double ntk_t_scale, ntk_shift;  /* see above */
    double a, b;                    /* arc-cosine family φ(x) = a·min(x,0) + b·max(x,0): relu (0,1), abs (−1,1) */
} ntk_layer_coef;

typedef struct {
    /* φ(x) = a·min(x,0) + b·max(x,0) (Cho & Saul): with s = √(d1·d2 − q²), θ = atan2(s, q),
     *   T = (b−a)²/(2π)·(s + (π−θ)·q) + a·b·q,   Ṫ = (b−a)²/(2π)·(π−θ) + a·b.
     * θ = π/2 when d1·d2 = 0 (a zero input without bias), as neural-tangents does. */
    void (*abrelu_row)(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);
    /* φ = erf (Williams): with r = (1+2·d1)(1+2·d2),
     *   T = (2/π)·asin(2q/√r),   Ṫ = (4/π)/√(r − 4q²). */
    void (*erf_row)(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);
    /* A linear map along one axis of a covariance (conv, avg_pool, flatten, global_avg_pool; see
     * ntk_cov_axis_map). */
    void (*axis_map)(double *out, const double *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                     const uint32_t *offsets, const uint32_t *src, const double *weights);
    /* The same on float32 state (float32 weights, float32 accumulation). */
    void (*axis_map_f32)(float *out, const float *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                         const uint32_t *offsets, const uint32_t *src, const float *weights);
} ntk_kernel_ops;

typedef struct {
    const char *name; /* "scalar", "avx2+fma" or "avx2+fma+avx512" */
    ntk_vec_ops_f64 f64;
    ntk_vec_ops_f32 f32;
    ntk_kernel_ops kern;
} ntk_vec_table;

/* The scalar table (always available), the AVX2+FMA table (NULL if the CPU lacks AVX2, FMA or OS YMM
 * support), the AVX2+FMA table with the arc-cosine kernel rows in AVX-512 (NULL without AVX-512), and the table
 * in use: the widest available, unless NTK_SIMD=scalar or NTK_SIMD=avx2 says otherwise. */
const ntk_vec_table *ntk_vec_table_scalar(void);
const ntk_vec_table *ntk_vec_table_avx2(void);
const ntk_vec_table *ntk_vec_table_avx512(void);
const ntk_vec_table *ntk_vec_table_active(void);

/* "scalar", "avx2+fma" or "avx2+fma+avx512": the path ntk_vec_* calls take. */
const char *ntk_simd_name(void);
/* CPU features found by cpuid/xgetbv (independent of NTK_SIMD). */
int ntk_cpu_has_avx2(void);
/* CPUs this process may run on (its affinity mask, e.g. as mpirun bound it); 0 if unknown. */
int ntk_cpus_allowed(void);
int ntk_cpu_has_fma(void);
/* AVX-512 F, DQ, CD, BW and VL with OS support (for OpenBLAS's kernels, and our AVX-512 kernel rows). */
int ntk_cpu_has_avx512(void);
/* AVX-512 with the BF16 extension (OpenBLAS's "Cooperlake" kernels need it). */
int ntk_cpu_has_avx512_bf16(void);

/* Keeps freed memory mapped for reuse (glibc: no mmap for large blocks, no heap trimming); 1 if applied.
 * Call once, before other threads allocate. ntk_freed_memory_kept() says whether it was applied. */
int ntk_keep_freed_memory(void);
int ntk_freed_memory_kept(void);

/* Dispatched entry points (the active table). */
double ntk_vec_dot_f64(const double *x, const double *y, size_t n);
double ntk_vec_sum_f64(const double *x, size_t n);
double ntk_vec_sumsq_f64(const double *x, size_t n);
void ntk_vec_axpy_f64(double *y, double a, const double *x, size_t n);
void ntk_vec_scale_f64(double *y, double a, size_t n);
void ntk_vec_affine_f64(double *y, double a, double b, size_t n);
void ntk_vec_hadamard_acc_f64(double *y, const double *a, const double *b, size_t n);
void ntk_vec_hadamard_f64(double *y, const double *a, const double *b, size_t n);
void ntk_vec_map_f64(double *y, const double *x, size_t n, ntk_map_op op);

double ntk_vec_dot_f32(const float *x, const float *y, size_t n);
double ntk_vec_sum_f32(const float *x, size_t n);
double ntk_vec_sumsq_f32(const float *x, size_t n);
void ntk_vec_axpy_f32(float *y, float a, const float *x, size_t n);
void ntk_vec_scale_f32(float *y, float a, size_t n);
void ntk_vec_affine_f32(float *y, float a, float b, size_t n);
void ntk_vec_hadamard_acc_f32(float *y, const float *a, const float *b, size_t n);
void ntk_vec_hadamard_f32(float *y, const float *a, const float *b, size_t n);
void ntk_vec_map_f32(float *y, const float *x, size_t n, ntk_map_op op);

/* Point-wise activations φ and their derivatives φ'. */
typedef enum {
    NTK_ACT_IDENTITY = 0,
    NTK_ACT_RELU = 1,       /* max(x, 0) */
    NTK_ACT_LEAKY_RELU = 2, /* x > 0 ? x : α·x */
    NTK_ACT_ABS = 3,        /* |x| */
    NTK_ACT_ERF = 4,        /* erf(x) */
    NTK_ACT_TANH = 5,       /* tanh(x) */
    NTK_ACT_GELU = 6,       /* x·Φ(x), Φ the standard normal CDF (exact, not the tanh approximation) */
    NTK_ACT_SOFTPLUS = 7,   /* log(1 + eˣ) */
} ntk_activation;

/* φ(x) and φ'(x) in double precision (the reference definition of each activation). */
void ntk_activation_scalar(ntk_activation act, double alpha, double x, double *phi, double *dphi);

/* Quadrature rules for ntk_kernel_quadrature_row: Gauss–Legendre on [−1, 1] (angle) and Gauss–Laguerre for
 * ∫₀^∞ e^{−t} g(t) dt (radius), computed by the caller (Golub–Welsch). */
typedef struct {
    const double *angle_x, *angle_w;   /* m_angle Gauss–Legendre nodes and weights on [−1, 1] */
    size_t m_angle;
    const double *radius_x, *radius_w; /* m_radius Gauss–Laguerre nodes and weights */
    size_t m_radius;
} ntk_quadrature_rule;

/* One row of the recursion (same contract as ntk_kernel_ops) for any activation, with T and Ṫ by quadrature
 * in polar coordinates. With z ~ N(0, I₂), u = √d1·z₁, v = √d2·(c·z₁ + √(1−c²)·z₂), c = q/√(d1·d2):
 *
 *   E[g(u, v)] = (1/2π) ∫₀^π dα ∫₀^∞ dt e^{−t} [g(r·e_α) + g(−r·e_α)],   r = √(2t),  e_α = (cos α, sin α)
 *
 * The symmetrised radial integrand is even in r, hence smooth in t, for any smooth φ; the angular range is
 * split where u = 0 or v = 0, so the piecewise-linear activations (relu, leaky relu, abs) are integrated
 * exactly in t and with exponential convergence in α. Cost per entry: 3·m_angle·m_radius·2 evaluations. */
void ntk_kernel_quadrature_row(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c,
                               ntk_activation act, double alpha, const ntk_quadrature_rule *rule);

/* ---- Covariances of images (CNN-GP / CNTK): linear maps of the spatial covariance ----
 *
 * A covariance of two images' pre-activations is held as an array [outer][n][inner] along each of its axes in
 * turn: the full form K[i, k, j, l, b] (rows i, k of positions p = (i, j) and q = (k, l), b the second image)
 * has the axes i·H + k (n = H²) and j·W + l (n = W²); the diagonal form K[i, j, b] (p = q) the axes i and j.
 * A conv, pooling, flatten or global average pool is, along each axis, a sparse linear map given in CSR form:
 *
 *   out[o', o, x] = Σ_{t ∈ [offsets[o], offsets[o+1])} weights[t] · in[o', src[t], x]
 *
 * for o' < outer, o < n_out, x < inner (out [outer, n_out, inner], in [outer, n_in, inner]; out ≠ in).
 * Conv (offset δ shared by both positions): o = (i', k') takes (i'·s + δ − pad, k'·s + δ − pad) with weight 1/kh;
 * avg_pool: every pair of window offsets (δ, δ') with 1/ph²; flatten: (i, i) with 1/H; global_avg_pool: every
 * (i, k) with 1/H². */
void ntk_cov_axis_map(double *out, const double *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                      const uint32_t *offsets, const uint32_t *src, const double *weights);

void ntk_cov_axis_map_f32(float *out, const float *in, size_t outer, size_t n_in, size_t n_out, size_t inner,
                          const uint32_t *offsets, const uint32_t *src, const float *weights);

/* A row of the recursion on float32 state: which float64 row kernel ntk_kernel_row_f32 runs. */
typedef enum {
    NTK_ROW_ABRELU = 0,     /* ntk_kernel_abrelu_row */
    NTK_ROW_ERF = 1,        /* ntk_kernel_erf_row */
    NTK_ROW_GELU = 2,       /* ntk_kernel_gelu_row */
    NTK_ROW_QUADRATURE = 3, /* ntk_kernel_quadrature_row with act, alpha, rule */
} ntk_row_kind;

/* The float64 row kernel `kind` on float32 arrays: chunks of 256 entries widened to float64, the (dispatched)
 * float64 row, rounded back — the transcendental part runs in float64, the state's traffic in float32. */
void ntk_kernel_row_f32(ntk_row_kind kind, float *nngp, float *ntk, const float *d2, double d1, size_t n,
                        const ntk_layer_coef *c, ntk_activation act, double alpha, const ntk_quadrature_rule *rule);

/* Dispatched analytic-kernel rows (see ntk_kernel_ops). */
void ntk_kernel_abrelu_row(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);
void ntk_kernel_erf_row(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);
/* φ = gelu, closed form (kernels_scalar.c); scalar on every path. */
void ntk_kernel_gelu_row(double *nngp, double *ntk, const double *d2, double d1, size_t n, const ntk_layer_coef *c);

/* a[j·n + i] = a[i·n + j] for j > i and i0 ≤ i < i1: copies rows [i0, i1) of the upper triangle of a
 * row-major [n, n] matrix onto the lower, in cache-sized tiles (bands of rows can run on different threads). */
void ntk_mirror_upper(double *a, size_t n, size_t i0, size_t i1);
void ntk_mirror_upper_f32(float *a, size_t n, size_t i0, size_t i1);
/* dst[j, i] = src[i, j] for i < rows, j < cols (row-major, leading dimensions ldd and lds; cache-tiled). */
void ntk_transpose(double *dst, size_t ldd, const double *src, size_t lds, size_t rows, size_t cols);
void ntk_transpose_f32(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols);

/* Fills out[0..n) with standard normal draws: SplitMix64 (state advanced in place) and Box–Muller, using both
 * values of each pair. The same state gives the same numbers on every machine and thread count. */
void ntk_fill_normal(double *out, size_t n, uint64_t *state);

/* y_i = φ(x_i) and, if dy is not NULL, dy_i = φ'(x_i), with the reference definitions (ntk_activation_scalar). */
void ntk_activation_apply(double *y, double *dy, const double *x, size_t n, ntk_activation act, double alpha);

/* The forward activation of a hidden layer in place: z ← φ(z), dz ← φ'(z) (dz may be NULL), dispatched:
 * relu, leaky relu and abs through the SIMD maps; erf, tanh, gelu and softplus through the table's `smooth` kernel — the
 * scalar reference evaluates them in double precision with libm; the AVX2 twin uses glibc's libmvec AVX2
 * variants (erf, erfc, exp, tanh, log1p; ≤ 4 ulp each, glibc ≥ 2.35) in the working precision. */
void ntk_act_forward_f64(double *z, double *dz, size_t n, ntk_activation act, double alpha);
void ntk_act_forward_f32(float *z, float *dz, size_t n, ntk_activation act, double alpha);

/* Conversions (trivial loops the compiler vectorises; no SIMD twin needed). */
void ntk_convert_u8_f64(double *y, const uint8_t *x, double scale, size_t n); /* y_i = scale·x_i */
void ntk_convert_f64_f32(float *y, const double *x, size_t n);
void ntk_convert_f32_f64(double *y, const float *x, size_t n);


/* Spatial layers (layers.c) on one NHWC sample [h, w, c] → [oh, ow, ·]: a window of kh × kw with strides
 * (sh, sw); pad_h, pad_w zeros before the first row / column (VALID 0; SAME ⌊P/2⌋ with
 * P = max((oh − 1)·s + k − n, 0)); circular: wrap around instead of zeros (CIRCULAR, the sizes of SAME). */
typedef struct {
    size_t h, w, c, kh, kw, sh, sw, pad_h, pad_w, oh, ow;
    int circular;
} ntk_window;

/* cols [oh·ow, kh·kw·c] row (i, j), column (a, b, ch) = x_padded[i·sh + a, j·sw + b, ch] — so conv is
 * cols · W with W [kh·kw·c_in, c_out] (HWIO flattened). col2im is its transpose: dx = colsᵀ scattered (overwrites). */
void ntk_im2col_f32(const float *x, float *cols, const ntk_window *g);
void ntk_im2col_f64(const double *x, double *cols, const ntk_window *g);
void ntk_col2im_f32(const float *cols, float *dx, const ntk_window *g);
void ntk_col2im_f64(const double *cols, double *dx, const ntk_window *g);
/* y [oh, ow, c] = window means of x (divisor kh·kw, or the count of real pixels with normalize_edges);
 * backward: dx [h, w, c] = the transpose applied to dy (overwrites). */
void ntk_avg_pool_forward_f32(const float *x, float *y, const ntk_window *g, int normalize_edges);
void ntk_avg_pool_forward_f64(const double *x, double *y, const ntk_window *g, int normalize_edges);
void ntk_avg_pool_backward_f32(const float *dy, float *dx, const ntk_window *g, int normalize_edges);
void ntk_avg_pool_backward_f64(const double *dy, double *dx, const ntk_window *g, int normalize_edges);
/* Layer norm over the c channels of each of `positions` positions: y = (x − μ)/√(eps + σ²), inv_std = 1/√(eps + σ²)
 * (y may alias x). Backward (also the tangent map: the Jacobian is symmetric):
 * dx = inv_std·(dy − mean(dy) − y·mean(dy ⊙ y)) (dx may alias dy). */
void ntk_layer_norm_forward_f32(float *y, float *inv_std, const float *x, size_t positions, size_t c, double eps);
void ntk_layer_norm_forward_f64(double *y, double *inv_std, const double *x, size_t positions, size_t c, double eps);
void ntk_layer_norm_backward_f32(float *dx, const float *dy, const float *y, const float *inv_std, size_t positions,
                                 size_t c);
void ntk_layer_norm_backward_f64(double *dx, const double *dy, const double *y, const double *inv_std, size_t positions,
                                 size_t c);

/* Winograd F(m×m, 3×3), m = 2 or 4, for a 3×3, stride-1 conv (winograd.c; scalar reference and AVX2 twin). With
 * n = m + 2: output tiles of m×m, th = ⌈oh/m⌉ × tw = ⌈ow/m⌉ per sample; the n² planes ξ of a transformed array are
 * `ld` elements apart and hold [tiles, channels] each. input: v = Bᵀ d B ([th·tw, c] per plane); output: z (+)=
 * Aᵀ m A cropped to [oh, ow, cout]; output_adjoint: dm = A dz Aᵀ; input_adjoint: dx = the transpose of input
 * applied to dv (overwrites). `zeros`: at least max(c, cout) zeros (padding). filter: u [n², count] = G g Gᵀ for
 * W HWIO [3, 3, count] (count = c_in·c_out); filter_adjoint: dw += alpha·Gᵀ du G. */
void ntk_wino_input_f32(int m, const float *x, float *v, size_t ld, const float *zeros, const ntk_window *g);
void ntk_wino_input_f64(int m, const double *x, double *v, size_t ld, const double *zeros, const ntk_window *g);
void ntk_wino_output_f32(int m, const float *mm, size_t ld, float *z, size_t cout, const ntk_window *g,
                         int accumulate);
void ntk_wino_output_f64(int m, const double *mm, size_t ld, double *z, size_t cout, const ntk_window *g,
                         int accumulate);
void ntk_wino_output_adjoint_f32(int m, const float *dy, float *dm, size_t ld, size_t cout, const float *zeros,
                                 const ntk_window *g);
void ntk_wino_output_adjoint_f64(int m, const double *dy, double *dm, size_t ld, size_t cout, const double *zeros,
                                 const ntk_window *g);
void ntk_wino_input_adjoint_f32(int m, const float *dv, size_t ld, float *dx, const ntk_window *g);
void ntk_wino_input_adjoint_f64(int m, const double *dv, size_t ld, double *dx, const ntk_window *g);
void ntk_wino_filter_f32(int m, const float *w, float *u, size_t count);
void ntk_wino_filter_f64(int m, const double *w, double *u, size_t count);
void ntk_wino_filter_adjoint_f32(int m, const float *du, float *dw, size_t count, float alpha);
void ntk_wino_filter_adjoint_f64(int m, const double *du, double *dw, size_t count, double alpha);

/* Products with a short inner dimension k (smallk.c; scalar reference and AVX2 twin), for convs with short patches:
 * forward z [m, n] (+)= alpha·a·w + beta·1·bᵀ (a [m, k], w [k, n], b [n] or NULL), one pass over z;
 * backward dw [k, n] += aᵀ·dz, db [n] += 1ᵀ·dz (db may be NULL), one pass over dz [m, n]. */
void ntk_small_k_forward_f32(const float *a, size_t m, size_t k, const float *w, size_t n, float alpha,
                             const float *b, float beta, float *z, int accumulate);
void ntk_small_k_forward_f64(const double *a, size_t m, size_t k, const double *w, size_t n, double alpha,
                             const double *b, double beta, double *z, int accumulate);
void ntk_small_k_backward_f32(const float *a, size_t m, size_t k, const float *dz, size_t n, float *dw, float *db);
void ntk_small_k_backward_f64(const double *a, size_t m, size_t k, const double *dz, size_t n, double *dw,
                              double *db);

/* SHA-256 compression of `blocks` whole 64-byte blocks into the state h (sha256.c): SHA-NI where the CPU has it
 * (NTK_SIMD=scalar: the reference), both exported for tests. */
void ntk_sha256_blocks(uint32_t h[8], const uint8_t *p, size_t blocks);
void ntk_sha256_blocks_scalar(uint32_t h[8], const uint8_t *p, size_t blocks);
void ntk_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t blocks);
int ntk_cpu_has_sha(void);

/* ---- Distributed runs: Open MPI + ScaLAPACK, opened at run time (scalapack.c) ----
 * ntk_dist_load opens libmpi and libscalapack-openmpi (NTK_MPI_LIB / NTK_SCALAPACK_LIB override the names); 0 on
 * success, else 1 with the reason in `error`. Nothing below may be called before it succeeds. Grids are row-major
 * BLACS contexts; descriptors are ScaLAPACK's 9 integers (source process 0, 0); matrices are the column-major local
 * arrays of a 2-D block-cyclic layout. The p* wrappers work on whole matrices (IA = JA = 1), uplo "L" (the lower
 * triangle is read), and return ScaLAPACK's INFO. The sums add an array over every process of the grid and leave
 * the result on all of them. pdsyevd's workspace comes from ntk_pdsyevd_workspace (a query, no allocation; lwork
 * −1 when it exceeds ScaLAPACK's 32-bit sizes). */
int ntk_dist_load(char *error, size_t error_size);
int ntk_dist_loaded(void);
void ntk_blacs_pinfo(int *rank, int *size);
int ntk_blacs_grid(int rows, int cols);
void ntk_blacs_gridinfo(int ctxt, int *rows, int *cols, int *row, int *col);
void ntk_blacs_barrier(int ctxt);
void ntk_blacs_dsum(int ctxt, double *a, size_t n);
void ntk_blacs_isum(int ctxt, int *a, size_t n);
void ntk_blacs_abort(int ctxt, int code);
void ntk_blacs_exit(void);
int ntk_pdpotrf(double *a, const int desca[9], int n);
int ntk_pdpotrs(double *b, const int descb[9], const double *a, const int desca[9], int n, int nrhs);
void ntk_pdgemm(char transa, char transb, int m, int n, int k, double alpha, const double *a, const int desca[9],
                const double *b, const int descb[9], double beta, double *c, const int descc[9]);
void ntk_pdsymm_lower(int m, int n, double alpha, const double *a, const int desca[9], const double *b,
                      const int descb[9], double beta, double *c, const int descc[9]);
void ntk_pdsyevd_workspace(int *lwork, int *liwork, double *w, double *a, const int desca[9], double *z,
                           const int descz[9], int n);
int ntk_pdsyevd(double *w, double *z, const int descz[9], double *a, const int desca[9], int n, double *work,
                int lwork, int *iwork, int liwork);

#ifdef __cplusplus
}
#endif
#endif
