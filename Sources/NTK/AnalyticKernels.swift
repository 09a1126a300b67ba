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
        /// The recursion's state: float64, or float32 (half the memory traffic and tile size; each activation's T
        /// and Ṫ still evaluated in float64, then rounded). The results are returned in float64 either way.
        public var float32 = false
        /// Rows per block (each checkpointed by the stage); nil: about `Plan.blockWork` state entries of work each.
        public var blockRows: Int? = nil
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
        /// Where each slot's variances start in `KernelTile.Side.v`, for each set.
        let offsets1: [Int], offsets2: [Int]
        /// The sets in the state's precision, their variances, the tiles' fill (`TileSets`).
        let tiles: KernelTileSets
        /// Rows per tile (256 for vectors: the Gram product is a GEMM; 1 for images) and columns per tile (as many
        /// as the state of `KernelProgram.tileArrays` arrays per worker allows under the workspace cap).
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

        /// State entries computed per row block (2³⁰: about a second of the recursion on 2 cores).
        static let blockWork = 1 << 30

        /// The tiles' cap without `maxWorkspaceBytes`.
        public static let defaultTileBytes = 1 << 30

        /// The cap is smaller than one column of one worker's tile (the covariance states of one pair of samples).
        public struct WorkspaceTooSmall: Error, CustomStringConvertible, Sendable {
            public let needed: Int, cap: Int, entries: Int
            public var description: String {
                "one pair of samples needs \(MemoryBudget.size(needed)) of covariance state (\(entries) spatial "
                    + "entries per array), more than the workspace cap of \(MemoryBudget.size(cap))"
            }
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
            let arrays = program.tileArrays
            let budget = options.maxWorkspaceBytes ?? Self.defaultTileBytes
            // one column of one worker's tile: `arrays` covariance states of `maxEntries` spatial entries
            let column = arrays * program.maxEntries * (options.float32 ? 4 : 8)
            guard column <= budget else {
                throw WorkspaceTooSmall(needed: column, cap: budget, entries: program.maxEntries)
            }
            workers = max(1, min(options.threads, OwnThreads.workers, budget / column))
            var group = program.form == .vector ? 256 : 1
            let perColumn = workers * column
            columnBlock = max(1, min(self.x2.rows, budget / max(perColumn * group, 1)))
            if program.form == .vector { group = min(group, columnBlock) }
            rowGroup = group
            func offsets(_ n: Int) -> [Int] { program.slotPositions.reduce(into: [0]) { $0.append($0.last! + $1 * n) } }
            offsets1 = offsets(x1.rows)
            offsets2 = offsets(self.x2.rows)
            tiles = Self.tileSets(x1, self.x2, symmetric, program, offsets1, offsets2, options, quad, workers)
            // rows per block: what the cap allows, and (for checkpoints a killed run resumes from) about
            // `blockWork` state entries of work — about a second for the spatial forms
            let bytesPerRow = 8 * self.x2.rows * (options.computeNTK ? 2 : 1)
            let byWork = options.blockRows ?? Self.blockWork / max(1, self.x2.rows * program.workPerPair)
            let size = max(1, min((options.maxWorkspaceBytes ?? Int.max) / max(bytesPerRow, 1), byWork))
            blocks = stride(from: 0, to: x1.rows, by: size).map { $0..<min(x1.rows, $0 + size) }
        }

        /// The self chains of both sets and their tile engine, in the precision the options ask for.
        static func tileSets(_ x1: Matrix, _ x2: Matrix, _ symmetric: Bool, _ program: KernelProgram, _ o1: [Int],
                             _ o2: [Int], _ options: Options, _ quad: QuadratureRule?, _ workers: Int)
            -> KernelTileSets {
            func sets<T: KernelFloat>(_: T.Type) -> TileSets<T> {
                TileSets(x1: x1, x2: x2, symmetric: symmetric, program: program, offsets1: o1, offsets2: o2,
                         computeNTK: options.computeNTK, quad: quad, workers: workers)
            }
            return options.float32 ? .float32(sets(Float.self)) : .float64(sets(Double.self))
        }

        /// K(a, a) and Θ(a, a) of every sample a of x1: the diagonal a symmetric result carries (the self chain's
        /// last step), without computing any pair.
        public var diagonal: (nngp: [Double], ntk: [Double]) { (tiles.self1, tiles.selfNTK) }

        /// Floating-point operations of the whole result (`KernelProgram.flopsPerPair` per pair computed: the
        /// upper triangle when symmetric, plus the self chains of both sets).
        public var flops: Double {
            let pairs = symmetric ? Double(x1.rows) * Double(x1.rows + 1) / 2 : Double(x1.rows) * Double(x2.rows)
            let q = options.quadratureNodes, each = program.flopsPerPair(ntk: options.computeNTK, quadratureNodes: q)
            return each * (pairs + Double(x1.rows))
                + (symmetric ? 0 : program.flopsPerPair(ntk: false, quadratureNodes: q) * Double(x2.rows))
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

        /// Fills rows `rows` (kOut/tOut point at the first of them, row length N2; `TileSets.fill`). Returns the
        /// wall seconds spent in the Gram product and in the recursion.
        func fill(_ rows: Range<Int>, _ kOut: UnsafeMutablePointer<Double>, _ tOut: UnsafeMutablePointer<Double>?) -> (Double, Double) {
            tiles.fill(self, rows, kOut, tOut)
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
        Double.kernelRow(act, rule, &k, &t, &d, d1, 1, &c)
        return (k, t)
    }
}
