import Dispatch

/// The empirical NTK Θ̂(x, x') = J(x)·J(x')ᵀ of a finite network in precision T, without forming J:
/// for a Dense layer ∂f_i/∂W_l = s_w·a_l ⊗ δ_l^i, so each layer contributes a Hadamard product of two Gram
/// matrices (PAPER §1.7, neural-tangents' "structured derivatives"):
///
///     Θ̂_l[(a,i),(b,j)] = (c_w·a_l(x_a)·a_l(x'_b) + c_b) · δ_l^i(x_a)·δ_l^j(x'_b)
///
/// with c_w = σ_w²/fan_in, c_b = σ_b² (NTK parameterization) or c_w = c_b = 1 (standard; c_b = 0 without bias),
/// and δ_l^i = ∂f_i/∂z_{l+1} — the backprop signals of all k outputs, one GEMM per layer ([N·k, n_{l+1}]·W̃ᵀ).
///
/// - traced: [N1, N2] = (1/k)·Σ_i Θ̂[(a,i),(b,i)] — the Gram of Δ_l viewed as [N, k·n] (one GEMM, or SYRK when
///   x2 = x1) — neural-tangents' default `trace_axes=(-1,)`;
/// - full: [N1·k, N2·k] with row a·k + i (neural-tangents' [N1, N2, k, k] transposed to [N1, k, N2, k]);
/// - per layer: the W and b contributions of each Dense layer separately (neural-tangents gives only the sum).
///
/// Cost (symmetric, traced): forward 2N·P, signals 2N·k·Σ n_l·n_{l+1}, Grams N²·Σ(n_l + k·n_{l+1}) — all GEMM/SYRK.
public struct EmpiricalNTK<T: NTKFloat> {
    public enum Output: Sendable { case traced, full }

    public struct Result {
        /// traced: [N1·N2]; full: [N1·k · N2·k], row-major.
        public var ntk: [T]
        public var rows: Int, cols: Int
        /// Per Dense layer l: (W contribution, b contribution or nil), same layout as `ntk` (when asked for).
        public var perLayer: [(w: [T], b: [T]?)]
        /// Useful floating-point operations performed (for throughput reports).
        public var flops: Double
    }

    public let net: MLP

    public init(_ net: MLP) { self.net = net }

    /// Activations a_l (a_0 = x) and backprop signals Δ_l [N·k, n_{l+1}] of every Dense layer l for inputs x [n, d].
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func features(_ x: [T], n: Int, flops: inout Double) -> (acts: [[T]], signals: [[T]], lastHidden: [T]) {
        let spec = net.spec, k = spec.outputs, layers = net.layers
        let passes = Passes<T>(spec: spec, maxBatch: max(n, 1))
        let theta = net.theta.map { T($0) }
        theta.withUnsafeBufferPointer { th in x.withUnsafeBufferPointer { passes.forward(theta: th.baseAddress!, x: $0.baseAddress!, n: n) } }
        flops += 2 * Double(n) * layers.reduce(0) { $0 + Double($1.fanIn * $1.fanOut) }
        let acts = [x] + passes.acts  // maxBatch = n: each buffer holds exactly [n, n_l]
        var signals = [[T]](repeating: [], count: layers.count)
        // The last hidden layer's signals are δ^i = φ'(z_L) ⊙ W̃_L[:, i], so Σ_i δ^i(a)·δ^i(b) = Σ_p w_p·φ'_p(a)·φ'_p(b)
        // with w_p = ‖W̃_L[p, :]‖²: its traced Gram needs only F = φ'(z_L)·diag(√w) [n, n_L] — k times fewer flops.
        var lastHidden: [T] = []
        if layers.count >= 2 {
            let l = layers.count - 2, width = layers[l].fanOut, readout = layers[l + 1]
            let s = Double(passes.wScale[l + 1])
            let root = (0..<width).map { p in
                T((0..<readout.fanOut).reduce(0.0) { acc, i in let w = s * net.theta[readout.w + p * readout.fanOut + i]; return acc + w * w }.squareRoot())
            }
            lastHidden = [T](repeating: 0, count: n * width)
            passes.derivs[l].withUnsafeBufferPointer { dv in
                lastHidden.withUnsafeMutableBufferPointer { f in
                    root.withUnsafeBufferPointer { r in
                        for a in 0..<n { T.hadamard(f.baseAddress! + a * width, dv.baseAddress! + a * width, r.baseAddress!, width) }
                    }
                }
            }
        }
        // read-out: ∂f_i/∂z = e_i
        var delta = [T](repeating: 0, count: n * k * k)
        for a in 0..<n { for i in 0..<k { delta[(a * k + i) * k + i] = 1 } }
        signals[layers.count - 1] = delta
        for l in stride(from: layers.count - 2, through: 0, by: -1) {
            let next = layers[l + 1], width = layers[l].fanOut
            var d = [T](unsafeUninitializedCapacity: n * k * width) { _, c in c = n * k * width }  // fully written by the GEMM
            theta.withUnsafeBufferPointer { th in
                delta.withUnsafeBufferPointer { dp in
                    d.withUnsafeMutableBufferPointer { out in
                        T.gemm(transA: false, transB: true, m: n * k, n: width, k: next.fanOut, alpha: passes.wScale[l + 1], a: dp.baseAddress!,
                               lda: next.fanOut, b: th.baseAddress! + next.w, ldb: next.fanOut, beta: 0, c: out.baseAddress!, ldc: width)
                        passes.derivs[l].withUnsafeBufferPointer { dv in
                            for a in 0..<n {
                                for i in 0..<k {
                                    let row = out.baseAddress! + (a * k + i) * width
                                    T.hadamard(row, row, dv.baseAddress! + a * width, width)
                                }
                            }
                        }
                    }
                }
            }
            flops += 2 * Double(n * k) * Double(width * next.fanOut)
            signals[l] = d
            delta = d
        }
        return (acts, signals, lastHidden)
    }

