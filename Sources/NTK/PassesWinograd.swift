import Foundation

/// `NTK_CONV=im2col` runs every conv on im2col GEMMs (for comparisons); read once.
let winogradByEnvironment = ProcessInfo.processInfo.environment["NTK_CONV"] != "im2col"

/// Winograd's F(2×2, 3×3) for the 3×3, stride-1 convs of the passes (Lavin & Gray, "Fast Algorithms for
/// Convolutional Neural Networks", 2016): per chunk of samples, with V = Bᵀ d B the transformed input tiles, U = G g Gᵀ
/// the transformed filters and ξ = 0..<16 the tile planes (CNTK.h, `ntk_wino_*`),
///
///     forward   M_ξ = s_w·V_ξ·U_ξ        z = Aᵀ M A (+ s_b·b)        V_ξ [tiles, C_in], U_ξ [C_in, C_out]
///     backward  dM = A δ Aᵀ              ∂W += s_w·Gᵀ(Σ_chunks V_ξᵀ·dM_ξ)G      δ_h = B(s_w·dM_ξ·U_ξᵀ)Bᵀ
///
/// — 16 GEMMs per pass, 2.25× fewer flops than im2col's (16 multiplies per 2×2 outputs and channel pair instead of
/// 36) at the price of the transforms (adds only, O(tiles·C) per plane). The 16 GEMMs of a chunk run on our own
/// threads (one per core, OpenBLAS single-threaded inside) and so do the per-sample transforms; every sum is in a
/// fixed order, so the result does not depend on the thread count. In exact arithmetic it equals the im2col conv;
/// in floating point it differs by rounding (tested against it to 1e-13 in float64).
extension Passes {
    /// Whether conv window g runs on Winograd tiles: 3×3, stride 1, at least 8 input channels (below that the
    /// GEMMs' K = C_in is too short to pay for the transforms), unless `allowsWinograd` is off.
    func usesWinograd(_ g: Window) -> Bool {
        allowsWinograd && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.c >= 8
    }

    /// Elements per sample of the Winograd planes (16 · tiles · max(C_in, C_out)): V and dV in `cols`, M and dM in
    /// `cols2`.
    static func winogradPlanes(_ g: Window, _ cout: Int) -> Int { 16 * tiles(g) * max(g.c, cout) }

    /// GEMM flops per sample of one training step (forward, weight gradients, and the input gradients of every
    /// parameter layer that does not read x), as the passes execute them (`executed`: Winograd convs at 16 products
    /// per tile and channel pair) and as a direct conv counts them (`direct`: 2·kh·kw·C_in·C_out per output).
    public var trainingStepFlopsPerSample: (executed: Double, direct: Double) {
        var executed = 0.0
        var direct = 0.0
        for p in network.parameters {
            let node = network.nodes[p.node]
            let passes = node.input == 0 ? 2.0 : 3.0
            let d = 2 * Double(p.wCount) * Double(node.outShape.positions) * passes
            direct += d
            if case .conv(_, let g) = node.op, usesWinograd(g) {
                executed += 2 * 16 * Double(Self.tiles(g) * g.c * p.fanOut) * passes
            } else {
                executed += d
            }
        }
        return (executed, direct)
    }

    /// Samples per chunk for n samples: at most `chunk`, and equal chunks (256 → 128 + 128, not 167 + 89).
    func balancedChunk(_ n: Int) -> Int {
        let count = (n + chunk - 1) / max(chunk, 1)
        return (n + count - 1) / max(count, 1)
    }

    /// 2×2 output tiles per sample.
    static func tiles(_ g: Window) -> Int { ((g.oh + 1) / 2) * ((g.ow + 1) / 2) }

    /// Conv layer l's positions d, 2×2 tiles t per sample, channels in and out, and input elements per sample.
    private func sizes(_ l: Int, _ g: Window) -> (d: Int, t: Int, cin: Int, cout: Int, inCount: Int) {
        (g.oh * g.ow, Self.tiles(g), g.c, network.parameters[l].fanOut, g.h * g.w * g.c)
    }

