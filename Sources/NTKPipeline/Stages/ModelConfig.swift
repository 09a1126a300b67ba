import NTK

/// `params.model`: the network every model stage shares (finite networks, their kernels). Either a layer list in
/// the grammar of neural-tangents' harness (`LayerGrammar`), the read-out's `out` equal to the data's outputs k:
///
/// ```yaml
/// model: {layers: [{conv: {channels: 64, filter: 3, padding: SAME}}, relu, global_avg_pool, {dense: {out: 10}}],
///         w_std: 1.414, b_std: 0.05, parameterization: ntk}
/// ```
/// (`w_std`/`b_std` then are the defaults of the layers' `W_std`/`b_std`), or the fully-connected shorthand
///
/// ```yaml
/// model: {depth: 3, width: 2048, activation: relu, w_std: 1.414, b_std: 0.05, parameterization: ntk}
/// ```
/// which expands to [flatten (images only), dense(width), φ, …, dense(k)]: `widths: [512, 256]` may replace
/// depth/width; `w_std`/`b_std` may be lists with one value per Dense layer (L + 1, read-out last). `leaky_alpha`
/// sets the leaky-relu slope. The number of outputs k comes from the data.
public struct ModelConfig: Equatable, Sendable {
    public var widths: [Int]
    public var activation: Activation
    public var wStd: [Double]
    public var bStd: [Double]
    public var parameterization: Parameterization
    /// `model.layers` as given (nil: the shorthand).
    public var layers: [Layer]?
    /// Where the model lives (`params.model`, `params.fig3.model`), for errors.
    public var key: String

    public init(_ r: inout ConfigReader) throws {
        key = r.path
        if let list = r.raw("layers") {
            for k in ["depth", "width", "widths", "activation"] where r.raw(k) != nil {
                throw r.fail(k, "\(k) is the fully-connected shorthand; with layers, the list describes the whole network")
            }
            parameterization = try r.choice("parameterization", default: .ntk)
            let w = try r.double("w_std", default: 1), b = try r.double("b_std", default: 0)
            guard w >= 0, b >= 0 else { throw r.fail("w_std", "standard deviations must be ≥ 0") }
            let alpha = try r.double("leaky_alpha", default: 0.01)
            layers = try LayerGrammar.parse(list, key: r.path + ".layers", wStd: w, bStd: b, leakyAlpha: alpha)
            try r.finish()
            (widths, activation, wStd, bStd) = ([], .relu, [w], [b])
            return
        }
        let depth = try r.int("depth", min: 0, max: 10_000)
        let width = try r.int("width", min: 1)
        let list = try r.intList("widths")
        switch (list, depth, width) {
        case (let l?, nil, nil): widths = l
        case (nil, let d, let w): widths = Array(repeating: w ?? 1024, count: d ?? 1)
        default: throw r.fail("widths", "give either widths or depth/width, not both")
        }
        if let bad = widths.first(where: { $0 < 1 }) { throw r.fail("widths", "widths must be ≥ 1, found \(bad)") }
        let alpha = try r.double("leaky_alpha", default: 0.01)
        let name = try r.string("activation", default: "relu")!
        guard let act = Activation(name: name, alpha: alpha) else {
            throw r.fail("activation", "unknown activation \"\(name)\" (one of: \(Activation.names.joined(separator: ", ")))")
        }
        activation = act
        parameterization = try r.choice("parameterization", default: .ntk)
        let layers = widths.count + 1
        func perLayer(_ key: String, _ d: Double) throws -> [Double] {
            switch r.raw(key) {
            case nil: return Array(repeating: d, count: layers)
            case .int(let i)?: return Array(repeating: Double(i), count: layers)
            case .double(let x)?: return Array(repeating: x, count: layers)
            case .array(let a)?:
                let v = try a.map { e -> Double in
                    switch e {
                    case .int(let i): return Double(i)
                    case .double(let x): return x
                    default: throw r.fail(key, "expected numbers, found \(e.canonical)")
                    }
                }
                guard v.count == layers else {
                    throw r.fail(key, "needs one value per Dense layer (\(layers) = depth + 1, read-out last), found \(v.count)")
                }
                return v
            case let v?: throw r.fail(key, "expected a number or a list of numbers, found \(v.typeName)")
            }
        }
        wStd = try perLayer("w_std", 1.0)
        bStd = try perLayer("b_std", 0.0)
        for (key, v) in [("w_std", wStd), ("b_std", bStd)] where v.contains(where: { !($0 >= 0 && $0.isFinite) }) {
            throw r.fail(key, "standard deviations must be finite numbers ≥ 0, found \(v)")
        }
        try r.finish()
    }

