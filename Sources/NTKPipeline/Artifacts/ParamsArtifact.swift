import NTK

/// Parameters of a network (kind `params`; also the final weights inside `trained`): tensors `W0, b0, W1, b1, …`
/// in neural-tangents' layout and order, one pair per dense or conv layer — dense `Wl` [fan_in, fan_out], conv `Wl`
/// [kh, kw, C_in, C_out] (HWIO), `bl` [fan_out] (absent when b_std = 0) — and the network in the metadata
/// (`network`: `layers` in the grammar with every default explicit, `input_shape`, `outputs`, `parameterization`;
/// `ntk dump` prints it as a table of layers with output shapes and parameter counts). In numpy: `np.load(f)["W0"]`.
public struct ParamsArtifact {
    public var network: Network
    public var theta: [Double]

    public init(network: Network, theta: [Double]) {
        self.network = network
        self.theta = theta
    }

    public init(spec: NetworkSpec, theta: [Double]) { self.init(network: Network(spec), theta: theta) }

    /// Per-layer tensors with a name prefix ("" for W0, "final_" …).
    public func tensors(prefix: String = "") -> [Tensor] {
        network.parameters.enumerated().flatMap { l, p -> [Tensor] in
            var t = [Tensor(name: "\(prefix)W\(l)", shape: p.wShape, values: Array(theta[p.w..<p.w + p.wCount]))]
            if let b = p.b {
                t.append(Tensor(name: "\(prefix)b\(l)", shape: [p.fanOut], values: Array(theta[b..<b + p.fanOut])))
            }
            return t
        }
    }

    public var networkJSON: JSONValue { network.json }

    public func file(metadata: [String: JSONValue]) -> ArtifactFile {
        var m = metadata
        m["network"] = networkJSON
        m["parameter_count"] = .int(theta.count)
        return ArtifactFile(kind: .params, metadata: m, tensors: tensors())
    }

    /// θ from tensors named W0, b0, … for this network; each shape checked against its layer, `location` named.
    public static func theta(from tensors: [String: Tensor], network: Network, prefix: String = "",
                             location: String) throws -> [Double] {
        var theta = [Double](repeating: 0, count: network.parameterCount)
        let count = network.parameters.count
        for (l, p) in network.parameters.enumerated() {
            let layer = "\(p.path) (\(p.kind.rawValue))"
            guard let w = tensors["\(prefix)W\(l)"] else {
                throw NTKError("no tensor \(prefix)W\(l), the weights of \(layer), parameter layer \(l) of \(count)",
                               at: location)
            }
            guard w.shape == p.wShape else {
                let layout = p.kind == .conv ? " (HWIO: height, width, in, out channels)" : " ([fan_in, fan_out])"
                throw NTKError("\(prefix)W\(l) has shape \(w.shape), but \(layer) needs \(p.wShape)" + layout,
                               at: location)
            }
            theta.replaceSubrange(p.w..<p.w + p.wCount, with: w.doubles())
            if let b = p.b {
                guard let t = tensors["\(prefix)b\(l)"] else {
                    throw NTKError("no tensor \(prefix)b\(l), the bias of \(layer) (its b_std is not 0)",
                                   at: location)
                }
                guard t.shape == [p.fanOut] else {
                    throw NTKError("\(prefix)b\(l) has shape \(t.shape), but \(layer) needs [\(p.fanOut)]",
                                   at: location)
                }
                theta.replaceSubrange(b..<b + p.fanOut, with: t.doubles())
            } else if tensors["\(prefix)b\(l)"] != nil {
                throw NTKError("has \(prefix)b\(l), but \(layer) has no bias (b_std = 0)", at: location)
            }
        }
        let names = Set((0..<count).flatMap { ["\(prefix)W\($0)", "\(prefix)b\($0)"] })
        let extra = tensors.keys.sorted().first {
            !names.contains($0) && $0.hasPrefix(prefix + "W") && Int($0.dropFirst(prefix.count + 1)) != nil
        }
        if let extra {
            throw NTKError("has \(extra), but the network has \(count) parameter layers (W0…W\(count - 1))",
                           at: location)
        }
        if let bad = theta.firstIndex(where: { !$0.isFinite }) {
            throw NTKError("parameter \(bad) is NaN or Inf", at: location)
        }
        return theta
    }