    /// z (+)= conv(h, W) of layer l with W (and b, if `bias`) from `params`, on Winograd tiles.
    func winogradConv(
        _ l: Int, _ g: Window, params: UnsafePointer<T>, input: UnsafePointer<T>, samples n: Int,
        into z: UnsafeMutablePointer<T>, accumulate: Bool, bias: Bool = true
    ) {
        let p = network.parameters[l], (sw, sb) = scales[l], (d, t, cin, cout, inCount) = sizes(l, g)
        let u = winogradFilters
        T.winoFilter(params + p.w, u, cin * cout)
        var r0 = 0
        while r0 < n {
            let m = min(balancedChunk(n), n - r0)
            let rowsT = m * t
            let out = z + r0 * d * cout
            let v = cols
            let mm = cols2
            let zeros = winogradZeros
            OwnThreads.forEach(m) { _, s in
                T.winoInput(input + (r0 + s) * inCount, v + s * t * cin, rowsT * cin, zeros, g)
            }
            OwnThreads.forEach(16) { _, xi in
                T.gemm(
                    transA: false, transB: false, m: rowsT, n: cout, k: cin, alpha: sw, a: v + xi * rowsT * cin,
                    lda: cin, b: u + xi * cin * cout, ldb: cout, beta: 0, c: mm + xi * rowsT * cout, ldc: cout)
            }
            var add = accumulate
            if bias, let b = p.b {
                addBias(out, params + b, sb, rows: m * d, cols: cout, accumulate: accumulate)
                add = true
            }
            OwnThreads.forEach(m) { _, s in
                T.winoOutput(mm + s * t * cout, rowsT * cout, out + s * d * cout, cout, g, accumulate: add)
            }
            r0 += m
        }
    }

    /// The backward step of conv layer l for `rows` cotangent rows δ [rows, oh, ow, C_out]: grad += ∂W, ∂b (when
    /// `grad` is given: rows are the samples of `input`), dx = δ_h (when given).
    func winogradBackward(
        _ l: Int, _ g: Window, theta: UnsafePointer<T>, input: UnsafePointer<T>, rows: Int,
        dy: UnsafePointer<T>, grad: UnsafeMutablePointer<T>?, dx: UnsafeMutablePointer<T>?
    ) {
        let p = network.parameters[l], (sw, sb) = scales[l], (d, t, cin, cout, inCount) = sizes(l, g)
        let filters = cin * cout, u = winogradFilters, du = winogradFilterGradient, zeros = winogradZeros
        if dx != nil { T.winoFilter(theta + p.w, u, filters) }
        var r0 = 0
        while r0 < rows {
            let m = min(balancedChunk(rows), rows - r0)
            let rowsT = m * t
            let dyc = dy + r0 * d * cout
            let v = cols
            let dm = cols2
            OwnThreads.forEach(m) { _, s in
                T.winoOutputAdjoint(dyc + s * d * cout, dm + s * t * cout, rowsT * cout, cout, zeros, g)
            }
            if let grad {
                OwnThreads.forEach(m) { _, s in
                    T.winoInput(input + (r0 + s) * inCount, v + s * t * cin, rowsT * cin, zeros, g)
                }
                let first = r0 == 0
                OwnThreads.forEach(16) { _, xi in
                    T.gemm(
                        transA: true, transB: false, m: cin, n: cout, k: rowsT, alpha: 1, a: v + xi * rowsT * cin,
                        lda: cin, b: dm + xi * rowsT * cout, ldb: cout, beta: first ? 0 : 1, c: du + xi * filters,
                        ldc: cout)
                }
                if let b = p.b {
                    T.gemm(
                        transA: false, transB: false, m: 1, n: cout, k: m * d, alpha: sb, a: ones, lda: m * d,
                        b: dyc, ldb: cout, beta: 1, c: grad + b, ldc: cout)
                }
            }
            if let dx {
                OwnThreads.forEach(16) { _, xi in
                    T.gemm(
                        transA: false, transB: true, m: rowsT, n: cin, k: cout, alpha: sw, a: dm + xi * rowsT * cout,
                        lda: cout, b: u + xi * filters, ldb: cout, beta: 0, c: v + xi * rowsT * cin, ldc: cin)
                }
                OwnThreads.forEach(m) { _, s in
                    T.winoInputAdjoint(v + s * t * cin, rowsT * cin, dx + (r0 + s) * inCount, g)
                }
            }
            r0 += m
        }
        if let grad, rows > 0 { T.winoFilterAdjoint(du, grad + p.w, filters, sw) }
    }
}
