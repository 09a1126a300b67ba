/* winograd_body.h — the tile transforms of Winograd's F(2×2, 3×3) for a 3×3, stride-1 conv (Lavin & Gray 2016),
 * written once and instantiated by winograd.c per precision and per instruction set (scalar reference and AVX2).
 *
 * The including file defines T, SFX (f32_scalar, f64_avx2, …), VT (vector type), EPR (elements per VT; 1 for the
 * scalar reference, whose VT is T), and the operations LD(p), ST(p, v), ADD, SUB, ZEROV. Each function runs its
 * channel loop EPR at a time and finishes with the scalar expressions (the same code with VT = T), so the AVX2
 * twin computes exactly what the reference does: the transforms only add and subtract.
 *
 * The body undefines T and SFX at its end (the ISA macros stay for the next precision).
 *
 * One sample per call. Output tiles of 2×2 (th = ⌈oh/2⌉ × tw = ⌈ow/2⌉, tile t = ti·tw + tj) read input tiles of
 * 4×4 at rows 2·ti − pad_h + a, columns 2·tj − pad_w + b (a, b ∈ 0..3; zero padding, or wrapped if circular).
 * The 16 transformed planes ξ = 4i + j are strided by ld: plane ξ of tile t, channel c is at p[ξ·ld + t·C + c].
 *
 *     V = Bᵀ d B      Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]     (input, 4×4 → 4×4)
 *     Y = Aᵀ M A      Aᵀ = [1 1 1 0; 0 1 −1 −1]                         (output, 4×4 → 2×2)
 *     U = G g Gᵀ      G  = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]                 (filter, 3×3 → 4×4; winograd.c)
 *
 * and y = conv(d, g) = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A per channel pair, summed over input channels by 16 GEMMs. The
 * backward pass applies the transposes: dM = A dY Aᵀ, dd = B dV Bᵀ (scattered back onto the overlapping tiles). */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, CAT(_, SFX))

/* Bᵀ·(d0, d1, d2, d3) and its transpose B·(e0, e1, e2, e3). */
#define BT4(OP_ADD, OP_SUB, d0, d1, d2, d3, o0, o1, o2, o3) \
    { o0 = OP_SUB(d0, d2); o1 = OP_ADD(d1, d2); o2 = OP_SUB(d2, d1); o3 = OP_SUB(d1, d3); }
#define B4(OP_ADD, OP_SUB, Z, e0, e1, e2, e3, o0, o1, o2, o3) \
    { o0 = e0; o1 = OP_ADD(OP_SUB(e1, e2), e3); o2 = OP_SUB(OP_ADD(e1, e2), e0); o3 = OP_SUB(Z, e3); }
/* Aᵀ·(m0, m1, m2, m3) and its transpose A·(y0, y1). */
#define AT4(OP_ADD, OP_SUB, m0, m1, m2, m3, o0, o1) \
    { o0 = OP_ADD(OP_ADD(m0, m1), m2); o1 = OP_SUB(OP_SUB(m1, m2), m3); }
#define A2(OP_ADD, OP_SUB, Z, y0, y1, o0, o1, o2, o3) \
    { o0 = y0; o1 = OP_ADD(y0, y1); o2 = OP_SUB(y0, y1); o3 = OP_SUB(Z, y1); }

static inline long FN(wino_source)(long p, long n, int circular) {
    if (circular) return ((p % n) + n) % n;
    return p >= 0 && p < n ? p : -1;
}

/* The 16 input pointers of tile (ti, tj), `zeros` (≥ C zeros) where the tile covers padding. */
static inline void FN(wino_tile_inputs)(const T *x, const T *zeros, const ntk_window *g, size_t ti, size_t tj,
                                        const T *p[16]) {
    for (int a = 0; a < 4; ++a) {
        long y = FN(wino_source)((long)(2 * ti + a) - (long)g->pad_h, (long)g->h, g->circular);
        for (int b = 0; b < 4; ++b) {
            long c = FN(wino_source)((long)(2 * tj + b) - (long)g->pad_w, (long)g->w, g->circular);
            p[4 * a + b] = y < 0 || c < 0 ? zeros : x + ((size_t)y * g->w + (size_t)c) * g->c;
        }
    }
}