    /// The empirical NNGP kernel of the read-out features x̄(x) = [σ_w·a_L(x)/√n_L, σ_b] (PAPER §2.5):
    /// K̂(x, x') = σ_w²/n_L·a_L(x)·a_L(x') + σ_b², [N1, N2] (the read-out's own c_w, c_b in standard parameterization).
    public func nngp(x1: Matrix, x2: Matrix? = nil) -> [T] {
        let last = net.layers.count - 1, layer = net.layers[last], spec = net.spec
        var flops = 0.0
        let a1 = features(x1.data.map { T($0) }, n: x1.rows, flops: &flops).acts[last]
        let a2 = x2.map { features($0.data.map { T($0) }, n: $0.rows, flops: &flops).acts[last] } ?? a1
        let n2 = x2?.rows ?? x1.rows
        let cw = spec.wStd[last] * spec.wStd[last] / Double(layer.fanIn), cb = spec.bStd[last] * spec.bStd[last]
        var k = [T](repeating: T(cb), count: x1.rows * n2)
        a1.withUnsafeBufferPointer { a in
            a2.withUnsafeBufferPointer { b in
                k.withUnsafeMutableBufferPointer { c in
                    T.gemm(transA: false, transB: true, m: x1.rows, n: n2, k: layer.fanIn, alpha: T(cw), a: a.baseAddress!, lda: layer.fanIn,
                           b: b.baseAddress!, ldb: layer.fanIn, beta: 1, c: c.baseAddress!, ldc: n2)
                }
            }
        }
        return k
    }

