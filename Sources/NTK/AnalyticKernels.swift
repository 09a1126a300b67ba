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
/// element-wise pass in C (AVX2) over the matrices, rows split across cores. The diagonal K(x,x) is computed
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
        let symmetric = x2 == nil
        let x2m = x2 ?? x1
        precondition(x1.cols == x2m.cols, "x1 and x2 need the same feature dimension")
        let n1 = x1.rows, n2 = x2m.rows, d = Double(x1.cols)
        let layers = coefficients(spec)
        let quad: QuadratureRule? = spec.activation.arcCosine == nil && spec.activation != .erf
            ? try QuadratureRule(nodes: options.quadratureNodes) : nil

        // Input variances and their images through the layers: diag[l][i] = K^l(x_i, x_i).
        let w0 = spec.wStd[0] * spec.wStd[0], b0 = spec.bStd[0] * spec.bStd[0]
        func norms(_ x: Matrix) -> [Double] {
            x.data.withUnsafeBufferPointer { p in (0..<x.rows).map { w0 * Double.sumsq(p.baseAddress! + $0 * x.cols, x.cols) / d + b0 } }
        }
        let (diag1, diagNTK) = diagonals(norms(x1), layers: layers, spec: spec, quad: quad)
        let diag2 = symmetric ? diag1 : diagonals(norms(x2m), layers: layers, spec: spec, quad: quad).nngp

        var nngp = Matrix(rows: n1, cols: n2)
        var ntk = options.computeNTK ? Matrix(rows: n1, cols: n2) : Matrix(rows: 0, cols: 0)
        // Row blocks: the Gram block [B, width] is computed straight into nngp's rows.
        let bytesPerRow = 8 * n2 * (options.computeNTK ? 2 : 1)
        let block = max(1, min(n1, (options.maxWorkspaceBytes ?? Int.max) / max(bytesPerRow, 1)))
        var r0 = 0
        while r0 < n1 {
            let r1 = min(n1, r0 + block)
            let c0 = symmetric ? r0 : 0  // symmetric: columns ≥ first row of the block (upper triangle)
            gramBlock(x1, x2m, rows: r0..<r1, fromColumn: c0, alpha: w0 / d, beta: b0, into: &nngp)

            let nt = max(1, min(options.threads, r1 - r0))
            nngp.data.withUnsafeMutableBufferPointer { kp in
                ntk.data.withUnsafeMutableBufferPointer { tp in
                    let k = kp.baseAddress!, t = tp.baseAddress
                    DispatchQueue.concurrentPerform(iterations: nt) { w in
                        var i = r0 + w
                        while i < r1 {
                            // symmetric: the diagonal comes from the c = 1 recursion (exact for parallel inputs)
                            let start = symmetric ? i + 1 : 0, count = n2 - start
                            if symmetric {
                                k[i * n2 + i] = diag1[layers.count][i]
                                t?[i * n2 + i] = diagNTK[i]
                            }
                            let krow = k + i * n2 + start, trow = t.map { $0 + i * n2 + start }
                            if let trow {  // Θ⁰
                                if spec.parameterization == .ntk {
                                    trow.update(from: krow, count: count)
                                } else {
                                    trow.update(from: krow, count: count)
                                    Double.affine(trow, Double(spec.inputDim) / w0, -b0 * Double(spec.inputDim) / w0 + (spec.bStd[0] != 0 ? 1 : 0), count)
                                }
                            }
                            for (l, c) in layers.enumerated() {
                                applyLayer(krow, trow, diag2[l].withUnsafeBufferPointer { $0.baseAddress! + start }, diag1[l][i], count,
                                           c, spec.activation, quad)
                            }
                            i += nt
                        }
                    }
                }
            }
            r0 = r1
            progress?(r0, n1)
        }
        if symmetric {  // mirror the upper triangle
            for i in 0..<n1 {
                for j in 0..<i { nngp[i, j] = nngp[j, i] }
                if options.computeNTK { for j in 0..<i { ntk[i, j] = ntk[j, i] } }
            }
        }
        var result = Result(nngp: nngp, ntk: ntk, quadratureError: nil)
        if estimate && quad != nil && n1 > 0 && n2 > 0 {
            result.quadratureError = try quadratureError(x1: x1, x2: x2m, spec: spec, options: options)
        }
        return result
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

    /// out[rows, fromColumn...] = alpha·x1[rows]·x2[fromColumn...]ᵀ + beta (one dgemm).
    static func gramBlock(_ x1: Matrix, _ x2: Matrix, rows: Range<Int>, fromColumn c0: Int, alpha: Double, beta: Double,
                          into out: inout Matrix) {
        let m = rows.count, n = x2.rows - c0, k = x1.cols
        guard m > 0, n > 0 else { return }
        let ld = out.cols
        for i in rows { for j in c0..<x2.rows { out.data[i * ld + j] = beta } }
        x1.data.withUnsafeBufferPointer { ap in
            x2.data.withUnsafeBufferPointer { bp in
                out.data.withUnsafeMutableBufferPointer { cp in
                    if k == 0 { return }
                    cblasGemmNT(m, n, k, alpha, ap.baseAddress! + rows.lowerBound * k, bp.baseAddress! + c0 * k, cp.baseAddress! + rows.lowerBound * ld + c0, ld)
                }
            }
        }
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

/// C[m, n] (leading dimension ldc) += alpha·A[m, k]·B[n, k]ᵀ, row-major.
func cblasGemmNT(_ m: Int, _ n: Int, _ k: Int, _ alpha: Double, _ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>,
                 _ c: UnsafeMutablePointer<Double>, _ ldc: Int) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), alpha, a, Int32(k), b, Int32(k), 1, c, Int32(ldc))
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