/* V = Bᵀ d B on channels [c0, c0 + width) of one tile, in vectors of type VEC. */
#define INPUT_STEP(VEC, LOAD, STORE, OP_ADD, OP_SUB, c0)                                                     \
    {                                                                                                      \
        VEC d[16], t[16];                                                                                  \
        for (int k = 0; k < 16; ++k) d[k] = LOAD(p[k] + (c0));                                             \
        for (int b = 0; b < 4; ++b) BT4(OP_ADD, OP_SUB, d[b], d[4 + b], d[8 + b], d[12 + b],                \
                                        t[b], t[4 + b], t[8 + b], t[12 + b]);                              \
        for (int i = 0; i < 4; ++i) {                                                                      \
            VEC o0, o1, o2, o3;                                                                            \
            BT4(OP_ADD, OP_SUB, t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3], o0, o1, o2, o3);       \
            STORE(out + (size_t)(4 * i) * ld + (c0), o0);                                                  \
            STORE(out + (size_t)(4 * i + 1) * ld + (c0), o1);                                              \
            STORE(out + (size_t)(4 * i + 2) * ld + (c0), o2);                                              \
            STORE(out + (size_t)(4 * i + 3) * ld + (c0), o3);                                              \
        }                                                                                                  \
    }

#define S_LD(p) (*(p))
#define S_ST(p, v) (*(p) = (v))
#define S_ADD(a, b) ((a) + (b))
#define S_SUB(a, b) ((a) - (b))

void FN(ntk_wino_input)(const T *x, T *v, size_t ld, const T *zeros, const ntk_window *g) {
    const size_t C = g->c, th = (g->oh + 1) / 2, tw = (g->ow + 1) / 2;
    for (size_t ti = 0; ti < th; ++ti)
        for (size_t tj = 0; tj < tw; ++tj) {
            const T *p[16];
            FN(wino_tile_inputs)(x, zeros, g, ti, tj, p);
            T *out = v + (ti * tw + tj) * C;
            size_t c = 0;
            for (; c + EPR <= C; c += EPR) INPUT_STEP(VT, LD, ST, ADD, SUB, c)
            for (; c < C; ++c) INPUT_STEP(T, S_LD, S_ST, S_ADD, S_SUB, c)
        }
}

/* Y = Aᵀ M A on channels [c0, c0 + width): the 2×2 outputs, cropped to oh × ow, written or added. */
#define OUTPUT_STEP(VEC, LOAD, STORE, OP_ADD, OP_SUB, c0)                                                    \
    {                                                                                                      \
        VEC mm[16], s[8];                                                                                  \
        for (int k = 0; k < 16; ++k) mm[k] = LOAD(in + (size_t)k * ld + (c0));                             \
        for (int j = 0; j < 4; ++j) AT4(OP_ADD, OP_SUB, mm[j], mm[4 + j], mm[8 + j], mm[12 + j], s[j], s[4 + j]); \
        for (int r = 0; r < rows; ++r) {                                                                   \
            VEC y0, y1;                                                                                    \
            AT4(OP_ADD, OP_SUB, s[4 * r], s[4 * r + 1], s[4 * r + 2], s[4 * r + 3], y0, y1);               \
            T *dst = z + ((2 * ti + (size_t)r) * g->ow + 2 * tj) * cout + (c0);                            \
            if (accumulate) { y0 = OP_ADD(LOAD(dst), y0); if (cols > 1) y1 = OP_ADD(LOAD(dst + cout), y1); } \
            STORE(dst, y0);                                                                                \
            if (cols > 1) STORE(dst + cout, y1);                                                           \
        }                                                                                                  \
    }

void FN(ntk_wino_output)(const T *m, size_t ld, T *z, size_t cout, const ntk_window *g, int accumulate) {
    const size_t th = (g->oh + 1) / 2, tw = (g->ow + 1) / 2;
    for (size_t ti = 0; ti < th; ++ti)
        for (size_t tj = 0; tj < tw; ++tj) {
            const T *in = m + (ti * tw + tj) * cout;
            const int rows = 2 * ti + 1 < g->oh ? 2 : 1, cols = 2 * tj + 1 < g->ow ? 2 : 1;
            size_t c = 0;
            for (; c + EPR <= cout; c += EPR) OUTPUT_STEP(VT, LD, ST, ADD, SUB, c)
            for (; c < cout; ++c) OUTPUT_STEP(T, S_LD, S_ST, S_ADD, S_SUB, c)
        }
}

/* dM = A dY Aᵀ on channels [c0, c0 + width): dY's 2×2 block (zero where cropped) → 16 planes. */
#define OUTPUT_ADJOINT_STEP(VEC, LOAD, STORE, OP_ADD, OP_SUB, Z, c0)                                         \
    {                                                                                                      \
        VEC e[4], f[8];                                                                                    \
        for (int k = 0; k < 4; ++k) e[k] = LOAD(q[k] + (c0));                                              \
        for (int j = 0; j < 2; ++j) A2(OP_ADD, OP_SUB, Z, e[j], e[2 + j], f[j], f[2 + j], f[4 + j], f[6 + j]); \
        for (int i = 0; i < 4; ++i) {                                                                      \
            VEC o0, o1, o2, o3;                                                                            \
            A2(OP_ADD, OP_SUB, Z, f[2 * i], f[2 * i + 1], o0, o1, o2, o3);                                 \
            STORE(out + (size_t)(4 * i) * ld + (c0), o0);                                                  \
            STORE(out + (size_t)(4 * i + 1) * ld + (c0), o1);                                              \
            STORE(out + (size_t)(4 * i + 2) * ld + (c0), o2);                                              \
            STORE(out + (size_t)(4 * i + 3) * ld + (c0), o3);                                              \
        }                                                                                                  \
    }

