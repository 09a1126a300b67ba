internal import CNTK

/// A finite fully-connected network with its parameters in one flat buffer θ (llm.c style), laid out in
/// neural-tangents' order W0, b0, W1, b1, …: Wl is [fan_in, fan_out] row-major, bl is [fan_out] (absent when
/// b_std,l = 0), the read-out last.
///
/// Forward pass (row-vector convention, PAPER §1.2; neural-tangents' `stax.Dense`):
///     NTK:       z_{l+1} = (σ_w/√n_l)·a_l·W_l + σ_b·b_l,   W, b ~ N(0, 1)
///     standard:  z_{l+1} = a_l·W_l + b_l,                  W ~ N(0, σ_w²/n_l), b ~ N(0, σ_b²)
///     a_{l+1} = φ(z_{l+1}) for hidden layers; the read-out z_{L+1} = f(x) has no activation.
public struct MLP: Sendable {
    public let spec: NetworkSpec
    public var theta: [Double]
    /// The compiled layer list (`spec.layers`): every pass runs from it.
    public let network: Network
    /// The Dense layers' offsets in θ (b nil when the layer has no bias), read-out last.
    public var layers: [ParameterLayer] { network.parameters }

    public init(spec: NetworkSpec, theta: [Double]) {
        let network = Network(spec)
        precondition(theta.isEmpty || theta.count == network.parameterCount,
                     "θ has \(theta.count) entries, the network needs \(network.parameterCount)")
        self.spec = spec
        self.network = network
        self.theta = theta.isEmpty ? [Double](repeating: 0, count: network.parameterCount) : theta
    }

    /// Seeded initialisation (`Network.initialize`): the same seed and spec give bit-identical θ everywhere.
    public static func initialize(_ spec: NetworkSpec, seed: UInt64) -> MLP {
        let network = Network(spec)
        return MLP(spec: spec, theta: network.initialize(seed: seed))
    }

    public var parameterCount: Int { theta.count }

    /// The effective weight matrix of layer l as used in the forward pass: s_w·W (`ParameterLayer.scale`).
    func effectiveWeight(_ l: Int) -> Matrix {
        let layer = layers[l]
        return layers[l].scale.w * Matrix(rows: layer.fanIn, cols: layer.fanOut, data: Array(theta[layer.w..<layer.w + layer.fanIn * layer.fanOut]))
    }

    func effectiveBias(_ l: Int) -> [Double]? {
        guard let b = layers[l].b else { return nil }
        let scale = layers[l].scale.b
        return theta[b..<b + layers[l].fanOut].map { scale * $0 }
    }

    /// What a forward pass keeps for the backward pass: the input of each Dense layer (a_0 = x, a_1, …, a_L)
    /// and φ'(z) of each hidden layer.
    public struct Cache {
        public var inputs: [Matrix]
        public var derivatives: [Matrix]
    }

    /// f(x) [N, k] and the cache.
    public func forward(_ x: Matrix) -> (output: Matrix, cache: Cache) {
        var a = x
        var cache = Cache(inputs: [], derivatives: [])
        let (act, alpha) = spec.activation.c
        for l in 0..<layers.count {
            cache.inputs.append(a)
            var z = Matrix.product(a, effectiveWeight(l))
            if let b = effectiveBias(l) { for i in 0..<z.rows { for j in 0..<z.cols { z[i, j] += b[j] } } }
            if l == layers.count - 1 { return (z, cache) }
            var y = Matrix(rows: z.rows, cols: z.cols), dy = y
            z.data.withUnsafeBufferPointer { zp in
                y.data.withUnsafeMutableBufferPointer { yp in
                    dy.data.withUnsafeMutableBufferPointer { dp in
                        ntk_activation_apply(yp.baseAddress!, dp.baseAddress!, zp.baseAddress!, zp.count, act, alpha)
                    }
                }
            }
            cache.derivatives.append(dy)
            a = y
        }
        return (a, cache)
    }
}

