import Dispatch
internal import CNTK

/// One tile of the kernel recursion: a group of r rows (samples a of the first set) against nb columns c0..<c1
/// (samples b of the second), every pair's covariance held as the state [r][entries][nb] — the entries of the
/// program's form, so that every step is either an element-wise pass over runs of b (activations, layer norm, the
/// affine part of dense and conv: the fused C row kernels of the fully-connected recursion) or a sparse linear
/// map along one spatial axis with whole runs of b as its inner dimension (`ntk_cov_axis_map`). T: the state's
/// precision (`KernelFloat`).
struct KernelTile<T: KernelFloat> {
    /// Samples, row-major [N, D] (NHWC per sample), and the variances of their set at every slot:
    /// `v[offsets[s] + p·n + a]` = V_a(p) at slot s.
    struct Side {
        let x: UnsafePointer<T>
        let v: UnsafeMutablePointer<T>
        let offsets: [Int]
        let n: Int
    }

    /// A worker's scratch: K, Θ, a scratch array and two per residual level, `capacity` entries each.
    struct Buffers {
        var k, t, tmp: UnsafeMutablePointer<T>
        let stack: [UnsafeMutablePointer<T>]
        let capacity: Int
        init(_ base: UnsafeMutablePointer<T>, capacity: Int, depth: Int) {
            k = base; t = base + capacity; tmp = base + 2 * capacity
            stack = (0..<(2 * depth)).map { base + (3 + $0) * capacity }
            self.capacity = capacity
        }
    }

    let program: KernelProgram
    let rows: Side, cols: Side
    let computeNTK: Bool
    let quad: QuadratureRule?

    /// Runs every step for rows r0..<r0 + r against columns c0..<c1; row i needs only the columns from
    /// c0 + skip[i] (the symmetric case; the others are left unspecified). `square`: the first r columns are the
    /// rows themselves (symmetric), whose Gram block is an upper-triangular SYRK. `record`: the self chain — the
    /// tile is samples r0..<r0 + r of one set against themselves (rows = cols, square; r = 1 for the full form),
    /// and each slot's variances are written from the state's diagonal before the step reads them.
    /// Returns K and Θ, [r][nb].
    func run(r0: Int, r: Int, c0: Int, c1: Int, skip: [Int], square: Bool, record: Bool,
             _ b: inout Buffers)
        -> (k: UnsafeMutablePointer<T>, t: UnsafeMutablePointer<T>, gramNanoseconds: UInt64) {
        let nb = c1 - c0
        let image = program.input.isImage
        var h = image ? program.input.spatial[0] : 1, w = image ? program.input.spatial[1] : 1
        let started = DispatchTime.now().uptimeNanoseconds
        gram(r0: r0, r: r, c0: c0, nb: nb, square: square, &b)
        let gramNanoseconds = DispatchTime.now().uptimeNanoseconds - started
        var depth = 0
        for step in program.steps {
            let n = r * program.entries(h, w) * nb
            switch step {
            case .linear(let maps, let c, let out):
                var sizes = program.form == .full ? [h * h, w * w] : program.form == .diagonal ? [h, w] : []
                for (axis, map) in maps.enumerated() {
                    guard let map else { continue }
                    let outer = r * sizes[..<axis].reduce(1, *), inner = sizes[(axis + 1)...].reduce(1, *) * nb
                    apply(map, &b.k, &b.tmp, outer, inner)
                    if computeNTK { apply(map, &b.t, &b.tmp, outer, inner) }
                    sizes[axis] = map.nOut
                }
                (h, w) = out
                let m = r * program.entries(h, w) * nb
                if computeNTK {
                    if c.w_var != 1 || c.ntk_shift != 0 { T.affine(b.t, T(c.w_var), T(c.ntk_shift), m) }
                    if c.ntk_t_scale != 0 { T.axpy(b.t, T(c.ntk_t_scale), b.k, m) }
                }
                if c.w_var != 1 || c.b_var != 0 { T.affine(b.k, T(c.w_var), T(c.b_var), m) }
            case .activation(let act, var c, let slot):
                if record { recordVariances(slot, h, w) }
                let rule = act.hasClosedFormKernel ? nil : quad
                runs(r: r, r0: r0, c0: c0, nb: nb, skip: skip, slot: slot, h, w, b) { k, t, d2, d1, len in
                    T.kernelRow(act, rule, k, t, d2, Double(d1), len, &c)
                }
            case .layerNorm(let eps, let slot):
                if record { recordVariances(slot, h, w) }
                runs(r: r, r0: r0, c0: c0, nb: nb, skip: skip, slot: slot, h, w, b) { k, t, d2, d1, len in
                    let e = T(eps)
                    for x in 0..<len {
                        let s = 1 / ((e + d1) * (e + d2[x])).squareRoot()
                        k[x] *= s
                        if let t { t[x] *= s }
                    }
                }
            case .fork:
                b.stack[2 * depth].update(from: b.k, count: n)
                if computeNTK { b.stack[2 * depth + 1].update(from: b.t, count: n) }
                depth += 1
            case .join:
                depth -= 1
                T.axpy(b.k, 1, b.stack[2 * depth], n)
                if computeNTK { T.axpy(b.t, 1, b.stack[2 * depth + 1], n) }
            }
        }
        return (b.k, b.t, gramNanoseconds)

        func recordVariances(_ slot: Int, _ h: Int, _ w: Int) {
            let v = rows.v + rows.offsets[slot], positions = h * w
            for p in 0..<positions {
                let (i, j) = (p / w, p % w)
                if program.form == .full {
                    v[p * rows.n + r0] = b.k[((i * h + i) * w + j) * w + j]
                } else {
                    for row in 0..<r { v[p * rows.n + r0 + row] = b.k[(row * positions + p) * nb + row] }
                }
            }
        }
    }

