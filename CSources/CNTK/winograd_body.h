/* winograd_body.h — the tile transforms of Winograd's F(m×m, 3×3) for a 3×3, stride-1 conv (Lavin & Gray 2016),
 * written once and instantiated by winograd.c per tile size (WM = m = 2 or 4), per precision and per instruction set
 * (scalar reference and AVX2).
 *
 * The including file defines WM, T, SFX (f32_scalar, f64_avx2, …), VT (vector type), EPR (elements per VT; 1 for the
 * scalar reference, whose VT is T), and the operations LD(p), ST(p, v), ADD, SUB, MULC(v, c) (v times the constant
 * c). Each function runs its channel loop EPR at a time and finishes with the scalar expressions (the same code with
 * VT = T), so the AVX2 twin computes exactly what the reference does: the same adds, subtracts and constant
 * multiplies in the same order, none fused.
 *
 * The body undefines T and SFX at its end (the ISA macros and WM stay for the next instantiation).
 *
 * One sample per call. With n = m + 2: output tiles of m×m (th = ⌈oh/m⌉ × tw = ⌈ow/m⌉, tile t = ti·tw + tj) read
 * input tiles of n×n at rows m·ti − pad_h + a, columns m·tj − pad_w + b (a, b ∈ 0..<n; zero padding, or wrapped if
 * circular). The n² transformed planes ξ = n·i + j are strided by ld: plane ξ of tile t, channel c is at
 * p[ξ·ld + t·C + c].
 *
 *     V = Bᵀ d B   (input, n×n → n×n)      Y = Aᵀ M A   (output, n×n → m×m)      U = G g Gᵀ   (filter; winograd.c)
 *
 *     F(2×2, 3×3):  Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]      Aᵀ = [1 1 1 0; 0 1 −1 −1]
 *     F(4×4, 3×3):  Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1]
 *                   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]
 *
 * and y = conv(d, g) = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A per channel pair, summed over input channels by n² GEMMs. The
 * backward pass applies the transposes: dM = A dY Aᵀ, dd = B dV Bᵀ (scattered back onto the overlapping tiles).
 * The 1-D maps below read x[k·xs] and write o[k·os]; the 2-D ones apply them to the columns, then to the rows. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(CAT(name, WM), CAT(_, SFX))

#if WM == 2
#define WN 4
/* Bᵀ·x, its transpose B·e, Aᵀ·x and its transpose A·y. */
#define BT_1D(A, S, M, x, xs, o, os)                                                                               \
    { o[0] = S(x[0], x[2 * xs]); o[os] = A(x[xs], x[2 * xs]); o[2 * os] = S(x[2 * xs], x[xs]);                  \
      o[3 * os] = S(x[xs], x[3 * xs]); }
#define B_1D(A, S, M, e, es, o, os)                                                                                \
    { o[0] = e[0]; o[os] = A(S(e[es], e[2 * es]), e[3 * es]); o[2 * os] = S(A(e[es], e[2 * es]), e[0]);         \
      o[3 * os] = M(e[3 * es], -1); }
#define AT_1D(A, S, M, x, xs, o, os)                                                                               \
    { o[0] = A(A(x[0], x[xs]), x[2 * xs]); o[os] = S(S(x[xs], x[2 * xs]), x[3 * xs]); }
#define A_1D(A, S, M, y, ys, o, os)                                                                                \
    { o[0] = y[0]; o[os] = A(y[0], y[ys]); o[2 * os] = S(y[0], y[ys]); o[3 * os] = M(y[ys], -1); }
#elif WM == 4
#define WN 6
#define BT_1D(A, S, M, x, xs, o, os)                                                                               \
    { o[0] = A(S(M(x[0], 4), M(x[2 * xs], 5)), x[4 * xs]);                                                       \
      o[os] = S(A(x[3 * xs], x[4 * xs]), M(A(x[xs], x[2 * xs]), 4));                                             \
      o[2 * os] = A(S(x[4 * xs], x[3 * xs]), M(S(x[xs], x[2 * xs]), 4));                                         \
      o[3 * os] = A(S(x[4 * xs], x[2 * xs]), M(S(x[3 * xs], x[xs]), 2));                                         \
      o[4 * os] = A(S(x[4 * xs], x[2 * xs]), M(S(x[xs], x[3 * xs]), 2));                                         \
      o[5 * os] = A(S(M(x[xs], 4), M(x[3 * xs], 5)), x[5 * xs]); }