    /// The network for samples of shape `input` and `outputs` logits (nil: as many as the read-out has, one for
    /// the shorthand); errors name `model.layers[i]` and its key.
    public func network(input: Shape, outputs: Int?) throws -> Network {
        guard let layers else {
            let mlp = NetworkSpec(inputDim: input.count, widths: widths, outputs: outputs ?? 1, activation: activation,
                                  wStd: wStd, bStd: bStd, parameterization: parameterization).layers
            do {
                return try Network(layers: (input.isImage ? [.flatten] : []) + mlp, input: input,
                                   parameterization: parameterization)
            } catch let e as LayerError {
                throw NTKError(e.message + " (from the widths \(widths) on samples \(input))", key: key + ".width")
            }
        }
        let net: Network
        do { net = try Network(layers: layers, input: input, parameterization: parameterization, path: key + ".layers") } catch let e as LayerError {
            throw NTKError(e.message + " (samples are \(input))", key: e.path + (e.key.map { "." + $0 } ?? ""))
        }
        if let outputs, net.outputs != outputs {
            throw NTKError("the network has \(net.outputs) outputs, the data \(outputs) (set the read-out's out: \(outputs))",
                           key: key + ".layers[\(layers.count - 1)]")
        }
        return net
    }

    /// The model as recorded in kernel artifacts: the layer list, or the shorthand's fields.
    public var json: JSONValue {
        if let layers {
            return .object(["layers": LayerGrammar.json(layers), "parameterization": .string(parameterization.rawValue)])
        }
        return .object(["widths": .array(widths.map { .int($0) }), "activation": .string(activation.description),
                        "w_std": .array(wStd.map { .double($0) }), "b_std": .array(bStd.map { .double($0) }),
                        "parameterization": .string(parameterization.rawValue)])
    }

    /// The network whose infinite-width kernels `analytic_kernels` computes, on samples of shape `input`: any
    /// layer list (its read-out width is free: the kernels are per logit), checked for what the kernel rules need
    /// (`KernelProgram`: Gaussian inputs to activations, layer norms and residual sums). `singleOutput`: the read-out
    /// made one logit wide — what `kernel_convergence` draws (every logit has the same kernels; one is k× cheaper).
    public func kernelNetwork(input: Shape, singleOutput: Bool = false) throws
        -> (network: Network, program: KernelProgram) {
        var model = self
        if singleOutput, var list = layers {
            guard case .dense(_, let w, let b)? = list.last else {
                throw NTKError("kernel_convergence needs a layer list that ends with a dense read-out",
                               key: key + ".layers[\(max(list.count - 1, 0))]")
            }
            list[list.count - 1] = .dense(out: 1, wStd: w, bStd: b)
            model.layers = list
        }
        let net = try model.network(input: input, outputs: singleOutput ? 1 : nil)
        do { return (net, try KernelProgram(net)) } catch let e as LayerError {
            throw NTKError(e.message, key: e.path + (e.key.map { "." + $0 } ?? ""))
        }
    }
}

/// Parses "512M", "4G", "1.5GB" or a plain number of bytes.
func parseBytes(_ s: String) -> Int? {
    let t = s.trimmingCharacters(in: .whitespaces).uppercased().replacingOccurrences(of: "B", with: "")
    let units: [Character: Double] = ["K": 0x1p10, "M": 0x1p20, "G": 0x1p30, "T": 0x1p40]
    if let u = t.last, let m = units[u], let v = Double(t.dropLast()) {
        // inf, nan and sizes past 2⁶² are no size (Int(_:) of them would trap)
        guard v.isFinite, v >= 0, v * m < 0x1p62 else { return nil }
        return Int(v * m)
    }
    return Int(t)
}

import Foundation