void FN(ntk_wino_output_adjoint)(const T *dy, T *dm, size_t ld, size_t cout, const T *zeros, const ntk_window *g) {
    const size_t th = (g->oh + 1) / 2, tw = (g->ow + 1) / 2;
    const VT zv = ZEROV;
    const T zs = 0;
    for (size_t ti = 0; ti < th; ++ti)
        for (size_t tj = 0; tj < tw; ++tj) {
            const T *q[4];
            for (int r = 0; r < 2; ++r)
                for (int s = 0; s < 2; ++s) {
                    const size_t i = 2 * ti + (size_t)r, j = 2 * tj + (size_t)s;
                    q[2 * r + s] = i < g->oh && j < g->ow ? dy + (i * g->ow + j) * cout : zeros;
                }
            T *out = dm + (ti * tw + tj) * cout;
            size_t c = 0;
            for (; c + EPR <= cout; c += EPR) OUTPUT_ADJOINT_STEP(VT, LD, ST, ADD, SUB, zv, c)
            for (; c < cout; ++c) OUTPUT_ADJOINT_STEP(T, S_LD, S_ST, S_ADD, S_SUB, zs, c)
        }
}

/* dd = B dV Bᵀ on channels [c0, c0 + width), added onto the tile's 16 input positions (padding dropped). */
#define INPUT_ADJOINT_STEP(VEC, LOAD, STORE, OP_ADD, OP_SUB, Z, c0)                                          \
    {                                                                                                      \
        VEC e[16], t[16];                                                                                  \
        for (int k = 0; k < 16; ++k) e[k] = LOAD(in + (size_t)k * ld + (c0));                              \
        for (int j = 0; j < 4; ++j) B4(OP_ADD, OP_SUB, Z, e[j], e[4 + j], e[8 + j], e[12 + j],              \
                                       t[j], t[4 + j], t[8 + j], t[12 + j]);                               \
        for (int a = 0; a < 4; ++a) {                                                                      \
            VEC o[4];                                                                                      \
            B4(OP_ADD, OP_SUB, Z, t[4 * a], t[4 * a + 1], t[4 * a + 2], t[4 * a + 3], o[0], o[1], o[2], o[3]); \
            for (int b = 0; b < 4; ++b)                                                                    \
                if (p[4 * a + b]) STORE(p[4 * a + b] + (c0), OP_ADD(LOAD(p[4 * a + b] + (c0)), o[b]));      \
        }                                                                                                  \
    }

void FN(ntk_wino_input_adjoint)(const T *dv, size_t ld, T *dx, const ntk_window *g) {
    const size_t C = g->c, th = (g->oh + 1) / 2, tw = (g->ow + 1) / 2;
    const VT zv = ZEROV;
    const T zs = 0;
    memset(dx, 0, g->h * g->w * C * sizeof(T));
    for (size_t ti = 0; ti < th; ++ti)
        for (size_t tj = 0; tj < tw; ++tj) {
            T *p[16];
            for (int a = 0; a < 4; ++a) {
                long y = FN(wino_source)((long)(2 * ti + a) - (long)g->pad_h, (long)g->h, g->circular);
                for (int b = 0; b < 4; ++b) {
                    long c = FN(wino_source)((long)(2 * tj + b) - (long)g->pad_w, (long)g->w, g->circular);
                    p[4 * a + b] = y < 0 || c < 0 ? NULL : dx + ((size_t)y * g->w + (size_t)c) * C;
                }
            }
            const T *in = dv + (ti * tw + tj) * C;
            size_t c = 0;
            for (; c + EPR <= C; c += EPR) INPUT_ADJOINT_STEP(VT, LD, ST, ADD, SUB, zv, c)
            for (; c < C; ++c) INPUT_ADJOINT_STEP(T, S_LD, S_ST, S_ADD, S_SUB, zs, c)
        }
}

#undef INPUT_STEP
#undef OUTPUT_STEP
#undef OUTPUT_ADJOINT_STEP
#undef INPUT_ADJOINT_STEP
#undef S_LD
#undef S_ST
#undef S_ADD
#undef S_SUB
#undef BT4
#undef B4
#undef AT4
#undef A2
#undef T
#undef SFX
