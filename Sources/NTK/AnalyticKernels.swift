import Dispatch
internal import CNTK

/// Infinite-width NNGP K and NTK Θ of a fully-connected network (PAPER.md §2.10, neural-tangents' `kernel_fn`),
/// per output logit (the full output kernels are K ⊗ I_k and Θ ⊗ I_k).
///
/// Recursion over the Dense layers l = 0…L, with G = x·x'ᵀ/n₀ the input Gram matrix:
///
///     K⁰ = σ_w,0²·G + σ_b,0²                         Θ⁰ = K⁰  (standard: n₀·G + [bias])
///     K^l = σ_w,l²·T(K^{l−1}) + σ_b,l²               Θ^l = K^l + σ_w,l²·Ṫ(K^{l−1})·Θ^{l−1}
///                                                   (standard: n_l·T + [bias] + σ_w,l²·Ṫ·Θ^{l−1})
///
/// T and Ṫ use the 2×2 covariance [[K(x,x), K(x,x')], [K(x,x'), K(x',x')]]: closed forms for the arc-cosine
/// family (relu, leaky relu, abs, identity) and erf, polar Gauss quadrature for any other activation.
///
/// Cost: the Gram product (2·N1·N2·n₀ flops, half when x2 = x1) through OpenBLAS, then per layer one fused
/// element-wise pass in C (AVX2) over its rows — chunk by chunk of 256 rows, on our own threads (see `fill`). The diagonal K(x,x) is computed
/// once per layer by the same formulas with c = 1 exactly, and the symmetric case's diagonal entries are taken
/// from it: no √ε error from arccos near c = 1 (neural-tangents has it, ~1e-9 relative on relu diagonals).
public enum AnalyticKernels {
    public struct Options: Sendable {
        /// Quadrature nodes per dimension (angle pieces and radius) for activations without a closed form.
        public var quadratureNodes = 32
        /// Workspace cap in bytes (row blocks of the Gram matrix); nil: one block.
        public var maxWorkspaceBytes: Int? = nil
        public var computeNTK = true
        public var threads = ProcessInfo.processorCount
        public init() {}
    }

    public struct Result: Sendable {
        /// [N1, N2]
        public var nngp: Matrix
        /// [N1, N2] (empty if not computed)
        public var ntk: Matrix
        /// For quadrature activations: max |K_m − K_{1.5m}| / max|K| over a sample of entries (m nodes vs 1.5·m).
        public var quadratureError: Double?
    }

    /// Kernels between the rows of x1 [N1, n₀] and x2 [N2, n₀] (x2 = nil: x1 with itself, using symmetry).
    /// `progress(rowsDone, rowsTotal)` is called after each row block.
    public static func compute(x1: Matrix, x2: Matrix? = nil, spec: NetworkSpec, options: Options = Options(),
                               progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        try compute(x1: x1, x2: x2, network: Network(spec), options: options, progress: progress, estimate: true)
    }

    /// The kernels of any network of the grammar (`KernelProgram`): rows of x1 [N1, D] and x2 [N2, D] are samples
    /// flattened row-major (NHWC), D = `network.inputShape.count`.
    public static func compute(x1: Matrix, x2: Matrix? = nil, network: Network, options: Options = Options(),
                               progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        try compute(x1: x1, x2: x2, network: network, options: options, progress: progress, estimate: true)
    }

    static func compute(x1: Matrix, x2: Matrix?, network: Network, options: Options, progress: ((Int, Int) -> Void)?,
                        estimate: Bool) throws -> Result {
        let plan = try Plan(x1: x1, x2: x2, network: network, options: options)
        var result = plan.computeAll(progress: progress).result
        if estimate && plan.quad != nil && x1.rows > 0 && plan.x2.rows > 0 {
            result.quadratureError = try quadratureError(x1: x1, x2: plan.x2, network: network, options: options)
        }
        return result
    }

