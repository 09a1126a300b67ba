internal import CNTK


/// A layer list that does not fit its input: `path` names the layer (`layers[3]`, `layers[2].residual[1]`),
/// `key` the offending setting (nil: the layer as a whole).
public struct LayerError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var key: String?
    public var message: String
    public init(_ path: String, key: String? = nil, _ message: String) { self.path = path; self.key = key; self.message = message }
    public var description: String { "\(path)\(key.map { ".\($0)" } ?? ""): \(message)" }
}

/// The W (and b) of one dense or conv layer in the flat θ, neural-tangents' order W0, b0, W1, b1, … (depth first
/// through residual branches): W [fan_in, out] (dense) or [kh, kw, C_in, C_out] (conv, HWIO), b [out] or absent.
public struct ParameterLayer: Sendable {
    public enum Kind: String, Sendable { case dense, conv }
    public let kind: Kind
    /// The layer's path in the list (`layers[4]`).
    public let path: String
    /// Offsets in θ.
    public let w: Int
    public let b: Int?
    public let wShape: [Int]
    /// fan_in (dense: d; conv: kh·kw·C_in) and the number of outputs per position.
    public let fanIn: Int, fanOut: Int
    public let wStd: Double, bStd: Double
    /// The forward pass's factors: s_w = σ_w/√fan_in, s_b = σ_b (NTK) or 1, 1 (standard).
    public let scale: (w: Double, b: Double)
    /// Index of its node in `Network.nodes`.
    public let node: Int
    public var wCount: Int { fanIn * fanOut }
    /// Every parameter of the layer, W then b.
    public var count: Int { wCount + (b == nil ? 0 : fanOut) }
}

/// A network compiled from a layer list for one input shape: a flat program of nodes in execution order (a
/// residual block becomes fork … branch … join), the shape of every intermediate value, and the parameter
/// layout. This is the one description every pass (forward, backward, tangent, empirical NTK) runs from; a
/// fully-connected `NetworkSpec` compiles to the same program through its `layers`.
///
/// Values: value 0 is the input; every node reads its `input` value and writes its `output` value. Nodes that
/// only reinterpret memory (flatten, fork) or may overwrite their input (an activation whose input nobody else
/// reads) write the same value id they read — the forward pass then keeps one buffer for both.
public struct Network: Sendable {
    public enum Op: Sendable {
        case dense(Int)                        // parameter layer index
        case conv(Int, Window)
        case activation(Activation)
        case avgPool(Window, normalizeEdges: Bool)
        case globalAvgPool
        case flatten
        case layerNorm(eps: Double)
        case fork
        case join(skip: Int)                   // the value the fork kept
    }

    public struct Node: Sendable {
        public let op: Op
        public let path: String
        public let inShape: Shape, outShape: Shape
        public let input: Int, output: Int
    }

    public let layers: [Layer]
    public let inputShape: Shape
    public let parameterization: Parameterization
    public private(set) var nodes: [Node] = []
    public private(set) var parameters: [ParameterLayer] = []
    /// Elements per sample of every value (value 0: the input).
    public private(set) var valueCounts: [Int]
    public private(set) var parameterCount = 0

    public var outputShape: Shape { nodes.last?.outShape ?? inputShape }
    /// k, the number of outputs.
    public var outputs: Int { outputShape.count }
    public var outputValue: Int { nodes.last?.output ?? 0 }

    public init(layers: [Layer], input: Shape, parameterization: Parameterization = .ntk, path: String = "layers") throws {
        self.layers = layers
        inputShape = input
        self.parameterization = parameterization
        valueCounts = [input.count]
        var value = 0, shape = input
        try compile(layers, path: path, value: &value, shape: &shape)
        guard !shape.isImage else {
            throw LayerError(path, "the network ends with an image \(shape): end with flatten or global_avg_pool, then dense")
        }
        guard shape.count >= 1 else { throw LayerError(path, "the network has no outputs") }
        // Training holds at least θ, its gradient and one more copy (momentum, or θ₀ of the linearization).
        if let excess = MemoryBudget.excess([3, parameterCount, 4]) {
            throw LayerError(path, "the network has \(parameterCount) parameters: training them \(excess)")
        }
        markInPlace()
    }

    /// The fully-connected network of a spec.
    public init(_ spec: NetworkSpec) {
        // a spec's widths are ≥ 1 (ModelConfig checks them): its dense layers always fit
        try! self.init(layers: spec.layers, input: .vector(spec.inputDim), parameterization: spec.parameterization)
    }

    private mutating func newValue(_ shape: Shape) -> Int {
        valueCounts.append(shape.count)
        return valueCounts.count - 1
    }

    private mutating func add(_ op: Op, _ path: String, _ inShape: Shape, _ outShape: Shape, _ value: inout Int, alias: Bool = false) {
        let out = alias ? value : newValue(outShape)
        nodes.append(Node(op: op, path: path, inShape: inShape, outShape: outShape, input: value, output: out))
        value = out
    }

