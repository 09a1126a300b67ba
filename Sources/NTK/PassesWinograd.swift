import Foundation

/// `NTK_CONV=im2col` runs every conv on im2col GEMMs (no Winograd, no short-k kernels), `winograd2` / `winograd4`
/// fixes the Winograd tile size (for comparisons); read once.
let convByEnvironment = ProcessInfo.processInfo.environment["NTK_CONV"] ?? ""
let fastConvsByEnvironment = convByEnvironment != "im2col"

/// Winograd's F(m×m, 3×3), m = 2 or 4, for the 3×3, stride-1 convs of the passes (Lavin & Gray, "Fast Algorithms
/// for Convolutional Neural Networks", 2016): per chunk of samples, with V = Bᵀ d B the transformed input tiles,
/// U = G g Gᵀ the transformed filters and ξ = 0..<(m + 2)² the tile planes (CNTK.h, `ntk_wino_*`),
///
///     forward   M_ξ = s_w·V_ξ·U_ξ        z = Aᵀ M A (+ s_b·b)        V_ξ [tiles, C_in], U_ξ [C_in, C_out]
///     backward  dM = A δ Aᵀ              ∂W += s_w·Gᵀ(Σ_chunks V_ξᵀ·dM_ξ)G      δ_h = B(s_w·dM_ξ·U_ξᵀ)Bᵀ
///
/// — (m + 2)² GEMMs per pass: (m + 2)² multiplies per m×m outputs and channel pair instead of im2col's 9·m², 2.25×
/// fewer with m = 2 and 4× fewer with m = 4, at the price of the transforms (O(tiles·C) per plane). The GEMMs of a
/// chunk run on our own threads (one per core, OpenBLAS single-threaded inside) and so do the per-sample transforms;
/// every sum is in a fixed order, so the result does not depend on the thread count. In exact arithmetic it equals
/// the im2col conv; in floating point it differs by rounding (tested against it to 1e-12 in float64; in float32
/// F(4×4, 3×3) is off by about 1e-6 relative, F(2×2, 3×3) by about 1e-7).
extension Passes {
    /// Whether conv window g runs on Winograd tiles: 3×3, stride 1, at least 8 input channels (below that the
    /// GEMMs' K = C_in is too short to pay for the transforms), unless `allowsWinograd` is off.
    func usesWinograd(_ g: Window) -> Bool {
        allowsWinograd && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.c >= 8
    }

    /// The output tile size m of a Winograd conv: the one of 2 and 4 with the fewer GEMM multiplies per sample,
    /// tiles(m) · (m + 2)² (2 on a tie; F(4×4, 3×3) from 3×3 outputs up: 28×28 1,764 vs 3,136, 14×14 576 vs 784,
    /// 7×7 144 vs 256), unless `winogradTileSize` fixes it.
    func winogradTile(_ g: Window) -> Int {
        if let m = winogradTileSize { return m }
        return Self.tiles(g, 4) * 36 < Self.tiles(g, 2) * 16 ? 4 : 2
    }

    /// Transformed planes per tile, (m + 2)².
    func planes(_ g: Window) -> Int {
        let n = winogradTile(g) + 2
        return n * n
    }

    /// Elements per sample of the Winograd planes (planes · tiles · max(C_in, C_out)): V, dV and M, dM of one chunk.
    func winogradPlanes(_ g: Window, _ cout: Int) -> Int { planes(g) * tiles(g) * max(g.c, cout) }

    /// Samples per Winograd chunk of conv g: its V and M planes (planes · tiles · (C_in + C_out) elements per sample)
    /// near 4 MB, so a chunk's transforms and its GEMMs run in cache. A function of the shapes only.
    func winogradChunk(_ g: Window, _ cout: Int) -> Int {
        let perSample = planes(g) * tiles(g) * (g.c + cout) * MemoryLayout<T>.stride
        return max(1, min(maxBatch, (4 << 20) / perSample))
    }

