internal import CNTK

/// The infinite-width rules of the layers (neural-tangents' `kernel_fn`), compiled from a `Network` into steps
/// that act on the covariance of the pre-activations of one pair of inputs (a, b), per channel:
///
///     full form      K[i, k, j, l]   positions p = (i, j) of a and q = (k, l) of b            H²·W² entries
///     diagonal form  K[i, j]         p = q only                                              H·W entries
///     vector form    K               one entry (a vector input, or after flatten / global_avg_pool)
///
/// The full form is needed when the network pools (avg_pool, global_avg_pool: they mix positions); otherwise the
/// diagonal suffices — a conv maps the diagonal to itself and flatten reads only it — as neural-tangents decides
/// its `diagonal_spatial`. With M the layer's linear map of a covariance (`AxisMap`, per spatial axis):
///
///     input         K = Σ_c x[a, p, c]·x[b, q, c] / C,   Θ = 0
///     dense, conv   K' = σ_w²·M(K) + σ_b²,   Θ' = K' + σ_w²·M(Θ)   (standard: Θ' = fan_in·M(K) + [bias] + σ_w²·M(Θ))
///                   conv: M(K)[p, q] = mean over the filter offsets δ of K[p·s + δ, q·s + δ] (zero-padded or wrapped)
///     avg_pool      K' = M(K), Θ' = M(Θ), the windows of p and of q pooled independently
///     flatten       mean over p of K[p, p];   global_avg_pool: mean over all (p, q)
///     φ             K' = E[φ(u)φ(v)],  Θ' = Θ·E[φ'(u)φ'(v)],  (u, v) ~ N(0, [[V_a(p), K], [K, V_b(q)]])
///     layer_norm    K' = K / √((ε + V_a(p))·(ε + V_b(q))), Θ' likewise
///     residual      K' = K + K_branch,  Θ' = Θ + Θ_branch
///
/// V_a(p) = K_aa(p, p), the variance at that layer, is recorded by running the same steps on the pair (a, a) first
/// (`TileSets.selfChain`). φ and layer_norm need Gaussian inputs (a dense or conv before them; pooling, flatten
/// and sums keep it), as in neural-tangents. An activation followed by dense runs as one fused C row pass.
public struct KernelProgram: Sendable {
    public enum Form: String, Sendable { case vector, diagonal, full }

    /// out[o] = Σ_t weights[t]·in[src[t]] for t in offsets[o]..<offsets[o+1], along one axis (`ntk_cov_axis_map`).
    struct AxisMap: Sendable {
        let nIn, nOut: Int
        var offsets: [UInt32] = [0], src: [UInt32] = [], weights: [Double] = [], weights32: [Float] = []
        init(nIn: Int, nOut: Int) { self.nIn = nIn; self.nOut = nOut }
        mutating func add(_ s: Int, _ w: Double) {
            src.append(UInt32(s))
            weights.append(w)
            weights32.append(Float(w))
        }
        mutating func endOutput() { offsets.append(UInt32(src.count)) }
    }

    enum Step: Sendable {
        /// K' = w·M(K) + b,  Θ' = tScale·M(K) + shift + w·M(Θ) (coef's fields); maps per axis, nil = identity.
        case linear(maps: [AxisMap?], coef: ntk_layer_coef, out: (h: Int, w: Int))
        /// φ, then the coef's affine map (a fused dense, or the identity w = 1, b = tScale = shift = 0).
        case activation(Activation, coef: ntk_layer_coef, slot: Int)
        case layerNorm(eps: Double, slot: Int)
        case fork, join
    }

    public let form: Form
    let steps: [Step]
    /// The input as the program reads it (a leading flatten makes an image a vector of H·W·C features).
    public let input: Shape
    /// Positions (H·W) at each variance slot (the activations and layer norms, in order).
    let slotPositions: [Int]
    /// Entries per pair of the largest state, and the deepest nesting of residual blocks.
    let maxEntries: Int, maxDepth: Int
    /// State entries written per pair, summed over the steps (the input's included): a measure of the work per pair.
    let workPerPair: Int
    /// Whether an activation without a closed-form kernel (tanh, gelu, softplus) needs the quadrature rule.
    public let needsQuadrature: Bool
    public let parameterization: Parameterization

