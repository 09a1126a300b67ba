/* layers_body.h — the spatial layers' loops (conv's im2col / col2im, average pooling, layer norm), written once
 * and instantiated per precision by layers.c. The including file defines T (element type) and SFX (f32 / f64).
 *
 * Every inner loop runs over a contiguous run of C channels and goes through the dispatched vector primitives
 * (ntk_vec_*_SFX: scalar reference or AVX2/FMA twin, NTK_SIMD=scalar forces the former), so these loops are the
 * same code on both paths and only the primitives differ — except the per-pixel copies and sums of im2col and
 * pooling, plain loops the compiler vectorises (a call per pixel of 64 channels cost more than its work). One sample
 * per call; the caller loops over the batch. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, CAT(_, SFX))

/* The input coordinate of output i, offset a along one axis (size n, stride s, padding lo); -1 when it falls in
 * zero padding. CIRCULAR wraps (np.pad(mode="wrap"), any number of times). */
static inline long FN(source)(long i, long a, long s, long lo, long n, int circular) {
    long p = i * s + a - lo;
    if (circular) return ((p % n) + n) % n;
    return p >= 0 && p < n ? p : -1;
}

/* A window inside the image (no padding reached) is copied by one gather through the patch's element offsets, when
 * the patch has at most IM2COL_GATHER_MAX elements; the windows at the border take the general loop. */
#define IM2COL_GATHER_MAX 2048
void FN(ntk_im2col)(const T *x, T *cols, const ntk_window *g) {
    const size_t c = g->c, row = g->kh * g->kw * c;
    long offsets[IM2COL_GATHER_MAX];
    const int gather = row <= IM2COL_GATHER_MAX;
    if (gather)
        for (size_t a = 0; a < g->kh; ++a)
            for (size_t b = 0; b < g->kw; ++b)
                for (size_t k = 0; k < c; ++k) offsets[(a * g->kw + b) * c + k] = (long)((a * g->w + b) * c + k);
    for (size_t i = 0; i < g->oh; ++i)
        for (size_t j = 0; j < g->ow; ++j) {
            T *out = cols + (i * g->ow + j) * row;
            const long y0 = (long)(i * g->sh) - (long)g->pad_h, x00 = (long)(j * g->sw) - (long)g->pad_w;
            if (gather && y0 >= 0 && y0 + (long)g->kh <= (long)g->h && x00 >= 0 && x00 + (long)g->kw <= (long)g->w) {
                const T *src = x + ((size_t)y0 * g->w + (size_t)x00) * c;
                for (size_t t = 0; t < row; ++t) out[t] = src[offsets[t]];
                continue;
            }
            for (size_t a = 0; a < g->kh; ++a) {
                long y = FN(source)((long)i, (long)a, (long)g->sh, (long)g->pad_h, (long)g->h, g->circular);
                for (size_t b = 0; b < g->kw; ++b, out += c) {
                    long x0 = FN(source)((long)j, (long)b, (long)g->sw, (long)g->pad_w, (long)g->w, g->circular);
                    if (y < 0 || x0 < 0) {
                        for (size_t k = 0; k < c; ++k) out[k] = 0;
                    } else {
                        const T *src = x + ((size_t)y * g->w + (size_t)x0) * c;
                        if (c < 16) for (size_t k = 0; k < c; ++k) out[k] = src[k]; /* a call per pixel costs more */
                        else memcpy(out, src, c * sizeof(T));
                    }
                }
            }
        }
}

void FN(ntk_col2im)(const T *cols, T *dx, const ntk_window *g) {
    const size_t c = g->c, row = g->kh * g->kw * c;
    memset(dx, 0, g->h * g->w * c * sizeof(T));
    for (size_t i = 0; i < g->oh; ++i)
        for (size_t j = 0; j < g->ow; ++j) {
            const T *in = cols + (i * g->ow + j) * row;
            for (size_t a = 0; a < g->kh; ++a) {
                long y = FN(source)((long)i, (long)a, (long)g->sh, (long)g->pad_h, (long)g->h, g->circular);
                for (size_t b = 0; b < g->kw; ++b, in += c) {
                    long x0 = FN(source)((long)j, (long)b, (long)g->sw, (long)g->pad_w, (long)g->w, g->circular);
                    if (y >= 0 && x0 >= 0) FN(ntk_vec_axpy)(dx + ((size_t)y * g->w + (size_t)x0) * c, 1, in, c);
                }
            }
        }
}