#define B_1D(A, S, M, e, es, o, os)                                                                                \
    { o[0] = M(e[0], 4);                                                                                         \
      o[os] = A(M(A(S(e[2 * es], e[es]), e[5 * es]), 4), M(S(e[4 * es], e[3 * es]), 2));                         \
      o[2 * os] = S(M(e[0], -5), A(M(A(e[es], e[2 * es]), 4), A(e[3 * es], e[4 * es])));                         \
      o[3 * os] = S(A(S(e[es], e[2 * es]), M(S(e[3 * es], e[4 * es]), 2)), M(e[5 * es], 5));                     \
      o[4 * os] = A(A(A(e[0], e[es]), A(e[2 * es], e[3 * es])), e[4 * es]);                                      \
      o[5 * os] = e[5 * es]; }
#define AT_1D(A, S, M, x, xs, o, os)                                                                               \
    { o[0] = A(A(x[0], A(x[xs], x[2 * xs])), A(x[3 * xs], x[4 * xs]));                                           \
      o[os] = A(S(x[xs], x[2 * xs]), M(S(x[3 * xs], x[4 * xs]), 2));                                             \
      o[2 * os] = A(A(x[xs], x[2 * xs]), M(A(x[3 * xs], x[4 * xs]), 4));                                         \
      o[3 * os] = A(A(S(x[xs], x[2 * xs]), M(S(x[3 * xs], x[4 * xs]), 8)), x[5 * xs]); }
#define A_1D(A, S, M, y, ys, o, os)                                                                                \
    { o[0] = y[0];                                                                                               \
      o[os] = A(A(y[0], y[2 * ys]), A(y[ys], y[3 * ys]));                                                        \
      o[2 * os] = S(A(y[0], y[2 * ys]), A(y[ys], y[3 * ys]));                                                    \
      o[3 * os] = A(A(y[0], M(y[2 * ys], 4)), A(M(y[ys], 2), M(y[3 * ys], 8)));                                  \
      o[4 * os] = S(A(y[0], M(y[2 * ys], 4)), A(M(y[ys], 2), M(y[3 * ys], 8)));                                  \
      o[5 * os] = y[3 * ys]; }
#else
#error "winograd_body.h: WM must be 2 or 4"
#endif

static inline long FN(wino_source)(long p, long n, int circular) {
    if (circular) return ((p % n) + n) % n;
    return p >= 0 && p < n ? p : -1;
}

/* The n² input positions of tile (ti, tj) as element offsets into x, or −1 where the tile covers padding. */
static inline void FN(wino_tile_offsets)(const ntk_window *g, size_t ti, size_t tj, long off[WN * WN]) {
    for (int a = 0; a < WN; ++a) {
        long y = FN(wino_source)((long)(WM * ti + a) - (long)g->pad_h, (long)g->h, g->circular);
        for (int b = 0; b < WN; ++b) {
            long c = FN(wino_source)((long)(WM * tj + b) - (long)g->pad_w, (long)g->w, g->circular);
            off[WN * a + b] = y < 0 || c < 0 ? -1 : (y * (long)g->w + c) * (long)g->c;
        }
    }
}

/* V = Bᵀ d B on channels [c0, c0 + width) of one tile, in vectors of type VEC. */
#define INPUT_STEP(VEC, LOAD, STORE, OP_ADD, OP_SUB, OP_MULC, c0)                                                  \
    {                                                                                                            \
        VEC d[WN * WN], t[WN * WN], o[WN];                                                                       \
        for (int k = 0; k < WN * WN; ++k) d[k] = LOAD(p[k] + (c0));                                              \
        for (int b = 0; b < WN; ++b) BT_1D(OP_ADD, OP_SUB, OP_MULC, (d + b), WN, (t + b), WN)                    \
        for (int i = 0; i < WN; ++i) {                                                                           \
            BT_1D(OP_ADD, OP_SUB, OP_MULC, (t + WN * i), 1, o, 1)                                                \
            for (int j = 0; j < WN; ++j) STORE(out + (size_t)(WN * i + j) * ld + (c0), o[j]);                    \
        }                                                                                                        \
    }