/// Empirical kernels of a finite network (PAPER §1.7 and §2.5), without forming the Jacobian:
///
///     Θ̂(x, x') = (1/k)·Σ_outputs Σ_l ∇_{θ_l} f_i(x)·∇_{θ_l} f_i(x')          ("traced": mean over logits)
///              = Σ_l (c_w,l·A_l A'_lᵀ + c_b,l) ⊙ (Δ_l Δ'_lᵀ)/k
///     K̂(x, x') = σ_w²/n_L · a_L(x)·a_L(x') + σ_b²                           (read-out features)
///
/// with A_l the Dense layer's inputs, Δ_l = ∂f/∂z_l stacked over the k outputs ([N, k·n_l]), and c_w = σ_w²/fan_in,
/// c_b = σ_b² (NTK parameterization) or c_w = 1, c_b = 1 (standard). Each term is two GEMMs and a Hadamard product.
public enum EmpiricalKernels {
    public static func compute(_ net: MLP, x1: Matrix, x2: Matrix? = nil) -> (nngp: Matrix, ntk: Matrix) {
        let (_, c1) = net.forward(x1)
        let c2 = x2.map { net.forward($0).cache } ?? c1
        let d1 = signals(net, c1), d2 = x2 == nil ? d1 : signals(net, c2)
        let k = Double(net.spec.outputs)
        var ntk = Matrix(rows: x1.rows, cols: (x2 ?? x1).rows)
        var nngp = ntk
        for l in 0..<net.layers.count {
            let (cw, cb): (Double, Double) = net.spec.parameterization == .ntk
                ? (net.spec.wStd[l] * net.spec.wStd[l] / Double(net.layers[l].fanIn), net.layers[l].b == nil ? 0 : net.spec.bStd[l] * net.spec.bStd[l])
                : (1, net.layers[l].b == nil ? 0 : 1)
            var gram = cw * Matrix.product(c1.inputs[l], c2.inputs[l], transB: true)
            if cb != 0 { gram.data = gram.data.map { $0 + cb } }
            let signal = (1 / k) * Matrix.product(d1[l], d2[l], transB: true)
            ntk.data.withUnsafeMutableBufferPointer { tp in
                gram.data.withUnsafeBufferPointer { gp in
                    signal.data.withUnsafeBufferPointer { sp in Double.hadamardAcc(tp.baseAddress!, gp.baseAddress!, sp.baseAddress!, tp.count) }
                }
            }
            if l == net.layers.count - 1 {
                let w2 = net.spec.wStd[l] * net.spec.wStd[l], b2 = net.spec.bStd[l] * net.spec.bStd[l]
                nngp = (w2 / Double(net.layers[l].fanIn)) * Matrix.product(c1.inputs[l], c2.inputs[l], transB: true)
                nngp.data = nngp.data.map { $0 + b2 }
            }
        }
        return (nngp, ntk)
    }

    /// Δ_l for every Dense layer l: [N, k·n_l], column block i holding ∂f_i/∂z_l.
    static func signals(_ net: MLP, _ cache: MLP.Cache) -> [Matrix] {
        let n = cache.inputs[0].rows, k = net.spec.outputs, last = net.layers.count - 1
        var out = [Matrix](repeating: Matrix(rows: 0, cols: 0), count: net.layers.count)
        // Read-out: ∂f_i/∂z_{L+1} = e_i.
        var delta = Matrix(rows: n, cols: k * k)
        for r in 0..<n { for i in 0..<k { delta[r, i * k + i] = 1 } }
        out[last] = delta
        for l in stride(from: last - 1, through: 0, by: -1) {
            let w = net.effectiveWeight(l + 1)  // [n_l, n_{l+1}]
            let width = net.layers[l].fanOut, next = net.layers[l + 1].fanOut
            var d = Matrix(rows: n, cols: k * width)
            for i in 0..<k {
                // δ_l^(i) = (δ_{l+1}^(i)·Wᵀ) ⊙ φ'(z_l)
                var block = Matrix(rows: n, cols: next)
                for r in 0..<n {
                    let from = r * k * next + i * next
                    block.data.replaceSubrange(r * next..<(r + 1) * next, with: delta.data[from..<from + next])
                }
                var back = Matrix.product(block, w, transB: true)
                for r in 0..<n { for j in 0..<width { back[r, j] *= cache.derivatives[l][r, j] } }
                for r in 0..<n { for j in 0..<width { d[r, i * width + j] = back[r, j] } }
            }
            out[l] = d
            delta = d
        }
        return out
    }
}
