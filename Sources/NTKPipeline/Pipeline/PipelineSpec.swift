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
///   train:
///     matrix:                 # a sweep: one stage per combination, each cached on its own
///       model.width: [64, 256, 1024]
///     outs: ["artifacts/train/w${model.width}/trained.npz"]   # ${key} sees the combination's values
/// ```
/// A `matrix` stage expands into `train@width=64`, `train@width=256`, … (the last part of each key, `=`,
/// the value; several keys give their cartesian product, joined by `,`). Each expansion sees params with
/// its values set, so adding a value runs only the new expansion. Naming the stage (`ntk run train`)
/// targets all its expansions. A dep `outs:train` stands for every out of stage (or sweep group) `train`.
/// Paths are relative to the pipeline file's directory. Unknown keys are errors.
public struct PipelineSpec {
    public struct Stage {
        /// Unique name: the stage's key, or for a matrix expansion `key@width=64,depth=2`.
        public var name: String
        /// The stage's key in the file (for matrix expansions, shared by all of them).
        public var group: String
        /// The params tree this stage sees (the file's, with a matrix expansion's values set).
        public var values: JSONValue
        public var kind: String
        public var deps: [String]
        public var params: [String]
        public var outs: [String]
        public var desc: String?
        /// Keys the templates in its declared params look up (`ParamTemplates.swift`): read as if declared.
        public var templateReads: Set<String> = []
    }

    public var file: String
    public var params: JSONValue
    public var stages: [Stage]
    public var lines: [String: Int]

    /// "pipeline.yaml:12" for a dotted key, if known. A matrix expansion's keys
    /// ("stages.train@width=64.deps") are located at the stage they expand.
    public func locate(_ key: String) -> String? {
        var k = key
        if k.hasPrefix("stages."), let at = k.firstIndex(of: "@") {
            let group = String(k[..<at])
            let field = ["deps", "params", "outs", "kind", "desc", "matrix"].first { k.hasSuffix("." + $0) }
            k = field.map { group + "." + $0 } ?? group
        }
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
        return try parse(bytes, file: path, overrides: overrides)
    }