#define S_LD(p) (*(p))
#define S_ST(p, v) (*(p) = (v))
#define S_ADD(a, b) ((a) + (b))
#define S_SUB(a, b) ((a) - (b))
#define S_MULC(a, c) ((a) * (T)(c))

void FN(ntk_wino_input)(const T *x, T *v, size_t ld, const T *zeros, const ntk_window *g);
void FN(ntk_wino_input)(const T *x, T *v, size_t ld, const T *zeros, const ntk_window *g) {
    const size_t C = g->c, th = (g->oh + WM - 1) / WM, tw = (g->ow + WM - 1) / WM;
    for (size_t ti = 0; ti < th; ++ti)
        for (size_t tj = 0; tj < tw; ++tj) {
            long off[WN * WN];
            const T *p[WN * WN];
            FN(wino_tile_offsets)(g, ti, tj, off);
            for (int k = 0; k < WN * WN; ++k) p[k] = off[k] < 0 ? zeros : x + off[k];
            T *out = v + (ti * tw + tj) * C;
            size_t c = 0;
            for (; c + EPR <= C; c += EPR) INPUT_STEP(VT, LD, ST, ADD, SUB, MULC, c)
            for (; c < C; ++c) INPUT_STEP(T, S_LD, S_ST, S_ADD, S_SUB, S_MULC, c)
        }
}

/* Y = Aᵀ M A on channels [c0, c0 + width): the m×m outputs, cropped to oh × ow, written or added. */
#define OUTPUT_STEP(VEC, LOAD, STORE, OP_ADD, OP_SUB, OP_MULC, c0)                                                 \
    {                                                                                                            \
        VEC mm[WN * WN], s[WM * WN], y[WM];                                                                      \
        for (int k = 0; k < WN * WN; ++k) mm[k] = LOAD(in + (size_t)k * ld + (c0));                              \
        for (int j = 0; j < WN; ++j) AT_1D(OP_ADD, OP_SUB, OP_MULC, (mm + j), WN, (s + j), WN)                   \
        for (int r = 0; r < rows; ++r) {                                                                         \
            AT_1D(OP_ADD, OP_SUB, OP_MULC, (s + WN * r), 1, y, 1)                                                \
            T *dst = z + ((WM * ti + (size_t)r) * g->ow + WM * tj) * cout + (c0);                                \
            for (int q = 0; q < cols; ++q) {                                                                     \
                if (accumulate) y[q] = OP_ADD(LOAD(dst + (size_t)q * cout), y[q]);                               \
                STORE(dst + (size_t)q * cout, y[q]);                                                             \
            }                                                                                                    \
        }                                                                                                        \
    }

void FN(ntk_wino_output)(const T *m, size_t ld, T *z, size_t cout, const ntk_window *g, int accumulate);
void FN(ntk_wino_output)(const T *m, size_t ld, T *z, size_t cout, const ntk_window *g, int accumulate) {
    const size_t th = (g->oh + WM - 1) / WM, tw = (g->ow + WM - 1) / WM;
    for (size_t ti = 0; ti < th; ++ti)
        for (size_t tj = 0; tj < tw; ++tj) {
            const T *in = m + (ti * tw + tj) * cout;
            const int rows = (int)(g->oh - WM * ti < WM ? g->oh - WM * ti : WM);
            const int cols = (int)(g->ow - WM * tj < WM ? g->ow - WM * tj : WM);
            size_t c = 0;
            for (; c + EPR <= cout; c += EPR) OUTPUT_STEP(VT, LD, ST, ADD, SUB, MULC, c)
            for (; c < cout; ++c) OUTPUT_STEP(T, S_LD, S_ST, S_ADD, S_SUB, S_MULC, c)
        }
}

