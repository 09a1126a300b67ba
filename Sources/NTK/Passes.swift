/// Forward and backward passes of an `MLP` over a batch in precision T (float32 or float64), with every buffer
/// allocated once for `maxBatch` rows (nothing is allocated per step). GEMMs go to OpenBLAS (bias additions
/// and bias gradients too, as rank-1 products with a ones vector); element-wise work goes through the C core.
///
/// Conventions (llm.c): `backward` accumulates into `grad` (+=); the caller zeroes it.
///     forward:   z_{l+1} = s_w,l·a_l·W_l + s_b,l·1·b_lᵀ,  a_{l+1} = φ(z_{l+1}) (hidden), f = z_{L+1}
///     backward:  ∂W_l += s_w,l·a_lᵀ·δ_{l+1},  ∂b_l += s_b,l·1ᵀ·δ_{l+1},  δ_l = (s_w,l·δ_{l+1}·W_lᵀ) ⊙ φ'(z_l)
/// with s_w = σ_w/√fan_in, s_b = σ_b (NTK parameterization) or s_w = s_b = 1 (standard), δ_{L+1} = ∂L/∂f.
public final class Passes<T: NTKFloat> {
    public let spec: NetworkSpec
    public let layout: MLP
    public let maxBatch: Int
    let wScale: [T], bScale: [T]
    /// a_1 … a_L: [maxBatch, n_l] each; derivs: φ'(z_l)
    var acts: [[T]], derivs: [[T]]
    /// f(x): [maxBatch, k]
    public private(set) var output: [T]
    var delta: [T], deltaNext: [T]
    /// Tangents ȧ of the JVP pass (ping-pong).
    var tangent: [T], tangentNext: [T]
    let ones: [T]

    public init(spec: NetworkSpec, maxBatch: Int) {
        self.spec = spec
        layout = MLP(spec: spec, theta: [])
        self.maxBatch = maxBatch
        wScale = layout.layers.enumerated().map { l, layer in
            T(spec.parameterization == .ntk ? spec.wStd[l] / Double(layer.fanIn).squareRoot() : 1)
        }
        bScale = spec.bStd.map { T(spec.parameterization == .ntk ? $0 : 1) }
        acts = spec.widths.map { [T](repeating: 0, count: maxBatch * $0) }
        derivs = acts
        output = [T](repeating: 0, count: maxBatch * spec.outputs)
        let widest = ([spec.inputDim, spec.outputs] + spec.widths).max()!
        delta = [T](repeating: 0, count: maxBatch * widest)
        deltaNext = delta
        tangent = delta
        tangentNext = delta
        ones = [T](repeating: 1, count: maxBatch)
    }

    /// Dense layer l with the weights and bias taken from `params` (θ, or a direction v for the tangent pass):
    /// z [n, fanOut] = s_b,l·1·bᵀ + s_w,l·input [n, fanIn]·W [fanIn, fanOut]  (the bias as a rank-1 GEMM with ones).
    private func dense(_ l: Int, params: UnsafePointer<T>, input: UnsafePointer<T>, n: Int, ones: UnsafePointer<T>, into z: UnsafeMutablePointer<T>) {
        let layer = layout.layers[l]
        if let b = layer.b {
            T.gemm(transA: false, transB: false, m: n, n: layer.fanOut, k: 1, alpha: bScale[l], a: ones, lda: 1,
                   b: params + b, ldb: layer.fanOut, beta: 0, c: z, ldc: layer.fanOut)
        }
        T.gemm(transA: false, transB: false, m: n, n: layer.fanOut, k: layer.fanIn, alpha: wScale[l], a: input, lda: layer.fanIn,
               b: params + layer.w, ldb: layer.fanOut, beta: layer.b == nil ? 0 : 1, c: z, ldc: layer.fanOut)
    }

    /// Computes f(x) for n rows of x [n, n₀] into `output` (first n·k entries).
    public func forward(theta: UnsafePointer<T>, x: UnsafePointer<T>, n: Int) {
        precondition(n <= maxBatch)
        let last = layout.layers.count - 1
        ones.withUnsafeBufferPointer { onesP in
            var input = x
            for (l, layer) in layout.layers.enumerated() {
                let body = { (z: UnsafeMutablePointer<T>) in self.dense(l, params: theta, input: input, n: n, ones: onesP.baseAddress!, into: z) }
                if l == last {
                    output.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
                } else {
                    acts[l].withUnsafeMutableBufferPointer { z in
                        body(z.baseAddress!)
                        derivs[l].withUnsafeMutableBufferPointer { d in T.activate(z.baseAddress!, d.baseAddress!, n * layer.fanOut, spec.activation) }
                        input = UnsafePointer(z.baseAddress!)
                    }
                }
            }
        }
    }