    /// in → out along one axis, then swaps the two (the result is in `a`).
    private func apply(_ m: KernelProgram.AxisMap, _ a: inout UnsafeMutablePointer<T>,
                       _ scratch: inout UnsafeMutablePointer<T>, _ outer: Int, _ inner: Int) {
        T.covAxisMap(scratch, a, outer, m, inner)
        swap(&a, &scratch)
    }

    /// Calls `body(k, t, d2, d1, count)` on every run of entries that share the row position p (so one variance
    /// d1 = V_a(p)) and whose column variances d2 = V_b(q) are contiguous: a run over (l, b) for each (i, k, j) of
    /// the full form (d2 gathered per tile), over b for each p of the diagonal and vector forms.
    private func runs(r: Int, r0: Int, c0: Int, nb: Int, skip: [Int], slot: Int, _ h: Int, _ w: Int, _ b: Buffers,
                      _ body: (UnsafeMutablePointer<T>, UnsafeMutablePointer<T>?, UnsafePointer<T>, T, Int) -> Void) {
        let vr = rows.v + rows.offsets[slot], vc = cols.v + cols.offsets[slot], positions = h * w
        let t: UnsafeMutablePointer<T>? = computeNTK ? b.t : nil
        if program.form == .full {
            // the tile's column variances gathered [q][b] into the free scratch, so that one run covers (l, b):
            // w·nb entries with the same d1 = V_a(i, j) and d2 = V_b(k, ·) contiguous
            let d2 = b.tmp
            for q in 0..<positions { (d2 + q * nb).update(from: vc + q * cols.n + c0, count: nb) }
            for i in 0..<h {
                for k in 0..<h {
                    for j in 0..<w {
                        let off = ((i * h + k) * w + j) * w * nb
                        body(b.k + off, t.map { $0 + off }, d2 + k * w * nb, vr[(i * w + j) * rows.n + r0], w * nb)
                    }
                }
            }
            return
        }
        for row in 0..<r {
            let s = skip[row]
            for p in 0..<positions {
                let off = (row * positions + p) * nb + s
                body(b.k + off, t.map { $0 + off }, vc + p * cols.n + c0 + s, vr[p * rows.n + r0 + row], nb - s)
            }
        }
    }

