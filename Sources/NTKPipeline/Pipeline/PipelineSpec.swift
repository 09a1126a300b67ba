import Foundation

/// `pipeline.yaml`: params and stages.
///
/// ```yaml
/// schema: 1
/// params:                     # any tree of values; stages declare which keys they read
///   seed: 0
///   data: {format: idx, path: data/mnist, n_train: 1000}
/// stages:
///   load:                     # stage name
///     kind: load              # built-in stage kind (defaults to the name)
///     deps: ["${data.path}"]  # files/directories read; ${key} is replaced by a param value
///     params: [seed, data]    # param keys read, locked by value
///     outs: [artifacts/load/dataset.npz]
/// ```
/// Paths are relative to the pipeline file's directory. Unknown keys are errors.
public struct PipelineSpec {
    public struct Stage {
        public var name: String
        public var kind: String
        public var deps: [String]
        public var params: [String]
        public var outs: [String]
        public var desc: String?
    }

    public var file: String
    public var params: JSONValue
    public var stages: [Stage]
    public var lines: [String: Int]

    /// "pipeline.yaml:12" for a dotted key, if known.
    public func locate(_ key: String) -> String? {
        var k = key
        while !k.isEmpty {
            if let l = lines[k] { return "\((file as NSString).lastPathComponent):\(l)" }
            guard let dot = k.lastIndex(of: ".") else { break }
            k = String(k[..<dot])
        }
        return nil
    }

    /// Loads and validates the file's structure; `overrides` ("data.n_train=500") replace param values.
    public static func load(_ path: String, overrides: [String] = []) throws -> PipelineSpec {
        let bytes: [UInt8]
        do { bytes = try Files.read(path) } catch let e as NTKError {
            throw NTKError(e.problem, at: path, hint: Files.exists(path) ? nil : "run from the project directory or pass --pipeline FILE")
        }
        let doc = try YAMLDocument(text: String(decoding: bytes, as: UTF8.self), file: path)
        var spec = PipelineSpec(file: path, params: .object([:]), stages: [], lines: doc.lines)
        var top = try ConfigReader(doc.value, path: "", locate: spec.locate)
        _ = try top.int("schema", default: 1)
        spec.params = top.raw("params") ?? .object([:])
        if case .object = spec.params {} else { throw NTKError("params must be a mapping", at: spec.locate("params"), key: "params") }
        let stagesValue = top.raw("stages")
        try top.finish()
        spec.params = try applying(overrides, to: spec.params)
        guard case .object(let stageMap)? = stagesValue, !stageMap.isEmpty else {
            throw NTKError("no stages defined", at: spec.locate("stages") ?? path, key: "stages")
        }
        for name in doc.keyOrder["stages"] ?? stageMap.keys.sorted() {
            var r = try ConfigReader(stageMap[name], path: "stages.\(name)", locate: spec.locate)
            let kind = try r.string("kind", default: name)!
            func paths(_ key: String) throws -> [String] {
                guard let v = r.raw(key) else { return [] }
                guard case .array(let a) = v else { throw r.fail(key, "expected a list of paths, found \(v.typeName)") }
                return try a.map {
                    guard case .string(let s) = $0 else { throw r.fail(key, "expected a list of paths, found an element \($0.canonical)") }
                    return try spec.interpolate(s, in: "stages.\(name).\(key)")
                }
            }
            let deps = try paths("deps"), params = try paths("params"), outs = try paths("outs")
            let desc = try r.string("desc")
            try r.finish()
            for p in params where spec.params.at(path: p) == nil {
                throw NTKError("declares param '\(p)', which is not defined under params", at: spec.locate("stages.\(name).params"), key: "stages.\(name).params")
            }
            spec.stages.append(Stage(name: name, kind: kind, deps: deps, params: params, outs: outs, desc: desc))
        }
        return spec
    }

    /// Params with `--set key=value` overrides applied (values typed as YAML scalars: 500, true, [0, 1], inf).
    public static func applying(_ overrides: [String], to params: JSONValue) throws -> JSONValue {
        var p = params
        for o in overrides {
            guard let eq = o.firstIndex(of: "="), eq != o.startIndex else {
                throw NTKError("--set expects key=value (e.g. data.n_train=500), got '\(o)'")
            }
            let key = String(o[..<eq]), value = YAMLDocument.scalar(String(o[o.index(after: eq)...]))
            p = p.setting(path: key.split(separator: ".").map(String.init), to: value)
        }
        return p
    }

    /// Replaces each `${key}` by the value of params.key.
    func interpolate(_ s: String, in key: String) throws -> String {
        var out = ""
        var rest = Substring(s)
        while let open = rest.range(of: "${") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                throw NTKError("unclosed ${ in '\(s)'", at: locate(key), key: key)
            }
            let name = String(rest[open.upperBound..<close])
            switch params.at(path: name) {
            case .string(let v)?: out += v
            case .int(let v)?: out += String(v)
            case let v?: out += v.canonical
            case nil: throw NTKError("${\(name)} refers to a param that is not defined", at: locate(key), key: key)
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    public func stage(_ name: String) -> Stage? { stages.first { $0.name == name } }
}