    public init(_ net: Network) throws {
        parameterization = net.parameterization
        var nodes = net.nodes[...]
        var inShape = net.inputShape
        if let first = nodes.first, case .flatten = first.op {
            nodes = nodes.dropFirst()
            inShape = .vector(inShape.count)
        }
        input = inShape
        let pools = nodes.contains {
            switch $0.op {
            case .avgPool, .globalAvgPool: true
            default: false
            }
        }
        form = !inShape.isImage ? .vector : pools ? .full : .diagonal
        let full = form == .full
        var steps: [Step] = [], slots: [Int] = [], gaussian = false, forks: [Bool] = [], depth = 0, maxDepth = 0
        var h = inShape.isImage ? inShape.spatial[0] : 1, w = inShape.isImage ? inShape.spatial[1] : 1
        var maxEntries = full ? h * h * w * w : h * w
        var quadrature = false, work = h * w * (full ? h * w : 1)
        let identity = ntk_layer_coef(w_var: 1, b_var: 0, ntk_t_scale: 0, ntk_shift: 0, a: 0, b: 0)
        func affine(_ p: ParameterLayer) -> ntk_layer_coef {
            let wv = p.wStd * p.wStd, bv = p.bStd * p.bStd
            switch net.parameterization {
            case .ntk: return ntk_layer_coef(w_var: wv, b_var: bv, ntk_t_scale: wv, ntk_shift: bv, a: 0, b: 0)
            case .standard:
                return ntk_layer_coef(w_var: wv, b_var: bv, ntk_t_scale: Double(p.fanIn),
                                      ntk_shift: p.bStd != 0 ? 1 : 0, a: 0, b: 0)
            }
        }
        func needGaussian(_ node: Network.Node, _ what: String) throws {
            guard gaussian else {
                throw LayerError(node.path, "\(what) needs a Gaussian input in the infinite-width limit (a dense "
                                 + "or conv layer before it, as neural-tangents requires); its input comes from the "
                                 + "network's input or an activation")
            }
        }
        for node in nodes {
            switch node.op {
            case .dense(let l):
                var c = affine(net.parameters[l])
                if case .activation(let act, let prev, let slot)? = steps.last, prev.w_var == 1, prev.ntk_t_scale == 0,
                   prev.b_var == 0, prev.ntk_shift == 0 {  // fuse φ with the dense layer after it
                    (c.a, c.b) = (prev.a, prev.b)
                    steps[steps.count - 1] = .activation(act, coef: c, slot: slot)
                } else {
                    steps.append(.linear(maps: [], coef: c, out: (h, w)))
                }
                gaussian = true
            case .conv(let l, let g):
                let maps: [AxisMap?] = g.isPointwise ? [] : full
                    ? [Self.pairMap(g.h, g.oh, g.kh, g.sh, g.padH, g.circular, shared: true, normalize: false),
                       Self.pairMap(g.w, g.ow, g.kw, g.sw, g.padW, g.circular, shared: true, normalize: false)]
                    : [Self.diagonalConv(g.h, g.oh, g.kh, g.sh, g.padH, g.circular),
                       Self.diagonalConv(g.w, g.ow, g.kw, g.sw, g.padW, g.circular)]
                (h, w) = (g.oh, g.ow)
                steps.append(.linear(maps: maps, coef: affine(net.parameters[l]), out: (h, w)))
                gaussian = true
            case .avgPool(let g, let normalize):
                (h, w) = (g.oh, g.ow)
                steps.append(.linear(maps: [Self.pairMap(g.h, g.oh, g.kh, g.sh, g.padH, g.circular, shared: false,
                                                         normalize: normalize),
                                            Self.pairMap(g.w, g.ow, g.kw, g.sw, g.padW, g.circular, shared: false,
                                                         normalize: normalize)], coef: identity, out: (h, w)))
            case .globalAvgPool, .flatten:
                guard h * w > 1 else { continue }
                var all = false
                if case .globalAvgPool = node.op { all = true }
                let maps = [h, w].map { n in all ? Self.globalMean(n) : Self.mean(n, diagonalOf: full) }
                (h, w) = (1, 1)
                steps.append(.linear(maps: maps, coef: identity, out: (1, 1)))
            case .activation(let a):
                try needGaussian(node, a.name)
                var c = identity
                (c.a, c.b) = a.arcCosine ?? (0, 0)
                quadrature = quadrature || !a.hasClosedFormKernel
                steps.append(.activation(a, coef: c, slot: slots.count))
                slots.append(h * w)
                gaussian = false
            case .layerNorm(let eps):
                try needGaussian(node, "layer_norm")
                steps.append(.layerNorm(eps: eps, slot: slots.count))
                slots.append(h * w)
            case .fork:
                forks.append(gaussian)
                depth += 1
                maxDepth = max(maxDepth, depth)
                steps.append(.fork)
            case .join:
                let skipGaussian = forks.removeLast()
                depth -= 1
                guard gaussian && skipGaussian else {
                    throw LayerError(node.path, "the sum of a residual block needs both summands Gaussian in the "
                                     + "infinite-width limit (neural-tangents' FanInSum): its input must come from a "
                                     + "dense or conv layer and its branch must end with one")
                }
                steps.append(.join)
            }
            maxEntries = max(maxEntries, full ? h * h * w * w : h * w)
            work += full ? h * h * w * w : h * w
        }
        self.steps = steps
        slotPositions = slots
        self.maxEntries = maxEntries
        workPerPair = work
        self.maxDepth = maxDepth
        needsQuadrature = quadrature
    }

