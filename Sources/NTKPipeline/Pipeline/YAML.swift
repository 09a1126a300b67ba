import Yams

/// YAML → `JSONValue`, remembering the line of every dotted key so errors can point at it.
public struct YAMLDocument {
    public var value: JSONValue
    /// Dotted key path ("params.data.n_train", "stages.load.deps") → 1-based line.
    public var lines: [String: Int]
    /// Mapping keys in the order written (dotted path of the mapping → keys).
    public var keyOrder: [String: [String]]

    public init(text: String, file: String) throws {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw NTKError("not valid YAML (\(error))", at: file)
        }
        var lines: [String: Int] = [:]
        var order: [String: [String]] = [:]
        var budget = Self.maxValues
        value = try node.map {
            try Self.convert($0, path: "", depth: 0, budget: &budget, lines: &lines, order: &order, file: file)
        } ?? .object([:])
        self.lines = lines
        keyOrder = order
    }

    /// Limits on what a document may expand to: nesting (a 5k-deep document overflowed the stack) and values
    /// (an alias bomb of a few hundred bytes expanded to 10⁹ values and gigabytes).
    static let maxDepth = 256, maxValues = 1_000_000

    static func convert(_ n: Node, path: String, depth: Int, budget: inout Int, lines: inout [String: Int],
                        order: inout [String: [String]], file: String) throws -> JSONValue {
        guard depth <= maxDepth else {
            throw NTKError("nested deeper than \(maxDepth) lists or mappings", at: "\(file):\(n.mark?.line ?? 0)")
        }
        budget -= 1
        guard budget >= 0 else {
            throw NTKError("expands to more than \(maxValues) values (aliases repeated inside aliases?)",
                           at: "\(file):\(n.mark?.line ?? 0)")
        }
        if let line = n.mark?.line, !path.isEmpty { lines[path] = line }
        switch n {
        case .scalar:
            // The resolved tag (quoted scalars are always strings).
            switch n.tag.description {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return n.bool.map(JSONValue.bool) ?? .string(n.string ?? "")
            case Tag.Name.int.rawValue: return n.int.map(JSONValue.int) ?? .string(n.string ?? "")
            case Tag.Name.float.rawValue: return n.float.map(JSONValue.double) ?? .string(n.string ?? "")
            default: return .string(n.string ?? "")
            }
        case .sequence(let s):
            return .array(try s.enumerated().map {
                try convert($0.element, path: "\(path)[\($0.offset)]", depth: depth + 1, budget: &budget, lines: &lines,
                            order: &order, file: file)
            })
        case .mapping(let m):
            var o: [String: JSONValue] = [:]
            var keys: [String] = []
            for (k, v) in m {
                guard let key = k.string else { throw NTKError("mapping keys must be strings", at: "\(file):\(k.mark?.line ?? 0)") }
                let child = path.isEmpty ? key : path + "." + key
                if o[key] != nil { throw NTKError("duplicate key '\(key)'", at: "\(file):\(k.mark?.line ?? 0)", key: child) }
                o[key] = try convert(v, path: child, depth: depth + 1, budget: &budget, lines: &lines, order: &order,
                                     file: file)
                keys.append(key)
            }
            order[path] = keys
            return .object(o)
        }
    }

    /// Parses one scalar as YAML would type it ("500" → int, "true" → bool, "[0, 1]" → list).
    public static func scalar(_ text: String) -> JSONValue {
        if let doc = try? YAMLDocument(text: text, file: "--set") { return doc.value }
        return .string(text)
    }
}
