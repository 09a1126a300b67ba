/// `${key}` inside param values, resolved after `--set` and a matrix expansion's values are applied — so a sweep can
/// reach into a layer list:
///
/// ```yaml
/// params:
///   cnn:
///     channels: 64
///     depth: 2
///     d1: [{conv: {channels: "${cnn.channels}", filter: 3}}, relu, flatten, {dense: {out: 1}}]
///     d2: [{conv: {channels: "${cnn.channels}", filter: 3}}, relu, {conv: {channels: "${cnn.channels}", filter: 3}},
///          relu, flatten, {dense: {out: 1}}]
///     model: {layers: "${cnn.d${cnn.depth}}"}
/// stages:
///   init: {matrix: {cnn.depth: [1, 2], cnn.channels: [32, 64]}, params: [seed, cnn.model], …}
/// ```
///
/// A string that is exactly one `${key}` becomes the value at `key`, whatever its type (a number, a list); `${key}`
/// within other text is replaced by the value's text. The innermost `${…}` resolves first (`${cnn.d${cnn.depth}}`:
/// depth, then the list), and a value found may hold templates itself (at most 16 levels: a cycle is an error).
/// A stage that declares a param is taken to read the keys its templates name (matrix and `--set` checks).
extension PipelineSpec {
    static let templateLevels = 16

    /// `value` with every template resolved against `root`; errors name the param (`at`: its dotted path). `reads`
    /// gathers every key a template looked up.
    func resolvingTemplates(_ value: JSONValue, root: JSONValue, at path: String, reads: inout Set<String>,
                            level: Int = 0) throws -> JSONValue {
        switch value {
        case .string(let s) where s.contains("${"):
            return try resolve(s, root: root, at: path, reads: &reads, level: level)
        case .array(let a):
            var out: [JSONValue] = []
            for (i, v) in a.enumerated() {
                out.append(try resolvingTemplates(v, root: root, at: "\(path)[\(i)]", reads: &reads, level: level))
            }
            return .array(out)
        case .object(let o):
            var out: [String: JSONValue] = [:]
            for (k, v) in o {
                out[k] = try resolvingTemplates(v, root: root, at: path + "." + k, reads: &reads, level: level)
            }
            return .object(out)
        default:
            return value
        }
    }

    private func resolve(_ s: String, root: JSONValue, at path: String, reads: inout Set<String>, level: Int) throws
        -> JSONValue
    {
        let key = path.replacingOccurrences(of: #"\[\d+\]"#, with: "", options: .regularExpression)
        guard level < Self.templateLevels else {
            throw NTKError("templates nest deeper than \(Self.templateLevels) levels (do they refer to each other?)",
                           at: locate(key), key: path)
        }
        var text = s
        while let close = text.firstIndex(of: "}"), let open = text[..<close].range(of: "${", options: .backwards) {
            let name = String(text[open.upperBound..<close])
            guard !name.isEmpty, let found = root.at(path: name) else {
                throw NTKError("${\(name)} refers to a param that is not defined", at: locate(key), key: path)
            }
            reads.insert(name)
            let value = try resolvingTemplates(found, root: root, at: "params." + name, reads: &reads, level: level + 1)
            if open.lowerBound == text.startIndex && text.index(after: close) == text.endIndex { return value }
            let piece: String
            switch value {
            case .string(let v): piece = v
            case .int(let v): piece = String(v)
            default: piece = value.canonical
            }
            text.replaceSubrange(open.lowerBound...close, with: piece)
        }
        if text.contains("${") { throw NTKError("unclosed ${ in '\(s)'", at: locate(key), key: path) }
        return .string(text)
    }

    /// The params tree with every template resolved (what a stage sees), and the keys the templates in the stage's
    /// `declared` params looked up (what else it reads).
    func resolvingTemplates(in values: JSONValue, declared: [String]) throws
        -> (values: JSONValue, reads: Set<String>)
    {
        var all = Set<String>(), reads = Set<String>()
        let resolved = try resolvingTemplates(values, root: values, at: "params", reads: &all)
        for p in declared {
            if let v = values.at(path: p) {
                _ = try resolvingTemplates(v, root: values, at: "params." + p, reads: &reads)
            }
        }
        return (resolved, reads)
    }
}
