/// The traced empirical NTK in tiles, for inputs too many to hold every layer's features at once: rows are split
/// into tiles, each tile's features (activations and backprop signals) are computed once and handed to `store`
/// (which may keep them on disk — the pipeline stage checkpoints them, so a killed computation resumes), and the
/// kernel is accumulated tile pair by tile pair. Working memory: two tiles' features plus two B×B Gram buffers,
/// about B·(Σ n_l + k·Σ n_{l+1})·size(T)·2; the [N1, N2] result is the only O(N²) allocation.
extension EmpiricalNTK {
    /// The features of rows `rows` of some input set.
    public struct TileFeatures {
        public var rows: Range<Int>
        /// a_l for every Dense layer l ([B, fan_in])
        public var acts: [[T]]
        /// Δ_l ([B·k, fan_out]) for every layer except the last hidden one (compact form) and the read-out
        public var signals: [[T]]
        /// φ'(z_L)·diag(√w) [B, n_L] — the last hidden layer's compact traced signal
        public var lastHidden: [T]

        public init(rows: Range<Int>, acts: [[T]], signals: [[T]], lastHidden: [T]) {
            self.rows = rows; self.acts = acts; self.signals = signals; self.lastHidden = lastHidden
        }
    }

    /// Computes one tile's features.
    public func tileFeatures(_ x: Matrix, rows: Range<Int>) -> TileFeatures {
        var flops = 0.0
        let sub = x.rows(rows)
        let f = features(sub.data.map { T($0) }, n: rows.count, flops: &flops)
        var signals = f.signals
        if net.layers.count >= 2 { signals[net.layers.count - 2] = [] }  // the compact form replaces it (traced)
        signals[net.layers.count - 1] = []  // the read-out's Σ_i e_i·e_i/k = 1
        return TileFeatures(rows: rows, acts: f.acts, signals: signals, lastHidden: f.lastHidden)
    }

    /// Traced Θ̂ [N1, N2] in tiles of `tileRows` rows. `features(set, tileIndex, rows)` returns the features of a
    /// tile (set 0: x1, set 1: x2) — computing them with `tileFeatures` or loading them from a store.
    /// `progress(done, total)` is called after each tile pair.
    public func computeTiled(n1: Int, n2: Int, symmetric: Bool, tileRows: Int,
                             features: (Int, Int, Range<Int>) throws -> TileFeatures,
                             progress: ((Int, Int) -> Void)? = nil) rethrows -> [T] {
        let spec = net.spec, k = spec.outputs, layers = net.layers
        let tiles1 = stride(from: 0, to: n1, by: tileRows).map { $0..<min(n1, $0 + tileRows) }
        let tiles2 = symmetric ? tiles1 : stride(from: 0, to: n2, by: tileRows).map { $0..<min(n2, $0 + tileRows) }
        var out = [T](repeating: 0, count: n1 * n2)
        var gram = [T](repeating: 0, count: tileRows * tileRows), sig = gram
        let pairs = tiles1.indices.flatMap { i in tiles2.indices.compactMap { j in symmetric && j < i ? nil : (i, j) } }
        var done = 0
        var cachedRow: (Int, TileFeatures)? = nil
        for (i, j) in pairs {
            let a: TileFeatures
            if let c = cachedRow, c.0 == i { a = c.1 } else { a = try features(0, i, tiles1[i]); cachedRow = (i, a) }
            let b = symmetric && i == j ? a : try features(symmetric ? 0 : 1, j, tiles2[j])
            let ra = a.rows.count, rb = b.rows.count
            for (l, layer) in layers.enumerated() {
                let (cw, cb): (Double, Double) = spec.parameterization == .ntk
                    ? (spec.wStd[l] * spec.wStd[l] / Double(layer.fanIn), layer.b == nil ? 0 : spec.bStd[l] * spec.bStd[l])
                    : (1, layer.b == nil ? 0 : 1)
                gram.withUnsafeMutableBufferPointer { g in
                    a.acts[l].withUnsafeBufferPointer { pa in
                        b.acts[l].withUnsafeBufferPointer { pb in
                            T.gemm(transA: false, transB: true, m: ra, n: rb, k: layer.fanIn, alpha: T(cw), a: pa.baseAddress!, lda: layer.fanIn,
                                   b: pb.baseAddress!, ldb: layer.fanIn, beta: 0, c: g.baseAddress!, ldc: rb)
                        }
                    }
                    if cb != 0 { T.affine(g.baseAddress!, 1, T(cb), ra * rb) }
                }
                let isReadout = l == layers.count - 1, isLastHidden = l == layers.count - 2
                if isReadout {  // D = 1
                    sig.withUnsafeMutableBufferPointer { $0.update(repeating: 1) }
                } else {
                    let (sa, sb, inner) = isLastHidden ? (a.lastHidden, b.lastHidden, layer.fanOut) : (a.signals[l], b.signals[l], k * layer.fanOut)
                    sig.withUnsafeMutableBufferPointer { s in
                        sa.withUnsafeBufferPointer { pa in
                            sb.withUnsafeBufferPointer { pb in
                                T.gemm(transA: false, transB: true, m: ra, n: rb, k: inner, alpha: T(1 / Double(k)), a: pa.baseAddress!, lda: inner,
                                       b: pb.baseAddress!, ldb: inner, beta: 0, c: s.baseAddress!, ldc: rb)
                            }
                        }
                    }
                }
                out.withUnsafeMutableBufferPointer { o in
                    gram.withUnsafeBufferPointer { g in
                        sig.withUnsafeBufferPointer { s in
                            for r in 0..<ra {
                                T.hadamardAcc(o.baseAddress! + (a.rows.lowerBound + r) * n2 + b.rows.lowerBound, g.baseAddress! + r * rb, s.baseAddress! + r * rb, rb)
                            }
                        }
                    }
                }
            }
            done += 1
            progress?(done, pairs.count)
        }
        if symmetric {  // the tiles below the diagonal were skipped: mirror the upper triangle
            out.withUnsafeMutableBufferPointer { mirrorUpperParallel($0.baseAddress!, n1) }
        }
        return out
    }
}