    /// The recursion prepared for a pair of input sets: the network's `KernelProgram`, the quadrature rule, and
    /// every sample's variances at every layer (the self chain). Rows of the result are computed in blocks
    /// (`blocks`, sized by the workspace cap), each independently — so a caller can checkpoint finished blocks and
    /// resume — then `assemble`d.
    public struct Plan: Sendable {
        public let x1: Matrix, x2: Matrix
        public let symmetric: Bool
        public let program: KernelProgram
        let options: Options
        let quad: QuadratureRule?
        /// Variances V_a(p) of both sets at every slot (`KernelTile.Side`), and K, Θ of each pair (a, a) of set 1.
        let var1: [Double], var2: [Double], offsets1: [Int], offsets2: [Int]
        let self1: [Double], selfNTK: [Double]
        /// Rows per tile (256 for vectors: the Gram product is a GEMM; 1 for images) and columns per tile (as many
        /// as the state of `KernelTile.Buffers.count` arrays per worker allows under the workspace cap).
        let rowGroup: Int, columnBlock: Int, workers: Int
        /// Row ranges of the blocks, in order.
        public let blocks: [Range<Int>]

        /// Rows `rows` of the kernels, [rows.count, N2] row-major; in the symmetric case only the columns ≥ the
        /// row index are filled (the rest is unspecified until `assemble` mirrors them).
        public struct Block: Sendable {
            public var rows: Range<Int>
            public var nngp: [Double]
            public var ntk: [Double]
            /// Wall seconds spent in the Gram product (BLAS) and in the layer recursion (C, all cores).
            public var gramSeconds = 0.0, layerSeconds = 0.0
            public init(rows: Range<Int>, nngp: [Double], ntk: [Double]) { self.rows = rows; self.nngp = nngp; self.ntk = ntk }
        }

        public init(x1: Matrix, x2: Matrix?, spec: NetworkSpec, options: Options = Options()) throws {
            try self.init(x1: x1, x2: x2, network: Network(spec), options: options)
        }

        /// x1 [N1, D], x2 [N2, D]: samples flattened row-major (NHWC for images), D = the network's input size.
        public init(x1: Matrix, x2: Matrix?, network: Network, options: Options = Options()) throws {
            precondition(x2 == nil || x2!.cols == x1.cols, "x1 and x2 need the same feature dimension")
            precondition(x1.cols == network.inputShape.count,
                         "inputs have \(x1.cols) features, the network expects \(network.inputShape)")
            self.x1 = x1
            self.x2 = x2 ?? x1
            symmetric = x2 == nil
            self.options = options
            let program = try KernelProgram(network)
            self.program = program
            quad = program.needsQuadrature ? try QuadratureRule(nodes: options.quadratureNodes) : nil
            workers = max(1, min(options.threads, OwnThreads.workers))
            let arrays = KernelTile.Buffers.count(program)
            let budget = options.maxWorkspaceBytes ?? (1 << 30)
            var group = program.form == .vector ? 256 : 1
            let perColumn = workers * arrays * program.maxEntries * 8
            columnBlock = max(1, min(self.x2.rows, budget / max(perColumn * group, 1)))
            if program.form == .vector { group = min(group, columnBlock) }
            rowGroup = group
            func offsets(_ n: Int) -> [Int] { program.slotPositions.reduce(into: [0]) { $0.append($0.last! + $1 * n) } }
            offsets1 = offsets(x1.rows)
            offsets2 = offsets(self.x2.rows)
            let first = Self.selfChain(x1, program, offsets1, options.computeNTK, quad, workers)
            (var1, self1, selfNTK) = first
            var2 = symmetric ? var1 : Self.selfChain(self.x2, program, offsets2, false, quad, workers).v
            let bytesPerRow = 8 * self.x2.rows * (options.computeNTK ? 2 : 1)
            let size = max(1, (options.maxWorkspaceBytes ?? Int.max) / max(bytesPerRow, 1))
            blocks = stride(from: 0, to: x1.rows, by: size).map { $0..<min(x1.rows, $0 + size) }
        }