    /// The samples are cut into this many groups of consecutive samples (fewer if there are fewer samples); each
    /// group runs its chunks in order on one worker with its own scratch and its own partial filter gradient, and
    /// the partials are summed in group order — a fixed order whatever the worker count.
    static var winogradGroups: Int { 4 }

    /// Group i's samples of n: [n·i/G, n·(i+1)/G).
    static func groupRange(_ i: Int, of count: Int, _ n: Int) -> Range<Int> { (n * i / count)..<(n * (i + 1) / count) }

    /// GEMM flops per sample of one training step (forward, weight gradients, and the input gradients of every
    /// parameter layer that does not read x), as the passes execute them (`executed`: Winograd convs at (m + 2)²
    /// products per tile and channel pair) and as a direct conv counts them (`direct`: 2·kh·kw·C_in·C_out per output).
    public var trainingStepFlopsPerSample: (executed: Double, direct: Double) {
        var executed = 0.0
        var direct = 0.0
        for p in network.parameters {
            let node = network.nodes[p.node]
            let passes = node.input == 0 ? 2.0 : 3.0
            let d = 2 * Double(p.wCount) * Double(node.outShape.positions) * passes
            direct += d
            if case .conv(_, let g) = node.op, usesWinograd(g) {
                executed += 2 * Double(planes(g) * tiles(g) * g.c * p.fanOut) * passes
            } else {
                executed += d
            }
        }
        return (executed, direct)
    }

    /// m×m output tiles per sample.
    static func tiles(_ g: Window, _ m: Int) -> Int { ((g.oh + m - 1) / m) * ((g.ow + m - 1) / m) }
    func tiles(_ g: Window) -> Int { Self.tiles(g, winogradTile(g)) }

    /// Conv layer l's positions d, tile size m, m×m tiles t per sample, planes, channels in and out, and input
    /// elements per sample.
    private func sizes(_ l: Int, _ g: Window)
        -> (d: Int, m: Int, t: Int, planes: Int, cin: Int, cout: Int, inCount: Int) {
        (g.oh * g.ow, winogradTile(g), tiles(g), planes(g), g.c, network.parameters[l].fanOut,
         g.h * g.w * g.c)
    }

    /// z (+)= conv(h, W) of layer l with W (and b, if `bias`) from `params`, on Winograd tiles: per chunk, V = Bᵀ d B,
    /// (m + 2)² GEMMs M_ξ = s_w·V_ξ·U_ξ, z = Aᵀ M A.
    func winogradConv(
        _ l: Int, _ g: Window, params: UnsafePointer<T>, input: UnsafePointer<T>, samples n: Int,
        into z: UnsafeMutablePointer<T>, accumulate: Bool, bias: Bool = true
    ) {
        let p = network.parameters[l], (sw, sb) = scales[l], (d, tm, t, planes, cin, cout, inCount) = sizes(l, g)
        // the lazy buffers are taken here, before the threads start (a lazy var must not be first read concurrently)
        let u = winogradFilters, zeros = winogradZeros, scratch = winogradScratch, chunk = winogradChunk(g, cout)
        _ = ones  // addBias reads it inside the threads
        T.winoFilter(tile: tm, params + p.w, u, cin * cout)
        let groups = min(Self.winogradGroups, n)
        OwnThreads.forEach(groups) { _, i in
            let (v, mm) = scratch[i], range = Self.groupRange(i, of: groups, n)
            for r0 in stride(from: range.lowerBound, to: range.upperBound, by: chunk) {
                let m = min(chunk, range.upperBound - r0), rowsT = m * t, out = z + r0 * d * cout
                for s in 0..<m {
                    T.winoInput(tile: tm, input + (r0 + s) * inCount, v + s * t * cin, rowsT * cin, zeros, g)
                }
                for xi in 0..<planes {
                    T.blasGemm(
                        transA: false, transB: false, m: rowsT, n: cout, k: cin, alpha: sw, a: v + xi * rowsT * cin,
                        lda: cin, b: u + xi * cin * cout, ldb: cout, beta: 0, c: mm + xi * rowsT * cout, ldc: cout)
                }
                var add = accumulate
                if bias, let b = p.b {
                    addBias(out, params + b, sb, rows: m * d, cols: cout, accumulate: accumulate)
                    add = true
                }
                for s in 0..<m {
                    T.winoOutput(
                        tile: tm, mm + s * t * cout, rowsT * cout, out + s * d * cout, cout, g, accumulate: add)
                }
            }
        }
    }