/* The divisor of output (i, j): kh·kw, or with normalize_edges the number of real (unpadded) pixels. */
static T FN(pool_scale)(const ntk_window *g, size_t i, size_t j, int normalize) {
    if (!normalize || g->circular) return (T)(1.0 / (double)(g->kh * g->kw));
    size_t count = 0;
    for (size_t a = 0; a < g->kh; ++a)
        for (size_t b = 0; b < g->kw; ++b)
            if (FN(source)((long)i, (long)a, (long)g->sh, (long)g->pad_h, (long)g->h, 0) >= 0 &&
                FN(source)((long)j, (long)b, (long)g->sw, (long)g->pad_w, (long)g->w, 0) >= 0) ++count;
    return (T)(1.0 / (double)(count ? count : 1));
}

void FN(ntk_avg_pool_forward)(const T *x, T *y, const ntk_window *g, int normalize_edges) {
    const size_t c = g->c;
    for (size_t i = 0; i < g->oh; ++i)
        for (size_t j = 0; j < g->ow; ++j) {
            T *out = y + (i * g->ow + j) * c;
            const T s = FN(pool_scale)(g, i, j, normalize_edges);
            for (size_t k = 0; k < c; ++k) out[k] = 0;
            for (size_t a = 0; a < g->kh; ++a) {
                long r = FN(source)((long)i, (long)a, (long)g->sh, (long)g->pad_h, (long)g->h, g->circular);
                if (r < 0) continue;
                for (size_t b = 0; b < g->kw; ++b) {
                    long q = FN(source)((long)j, (long)b, (long)g->sw, (long)g->pad_w, (long)g->w, g->circular);
                    if (q < 0) continue;
                    const T *src = x + ((size_t)r * g->w + (size_t)q) * c;
                    for (size_t k = 0; k < c; ++k) out[k] += s * src[k]; /* inline: a call per pixel cost more */
                }
            }
        }
}

void FN(ntk_avg_pool_backward)(const T *dy, T *dx, const ntk_window *g, int normalize_edges) {
    const size_t c = g->c;
    memset(dx, 0, g->h * g->w * c * sizeof(T));
    for (size_t i = 0; i < g->oh; ++i)
        for (size_t j = 0; j < g->ow; ++j) {
            const T *in = dy + (i * g->ow + j) * c;
            const T s = FN(pool_scale)(g, i, j, normalize_edges);
            for (size_t a = 0; a < g->kh; ++a) {
                long r = FN(source)((long)i, (long)a, (long)g->sh, (long)g->pad_h, (long)g->h, g->circular);
                if (r < 0) continue;
                for (size_t b = 0; b < g->kw; ++b) {
                    long q = FN(source)((long)j, (long)b, (long)g->sw, (long)g->pad_w, (long)g->w, g->circular);
                    if (q < 0) continue;
                    T *dst = dx + ((size_t)r * g->w + (size_t)q) * c;
                    for (size_t k = 0; k < c; ++k) dst[k] += s * in[k];
                }
            }
        }
}

void FN(ntk_layer_norm_forward)(T *y, T *inv_std, const T *x, size_t positions, size_t c, double eps) {
    for (size_t p = 0; p < positions; ++p) {
        const T *xp = x + p * c;
        T *yp = y + p * c;
        const double mean = FN(ntk_vec_sum)(xp, c) / (double)c;
        if (yp != xp) memcpy(yp, xp, c * sizeof(T));
        FN(ntk_vec_affine)(yp, 1, (T)(-mean), c);
        const double var = FN(ntk_vec_sumsq)(yp, c) / (double)c;
        const double s = 1.0 / sqrt(eps + var);
        FN(ntk_vec_scale)(yp, (T)s, c);
        inv_std[p] = (T)s;
    }
}

void FN(ntk_layer_norm_backward)(T *dx, const T *dy, const T *y, const T *inv_std, size_t positions, size_t c) {
    for (size_t p = 0; p < positions; ++p) {
        const T *g = dy + p * c, *yp = y + p * c;
        T *out = dx + p * c;
        const double mg = FN(ntk_vec_sum)(g, c) / (double)c, my = FN(ntk_vec_dot)(g, yp, c) / (double)c;
        if (out != g) memcpy(out, g, c * sizeof(T));
        FN(ntk_vec_affine)(out, 1, (T)(-mg), c);
        FN(ntk_vec_axpy)(out, (T)(-my), yp, c);
        FN(ntk_vec_scale)(out, inv_std[p], c);
    }
}

#undef IM2COL_GATHER_MAX
#undef FN
#undef CAT
#undef CAT_