    /// The input covariance Σ_c x[a, p, c]·x[b, q, c] / C into b.k in the form's layout, Θ = 0.
    private func gram(r0: Int, r: Int, c0: Int, nb: Int, square: Bool, _ b: inout Buffers) {
        let d = program.input.count, c = program.input.channels, positions = program.input.positions
        let xa = rows.x + r0 * d, xb = cols.x + c0 * d
        let entries = program.entries(program.input.isImage ? program.input.spatial[0] : 1,
                                      program.input.isImage ? program.input.spatial[1] : 1)
        if computeNTK { b.t.update(repeating: 0, count: r * entries * nb) }
        switch program.form {
        case .vector:
            let alpha = 1 / T(max(d, 1))
            if d == 0 {
                b.k.update(repeating: 0, count: r * nb)
            } else if square {
                T.blasSyrk(n: r, k: d, alpha: alpha, a: xa, lda: d, c: b.k, ldc: nb)
                if nb > r {
                    T.blasGemm(transA: false, transB: true, m: r, n: nb - r, k: d, alpha: alpha, a: xa, lda: d,
                               b: xb + r * d, ldb: d, beta: 0, c: b.k + r, ldc: nb)
                }
            } else {
                T.blasGemm(transA: false, transB: true, m: r, n: nb, k: d, alpha: alpha, a: xa, lda: d, b: xb, ldb: d,
                           beta: 0, c: b.k, ldc: nb)
            }
        case .diagonal:
            for row in 0..<r {
                for p in 0..<positions {
                    for col in 0..<nb {
                        let dot = T.dot(xa + row * d + p * c, xb + col * d + p * c, c)
                        b.k[(row * positions + p) * nb + col] = T(dot / Double(c))
                    }
                }
            }
        case .full:
            // tmp[p][b·P + q] = x_a[p]·x_b[q] / C, then K[(i·H + k)·W² + j·W + l][b]
            T.blasGemm(transA: false, transB: true, m: positions, n: nb * positions, k: c, alpha: 1 / T(c), a: xa,
                       lda: c, b: xb, ldb: c, beta: 0, c: b.tmp, ldc: nb * positions)
            let (h, w) = (program.input.spatial[0], program.input.spatial[1])
            for i in 0..<h {
                for k in 0..<h {
                    for j in 0..<w {
                        for l in 0..<w {
                            let dst = b.k + (((i * h + k) * w + j) * w + l) * nb
                            let src = b.tmp + (i * w + j) * nb * positions + k * w + l
                            for col in 0..<nb { dst[col] = src[col * positions] }
                        }
                    }
                }
            }
        }
    }
}

/// The precisions the tiles run in: float64 throughout, or float32 state (axis maps, Gram, affine steps in float32)
/// with each activation's T and Ṫ evaluated in float64 per entry (`ntk_kernel_row_f32`).
protocol KernelFloat: NTKFloat {
    /// `ntk_cov_axis_map` (out ≠ in).
    static func covAxisMap(_ out: UnsafeMutablePointer<Self>, _ input: UnsafePointer<Self>, _ outer: Int,
                           _ map: KernelProgram.AxisMap, _ inner: Int)
    /// φ's C row kernel (see `ntk_layer_coef`): by the quadrature `rule` when given, else by φ's closed form.
    static func kernelRow(_ act: Activation, _ rule: QuadratureRule?, _ k: UnsafeMutablePointer<Self>,
                          _ t: UnsafeMutablePointer<Self>?, _ d2: UnsafePointer<Self>, _ d1: Double, _ n: Int,
                          _ c: inout ntk_layer_coef)
    /// dst[i] = src[i] in float64.
    static func widen(_ dst: UnsafeMutablePointer<Double>, _ src: UnsafePointer<Self>, _ n: Int)
}

extension Double: KernelFloat {
    static func covAxisMap(_ out: UnsafeMutablePointer<Double>, _ input: UnsafePointer<Double>, _ outer: Int,
                           _ m: KernelProgram.AxisMap, _ inner: Int) {
        m.offsets.withUnsafeBufferPointer { o in
            m.src.withUnsafeBufferPointer { s in
                m.weights.withUnsafeBufferPointer { w in
                    ntk_cov_axis_map(out, input, outer, m.nIn, m.nOut, inner, o.baseAddress, s.baseAddress,
                                     w.baseAddress)
                }
            }
        }
    }