    /// The backward step of conv layer l for `rows` cotangent rows δ [rows, oh, ow, C_out]: grad += ∂W, ∂b (when
    /// `grad` is given: rows are the samples of `input`), dx = δ_h (when given). Per chunk: dM = A δ Aᵀ; for ∂W,
    /// V = Bᵀ d B and the group's dU_ξ += V_ξᵀ·dM_ξ; for δ_h, dV_ξ = s_w·dM_ξ·U_ξᵀ and δ_h = B dV Bᵀ.
    func winogradBackward(
        _ l: Int, _ g: Window, theta: UnsafePointer<T>, input: UnsafePointer<T>, rows: Int,
        dy: UnsafePointer<T>, grad: UnsafeMutablePointer<T>?, dx: UnsafeMutablePointer<T>?
    ) {
        guard rows > 0 else { return }
        let p = network.parameters[l], (sw, sb) = scales[l], (d, tm, t, planes, cin, cout, inCount) = sizes(l, g)
        let filters = cin * cout, u = winogradFilters, zeros = winogradZeros, chunk = winogradChunk(g, cout)
        let partial = planes * filters + cout, partials = winogradFilterGradients  // per group: dU, then Σ δ (bias)
        let scratch = winogradScratch, ones = self.ones  // taken before the threads start (lazy)
        if dx != nil { T.winoFilter(tile: tm, theta + p.w, u, filters) }
        let groups = min(Self.winogradGroups, rows)
        OwnThreads.forEach(groups) { _, i in
            let (v, dm) = scratch[i], range = Self.groupRange(i, of: groups, rows)
            let du = partials + i * partial, db = du + planes * filters
            for r0 in stride(from: range.lowerBound, to: range.upperBound, by: chunk) {
                let m = min(chunk, range.upperBound - r0), rowsT = m * t, dyc = dy + r0 * d * cout
                for s in 0..<m {
                    T.winoOutputAdjoint(tile: tm, dyc + s * d * cout, dm + s * t * cout, rowsT * cout, cout, zeros, g)
                }
                if grad != nil {
                    for s in 0..<m {
                        T.winoInput(tile: tm, input + (r0 + s) * inCount, v + s * t * cin, rowsT * cin, zeros, g)
                    }
                    let beta: T = r0 == range.lowerBound ? 0 : 1
                    for xi in 0..<planes {
                        T.blasGemm(
                            transA: true, transB: false, m: cin, n: cout, k: rowsT, alpha: 1, a: v + xi * rowsT * cin,
                            lda: cin, b: dm + xi * rowsT * cout, ldb: cout, beta: beta, c: du + xi * filters, ldc: cout)
                    }
                    T.blasGemm(
                        transA: false, transB: false, m: 1, n: cout, k: m * d, alpha: 1, a: ones, lda: m * d,
                        b: dyc, ldb: cout, beta: beta, c: db, ldc: cout)
                }
                if let dx {
                    for xi in 0..<planes {
                        T.blasGemm(
                            transA: false, transB: true, m: rowsT, n: cin, k: cout, alpha: sw,
                            a: dm + xi * rowsT * cout,
                            lda: cout, b: u + xi * filters, ldb: cout, beta: 0, c: v + xi * rowsT * cin, ldc: cin)
                    }
                    for s in 0..<m {
                        T.winoInputAdjoint(tile: tm, v + s * t * cin, rowsT * cin, dx + (r0 + s) * inCount, g)
                    }
                }
            }
        }
        guard let grad else { return }
        for i in 1..<groups { T.axpy(partials, 1, partials + i * partial, partial) }
        T.winoFilterAdjoint(tile: tm, partials, grad + p.w, filters, sw)
        if let b = p.b { T.axpy(grad + b, sb, partials + planes * filters, cout) }
    }
}
