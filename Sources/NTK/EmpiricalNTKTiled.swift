/// The traced empirical NTK in blocks, for inputs too many to hold every layer's features at once: rows are split
/// into blocks, each block's features (activations and backprop signals) are computed once and handed to `store`
/// (which may keep them on disk — the pipeline stage checkpoints them, so a killed computation resumes), and the
/// kernel is written block pair by block pair with the same tile engine as `compute`. Working memory: two blocks'
/// features, about B·(Σ n_l + k·Σ n_{l+1})·size(T)·2, plus a few tile buffers; the [N1, N2] result is the only
/// O(N²) allocation.
extension EmpiricalNTK {
    /// Computes one block's features for the traced kernel.
    public func tileFeatures(_ x: Matrix, rows: Range<Int>) -> Features {
        features(x, rows: rows, output: .traced)
    }

    /// Traced Θ̂ [N1, N2] in blocks of `tileRows` rows. `features(set, block, rows)` returns the features of a
    /// block (set 0: x1, set 1: x2) — computing them with `tileFeatures` or loading them from a store.
    /// `progress(done, total)` is called after each block pair.
    public func computeTiled(n1: Int, n2: Int, symmetric: Bool, tileRows: Int,
                             features: (Int, Int, Range<Int>) throws -> Features,
                             progress: ((Int, Int) -> Void)? = nil) rethrows -> [T] {
        let blocks1 = stride(from: 0, to: n1, by: tileRows).map { $0..<min(n1, $0 + tileRows) }
        let blocks2 = symmetric ? blocks1 : stride(from: 0, to: n2, by: tileRows).map { $0..<min(n2, $0 + tileRows) }
        var sink = Sink(count: n1 * n2, ld: n2, parts: [])
        let pairs = blocks1.indices.flatMap { i in blocks2.indices.compactMap { j in symmetric && j < i ? nil : (i, j) } }
        var done = 0
        var cachedRow: (Int, Features)? = nil
        for (i, j) in pairs {
            let a: Features
            if let c = cachedRow, c.0 == i { a = c.1 } else { a = try features(0, i, blocks1[i]); cachedRow = (i, a) }
            let b = symmetric && i == j ? a : try features(symmetric ? 0 : 1, j, blocks2[j])
            // the blocks' own row numbers place them in the output; below the diagonal by the mirror of (i, j)
            _ = sink.withPointers { accumulate(a, b, same: symmetric && i == j, mirror: symmetric, output: .traced, into: $0) }
            done += 1
            progress?(done, pairs.count)
        }
        return sink.ntk
    }
}