    static func kernelRow(_ act: Activation, _ rule: QuadratureRule?, _ k: UnsafeMutablePointer<Double>,
                          _ t: UnsafeMutablePointer<Double>?, _ d2: UnsafePointer<Double>, _ d1: Double, _ n: Int,
                          _ c: inout ntk_layer_coef) {
        if let rule {
            let (a, alpha) = act.c
            rule.withRule { ntk_kernel_quadrature_row(k, t, d2, d1, n, &c, a, alpha, $0) }
        } else if act == .gelu {
            ntk_kernel_gelu_row(k, t, d2, d1, n, &c)
        } else if act == .erf {
            ntk_kernel_erf_row(k, t, d2, d1, n, &c)
        } else {
            ntk_kernel_abrelu_row(k, t, d2, d1, n, &c)
        }
    }

    static func widen(_ dst: UnsafeMutablePointer<Double>, _ src: UnsafePointer<Double>, _ n: Int) {
        dst.update(from: src, count: n)
    }
}

extension Float: KernelFloat {
    static func covAxisMap(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, _ outer: Int,
                           _ m: KernelProgram.AxisMap, _ inner: Int) {
        m.offsets.withUnsafeBufferPointer { o in
            m.src.withUnsafeBufferPointer { s in
                m.weights32.withUnsafeBufferPointer { w in
                    ntk_cov_axis_map_f32(out, input, outer, m.nIn, m.nOut, inner, o.baseAddress, s.baseAddress,
                                         w.baseAddress)
                }
            }
        }
    }

    static func kernelRow(_ act: Activation, _ rule: QuadratureRule?, _ k: UnsafeMutablePointer<Float>,
                          _ t: UnsafeMutablePointer<Float>?, _ d2: UnsafePointer<Float>, _ d1: Double, _ n: Int,
                          _ c: inout ntk_layer_coef) {
        let (a, alpha) = act.c
        let kind = rule != nil ? NTK_ROW_QUADRATURE : act == .gelu ? NTK_ROW_GELU : act == .erf ? NTK_ROW_ERF
            : NTK_ROW_ABRELU
        if let rule {
            rule.withRule { ntk_kernel_row_f32(kind, k, t, d2, d1, n, &c, a, alpha, $0) }
        } else {
            ntk_kernel_row_f32(kind, k, t, d2, d1, n, &c, a, alpha, nil)
        }
    }

    static func widen(_ dst: UnsafeMutablePointer<Double>, _ src: UnsafePointer<Float>, _ n: Int) {
        for i in 0..<n { dst[i] = Double(src[i]) }
    }
}

/// The per-precision part of an `AnalyticKernels.Plan` (`TileSets`), as concrete types — so that every call into
/// it is specialised (a protocol existential would run the generic code, ~20 % slower on the full form).
enum KernelTileSets: Sendable {
    case float64(TileSets<Double>)
    case float32(TileSets<Float>)

    var self1: [Double] {
        switch self {
        case .float64(let t): t.self1
        case .float32(let t): t.self1
        }
    }
    var selfNTK: [Double] {
        switch self {
        case .float64(let t): t.selfNTK
        case .float32(let t): t.selfNTK
        }
    }
    func fill(_ plan: AnalyticKernels.Plan, _ rows: Range<Int>, _ kOut: UnsafeMutablePointer<Double>,
              _ tOut: UnsafeMutablePointer<Double>?) -> (Double, Double) {
        switch self {
        case .float64(let t): t.fill(plan, rows, kOut, tOut)
        case .float32(let t): t.fill(plan, rows, kOut, tOut)
        }
    }
}

/// The arrays of one worker's tile: K, Θ, a scratch array and two per residual level (`KernelTile.Buffers`).
extension KernelProgram {
    var tileArrays: Int { 3 + 2 * maxDepth }
}