    /// Θ̂ between the rows of x1 [N1, d] and x2 [N2, d] (x2 nil: x1 with itself, using SYRK and symmetry).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func compute(x1: Matrix, x2: Matrix? = nil, output: Output = .traced, perLayer: Bool = false) -> Result {
        let spec = net.spec, k = spec.outputs
        let symmetric = x2 == nil
        let n1 = x1.rows, n2 = (x2 ?? x1).rows
        var flops = 0.0
        let f1 = features(x1.data.map { T($0) }, n: n1, flops: &flops)
        let f2 = symmetric ? f1 : features(x2!.data.map { T($0) }, n: n2, flops: &flops)
        let full = output == .full
        let rows = full ? n1 * k : n1, cols = full ? n2 * k : n2
        var ntk = [T](repeating: 0, count: rows * cols)
        var parts: [(w: [T], b: [T]?)] = []
        // Overwritten by each layer's GEMM/SYRK (symmetric: only the upper part, the only part read).
        var gram = [T](unsafeUninitializedCapacity: n1 * n2) { _, c in c = n1 * n2 }
        var sig = [T](unsafeUninitializedCapacity: rows * cols) { _, c in c = rows * cols }
        var gexp = [T](repeating: 0, count: cols)
        for (l, layer) in net.layers.enumerated() {
            let (cw, cb): (Double, Double) = spec.parameterization == .ntk
                ? (spec.wStd[l] * spec.wStd[l] / Double(layer.fanIn), layer.b == nil ? 0 : spec.bStd[l] * spec.bStd[l])
                : (1, layer.b == nil ? 0 : 1)
            // G = c_w·A Aᵀ  (the bias part c_b is added where it is used)
            f1.acts[l].withUnsafeBufferPointer { a in
                f2.acts[l].withUnsafeBufferPointer { b in
                    gram.withUnsafeMutableBufferPointer { g in
                        if symmetric {
                            T.syrk(n: n1, k: layer.fanIn, alpha: T(cw), a: a.baseAddress!, lda: layer.fanIn, c: g.baseAddress!, ldc: n2)
                        } else {
                            T.gemm(transA: false, transB: true, m: n1, n: n2, k: layer.fanIn, alpha: T(cw), a: a.baseAddress!, lda: layer.fanIn,
                                   b: b.baseAddress!, ldb: layer.fanIn, beta: 0, c: g.baseAddress!, ldc: n2)
                        }
                    }
                }
            }
            flops += (symmetric ? 1 : 2) * Double(n1) * Double(n2) * Double(layer.fanIn)
            // D = Δ Δ'ᵀ: traced over the [N, k·n] view (scaled 1/k), full over [N·k, n]; the traced last hidden
            // layer through its compact form F (see `features`)
            let compact = !full && l == net.layers.count - 2
            let inner = full || compact ? layer.fanOut : k * layer.fanOut
            let alpha = T(full ? 1 : 1 / Double(k))
            (compact ? f1.lastHidden : f1.signals[l]).withUnsafeBufferPointer { a in
                (compact ? f2.lastHidden : f2.signals[l]).withUnsafeBufferPointer { b in
                    sig.withUnsafeMutableBufferPointer { s in
                        if symmetric {
                            T.syrk(n: rows, k: inner, alpha: alpha, a: a.baseAddress!, lda: inner, c: s.baseAddress!, ldc: cols)
                        } else {
                            T.gemm(transA: false, transB: true, m: rows, n: cols, k: inner, alpha: alpha, a: a.baseAddress!, lda: inner,
                                   b: b.baseAddress!, ldb: inner, beta: 0, c: s.baseAddress!, ldc: cols)
                        }
                    }
                }
            }
            flops += (symmetric ? 1 : 2) * Double(rows) * Double(cols) * Double(inner)
            // Θ += (G + c_b) ⊙ D, row by row (upper triangle only when symmetric); per-layer parts if asked
            var wPart = perLayer ? [T](repeating: 0, count: rows * cols) : []
            var bPart = perLayer && cb != 0 ? [T](repeating: 0, count: rows * cols) : []
            ntk.withUnsafeMutableBufferPointer { t in
                sig.withUnsafeBufferPointer { s in
                    gram.withUnsafeBufferPointer { g in
                        gexp.withUnsafeMutableBufferPointer { ge in
                            for r in 0..<rows {
                                let a = full ? r / k : r
                                let start = symmetric ? r : 0, count = cols - start
                                if count == 0 { continue }
                                // expanded Gram row: G[a, b] (+ c_b) repeated k times in the full layout
                                if full {
                                    let gb = g.baseAddress! + a * n2, e = ge.baseAddress!
                                    var c = start
                                    while c < cols {
                                        let v = gb[c / k], end = min(cols, (c / k + 1) * k)
                                        while c < end { e[c] = v; c += 1 }
                                    }
                                } else {
                                    (ge.baseAddress! + start).update(from: g.baseAddress! + a * n2 + start, count: count)
                                }
                                let srow = s.baseAddress! + r * cols + start
                                if perLayer {
                                    wPart.withUnsafeMutableBufferPointer { T.hadamardAcc($0.baseAddress! + r * cols + start, ge.baseAddress! + start, srow, count) }
                                    if cb != 0 { bPart.withUnsafeMutableBufferPointer { T.axpy($0.baseAddress! + r * cols + start, T(cb), srow, count) } }
                                }
                                if cb != 0 { T.affine(ge.baseAddress! + start, 1, T(cb), count) }
                                T.hadamardAcc(t.baseAddress! + r * cols + start, ge.baseAddress! + start, srow, count)
                            }
                        }
                    }
                }
            }
            if perLayer {
                if symmetric {
                    wPart.withUnsafeMutableBufferPointer { mirrorUpperParallel($0.baseAddress!, rows) }
                    bPart.withUnsafeMutableBufferPointer { if !$0.isEmpty { mirrorUpperParallel($0.baseAddress!, rows) } }
                }
                parts.append((wPart, cb != 0 ? bPart : nil))
            }
        }
        if symmetric { ntk.withUnsafeMutableBufferPointer { mirrorUpperParallel($0.baseAddress!, rows) } }
        return Result(ntk: ntk, rows: rows, cols: cols, perLayer: parts, flops: flops)
    }
}

import Foundation
