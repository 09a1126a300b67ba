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
        try compute(x1: x1, x2: x2, spec: spec, options: options, progress: progress, estimate: true)
    }

    static func compute(x1: Matrix, x2: Matrix?, spec: NetworkSpec, options: Options, progress: ((Int, Int) -> Void)?,
                        estimate: Bool) throws -> Result {
        let plan = try Plan(x1: x1, x2: x2, spec: spec, options: options)
        var result = plan.computeAll(progress: progress).result
        if estimate && plan.quad != nil && x1.rows > 0 && plan.x2.rows > 0 {
            result.quadratureError = try quadratureError(x1: x1, x2: plan.x2, spec: spec, options: options)
        }
        return result
    }

    /// The recursion prepared for a pair of input sets: layer coefficients, quadrature rule, and the diagonal
    /// sequences K^l(x, x). Rows of the result are computed in blocks (`blocks`, sized by the workspace cap),
    /// each independently — so a caller can checkpoint finished blocks and resume — then `assemble`d.
    public struct Plan: Sendable {
        public let x1: Matrix, x2: Matrix
        public let symmetric: Bool
        public let spec: NetworkSpec
        let options: Options
        let layers: [ntk_layer_coef]
        let quad: QuadratureRule?
        let diag1: [[Double]], diag2: [[Double]], diagNTK: [Double]
        /// Row ranges of the blocks, in order.
        public let blocks: [Range<Int>]

        /// Rows `rows` of the kernels, [rows.count, N2] row-major; in the symmetric case only the columns ≥ the
        /// row index are filled (the rest is unspecified until `assemble` mirrors them).
        public struct Block: Sendable {
            public var rows: Range<Int>
            public var nngp: [Double]
            public var ntk: [Double]
            /// Wall seconds spent in the Gram product (BLAS) and in the element-wise layer recursion (C, all cores).
            public var gramSeconds = 0.0, layerSeconds = 0.0
            public init(rows: Range<Int>, nngp: [Double], ntk: [Double]) { self.rows = rows; self.nngp = nngp; self.ntk = ntk }
        }

        public init(x1: Matrix, x2: Matrix?, spec: NetworkSpec, options: Options = Options()) throws {
            precondition(x2 == nil || x2!.cols == x1.cols, "x1 and x2 need the same feature dimension")
            precondition(x1.cols == spec.inputDim, "inputs have \(x1.cols) features, the network expects \(spec.inputDim)")
            self.x1 = x1
            self.x2 = x2 ?? x1
            symmetric = x2 == nil
            self.spec = spec
            self.options = options
            layers = coefficients(spec)
            quad = spec.activation.arcCosine == nil && spec.activation != .erf ? try QuadratureRule(nodes: options.quadratureNodes) : nil
            let w0 = spec.wStd[0] * spec.wStd[0], b0 = spec.bStd[0] * spec.bStd[0], d = Double(x1.cols)
            func norms(_ x: Matrix) -> [Double] {
                x.data.withUnsafeBufferPointer { p in (0..<x.rows).map { w0 * Double.sumsq(p.baseAddress! + $0 * x.cols, x.cols) / d + b0 } }
            }
            let first = diagonals(norms(x1), layers: layers, spec: spec, quad: quad)
            diag1 = first.nngp
            diagNTK = first.ntk
            diag2 = x2 == nil ? diag1 : diagonals(norms(self.x2), layers: layers, spec: spec, quad: quad).nngp
            let bytesPerRow = 8 * self.x2.rows * (options.computeNTK ? 2 : 1)
            let size = max(1, (options.maxWorkspaceBytes ?? Int.max) / max(bytesPerRow, 1))
            blocks = stride(from: 0, to: x1.rows, by: size).map { $0..<min(x1.rows, $0 + size) }
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

        /// Fills rows `rows` (kOut/tOut point at the first of them, row length N2): in chunks of 256 rows spread over
        /// our own threads (`OwnThreads`, OpenBLAS single-threaded inside), each chunk's Gram rows — x1[rows]·x2ᵀ·σ_w,0²/n₀
        /// + σ_b,0², symmetric: only the upper trapezoid, a SYRK on the chunk's diagonal square and a GEMM to its right —
        /// then the layer recursion on those rows while they are in cache. Returns the wall seconds split between the
        /// Gram product and the recursion in proportion to the threads' time in each.
        func fill(_ rows: Range<Int>, _ kOut: UnsafeMutablePointer<Double>, _ tOut: UnsafeMutablePointer<Double>?) -> (Double, Double) {
            let n2 = x2.rows, r0 = rows.lowerBound, rn = rows.count, d = x1.cols
            let w0 = spec.wStd[0] * spec.wStd[0], b0 = spec.bStd[0] * spec.bStd[0], alpha = w0 / Double(max(d, 1))
            let computeNTK = options.computeNTK
            let chunks = stride(from: 0, to: rn, by: 256).map { $0..<min(rn, $0 + 256) }  // costliest (top) first
            let workers = max(1, min(options.threads, OwnThreads.workers))
            var busy = [(gram: UInt64, layers: UInt64)](repeating: (0, 0), count: workers)
            let started = DispatchTime.now().uptimeNanoseconds
            x1.data.withUnsafeBufferPointer { ap in
                x2.data.withUnsafeBufferPointer { bp in
                    busy.withUnsafeMutableBufferPointer { busy in
                        OwnThreads.forEach(chunks.count, workers: workers) { w, c in
                            let t0 = DispatchTime.now().uptimeNanoseconds
                            let local = chunks[c], sn = local.count, out = kOut + local.lowerBound * n2
                            let a = ap.baseAddress! + (r0 + local.lowerBound) * d
                            if d == 0 {
                                out.update(repeating: 0, count: sn * n2)
                            } else if symmetric {
                                let diag = r0 + local.lowerBound, right = diag + sn
                                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(sn), Int32(d), alpha, a, Int32(d), 0, out + diag, Int32(n2))
                                if n2 > right { cblasGemmNT(sn, n2 - right, d, alpha, a, bp.baseAddress! + right * d, out + right, n2) }
                            } else {
                                cblasGemmNT(sn, n2, d, alpha, a, bp.baseAddress!, out, n2)
                            }
                            if b0 != 0 {
                                for i in local {
                                    let c0 = symmetric ? r0 + i : 0
                                    Double.affine(kOut + i * n2 + c0, 1, b0, n2 - c0)
                                }
                            }
                            let t1 = DispatchTime.now().uptimeNanoseconds
                            for i in local {
                                let gi = r0 + i
                                // symmetric: the diagonal comes from the c = 1 recursion (exact for parallel inputs)
                                let start = symmetric ? gi + 1 : 0, count = n2 - start
                                if symmetric {
                                    kOut[i * n2 + gi] = diag1[layers.count][gi]
                                    if computeNTK { tOut![i * n2 + gi] = diagNTK[gi] }
                                }
                                let krow = kOut + i * n2 + start, trow = computeNTK ? tOut! + i * n2 + start : nil
                                if let trow {  // Θ⁰
                                    trow.update(from: krow, count: count)
                                    if spec.parameterization == .standard {
                                        Double.affine(trow, Double(spec.inputDim) / w0, -b0 * Double(spec.inputDim) / w0 + (spec.bStd[0] != 0 ? 1 : 0), count)
                                    }
                                }
                                for (l, c) in layers.enumerated() {
                                    diag2[l].withUnsafeBufferPointer { dp in
                                        applyLayer(krow, trow, dp.baseAddress! + start, diag1[l][gi], count, c, spec.activation, quad)
                                    }
                                }
                            }
                            busy[w].gram += t1 - t0
                            busy[w].layers += DispatchTime.now().uptimeNanoseconds - t1
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

    /// One layer (activation + Dense) for one row, in place.
    private static func applyLayer(_ k: UnsafeMutablePointer<Double>, _ t: UnsafeMutablePointer<Double>?, _ d2: UnsafePointer<Double>,
                                   _ d1: Double, _ n: Int, _ c: ntk_layer_coef, _ act: Activation,
                                   _ quad: QuadratureRule?) {
        var c = c
        if let quad {
            let (a, alpha) = act.c
            quad.withRule { ntk_kernel_quadrature_row(k, t, d2, d1, n, &c, a, alpha, $0) }
        } else if act == .erf {
            ntk_kernel_erf_row(k, t, d2, d1, n, &c)
        } else {
            ntk_kernel_abrelu_row(k, t, d2, d1, n, &c)
        }
    }

    /// Coefficients of Dense layers 1…L (each preceded by the activation).
    static func coefficients(_ spec: NetworkSpec) -> [ntk_layer_coef] {
        let (a, b) = spec.activation.arcCosine ?? (0, 0)
        return (1...max(spec.depth, 1)).prefix(spec.depth).map { l in
            let w = spec.wStd[l] * spec.wStd[l], bv = spec.bStd[l] * spec.bStd[l]
            switch spec.parameterization {
            case .ntk: return ntk_layer_coef(w_var: w, b_var: bv, ntk_t_scale: w, ntk_shift: bv, a: a, b: b)
            case .standard:
                return ntk_layer_coef(w_var: w, b_var: bv, ntk_t_scale: Double(spec.fanIn(l)), ntk_shift: spec.bStd[l] != 0 ? 1 : 0, a: a, b: b)
            }
        }
    }

    /// The kernels at (x, x) through the layers: nngp[l][i] = K^l(x_i, x_i) for l = 0…L, and the NTK's
    /// Θ^L(x_i, x_i), by the same row kernels with c = 1 exactly.
    static func diagonals(_ v0: [Double], layers: [ntk_layer_coef], spec: NetworkSpec,
                          quad: QuadratureRule?) -> (nngp: [[Double]], ntk: [Double]) {
        var out = [v0]
        var theta = v0.map { spec.parameterization == .ntk ? $0 : Double(spec.inputDim) / (spec.wStd[0] * spec.wStd[0]) * ($0 - spec.bStd[0] * spec.bStd[0]) + (spec.bStd[0] != 0 ? 1 : 0) }
        for c in layers {
            let prev = out.last!
            var next = prev
            for i in 0..<next.count {
                var v = prev[i]
                withUnsafePointer(to: prev[i]) { dp in applyLayer(&v, &theta[i], dp, prev[i], 1, c, spec.activation, quad) }
                next[i] = v
            }
            out.append(next)
        }
        return (out, theta)
    }

    /// Estimates the quadrature error on a few entries by comparing m and ⌈1.5·m⌉ nodes.
    static func quadratureError(x1: Matrix, x2: Matrix, spec: NetworkSpec, options: Options) throws -> Double {
        var o = options
        o.maxWorkspaceBytes = nil
        let a = x1.rows(0..<min(6, x1.rows)), b = x2.rows(0..<min(6, x2.rows))
        var o2 = o
        o2.quadratureNodes = min(256, (3 * o.quadratureNodes + 1) / 2)
        let k1 = try compute(x1: a, x2: b, spec: spec, options: o, progress: nil, estimate: false)
        let k2 = try compute(x1: a, x2: b, spec: spec, options: o2, progress: nil, estimate: false)
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
        if let m = quadratureNodes ?? (act.arcCosine == nil && act != .erf ? 32 : nil) {
            let rule = try QuadratureRule(nodes: m)
            let (ca, alpha) = act.c
            rule.withRule { ntk_kernel_quadrature_row(&k, &t, &d, d1, 1, &c, ca, alpha, $0) }
        } else if act == .erf {
            ntk_kernel_erf_row(&k, &t, &d, d1, 1, &c)
        } else {
            ntk_kernel_abrelu_row(&k, &t, &d, d1, 1, &c)
        }
        return (k, t)
    }
}