struct TileSets<T: KernelFloat>: Sendable {
    /// The workers' tile scratch, allocated at the first fill and kept for the next ones (a plan's blocks are
    /// filled one after the other): a block of a CNN kernel may be one row, and a fresh gigabyte per row would be
    /// page-faulted in every time.
    final class Scratch: @unchecked Sendable {
        private var base: UnsafeMutablePointer<T>?, count = 0
        func pointer(_ n: Int) -> UnsafeMutablePointer<T> {
            if count < n {
                base?.deallocate()
                base = .allocate(capacity: n)
                count = n
            }
            return base!
        }
        deinit { base?.deallocate() }
    }
    let scratch = Scratch()
    let x1: [T], x2: [T]
    /// Variances V_a(p) of both sets at every slot (`KernelTile.Side`).
    let var1: [T], var2: [T]
    let self1: [Double], selfNTK: [Double]

    init(x1: Matrix, x2: Matrix, symmetric: Bool, program: KernelProgram, offsets1: [Int], offsets2: [Int],
         computeNTK: Bool, quad: QuadratureRule?, workers: Int) {
        func cast(_ m: Matrix) -> [T] {
            [T](unsafeUninitializedCapacity: m.data.count) { out, c in
                m.data.withUnsafeBufferPointer { x in
                    if x.count > 0 { T.convert(out.baseAddress!, from: x.baseAddress!, x.count) }
                }
                c = m.data.count
            }
        }
        self.x1 = cast(x1)
        self.x2 = symmetric ? self.x1 : cast(x2)
        let first = Self.selfChain(self.x1, x1.rows, program, offsets1, computeNTK, quad, workers)
        (var1, self1, selfNTK) = first
        var2 = symmetric ? var1 : Self.selfChain(self.x2, x2.rows, program, offsets2, false, quad, workers).v
    }

    /// Runs the program on every pair (a, a) of a set, recording the variances at every slot; also returns
    /// K(a, a) and Θ(a, a), by the same formulas with exactly equal variances (no √ε error at c = 1).
    static func selfChain(_ x: [T], _ n: Int, _ program: KernelProgram, _ offsets: [Int], _ ntk: Bool,
                          _ quad: QuadratureRule?, _ workers: Int) -> (v: [T], k: [Double], t: [Double]) {
        // square tiles of g samples against themselves (the diagonal kept): few, larger BLAS and C calls
        let g = program.form == .vector ? 64 : program.form == .diagonal ? 16 : 1
        let capacity = program.maxEntries * g * g, arrays = program.tileArrays
        var v = [T](repeating: 0, count: offsets.last!), k = [Double](repeating: 0, count: n)
        var t = [Double](repeating: 0, count: n)
        let scratch = UnsafeMutablePointer<T>.allocate(capacity: workers * arrays * capacity)
        defer { scratch.deallocate() }
        x.withUnsafeBufferPointer { xp in
            v.withUnsafeMutableBufferPointer { vp in
                k.withUnsafeMutableBufferPointer { kp in
                    t.withUnsafeMutableBufferPointer { tp in
                        let side = KernelTile<T>.Side(x: xp.baseAddress!, v: vp.baseAddress!, offsets: offsets, n: n)
                        let tile = KernelTile(program: program, rows: side, cols: side, computeNTK: ntk, quad: quad)
                        OwnThreads.forEach((n + g - 1) / g, workers: workers) { wk, group in
                            var b = KernelTile<T>.Buffers(scratch + wk * arrays * capacity, capacity: capacity,
                                                          depth: program.maxDepth)
                            let a0 = group * g, r = min(g, n - a0)
                            let out = tile.run(r0: a0, r: r, c0: a0, c1: a0 + r, skip: Array(0..<r),
                                               square: true, record: true, &b)
                            for i in 0..<r {
                                kp[a0 + i] = Double(out.k[i * r + i])
                                if ntk { tp[a0 + i] = Double(out.t[i * r + i]) }
                            }
                        }
                    }
                }
            }
        }
        return (v, k, t)
    }

