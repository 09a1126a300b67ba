import NTK

/// The layer grammar of `model.layers` — the same list the neural-tangents harness takes (`peers/README.md`), in
/// YAML or JSON form, so one network description runs in both tools:
///
/// ```yaml
/// layers:
///   - conv: {channels: 64, filter: [3, 3], padding: SAME}      # strides [1, 1], padding VALID, W_std, b_std
///   - relu                                                      # or {relu: {}}; any activation name
///   - avg_pool: {window: [2, 2], strides: [2, 2]}               # padding VALID, normalize_edges false
///   - residual: [relu, {conv: {channels: 64, filter: 3, padding: SAME}}]
///   - layer_norm                                                # or {layer_norm: {eps: 1e-12}}
///   - global_avg_pool                                           # or flatten
///   - dense: {out: 10}                                          # W_std, b_std
/// ```
/// Defaults are neural-tangents': strides 1, padding VALID, normalize_edges false, eps 1e-12, W_std / b_std from
/// the model's `w_std` / `b_std`. An integer filter, window or strides means that value in both dimensions.
/// Unknown layers or keys and wrong types are errors naming the layer's path (`model.layers[2].residual[0].filter`).
public enum LayerGrammar {
    public static let names = ["dense", "conv", "avg_pool", "global_avg_pool", "flatten", "layer_norm", "residual"] + Activation.names

    /// Parses a layer list; `wStd`, `bStd` are the defaults of dense and conv layers, `key` the list's own key.
    public static func parse(_ value: JSONValue, key: String, wStd: Double, bStd: Double, leakyAlpha: Double = 0.01) throws -> [Layer] {
        guard case .array(let items) = value else { throw NTKError("expected a list of layers, found \(value.typeName)", key: key) }
        return try items.enumerated().map { i, item in try layer(item, key: "\(key)[\(i)]", wStd: wStd, bStd: bStd, alpha: leakyAlpha) }
    }