        /// Runs the program on every pair (a, a) of a set, recording the variances at every slot; also returns
        /// K(a, a) and Θ(a, a), by the same formulas with exactly equal variances (no √ε error at c = 1).
        static func selfChain(_ x: Matrix, _ program: KernelProgram, _ offsets: [Int], _ ntk: Bool,
                              _ quad: QuadratureRule?, _ workers: Int) -> (v: [Double], k: [Double], t: [Double]) {
            // square tiles of g samples against themselves (the diagonal kept): few, larger BLAS and C calls
            let g = program.form == .vector ? 64 : program.form == .diagonal ? 16 : 1
            let n = x.rows, capacity = program.maxEntries * g * g, arrays = KernelTile.Buffers.count(program)
            var v = [Double](repeating: 0, count: offsets.last!), k = [Double](repeating: 0, count: n)
            var t = [Double](repeating: 0, count: n)
            let scratch = UnsafeMutablePointer<Double>.allocate(capacity: workers * arrays * capacity)
            defer { scratch.deallocate() }
            x.data.withUnsafeBufferPointer { xp in
                v.withUnsafeMutableBufferPointer { vp in
                    k.withUnsafeMutableBufferPointer { kp in
                        t.withUnsafeMutableBufferPointer { tp in
                            let side = KernelTile.Side(x: xp.baseAddress!, v: vp.baseAddress!, offsets: offsets, n: n)
                            let tile = KernelTile(program: program, rows: side, cols: side, computeNTK: ntk, quad: quad)
                            OwnThreads.forEach((n + g - 1) / g, workers: workers) { wk, group in
                                var b = KernelTile.Buffers(scratch + wk * arrays * capacity, capacity: capacity,
                                                           depth: program.maxDepth)
                                let a0 = group * g, r = min(g, n - a0)
                                let out = tile.run(r0: a0, r: r, c0: a0, c1: a0 + r, skip: Array(0..<r),
                                                   square: true, record: true, &b)
                                for i in 0..<r {
                                    kp[a0 + i] = out.k[i * r + i]
                                    if ntk { tp[a0 + i] = out.t[i * r + i] }
                                }
                            }
                        }
                    }
                }
            }
            return (v, k, t)
        }

        /// Computes one block into fresh storage (for callers that keep blocks, e.g. to checkpoint them).
        public func compute(_ rows: Range<Int>) -> Block {
            let n2 = x2.rows, rn = rows.count
            // Every entry is written (symmetric: the strictly lower part by `assemble`), so the buffers start
            // uninitialised: zero-filling 2·N² doubles would cost as much as the recursion.
            var k: [Double] = uninitializedArray(rn * n2)
            let tn = options.computeNTK ? rn * n2 : 0
            var t: [Double] = uninitializedArray(tn)
            let (g, l) = k.withUnsafeMutableBufferPointer { kp in
                t.withUnsafeMutableBufferPointer { tp in fill(rows, kp.baseAddress!, options.computeNTK ? tp.baseAddress! : nil) }
            }
            var block = Block(rows: rows, nngp: k, ntk: t)
            block.gramSeconds = g
            block.layerSeconds = l
            return block
        }

        /// The whole result, block by block straight into the output matrices (no per-block copies), then mirrored.
        public func computeAll(progress: ((Int, Int) -> Void)? = nil) -> (result: Result, gramSeconds: Double, layerSeconds: Double) {
            let n1 = x1.rows, n2 = x2.rows, tn = options.computeNTK ? n1 * n2 : 0
            // The matrices own their storage from the start (a second reference would make the mirror copy them).
            var nngp = Matrix(rows: n1, cols: n2, data: uninitializedArray(n1 * n2))
            var ntk = Matrix(rows: options.computeNTK ? n1 : 0, cols: options.computeNTK ? n2 : 0,
                             data: uninitializedArray(tn))
            var gram = 0.0, layers = 0.0
            nngp.data.withUnsafeMutableBufferPointer { kp in
                ntk.data.withUnsafeMutableBufferPointer { tp in
                    for rows in blocks {
                        let off = rows.lowerBound * n2
                        let (g, l) = fill(rows, kp.baseAddress! + off, options.computeNTK ? tp.baseAddress! + off : nil)
                        gram += g
                        layers += l
                        progress?(rows.upperBound, n1)
                    }
                }
            }
            if symmetric {
                mirrorUpperToLower(&nngp, threads: options.threads)
                if options.computeNTK { mirrorUpperToLower(&ntk, threads: options.threads) }
            }
            return (Result(nngp: nngp, ntk: ntk, quadratureError: nil), gram, layers)
        }