    /// The spec in a pipeline file's bytes (`file` names it in errors).
    static func parse(_ bytes: [UInt8], file path: String, overrides: [String] = []) throws -> PipelineSpec {
        let doc = try YAMLDocument(text: String(decoding: bytes, as: UTF8.self), file: path)
        var spec = PipelineSpec(file: path, params: .object([:]), stages: [], lines: doc.lines)
        var top = try ConfigReader(doc.value, path: "", locate: spec.locate)
        let schema = try top.int("schema", default: 1)!
        guard schema == 1 else {
            throw NTKError("schema \(schema) is not one this ntk reads (it reads schema 1)", at: spec.locate("schema") ?? path,
                           key: "schema", hint: "a newer ntk wrote this file, or the number is a typo")
        }
        spec.params = top.raw("params") ?? .object([:])
        if case .object = spec.params {} else { throw NTKError("params must be a mapping", at: spec.locate("params"), key: "params") }
        let stagesValue = top.raw("stages")
        try top.finish()
        let written = spec.params
        spec.params = try applying(overrides, to: spec.params)
        var swept: [String: [String]] = [:]   // stage key → its matrix keys
        guard case .object(let stageMap)? = stagesValue, !stageMap.isEmpty else {
            throw NTKError("no stages defined", at: spec.locate("stages") ?? path, key: "stages")
        }
        for name in doc.keyOrder["stages"] ?? stageMap.keys.sorted() {
            var r = try ConfigReader(stageMap[name], path: "stages.\(name)", locate: spec.locate)
            let kind = try r.string("kind", default: name)!
            func strings(_ key: String) throws -> [String] {
                guard let v = r.raw(key) else { return [] }
                guard case .array(let a) = v else { throw r.fail(key, "expected a list of paths, found \(v.typeName)") }
                return try a.map {
                    guard case .string(let s) = $0 else { throw r.fail(key, "expected a list of paths, found an element \($0.canonical)") }
                    return s
                }
            }
            let deps = try strings("deps"), params = try strings("params"), outs = try strings("outs")
            let desc = try r.string("desc")
            let matrix = r.raw("matrix")
            try r.finish()
            if case .object(let m)? = matrix { swept[name] = Array(m.keys) }
            for p in params where spec.params.at(path: p) == nil {
                throw NTKError("declares param '\(p)', which is not defined under params", at: spec.locate("stages.\(name).params"), key: "stages.\(name).params")
            }
            let expansions = try spec.expand(matrix, stage: name, params: params, deps: deps, order: doc.keyOrder["stages.\(name).matrix"])
            for (suffix, written) in expansions {
                let full = suffix.isEmpty ? name : name + "@" + suffix
                let (values, reads) = try spec.resolvingTemplates(in: written, declared: params)
                func paths(_ list: [String], _ key: String) throws -> [String] {
                    try list.map { try spec.interpolate($0, in: "stages.\(name).\(key)", params: values) }
                }
                spec.stages.append(Stage(name: full, group: name, values: values, kind: kind, deps: try paths(deps, "deps"),
                                         params: params, outs: try paths(outs, "outs"), desc: desc,
                                         templateReads: reads))
            }
        }
        try spec.checkOverrides(overrides, written: written, swept: swept)
        // `outs:GROUP` in deps: every out of that stage or sweep group (all its expansions), e.g. for a report.
        let all = spec.stages
        for i in spec.stages.indices {
            spec.stages[i].deps = try spec.stages[i].deps.flatMap { d -> [String] in
                guard d.hasPrefix("outs:") else { return [d] }
                let group = String(d.dropFirst(5)), outs = all.filter { $0.group == group }.flatMap(\.outs)
                guard !outs.isEmpty else {
                    throw NTKError("'\(d)': no stage named \(group) writes outs", at: spec.locate("stages.\(spec.stages[i].group).deps"), key: "stages.\(spec.stages[i].group).deps")
                }
                return outs
            }
        }
        return spec
    }