    /// Conv (`shared`: the same offset δ at both positions, weight 1/k) or avg_pool (independent offsets, weight
    /// 1/k² or, with `normalize`, 1/(real pixels of each window)) along one axis of the full form: index i·n + k.
    static func pairMap(_ n: Int, _ m: Int, _ k: Int, _ s: Int, _ pad: Int, _ circular: Bool, shared: Bool,
                        normalize: Bool) -> AxisMap {
        func source(_ o: Int, _ d: Int) -> Int? {
            let i = o * s + d - pad
            return (0..<n).contains(i) ? i : circular ? ((i % n) + n) % n : nil
        }
        var map = AxisMap(nIn: n * n, nOut: m * m)
        for o1 in 0..<m {
            for o2 in 0..<m {
                if shared {
                    for d in 0..<k {
                        if let i = source(o1, d), let j = source(o2, d) { map.add(i * n + j, 1 / Double(k)) }
                    }
                } else {
                    let a = (0..<k).compactMap { source(o1, $0) }, b = (0..<k).compactMap { source(o2, $0) }
                    let w = normalize ? 1 / Double(a.count * b.count) : 1 / Double(k * k)
                    for i in a { for j in b { map.add(i * n + j, w) } }
                }
                map.endOutput()
            }
        }
        return map
    }

    /// Conv along one axis of the diagonal form: out[o] = mean_δ in[o·s + δ − pad].
    static func diagonalConv(_ n: Int, _ m: Int, _ k: Int, _ s: Int, _ pad: Int, _ circular: Bool) -> AxisMap {
        var map = AxisMap(nIn: n, nOut: m)
        for o in 0..<m {
            for d in 0..<k {
                let i = o * s + d - pad
                if (0..<n).contains(i) {
                    map.add(i, 1 / Double(k))
                } else if circular {
                    map.add(((i % n) + n) % n, 1 / Double(k))
                }
            }
            map.endOutput()
        }
        return map
    }

    /// Flatten along one axis: the mean of the diagonal (i, i) of the full form, or of every i of the diagonal form.
    static func mean(_ n: Int, diagonalOf full: Bool) -> AxisMap {
        var map = AxisMap(nIn: full ? n * n : n, nOut: 1)
        for i in 0..<n { map.add(full ? i * n + i : i, 1 / Double(n)) }
        map.endOutput()
        return map
    }

    /// Global average pooling along one axis of the full form: the mean over all (i, k).
    static func globalMean(_ n: Int) -> AxisMap {
        var map = AxisMap(nIn: n * n, nOut: 1)
        for i in 0..<(n * n) { map.add(i, 1 / Double(n * n)) }
        map.endOutput()
        return map
    }

    /// Floating-point operations of one pair's recursion as `KernelTile.run` performs them, for K and (`ntk`) Θ:
    /// the input covariance 2·C per entry, 2 per tap of each axis map and entry it writes, 2 per affine entry, the
    /// activations at their C kernels' count per entry (a division or square root counted as one; quadrature
    /// ≈ 10 per node pair and entry), layer norm 4, a residual sum 1. A measure for throughput reports.
    public func flopsPerPair(ntk: Bool, quadratureNodes: Int) -> Double {
        let arrays = ntk ? 2.0 : 1.0, image = input.isImage
        var h = image ? input.spatial[0] : 1, w = image ? input.spatial[1] : 1
        var flops = 2 * Double(input.channels) * Double(entries(h, w))
        for step in steps {
            let n = Double(entries(h, w))
            switch step {
            case .linear(let maps, let c, let out):
                var sizes = form == .full ? [h * h, w * w] : form == .diagonal ? [h, w] : []
                for (axis, map) in maps.enumerated() {
                    guard let map else { continue }
                    let outer = sizes[..<axis].reduce(1, *), inner = sizes[(axis + 1)...].reduce(1, *)
                    flops += arrays * 2 * Double(map.src.count * outer * inner)
                    sizes[axis] = map.nOut
                }
                (h, w) = out
                let m = Double(entries(h, w))
                if c.w_var != 1 || c.b_var != 0 { flops += 2 * m }
                if ntk { flops += (c.w_var != 1 || c.ntk_shift != 0 ? 2 : 0) * m + (c.ntk_t_scale != 0 ? 2 : 0) * m }
            case .activation(let act, _, _):
                let closed: Double = act == .gelu ? 60 : act == .erf ? 47 : 44
                let each = act.hasClosedFormKernel ? closed : 10 * Double(quadratureNodes * quadratureNodes)
                flops += n * (each + (ntk ? 5 : 0))
            case .layerNorm: flops += n * (3 + arrays)
            case .join: flops += n * arrays
            case .fork: break
            }
        }
        return flops
    }

    /// Entries per pair of a state of spatial size h × w.
    func entries(_ h: Int, _ w: Int) -> Int { form == .full ? h * h * w * w : h * w }
}