/* dM = A dY Aᵀ on channels [c0, c0 + width): dY's m×m block (zero where cropped) → n² planes. */
#define OUTPUT_ADJOINT_STEP(VEC, LOAD, STORE, OP_ADD, OP_SUB, OP_MULC, c0)                                         \
    {                                                                                                            \
        VEC e[WM * WM], f[WN * WM], o[WN];                                                                       \
        for (int k = 0; k < WM * WM; ++k) e[k] = LOAD(q[k] + (c0));                                              \
        for (int j = 0; j < WM; ++j) A_1D(OP_ADD, OP_SUB, OP_MULC, (e + j), WM, (f + j), WM)                     \
        for (int i = 0; i < WN; ++i) {                                                                           \
            A_1D(OP_ADD, OP_SUB, OP_MULC, (f + WM * i), 1, o, 1)                                                 \
            for (int j = 0; j < WN; ++j) STORE(out + (size_t)(WN * i + j) * ld + (c0), o[j]);                    \
        }                                                                                                        \
    }

void FN(ntk_wino_output_adjoint)(const T *dy, T *dm, size_t ld, size_t cout, const T *zeros, const ntk_window *g);
void FN(ntk_wino_output_adjoint)(const T *dy, T *dm, size_t ld, size_t cout, const T *zeros, const ntk_window *g) {
    const size_t th = (g->oh + WM - 1) / WM, tw = (g->ow + WM - 1) / WM;
    for (size_t ti = 0; ti < th; ++ti)
        for (size_t tj = 0; tj < tw; ++tj) {
            const T *q[WM * WM];
            for (int r = 0; r < WM; ++r)
                for (int s = 0; s < WM; ++s) {
                    const size_t i = WM * ti + (size_t)r, j = WM * tj + (size_t)s;
                    q[WM * r + s] = i < g->oh && j < g->ow ? dy + (i * g->ow + j) * cout : zeros;
                }
            T *out = dm + (ti * tw + tj) * cout;
            size_t c = 0;
            for (; c + EPR <= cout; c += EPR) OUTPUT_ADJOINT_STEP(VT, LD, ST, ADD, SUB, MULC, c)
            for (; c < cout; ++c) OUTPUT_ADJOINT_STEP(T, S_LD, S_ST, S_ADD, S_SUB, S_MULC, c)
        }
}

/* dd = B dV Bᵀ on channels [c0, c0 + width), added onto the tile's n² input positions (padding dropped). */
#define INPUT_ADJOINT_STEP(VEC, LOAD, STORE, OP_ADD, OP_SUB, OP_MULC, c0)                                          \
    {                                                                                                            \
        VEC e[WN * WN], t[WN * WN], o[WN];                                                                       \
        for (int k = 0; k < WN * WN; ++k) e[k] = LOAD(in + (size_t)k * ld + (c0));                               \
        for (int j = 0; j < WN; ++j) B_1D(OP_ADD, OP_SUB, OP_MULC, (e + j), WN, (t + j), WN)                     \
        for (int a = 0; a < WN; ++a) {                                                                           \
            B_1D(OP_ADD, OP_SUB, OP_MULC, (t + WN * a), 1, o, 1)                                                 \
            for (int b = 0; b < WN; ++b)                                                                         \
                if (off[WN * a + b] >= 0) {                                                                      \
                    T *dst = dx + off[WN * a + b] + (c0);                                                        \
                    STORE(dst, OP_ADD(LOAD(dst), o[b]));                                                         \
                }                                                                                                \
        }                                                                                                        \
    }

void FN(ntk_wino_input_adjoint)(const T *dv, size_t ld, T *dx, const ntk_window *g);
void FN(ntk_wino_input_adjoint)(const T *dv, size_t ld, T *dx, const ntk_window *g) {
    const size_t C = g->c, th = (g->oh + WM - 1) / WM, tw = (g->ow + WM - 1) / WM;
    memset(dx, 0, g->h * g->w * C * sizeof(T));
    for (size_t ti = 0; ti < th; ++ti)
        for (size_t tj = 0; tj < tw; ++tj) {
            long off[WN * WN];
            FN(wino_tile_offsets)(g, ti, tj, off);
            const T *in = dv + (ti * tw + tj) * C;
            size_t c = 0;
            for (; c + EPR <= C; c += EPR) INPUT_ADJOINT_STEP(VT, LD, ST, ADD, SUB, MULC, c)
            for (; c < C; ++c) INPUT_ADJOINT_STEP(T, S_LD, S_ST, S_ADD, S_SUB, S_MULC, c)
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
#undef S_MULC
#undef BT_1D
#undef B_1D
#undef AT_1D
#undef A_1D
#undef WN
#undef T
#undef SFX