    /// A stage's `matrix` (dotted param key → list of values) as (name suffix, params with those values set),
    /// in the cartesian product's order (first key slowest); one unnamed expansion without a matrix.
    func expand(_ matrix: JSONValue?, stage: String, params declared: [String], deps: [String], order: [String]?) throws -> [(String, JSONValue)] {
        guard let matrix else { return [("", params)] }
        let key = "stages.\(stage).matrix"
        guard case .object(let m) = matrix, !m.isEmpty else {
            throw NTKError("matrix must map param keys to lists of values (e.g. model.width: [64, 256])", at: locate(key), key: key)
        }
        var result: [(String, JSONValue)] = [("", params)]
        let viaTemplates = try resolvingTemplates(in: params, declared: declared).reads
        for k in order ?? m.keys.sorted() {
            guard case .array(let list) = m[k]!, !list.isEmpty else {
                throw NTKError("matrix.\(k) must be a non-empty list of values, found \(m[k]!.canonical)", at: locate(key + "." + k), key: key + "." + k)
            }
            if let twice = list.enumerated().first(where: { i, v in list[..<i].contains(v) })?.element {
                throw NTKError("matrix.\(k) lists \(twice.canonical) twice", at: locate(key + "." + k), key: key + "." + k)
            }
            guard params.at(path: k) != nil else {
                throw NTKError("matrix key '\(k)' is not defined under params", at: locate(key + "." + k), key: key + "." + k)
            }
            // it must change what the stage computes: a param it reads, or a path it reads (`${k}` in deps)
            let covers = { (p: String) in k == p || k.hasPrefix(p + ".") }
            guard declared.contains(where: covers) || deps.contains(where: { $0.contains("${\(k)}") })
                    || viaTemplates.contains(where: covers) else {
                throw NTKError("matrix key '\(k)' is neither among the stage's params nor used in its deps, so its expansions would not differ",
                               at: locate(key + "." + k), key: key + "." + k, hint: "add \(k) (or a parent key) to stages.\(stage).params")
            }
            let label = k.split(separator: ".").last.map(String.init) ?? k
            let path = k.split(separator: ".").map(String.init)
            result = result.flatMap { (suffix, values) in
                list.map { v -> (String, JSONValue) in
                    let text: String
                    if case .string(let s) = v { text = s } else { text = v.canonical }
                    return ((suffix.isEmpty ? "" : suffix + ",") + label + "=" + text, values.setting(path: path, to: v))
                }
            }
        }
        return result
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

    /// Every `--set` key must change what some stage computes: it names a param written in the file (or a new key in
    /// a mapping that is), a stage lists it (or a mapping it is in) under `params:`, and not every such stage sweeps
    /// it in its `matrix` (which would replace the value). Otherwise the override would be silently ignored: an error
    /// naming the closest params instead.
    func checkOverrides(_ overrides: [String], written: JSONValue, swept: [String: [String]]) throws {
        for o in overrides {
            let key = String(o[..<o.firstIndex(of: "=")!]), parts = key.split(separator: ".").map(String.init)
            let parent = parts.count > 1 ? written.at(path: parts.dropLast().joined(separator: ".")) : written
            let exists = written.at(path: key) != nil
            var parentIsMapping = false
            if case .object? = parent { parentIsMapping = true }
            let readers = stages.filter { s in
                (s.params + s.templateReads)
                    .contains { key == $0 || key.hasPrefix($0 + ".") || $0.hasPrefix(key + ".") }
            }
            let file = (self.file as NSString).lastPathComponent
            guard (exists || parentIsMapping) && !readers.isEmpty else {
                let near = PipelineSpec.closest(key, among: PipelineSpec.paths(of: written))
                let problem = exists ? "no stage of \(file) reads params.\(key) (no stage lists it, or a mapping it is in, under params:)"
                                     : "\(file) has no param \(key)"
                throw NTKError(problem, at: self.file, key: "--set \(key)",
                               hint: near.isEmpty ? "see `ntk params STAGE` for what a stage reads"
                                                  : "did you mean \(near.joined(separator: " or "))?")
            }
            let groups = Set(readers.map(\.group))
            if groups.allSatisfy({ g in swept[g, default: []].contains { key == $0 || key.hasPrefix($0 + ".") } }) {
                let names = groups.sorted().map { "stages.\($0).matrix" }.joined(separator: ", ")
                throw NTKError("params.\(key) is swept by \(names), which replaces any value given here", at: self.file,
                               key: "--set \(key)", hint: "change the matrix's list of values instead")
            }
        }
    }

    /// Every dotted key of a params tree (mappings and their leaves; not inside lists).
    public static func paths(of value: JSONValue, prefix: String = "") -> [String] {
        guard case .object(let o) = value else { return [] }
        return o.keys.sorted().flatMap { k -> [String] in
            let p = prefix.isEmpty ? k : prefix + "." + k
            return [p] + paths(of: o[k]!, prefix: p)
        }
    }

    /// The candidates nearest to `key`: those ending in `.key` (a key given without its experiment's prefix), else
    /// those within a small edit distance; at most three.
    public static func closest(_ key: String, among candidates: [String]) -> [String] {
        let scoped = candidates.filter { $0.hasSuffix("." + key) }
        if !scoped.isEmpty { return Array(scoped.prefix(3)) }
        let limit = max(2, key.count / 4)
        return candidates.map { ($0, editDistance($0, key)) }.filter { $0.1 <= limit }
            .sorted { ($0.1, $0.0) < ($1.1, $1.0) }.prefix(3).map(\.0)
    }

    /// Levenshtein distance (insertions, deletions, substitutions), on characters.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var prev = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return a.isEmpty ? b.count : row[b.count]
    }

    /// Replaces each `${key}` by the value of params.key.
    func interpolate(_ s: String, in key: String, params: JSONValue) throws -> String {
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

    /// The stages a target names: one stage by its full name, or all expansions of a matrix stage.
    public func stages(named target: String) -> [Stage] {
        if let s = stage(target) { return [s] }
        return stages.filter { $0.group == target }
    }
}