        /// Fills rows `rows` (kOut/tOut point at the first of them, row length N2): tiles of `rowGroup` rows ×
        /// `columnBlock` columns spread over our own threads (`OwnThreads`, OpenBLAS single-threaded inside), each
        /// run by `KernelTile` in its worker's scratch and copied out — symmetric: only the upper trapezoid, the
        /// diagonal from the self chain. Returns the wall seconds split between the Gram product and the recursion
        /// in proportion to the threads' time in each.
        func fill(_ rows: Range<Int>, _ kOut: UnsafeMutablePointer<Double>, _ tOut: UnsafeMutablePointer<Double>?) -> (Double, Double) {
            let n2 = x2.rows, computeNTK = options.computeNTK
            var tiles: [(r0: Int, r: Int, c0: Int, c1: Int)] = []
            for r0 in stride(from: rows.lowerBound, to: rows.upperBound, by: rowGroup) {  // costliest (top) first
                let r = min(rowGroup, rows.upperBound - r0)
                for c0 in stride(from: symmetric ? r0 : 0, to: n2, by: columnBlock) {
                    tiles.append((r0, r, c0, min(n2, c0 + columnBlock)))
                }
            }
            let arrays = KernelTile.Buffers.count(program), capacity = rowGroup * program.maxEntries * columnBlock
            let scratch = UnsafeMutablePointer<Double>.allocate(capacity: workers * arrays * capacity)
            defer { scratch.deallocate() }
            var busy = [(gram: UInt64, layers: UInt64)](repeating: (0, 0), count: workers)
            let started = DispatchTime.now().uptimeNanoseconds
            x1.data.withUnsafeBufferPointer { ap in
                x2.data.withUnsafeBufferPointer { bp in
                    // the variances are only read here (record: false): no copy of them
                    var1.withUnsafeBufferPointer { v1b in
                        var2.withUnsafeBufferPointer { v2b in
                            let v1p = UnsafeMutablePointer(mutating: v1b.baseAddress!)
                            let v2p = UnsafeMutablePointer(mutating: v2b.baseAddress!)
                            busy.withUnsafeMutableBufferPointer { busy in
                                let tile = KernelTile(
                                    program: program,
                                    rows: .init(x: ap.baseAddress!, v: v1p, offsets: offsets1, n: x1.rows),
                                    cols: .init(x: bp.baseAddress!, v: v2p, offsets: offsets2, n: n2),
                                    computeNTK: computeNTK, quad: quad)
                                OwnThreads.forEach(tiles.count, workers: workers) { w, index in
                                    let t0 = DispatchTime.now().uptimeNanoseconds
                                    let (r0, r, c0, c1) = tiles[index]
                                    let square = symmetric && c0 == r0
                                    let skip = (0..<r).map { square ? $0 : 0 }
                                    var b = KernelTile.Buffers(scratch + w * arrays * capacity, capacity: capacity,
                                                               depth: program.maxDepth)
                                    let out = tile.run(r0: r0, r: r, c0: c0, c1: c1, skip: skip, square: square,
                                                       record: false, &b)
                                    let nb = c1 - c0
                                    for i in 0..<r {
                                        let a = r0 + i, dst = (a - rows.lowerBound) * n2 + c0 + skip[i]
                                        (kOut + dst).update(from: out.k + i * nb + skip[i], count: nb - skip[i])
                                        if let tOut {
                                            (tOut + dst).update(from: out.t + i * nb + skip[i], count: nb - skip[i])
                                        }
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

        /// The full [N1, N2] kernels from all blocks (mirroring the upper triangle when symmetric). The blocks'
        /// storage is taken over (they are left empty): N² kernels are not copied.
        public func assemble(_ blocks: inout [Block]) -> Result {
            let n1 = x1.rows, n2 = x2.rows
            var nngp: Matrix, ntk: Matrix
            if blocks.count == 1 {  // one block: take its storage, no copy
                var a: [Double] = [], b: [Double] = []
                swap(&a, &blocks[0].nngp)
                swap(&b, &blocks[0].ntk)
                nngp = Matrix(rows: n1, cols: n2, data: a)
                ntk = options.computeNTK ? Matrix(rows: n1, cols: n2, data: b) : Matrix(rows: 0, cols: 0)
            } else {
                nngp = Matrix(rows: n1, cols: n2)
                ntk = options.computeNTK ? Matrix(rows: n1, cols: n2) : Matrix(rows: 0, cols: 0)
                for b in blocks {
                    let range = b.rows.lowerBound * n2..<b.rows.upperBound * n2
                    nngp.data.replaceSubrange(range, with: b.nngp)
                    if options.computeNTK { ntk.data.replaceSubrange(range, with: b.ntk) }
                }
            }
            if symmetric {
                mirrorUpperToLower(&nngp, threads: options.threads)
                if options.computeNTK { mirrorUpperToLower(&ntk, threads: options.threads) }
            }
            return Result(nngp: nngp, ntk: ntk, quadratureError: nil)
        }
    }

    static func mirrorUpperToLower(_ a: inout Matrix, threads: Int = ProcessInfo.processorCount) {
        let n = a.rows
        a.data.withUnsafeMutableBufferPointer { mirrorUpperParallel($0.baseAddress!, n, threads: threads) }
    }
    /// Estimates the quadrature error on a few entries by comparing m and ⌈1.5·m⌉ nodes.
    static func quadratureError(x1: Matrix, x2: Matrix, network: Network, options: Options) throws -> Double {
        var o = options
        o.maxWorkspaceBytes = nil
        let a = x1.rows(0..<min(6, x1.rows)), b = x2.rows(0..<min(6, x2.rows))
        var o2 = o
        o2.quadratureNodes = min(256, (3 * o.quadratureNodes + 1) / 2)
        let k1 = try compute(x1: a, x2: b, network: network, options: o, progress: nil, estimate: false)
        let k2 = try compute(x1: a, x2: b, network: network, options: o2, progress: nil, estimate: false)
        let scale = max(k2.nngp.data.map(Swift.abs).max() ?? 1, k2.ntk.data.map(Swift.abs).max() ?? 1, 1e-300)
        let diff = zip(k1.nngp.data + k1.ntk.data, k2.nngp.data + k2.ntk.data).map { Swift.abs($0 - $1) }.max() ?? 0
        return diff / scale
    }
}

import Foundation
internal import COpenBLAS

/// C[m, n] (leading dimension ldc) = alpha·A[m, k]·B[n, k]ᵀ, row-major (C is not read).
func cblasGemmNT(_ m: Int, _ n: Int, _ k: Int, _ alpha: Double, _ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>,
                 _ c: UnsafeMutablePointer<Double>, _ ldc: Int) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), alpha, a, Int32(k), b, Int32(k), 0, c, Int32(ldc))
}

extension ProcessInfo {
    static var processorCount: Int { ProcessInfo.processInfo.activeProcessorCount }
}

/// The angular Gauss–Legendre and radial Gauss–Laguerre rules of `ntk_kernel_quadrature_row`.
struct QuadratureRule: Sendable {
    let angle: (nodes: [Double], weights: [Double])
    let radius: (nodes: [Double], weights: [Double])

    init(nodes m: Int) throws {
        angle = try GaussRule.legendre(m)
        radius = try GaussRule.laguerre(m)
    }

    func withRule<R>(_ body: (UnsafePointer<ntk_quadrature_rule>) -> R) -> R {
        angle.nodes.withUnsafeBufferPointer { ax in
            angle.weights.withUnsafeBufferPointer { aw in
                radius.nodes.withUnsafeBufferPointer { rx in
                    radius.weights.withUnsafeBufferPointer { rw in
                        var r = ntk_quadrature_rule(angle_x: ax.baseAddress, angle_w: aw.baseAddress, m_angle: ax.count,
                                                    radius_x: rx.baseAddress, radius_w: rw.baseAddress, m_radius: rx.count)
                        return body(&r)
                    }
                }
            }
        }
    }
}

extension AnalyticKernels {
    /// T = E[φ(u)φ(v)] and Ṫ = E[φ'(u)φ'(v)] for (u, v) ~ N(0, [[d1, q], [q, d2]]): by the closed form when the
    /// activation has one, else by quadrature (`quadratureNodes`), or forced through quadrature.
    public static func expectations(_ act: Activation, d1: Double, d2: Double, q: Double, quadratureNodes: Int? = nil) throws -> (t: Double, tdot: Double) {
        var k = q, t = 1.0
        var d = d2
        let (a, b) = act.arcCosine ?? (0, 0)
        var c = ntk_layer_coef(w_var: 1, b_var: 0, ntk_t_scale: 0, ntk_shift: 0, a: a, b: b)
        let rule = try (quadratureNodes ?? (act.hasClosedFormKernel ? nil : 32)).map { try QuadratureRule(nodes: $0) }
        KernelTile.activationRow(act, rule, &k, &t, &d, d1, 1, &c)
        return (k, t)
    }
}