    private mutating func compile(_ list: [Layer], path: String, value: inout Int, shape: inout Shape) throws {
        for (i, layer) in list.enumerated() {
            let p = "\(path)[\(i)]"
            switch layer {
            case .dense(let out, let ws, let bs):
                try check(out >= 1, p, "out", "must be ≥ 1, found \(out)")
                try checkStds(ws, bs, p)
                try checkSize([shape.channels, out], p, "out", "weights")
                if shape.isImage {  // on the channels at every position (neural-tangents' Dense): a 1×1 conv
                    try checkSize([shape.positions, out], p, "out", "outputs per sample")
                    let g = try window([1, 1], [1, 1], .valid, shape, p, sizeKey: "out")
                    let l = addParameters(.conv, p, fanIn: shape.channels, fanOut: out,
                                          wShape: [1, 1, shape.channels, out], ws, bs)
                    let image = Shape(spatial: shape.spatial, channels: out)
                    add(.conv(l, g), p, shape, image, &value)
                    shape = image
                    continue
                }
                let l = addParameters(.dense, p, fanIn: shape.channels, fanOut: out, wShape: [shape.channels, out], ws, bs)
                add(.dense(l), p, shape, .vector(out), &value)
                shape = .vector(out)
            case .conv(let channels, let filter, let strides, let padding, let ws, let bs):
                guard shape.spatial.count == 2 else {
                    throw LayerError(p, "conv needs an image [H, W, C], its input is \(shape)")
                }
                try check(channels >= 1, p, "channels", "must be ≥ 1, found \(channels)")
                try checkStds(ws, bs, p)
                let g = try window(filter, strides, padding, shape, p, sizeKey: "filter")
                try checkSize([filter[0], filter[1], shape.channels, channels], p, "channels", "filter weights")
                try checkSize([g.oh, g.ow, channels], p, "channels", "outputs per sample")
                let fanIn = filter[0] * filter[1] * shape.channels
                let l = addParameters(.conv, p, fanIn: fanIn, fanOut: channels, wShape: [filter[0], filter[1], shape.channels, channels], ws, bs)
                let out = Shape(spatial: [g.oh, g.ow], channels: channels)
                add(.conv(l, g), p, shape, out, &value)
                shape = out
            case .avgPool(let size, let strides, let padding, let normalize):
                guard shape.spatial.count == 2 else {
                    throw LayerError(p, "avg_pool needs an image [H, W, C], its input is \(shape)")
                }
                let g = try window(size, strides, padding, shape, p, sizeKey: "window")
                let out = Shape(spatial: [g.oh, g.ow], channels: shape.channels)
                add(.avgPool(g, normalizeEdges: normalize), p, shape, out, &value)
                shape = out
            case .globalAvgPool:
                guard shape.isImage else { throw LayerError(p, "global_avg_pool needs an image, its input is \(shape)") }
                add(.globalAvgPool, p, shape, .vector(shape.channels), &value)
                shape = .vector(shape.channels)
            case .flatten:
                add(.flatten, p, shape, .vector(shape.count), &value, alias: true)
                shape = .vector(shape.count)
            case .layerNorm(let eps):
                try check(eps >= 0 && eps.isFinite, p, "eps", "must be a finite number ≥ 0, found \(eps)")
                add(.layerNorm(eps: eps), p, shape, shape, &value)
            case .activation(let a):
                add(.activation(a), p, shape, shape, &value)
            case .residual(let branch):
                let skip = value, before = shape
                add(.fork, p, shape, shape, &value, alias: true)
                try compile(branch, path: "\(p).residual", value: &value, shape: &shape)
                guard shape == before else {
                    throw LayerError(p, "the residual branch changes the shape \(before) to \(shape); it must keep it")
                }
                add(.join(skip: skip), p, shape, shape, &value)
            }
        }
    }

    /// The most weights of one layer, and outputs per sample of one node (2³¹: far beyond what trains on a CPU).
    public static let maxElements = 1 << 31

    /// The product of `factors` (sizes from a user's layer list) is at most `maxElements` — checked without
    /// overflowing, so that a typo like channels: 100000000 is an error naming the layer, not a trap or an abort.
    private func checkSize(_ factors: [Int], _ path: String, _ key: String, _ what: String) throws {
        guard let product = MemoryBudget.product(factors), product <= Self.maxElements else {
            let sizes = factors.map(String.init).joined(separator: " × ")
            throw LayerError(path, key: key, "\(sizes) \(what) is more than 2³¹ (\(Self.maxElements))")
        }
    }

    private func check(_ ok: Bool, _ path: String, _ key: String, _ message: String) throws {
        if !ok { throw LayerError(path, key: key, message) }
    }

    private func checkStds(_ ws: Double, _ bs: Double, _ path: String) throws {
        try check(ws >= 0 && ws.isFinite, path, "W_std", "must be a finite number ≥ 0, found \(ws)")
        try check(bs >= 0 && bs.isFinite, path, "b_std", "must be a finite number ≥ 0, found \(bs)")
    }