    /// Fills rows `rows` (kOut/tOut point at the first of them, row length N2): tiles of `rowGroup` rows ×
    /// `columnBlock` columns spread over our own threads (`OwnThreads`, OpenBLAS single-threaded inside), each
    /// run by `KernelTile` in its worker's scratch and copied out — symmetric: only the upper trapezoid, the
    /// diagonal from the self chain. Returns the wall seconds split between the Gram product and the recursion
    /// in proportion to the threads' time in each.
    func fill(_ plan: AnalyticKernels.Plan, _ rows: Range<Int>, _ kOut: UnsafeMutablePointer<Double>,
              _ tOut: UnsafeMutablePointer<Double>?) -> (Double, Double) {
        let program = plan.program, symmetric = plan.symmetric, workers = plan.workers
        let n1 = plan.x1.rows, n2 = plan.x2.rows, computeNTK = plan.options.computeNTK
        let rowGroup = plan.rowGroup, columnBlock = plan.columnBlock
        var tiles: [(r0: Int, r: Int, c0: Int, c1: Int)] = []
        for r0 in stride(from: rows.lowerBound, to: rows.upperBound, by: rowGroup) {  // costliest (top) first
            let r = min(rowGroup, rows.upperBound - r0), start = symmetric ? r0 : 0, count = n2 - start
            // images (one row per tile, a block may be one row): at least one tile per worker in every row
            var pieces = (count + columnBlock - 1) / columnBlock
            if program.form != .vector { pieces = min(count, max(pieces, workers)) }
            let width = (count + pieces - 1) / max(pieces, 1)
            for c0 in stride(from: start, to: n2, by: max(width, 1)) { tiles.append((r0, r, c0, min(n2, c0 + width))) }
        }
        let arrays = program.tileArrays, capacity = rowGroup * program.maxEntries * columnBlock
        let scratch = self.scratch.pointer(workers * arrays * capacity)
        var busy = [(gram: UInt64, layers: UInt64)](repeating: (0, 0), count: workers)
        let started = DispatchTime.now().uptimeNanoseconds
        x1.withUnsafeBufferPointer { ap in
            x2.withUnsafeBufferPointer { bp in
                // the variances are only read here (record: false): no copy of them
                var1.withUnsafeBufferPointer { v1b in
                    var2.withUnsafeBufferPointer { v2b in
                        let v1p = UnsafeMutablePointer(mutating: v1b.baseAddress!)
                        let v2p = UnsafeMutablePointer(mutating: v2b.baseAddress!)
                        busy.withUnsafeMutableBufferPointer { busy in
                            let tile = KernelTile<T>(
                                program: program,
                                rows: .init(x: ap.baseAddress!, v: v1p, offsets: plan.offsets1, n: n1),
                                cols: .init(x: bp.baseAddress!, v: v2p, offsets: plan.offsets2, n: n2),
                                computeNTK: computeNTK, quad: plan.quad)
                            OwnThreads.forEach(tiles.count, workers: workers) { w, index in
                                let t0 = DispatchTime.now().uptimeNanoseconds
                                let (r0, r, c0, c1) = tiles[index]
                                let square = symmetric && c0 == r0
                                let skip = (0..<r).map { square ? $0 : 0 }
                                var b = KernelTile<T>.Buffers(scratch + w * arrays * capacity, capacity: capacity,
                                                              depth: program.maxDepth)
                                let out = tile.run(r0: r0, r: r, c0: c0, c1: c1, skip: skip, square: square,
                                                   record: false, &b)
                                let nb = c1 - c0
                                for i in 0..<r {
                                    let a = r0 + i, dst = (a - rows.lowerBound) * n2 + c0 + skip[i]
                                    T.widen(kOut + dst, out.k + i * nb + skip[i], nb - skip[i])
                                    if let tOut { T.widen(tOut + dst, out.t + i * nb + skip[i], nb - skip[i]) }
                                    if square {
                                        kOut[dst] = self1[a]
                                        if let tOut { tOut[dst] = selfNTK[a] }
                                    }
                                }
                                busy[w].gram += out.gramNanoseconds
                                busy[w].layers += DispatchTime.now().uptimeNanoseconds - t0 - out.gramNanoseconds
                            }
                        }
                    }
                }
            }
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let gram = Double(busy.reduce(0) { $0 + $1.gram }), layerTime = Double(busy.reduce(0) { $0 + $1.layers })
        let share = gram + layerTime > 0 ? gram / (gram + layerTime) : 1
        return (wall * share, wall * (1 - share))
    }
}
