import NTK

/// Parameters of a fully-connected network (kind `params`; also the final weights inside `trained`):
/// tensors `W0, b0, W1, b1, …` in neural-tangents' layout — `Wl` [fan_in, fan_out], `bl` [fan_out] (absent when
/// b_std,l = 0), read-out last — and the network in the metadata (`network`: input_dim, widths, outputs,
/// activation, w_std, b_std, parameterization). In numpy: `z = np.load(f); W0 = z["W0"]`.
public struct ParamsArtifact {
    public var spec: NetworkSpec
    public var theta: [Double]

    public init(spec: NetworkSpec, theta: [Double]) {
        self.spec = spec
        self.theta = theta
    }

    /// Per-layer tensors with a name prefix ("" for W0, "final_" …).
    public func tensors(prefix: String = "") -> [Tensor] {
        let net = MLP(spec: spec, theta: theta)
        return net.layers.enumerated().flatMap { l, layer -> [Tensor] in
            var t = [Tensor(name: "\(prefix)W\(l)", shape: [layer.fanIn, layer.fanOut], values: Array(theta[layer.w..<layer.w + layer.fanIn * layer.fanOut]))]
            if let b = layer.b { t.append(Tensor(name: "\(prefix)b\(l)", shape: [layer.fanOut], values: Array(theta[b..<b + layer.fanOut]))) }
            return t
        }
    }

    public var networkJSON: JSONValue { spec.json }

    public func file(metadata: [String: JSONValue]) -> ArtifactFile {
        var m = metadata
        m["network"] = networkJSON
        m["parameter_count"] = .int(theta.count)
        return ArtifactFile(kind: .params, metadata: m, tensors: tensors())
    }

    /// θ from tensors named W0, b0, … for this spec; each shape checked, `location` named in errors.
    public static func theta(from tensors: [String: Tensor], spec: NetworkSpec, prefix: String = "", location: String) throws -> [Double] {
        let net = MLP(spec: spec, theta: [])
        var theta = [Double](repeating: 0, count: net.parameterCount)
        for (l, layer) in net.layers.enumerated() {
            guard let w = tensors["\(prefix)W\(l)"] else { throw NTKError("no tensor \(prefix)W\(l) (layer \(l) of \(net.layers.count))", at: location) }
            guard w.shape == [layer.fanIn, layer.fanOut] else {
                throw NTKError("\(prefix)W\(l) has shape \(w.shape), the network needs [\(layer.fanIn), \(layer.fanOut)]", at: location)
            }
            theta.replaceSubrange(layer.w..<layer.w + layer.fanIn * layer.fanOut, with: w.doubles())
            if let b = layer.b {
                guard let t = tensors["\(prefix)b\(l)"] else { throw NTKError("no tensor \(prefix)b\(l) (b_std of layer \(l) is not 0)", at: location) }
                let v = t.doubles()
                guard v.count == layer.fanOut else { throw NTKError("\(prefix)b\(l) has \(v.count) entries, the network needs \(layer.fanOut)", at: location) }
                theta.replaceSubrange(b..<b + layer.fanOut, with: v)
            }
        }
        if let bad = theta.firstIndex(where: { !$0.isFinite }) { throw NTKError("parameter \(bad) is NaN or Inf", at: location) }
        return theta
    }

    /// Reads a `params` artifact (kind checked, network from the metadata, every tensor's shape checked).
    public init(file f: ArtifactFile, path: String) throws {
        guard f.kind == .params else { throw NTKError("is a '\(f.kind.rawValue)' artifact, but a 'params' artifact is needed here", at: path) }
        guard case .object(let n)? = f.metadata["network"], case .int(let d)? = n["input_dim"], case .int(let k)? = n["outputs"],
              case .array(let ws)? = n["widths"], case .string(let act)? = n["activation"], case .array(let w)? = n["w_std"],
              case .array(let b)? = n["b_std"], case .string(let p)? = n["parameterization"], let param = Parameterization(rawValue: p)
        else { throw NTKError("params artifact without a valid 'network' description", at: path) }
        func num(_ v: JSONValue) -> Double { if case .double(let x) = v { x } else if case .int(let i) = v { Double(i) } else { .nan } }
        let alpha = act.hasPrefix("leaky_relu(") ? Double(act.dropFirst(11).dropLast()) ?? 0.01 : 0.01
        guard let activation = Activation(name: act.hasPrefix("leaky_relu") ? "leaky_relu" : act, alpha: alpha) else {
            throw NTKError("unknown activation '\(act)'", at: path)
        }
        spec = NetworkSpec(inputDim: d, widths: ws.compactMap { if case .int(let i) = $0 { i } else { nil } }, outputs: k, activation: activation,
                           wStd: w.map(num), bStd: b.map(num), parameterization: param)
        theta = try Self.theta(from: Dictionary(uniqueKeysWithValues: f.tensors.map { ($0.name, $0) }), spec: spec, location: path)
    }
}

extension NetworkSpec {
    /// The network as recorded in artifact metadata.
    public var json: JSONValue {
        .object([
            "input_dim": .int(inputDim), "widths": .array(widths.map { .int($0) }), "outputs": .int(outputs),
            "activation": .string(activation.description), "w_std": .array(wStd.map { .double($0) }),
            "b_std": .array(bStd.map { .double($0) }), "parameterization": .string(parameterization.rawValue),
        ])
    }
}
