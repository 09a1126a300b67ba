/// GEMM and SYRK on our own threads (`OwnThreads`), OpenBLAS single-threaded inside every call.
///
/// OpenBLAS runs with one thread for the whole process: a threaded OpenBLAS call leaves its workers spinning
/// (sched_yield) for a while after it returns, and on a 2-core machine they take the cores from the C kernels and
/// GEMMs that follow on our threads (a CNN training step ran 17 % slower for it). So a large product is cut here
/// into tiles, one OpenBLAS call each, spread over our workers.
///
/// The tile edges depend on m, n and k only, never on the worker count, and the reduction dimension is cut only into
/// partial products summed in a fixed order — so every element of C is computed by the same calls in the same order
/// whatever `--threads` is, and results do not depend on the thread count. Inside an `OwnThreads.forEach` region
/// (the caller already spreads work) a product is one call on the calling thread.
///
///     output tiles   C[rows_i or cols_j] = α·op(A)[rows_i]·op(B)[:, cols_j] + β·C      (along the longer of m, n)
///     k tiles        P_t = op(A)[:, k_t]·op(B)[k_t, :],  C = β·C + α·(P_0 + P_1 + …)   (m, n too small to cut)
///     syrk rows      C[r_i, r_i] = α·A_i·A_iᵀ (upper), C[r_i, r_{i+1}…] = α·A_i·A_{>i}ᵀ   (equal-area row blocks)
enum TiledBLAS {
    /// Below this many flops a product is one call (a region costs a few microseconds).
    static let minimumFlops = 8.0e6
    /// Flops per tile at least (each tile re-packs the operand it does not cut).
    static let flopsPerTile = 16.0e6
    /// At most this many tiles (balanced for 1, 2 and 4 workers); tile edges are multiples of `align`.
    static let maximumTiles = 4
    static let align = 32

    /// How many tiles a product of `flops` flops along a dimension of `extent` gets: 1, 2 or 4.
    static func tiles(flops: Double, extent: Int, minimumEdge: Int) -> Int {
        guard flops >= minimumFlops else { return 1 }
        let byFlops = Int(flops / flopsPerTile), byExtent = extent / minimumEdge
        let t = min(maximumTiles, byFlops, byExtent)
        return t >= 4 ? 4 : t >= 2 ? 2 : 1
    }

    /// Edge i of `count` tiles over 0..<extent (multiples of `align` inside).
    static func edge(_ i: Int, of count: Int, over extent: Int) -> Int {
        i == count ? extent : min(extent, (extent * i / count + align / 2) / align * align)
    }
}

extension NTKFloat {
    /// C[m, n] = α·op(A)·op(B) + β·C, row-major (cblas semantics), tiled over our threads (`TiledBLAS`).
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     b: UnsafePointer<Self>, ldb: Int, beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        func call(_ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Self>, _ b: UnsafePointer<Self>, _ beta: Self,
                  _ c: UnsafeMutablePointer<Self>, _ ldc: Int) {
            blasGemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                     beta: beta, c: c, ldc: ldc)
        }
        let flops = 2 * Double(m) * Double(n) * Double(k)
        // the size test first: a small product takes no lock
        if flops < TiledBLAS.minimumFlops || OwnThreads.isInRegion { return call(m, n, k, a, b, beta, c, ldc) }
        let alongM = m >= n
        let outputTiles = TiledBLAS.tiles(flops: flops, extent: max(m, n), minimumEdge: 64)
        if outputTiles > 1 {
            OwnThreads.forEach(outputTiles) { _, i in
                let e0 = TiledBLAS.edge(i, of: outputTiles, over: alongM ? m : n)
                let e1 = TiledBLAS.edge(i + 1, of: outputTiles, over: alongM ? m : n)
                if alongM {  // rows e0..<e1 of op(A) and C
                    call(e1 - e0, n, k, a + (transA ? e0 : e0 * lda), b, beta, c + e0 * ldc, ldc)
                } else {  // columns e0..<e1 of op(B) and C
                    call(m, e1 - e0, k, a, b + (transB ? e0 * ldb : e0), beta, c + e0, ldc)
                }
            }
            return
        }
        let kTiles = TiledBLAS.tiles(flops: flops, extent: k, minimumEdge: 1024)
        if kTiles == 1 { return call(m, n, k, a, b, beta, c, ldc) }
        // partial products P_t [m, n] of k-ranges, then C = β·C + α·ΣP_t in the order t = 0, 1, …
        let partials = UnsafeMutablePointer<Self>.allocate(capacity: kTiles * m * n)
        defer { partials.deallocate() }
        OwnThreads.forEach(kTiles) { _, t in
            let k0 = TiledBLAS.edge(t, of: kTiles, over: k), k1 = TiledBLAS.edge(t + 1, of: kTiles, over: k)
            blasGemm(transA: transA, transB: transB, m: m, n: n, k: k1 - k0, alpha: 1, a: a + (transA ? k0 * lda : k0),
                     lda: lda, b: b + (transB ? k0 : k0 * ldb), ldb: ldb, beta: 0, c: partials + t * m * n, ldc: n)
        }
        for t in 1..<kTiles { axpy(partials, 1, partials + t * m * n, m * n) }
        for r in 0..<m {
            let row = c + r * ldc
            if beta == 0 { row.update(repeating: 0, count: n) } else if beta != 1 { scale(row, beta, n) }
            axpy(row, alpha, partials + r * n, n)
        }
    }

    /// The upper triangle of C[n, n] = α·A·Aᵀ (A [n, k], row-major); C's lower part is not touched. Tiled over our
    /// threads in row blocks of equal area (`TiledBLAS`).
    static func syrk(
        n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int, c: UnsafeMutablePointer<Self>, ldc: Int
    ) {
        guard n > 0 else { return }
        let flops = Double(n) * Double(n) * Double(k)
        let tiles = TiledBLAS.tiles(flops: flops, extent: n, minimumEdge: 64)
        let t = tiles > 1 && OwnThreads.isInRegion ? 1 : tiles
        if t == 1 { return blasSyrk(n: n, k: k, alpha: alpha, a: a, lda: lda, c: c, ldc: ldc) }
        // row edges r_i = n·(1 − √(1 − i/t)): the upper triangle's rows above r_i hold a fraction i/t of it
        func edge(_ i: Int) -> Int {
            if i == t { return n }
            let r = Double(n) * (1 - (1 - Double(i) / Double(t)).squareRoot())
            return min(n, (Int(r) + TiledBLAS.align / 2) / TiledBLAS.align * TiledBLAS.align)
        }
        OwnThreads.forEach(t) { _, i in
            let r0 = edge(i), r1 = edge(i + 1)
            guard r1 > r0 else { return }
            blasSyrk(n: r1 - r0, k: k, alpha: alpha, a: a + r0 * lda, lda: lda, c: c + r0 * ldc + r0, ldc: ldc)
            if r1 < n {
                blasGemm(transA: false, transB: true, m: r1 - r0, n: n - r1, k: k, alpha: alpha, a: a + r0 * lda,
                         lda: lda, b: a + r1 * lda, ldb: lda, beta: 0, c: c + r0 * ldc + r1, ldc: ldc)
            }
        }
    }
}