    /// Reads a `params` artifact (kind checked, network from the metadata, every tensor's shape checked). Artifacts
    /// written before layer lists (`network` with `input_dim`, `widths`, …) read as their fully-connected network.
    public init(file f: ArtifactFile, path: String) throws {
        guard f.kind == .params else {
            throw NTKError("is a '\(f.kind.rawValue)' artifact, but a 'params' artifact is needed here", at: path)
        }
        network = try Self.network(f.metadata["network"], path: path)
        let tensors = Dictionary(uniqueKeysWithValues: f.tensors.map { ($0.name, $0) })
        theta = try Self.theta(from: tensors, network: network, location: path)
    }

    /// The network recorded as `network` in an artifact's metadata.
    public static func network(_ value: JSONValue?, path: String) throws -> Network {
        guard case .object(let n)? = value, case .string(let p)? = n["parameterization"],
              let param = Parameterization(rawValue: p) else {
            throw NTKError("artifact without a valid 'network' description", at: path)
        }
        if let layers = n["layers"] {
            let dims: [JSONValue]
            if case .array(let a)? = n["input_shape"] { dims = a } else { dims = [] }
            let shape = dims.compactMap { if case .int(let i) = $0 { i } else { nil } }
            guard shape.count == dims.count, let channels = shape.last else {
                throw NTKError("the 'network' description has no valid input_shape", at: path)
            }
            do {
                let list = try LayerGrammar.parse(layers, key: "network.layers", wStd: 1, bStd: 0)
                let input = Shape(spatial: Array(shape.dropLast()), channels: channels)
                return try Network(layers: list, input: input, parameterization: param)
            } catch let e as LayerError {
                throw NTKError("its network description does not compile: \(e)", at: path)
            } catch let e as NTKError {
                throw NTKError("its network description does not parse: \(e.key.map { "\($0): " } ?? "")\(e.problem)",
                               at: path)
            }
        }
        guard case .int(let d)? = n["input_dim"], case .int(let k)? = n["outputs"], case .array(let ws)? = n["widths"],
              case .string(let act)? = n["activation"], case .array(let w)? = n["w_std"], case .array(let b)? = n["b_std"]
        else { throw NTKError("artifact without a valid 'network' description", at: path) }
        func num(_ v: JSONValue) -> Double {
            if case .double(let x) = v { x } else if case .int(let i) = v { Double(i) } else { .nan }
        }
        let alpha = act.hasPrefix("leaky_relu(") ? Double(act.dropFirst(11).dropLast()) ?? 0.01 : 0.01
        guard let activation = Activation(name: act.hasPrefix("leaky_relu") ? "leaky_relu" : act, alpha: alpha) else {
            throw NTKError("unknown activation '\(act)'", at: path)
        }
        let widths = ws.compactMap { if case .int(let i) = $0 { i } else { nil } }
        guard widths.count == ws.count, widths.allSatisfy({ $0 >= 1 }), w.count == widths.count + 1,
              b.count == widths.count + 1, d >= 1, k >= 1 else {
            throw NTKError("the 'network' description is inconsistent (widths, w_std, b_std)", at: path)
        }
        return Network(NetworkSpec(inputDim: d, widths: widths, outputs: k, activation: activation, wStd: w.map(num),
                                   bStd: b.map(num), parameterization: param))
    }
}

extension Network {
    /// The network as recorded in artifact metadata: the layer list (grammar, defaults explicit) and its input.
    public var json: JSONValue {
        .object([
            "layers": LayerGrammar.json(layers), "input_shape": .array(inputShape.dims.map { .int($0) }),
            "outputs": .int(outputs), "parameterization": .string(parameterization.rawValue),
        ])
    }

    /// `table` as JSON rows {path, kind, output_shape, parameters} (`ntk dump --json`).
    public var tableJSON: JSONValue {
        .array(table.map {
            .object(["path": .string($0.path), "kind": .string($0.kind),
                     "output_shape": .array($0.output.dims.map { .int($0) }), "parameters": .int($0.parameters)])
        })
    }

    /// Whether samples of `shape` (D features) are this network's input: the same shape, or D features for a
    /// network that starts on vectors (images are read row-major, NHWC, as flatten would).
    public func accepts(_ shape: Shape) -> Bool {
        inputShape == shape || (!inputShape.isImage && inputShape.count == shape.count)
    }

    /// A short description for logs: "784-2048-2048-10 relu" for a fully-connected network, else its layer kinds.
    public var summary: String {
        if let s = NetworkSpec(layers: layers, inputDim: inputShape.count, parameterization: parameterization) {
            return "\(s.inputDim)-\(s.widths.map(String.init).joined(separator: "-"))-\(s.outputs) \(s.activation)"
        }
        return "\(inputShape) → " + table.map(\.kind).joined(separator: " → ") + " \(outputShape)"
    }
}