    private func window(_ size: [Int], _ strides: [Int], _ padding: Padding, _ shape: Shape, _ p: String,
                        sizeKey: String) throws -> Window {
        try check(size.count == 2 && size.allSatisfy { $0 >= 1 }, p, sizeKey, "needs two sizes ≥ 1, found \(size)")
        try check(strides.count == 2 && strides.allSatisfy { $0 >= 1 }, p, "strides", "needs two strides ≥ 1, found \(strides)")
        var out = [0, 0], lo = [0, 0]
        for d in 0..<2 {
            let n = shape.spatial[d], k = size[d], s = strides[d]
            switch padding {
            case .valid:
                try check(k <= n, p, sizeKey, "\(size) is larger than its input \(shape) (VALID padding)")
                out[d] = (n - k) / s + 1
            case .same, .circular:
                out[d] = (n + s - 1) / s
                lo[d] = max((out[d] - 1) * s + k - n, 0) / 2
            }
        }
        return Window(h: shape.spatial[0], w: shape.spatial[1], c: shape.channels, kh: size[0], kw: size[1],
                      sh: strides[0], sw: strides[1], padH: lo[0], padW: lo[1], oh: out[0], ow: out[1],
                      circular: padding == .circular)
    }

    private mutating func addParameters(_ kind: ParameterLayer.Kind, _ path: String, fanIn: Int, fanOut: Int, wShape: [Int],
                                        _ ws: Double, _ bs: Double) -> Int {
        let w = parameterCount
        parameterCount += fanIn * fanOut
        var b: Int? = nil
        if bs != 0 { b = parameterCount; parameterCount += fanOut }
        let scale = parameterization == .ntk ? (ws / Double(fanIn).squareRoot(), bs) : (1.0, 1.0)
        parameters.append(ParameterLayer(kind: kind, path: path, w: w, b: b, wShape: wShape, fanIn: fanIn, fanOut: fanOut,
                                         wStd: ws, bStd: bs, scale: scale, node: nodes.count))
        return parameters.count - 1
    }

    /// Lets an activation overwrite its input (one buffer for z and φ(z)) when nothing else reads that value: it is
    /// not the network's input, no fork keeps it for a join, and its producer's backward pass does not need it.
    private mutating func markInPlace() {
        // decided on the original value ids; then the outputs of overwriting nodes are renamed to their inputs
        var kept = Set([0])
        for node in nodes { if case .join(let skip) = node.op { kept.insert(skip) } }
        var producer = [Int: Network.Op]()
        for node in nodes where node.output != node.input { producer[node.output] = node.op }
        func overwritable(_ v: Int) -> Bool {
            guard !kept.contains(v), let op = producer[v] else { return false }
            if case .layerNorm = op { return false }  // its backward pass reads its output
            return true
        }
        var rename = [Int: Int]()
        for (j, node) in nodes.enumerated() {
            let input = rename[node.input] ?? node.input
            var op = node.op, output = rename[node.output] ?? node.output
            switch node.op {
            case .activation:
                if overwritable(node.input) { rename[node.output] = input; output = input }
            case .join(let skip):
                if node.input != skip && overwritable(node.input) { rename[node.output] = input; output = input }
                op = .join(skip: rename[skip] ?? skip)
            default: break
            }
            nodes[j] = Node(op: op, path: node.path, inShape: node.inShape, outShape: node.outShape, input: input, output: output)
        }
    }

    /// Seeded initialisation: every parameter drawn in layout order from one SplitMix64 stream (the same seed and
    /// network give bit-identical θ everywhere). NTK: N(0, 1); standard: W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²).
    public func initialize(seed: UInt64) -> [Double] {
        var theta = [Double](repeating: 0, count: parameterCount)
        var state = seed
        theta.withUnsafeMutableBufferPointer { if $0.count > 0 { ntk_fill_normal($0.baseAddress!, $0.count, &state) } }
        if parameterization == .standard {
            for p in parameters {
                let ws = p.wStd / Double(p.fanIn).squareRoot()
                for i in p.w..<p.w + p.wCount { theta[i] *= ws }
                if let b = p.b { for i in b..<b + p.fanOut { theta[i] *= p.bStd } }
            }
        }
        return theta
    }

    /// One line per layer: path, kind, output shape, parameters (for `ntk dump` and logs).
    public var table: [(path: String, kind: String, output: Shape, parameters: Int)] {
        nodes.compactMap { node in
            switch node.op {
            case .fork: return nil
            case .join: return (node.path, "residual", node.outShape, 0)
            case .dense(let l), .conv(let l, _): return (node.path, parameters[l].kind.rawValue, node.outShape, parameters[l].count)
            case .activation(let a): return (node.path, a.description, node.outShape, 0)
            case .avgPool: return (node.path, "avg_pool", node.outShape, 0)
            case .globalAvgPool: return (node.path, "global_avg_pool", node.outShape, 0)
            case .flatten: return (node.path, "flatten", node.outShape, 0)
            case .layerNorm: return (node.path, "layer_norm", node.outShape, 0)
            }
        }
    }
}

extension Window {
    /// The C core's description of the window.
    var raw: ntk_window {
        ntk_window(h: h, w: w, c: c, kh: kh, kw: kw, sh: sh, sw: sw, pad_h: padH, pad_w: padW, oh: oh, ow: ow, circular: circular ? 1 : 0)
    }
}
