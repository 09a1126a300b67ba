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
    /// a_1 … a_L: [maxBatch, n_l] each; derivs: φ'(z_l). Every buffer is allocated on first use (a forward pass
    /// into caller-provided buffers needs none of them).
    lazy var acts: [[T]] = spec.widths.map { [T](repeating: 0, count: maxBatch * $0) }
    lazy var derivs: [[T]] = acts
    /// f(x): [maxBatch, k]
    public private(set) lazy var output = [T](repeating: 0, count: maxBatch * spec.outputs)
    lazy var delta = [T](repeating: 0, count: maxBatch * widest)
    lazy var deltaNext = delta
    /// Tangents ȧ of the JVP pass (ping-pong).
    lazy var tangent = delta
    lazy var tangentNext = delta
    let ones: [T]
    private var widest: Int { ([spec.inputDim, spec.outputs] + spec.widths).max()! }

    public init(spec: NetworkSpec, maxBatch: Int) {
        self.spec = spec
        let layout = MLP(spec: spec, theta: [])
        self.layout = layout
        self.maxBatch = maxBatch
        wScale = layout.layers.indices.map { T(layout.forwardScales($0).w) }
        bScale = layout.layers.indices.map { T(layout.forwardScales($0).b) }
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
        forward(theta: theta, x: x, n: n) { l, body in
            acts[l].withUnsafeMutableBufferPointer { z in derivs[l].withUnsafeMutableBufferPointer { d in body(z.baseAddress!, d.baseAddress!) } }
        }
    }

    /// The forward pass with the hidden layers written where `hidden(l, body)` says: it calls `body(a, φ')` with
    /// the [n, n_{l+1}] buffers for a_{l+1} and φ'(z_{l+1}) (callers' own arrays, e.g. rows of a larger batch).
    func forward(theta: UnsafePointer<T>, x: UnsafePointer<T>, n: Int,
                 hidden: (Int, (UnsafeMutablePointer<T>, UnsafeMutablePointer<T>) -> Void) -> Void) {
        precondition(n <= maxBatch)
        let last = layout.layers.count - 1
        ones.withUnsafeBufferPointer { onesP in
            var input = x
            for (l, layer) in layout.layers.enumerated() {
                let body = { (z: UnsafeMutablePointer<T>) in self.dense(l, params: theta, input: input, n: n, ones: onesP.baseAddress!, into: z) }
                if l == last {
                    output.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
                } else {
                    hidden(l) { z, d in
                        body(z)
                        T.activate(z, d, n * layer.fanOut, spec.activation)
                        input = UnsafePointer(z)
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