    static func layer(_ item: JSONValue, key: String, wStd: Double, bStd: Double, alpha: Double) throws -> Layer {
        let name: String, body: JSONValue
        switch item {
        case .string(let s): (name, body) = (s, .object([:]))
        case .object(let o) where o.count == 1: (name, body) = (o.first!.key, o.first!.value)
        case .object(let o):
            throw NTKError("a layer is one name or a mapping with one key, found keys \(o.keys.sorted())", key: key)
        default: throw NTKError("expected a layer (a name or a mapping), found \(item.typeName)", key: key)
        }
        if name == "residual" {
            return .residual(try parse(body, key: "\(key).residual", wStd: wStd, bStd: bStd, leakyAlpha: alpha))
        }
        guard case .object(var o) = body else {
            throw NTKError("the settings of \(name) must be a mapping, found \(body.typeName)", key: "\(key).\(name)")
        }
        let here = "\(key).\(name)"
        func take(_ k: String) -> JSONValue? { o.removeValue(forKey: k) }
        func number(_ k: String, _ d: Double) throws -> Double {
            guard let v = take(k) else { return d }
            guard let x = v.number, x.isFinite else { throw NTKError("expected a number, found \(v.canonical)", key: "\(here).\(k)") }
            return x
        }
        func integer(_ v: JSONValue, _ k: String) throws -> Int {
            guard case .int(let i) = v else { throw NTKError("expected an integer, found \(v.canonical)", key: "\(here).\(k)") }
            return i
        }
        func pair(_ k: String, _ d: Int?) throws -> [Int] {
            guard let v = take(k) else {
                guard let d else { throw NTKError("is required", key: "\(here).\(k)") }
                return [d, d]
            }
            if case .array(let a) = v {
                guard a.count == 2 else { throw NTKError("needs two values (height, width), found \(a.count)", key: "\(here).\(k)") }
                return try a.map { try integer($0, k) }
            }
            let i = try integer(v, k)
            return [i, i]
        }
        func padding() throws -> Padding {
            guard let v = take("padding") else { return .valid }
            guard let s = v.text, let p = Padding(rawValue: s) else {
                throw NTKError("expected one of VALID, SAME, CIRCULAR, found \(v.canonical)", key: "\(here).padding")
            }
            return p
        }
        let result: Layer
        switch name {
        case "dense":
            guard let out = take("out") else { throw NTKError("is required", key: "\(here).out") }
            result = .dense(out: try integer(out, "out"), wStd: try number("W_std", wStd), bStd: try number("b_std", bStd))
        case "conv":
            guard let c = take("channels") else { throw NTKError("is required", key: "\(here).channels") }
            let channels = try integer(c, "channels")
            result = .conv(channels: channels, filter: try pair("filter", nil), strides: try pair("strides", 1), padding: try padding(),
                           wStd: try number("W_std", wStd), bStd: try number("b_std", bStd))
        case "avg_pool":
            var normalize = false
            if let v = take("normalize_edges") {
                guard case .bool(let b) = v else { throw NTKError("expected true or false, found \(v.canonical)", key: "\(here).normalize_edges") }
                normalize = b
            }
            result = .avgPool(window: try pair("window", nil), strides: try pair("strides", 1), padding: try padding(), normalizeEdges: normalize)
        case "global_avg_pool": result = .globalAvgPool
        case "flatten": result = .flatten
        case "layer_norm": result = .layerNorm(eps: try number("eps", 1e-12))
        case "leaky_relu": result = .activation(.leakyRelu(try number("alpha", alpha)))
        default:
            guard let a = Activation(name: name) else {
                throw NTKError("unknown layer \"\(name)\"\(closest(name).map { " (did you mean \"\($0)\"?)" } ?? "")",
                               key: key, hint: "layers: \(names.joined(separator: ", "))")
            }
            result = .activation(a)
        }
        if let extra = o.keys.sorted().first {
            throw NTKError("unknown key \"\(extra)\" for \(name)", key: "\(here).\(extra)")
        }
        return result
    }

    /// The closest layer name by edit distance (≤ 2), for "did you mean".
    static func closest(_ s: String) -> String? {
        /// Levenshtein distance, one row at a time.
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var row = Array(0...b.count)
            for (i, ca) in a.enumerated() {
                var diagonal = row[0]
                row[0] = i + 1
                for (j, cb) in b.enumerated() {
                    let above = row[j + 1]
                    row[j + 1] = min(above + 1, row[j] + 1, diagonal + (ca == cb ? 0 : 1))
                    diagonal = above
                }
            }
            return row[b.count]
        }
        let best = names.map { ($0, distance(Array(s), Array($0))) }.min { $0.1 < $1.1 }
        return best.flatMap { $0.1 <= 2 ? $0.0 : nil }
    }

    /// The list back in the grammar (JSON), every default explicit: what artifacts record and neural-tangents reads.
    public static func json(_ layers: [Layer]) -> JSONValue {
        .array(layers.map { layer in
            switch layer {
            case .dense(let out, let w, let b):
                return .object(["dense": .object(["out": .int(out), "W_std": .double(w), "b_std": .double(b)])])
            case .conv(let c, let f, let s, let p, let w, let b):
                return .object(["conv": .object(["channels": .int(c), "filter": .array(f.map { .int($0) }), "strides": .array(s.map { .int($0) }),
                                                 "padding": .string(p.rawValue), "W_std": .double(w), "b_std": .double(b)])])
            case .avgPool(let win, let s, let p, let normalize):
                return .object(["avg_pool": .object(["window": .array(win.map { .int($0) }), "strides": .array(s.map { .int($0) }),
                                                     "padding": .string(p.rawValue), "normalize_edges": .bool(normalize)])])
            case .globalAvgPool: return .string("global_avg_pool")
            case .flatten: return .string("flatten")
            case .layerNorm(let eps): return .object(["layer_norm": .object(["eps": .double(eps)])])
            case .activation(.leakyRelu(let a)): return .object(["leaky_relu": .object(["alpha": .double(a)])])
            case .activation(let a): return .string(a.name)
            case .residual(let branch): return .object(["residual": json(branch)])
            }
        })
    }
}