    /// The Jacobian-vector product J(x)·v at the θ of the last `forward` (whose activations and φ' it reuses):
    /// the tangent pass  ż_{l+1} = s_w,l·(ȧ_l·W_l + a_l·V_l) + s_b,l·v_b,l,  ȧ_l = φ'(z_l) ⊙ ż_l,  ȧ_0 = 0,
    /// with V_l, v_b,l the slices of v. The result [n, k] is written into `out`. This is how the linearized
    /// network f_lin(θ) = f(θ₀) + J(θ₀)·(θ − θ₀) is evaluated without forming J (PAPER Eq. 5).
    public func jvp(theta: UnsafePointer<T>, x: UnsafePointer<T>, n: Int, direction v: UnsafePointer<T>, out: UnsafeMutablePointer<T>) {
        let last = layout.layers.count - 1
        ones.withUnsafeBufferPointer { onesP in
            for (l, layer) in layout.layers.enumerated() {
                let input: UnsafePointer<T> = l == 0 ? x : acts[l - 1].withUnsafeBufferPointer { UnsafePointer($0.baseAddress!) }
                let body = { (zdot: UnsafeMutablePointer<T>) in
                    // s_b·v_b + s_w·a_l·V_l (the Dense layer applied to v's slices), then s_w·ȧ_l·W_l (ȧ_0 = 0)
                    self.dense(l, params: v, input: input, n: n, ones: onesP.baseAddress!, into: zdot)
                    if l > 0 {
                        self.tangent.withUnsafeBufferPointer { ad in
                            T.gemm(transA: false, transB: false, m: n, n: layer.fanOut, k: layer.fanIn, alpha: self.wScale[l], a: ad.baseAddress!,
                                   lda: layer.fanIn, b: theta + layer.w, ldb: layer.fanOut, beta: 1, c: zdot, ldc: layer.fanOut)
                        }
                    }
                }
                if l == last {
                    body(out)
                } else {
                    tangentNext.withUnsafeMutableBufferPointer { zp in
                        body(zp.baseAddress!)
                        derivs[l].withUnsafeBufferPointer { d in T.hadamard(zp.baseAddress!, zp.baseAddress!, d.baseAddress!, n * layer.fanOut) }
                    }
                    swap(&tangent, &tangentNext)
                }
            }
        }
    }

    /// grad += ∂L/∂θ given dL/df [n, k] for the batch last passed to `forward`.
    public func backward(theta: UnsafePointer<T>, x: UnsafePointer<T>, n: Int, dOutput: UnsafePointer<T>, grad: UnsafeMutablePointer<T>) {
        let k = spec.outputs
        delta.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: dOutput, count: n * k) }
        ones.withUnsafeBufferPointer { onesP in
            for l in stride(from: layout.layers.count - 1, through: 0, by: -1) {
                let layer = layout.layers[l]
                let inputPtr: UnsafePointer<T> = l == 0 ? x : acts[l - 1].withUnsafeBufferPointer { UnsafePointer($0.baseAddress!) }
                delta.withUnsafeMutableBufferPointer { dp in
                    let d = dp.baseAddress!
                    T.gemm(transA: true, transB: false, m: layer.fanIn, n: layer.fanOut, k: n, alpha: wScale[l], a: inputPtr, lda: layer.fanIn,
                           b: d, ldb: layer.fanOut, beta: 1, c: grad + layer.w, ldc: layer.fanOut)
                    if let b = layer.b {
                        T.gemm(transA: false, transB: false, m: 1, n: layer.fanOut, k: n, alpha: bScale[l], a: onesP.baseAddress!, lda: n,
                               b: d, ldb: layer.fanOut, beta: 1, c: grad + b, ldc: layer.fanOut)
                    }
                    if l > 0 {
                        deltaNext.withUnsafeMutableBufferPointer { np in
                            T.gemm(transA: false, transB: true, m: n, n: layer.fanIn, k: layer.fanOut, alpha: wScale[l], a: d, lda: layer.fanOut,
                                   b: theta + layer.w, ldb: layer.fanOut, beta: 0, c: np.baseAddress!, ldc: layer.fanIn)
                            derivs[l - 1].withUnsafeBufferPointer { dv in T.hadamard(np.baseAddress!, np.baseAddress!, dv.baseAddress!, n * layer.fanIn) }
                        }
                    }
                }
                if l > 0 { swap(&delta, &deltaNext) }
            }
        }
    }
}
