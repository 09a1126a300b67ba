/// Typed, checked access to one mapping of params (e.g. `params.data`): every read names its key, every
/// wrong type is an error naming the key, its line in pipeline.yaml and what was expected, and `finish()`
/// rejects keys nobody read (a typo like `n_trian` is an error, not a silently ignored value).
public struct ConfigReader {
    let values: [String: JSONValue]
    /// Dotted path of this mapping, e.g. "params.data" ("" for the document root).
    let path: String
    /// Where a dotted key was written ("pipeline.yaml:12"), if known.
    let locate: (String) -> String?
    private var used: Set<String> = []
    /// Records every key read with its effective value (`ntk params`); nil: nothing recorded.
    let trace: ParamTrace?

    public init(_ value: JSONValue?, path: String, locate: @escaping (String) -> String? = { _ in nil },
                trace: ParamTrace? = nil) throws {
        self.path = path
        self.locate = locate
        self.trace = trace
        switch value {
        case nil, .null?: values = [:]
        case .object(let o)?: values = o
        case let v?: throw NTKError("expected a mapping, found \(v.typeName)", at: locate(path), key: path)
        }
    }

    func fail(_ key: String, _ problem: String, hint: String? = nil) -> NTKError {
        let full = path.isEmpty ? key : path + "." + key
        return NTKError(problem, at: locate(full) ?? locate(path), key: full, hint: hint)
    }

    mutating func raw(_ key: String) -> JSONValue? {
        used.insert(key)
        trace?.note(full(key), values[key] ?? .null, isDefault: values[key] == nil)
        if case .null? = values[key] { return nil }
        return values[key]
    }

    private func full(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    /// `d`, recorded as the default of `key`.
    private func defaulted<V>(_ key: String, _ d: V, _ json: (V) -> JSONValue) -> V {
        if values[key] == nil || values[key] == .null { trace?.note(full(key), json(d), isDefault: true) }
        return d
    }

    public mutating func int(_ key: String, default d: Int? = nil, min lo: Int? = nil, max hi: Int? = nil) throws
        -> Int? {
        guard let v = raw(key) else { return defaulted(key, d) { $0.map { .int($0) } ?? .null } }
        guard case .int(let i) = v else { throw fail(key, "expected an integer, found \(v.typeName) \(v.canonical)") }
        if let lo, i < lo { throw fail(key, "must be ≥ \(lo), found \(i)") }
        if let hi, i > hi { throw fail(key, "must be ≤ \(hi), found \(i)") }
        return i
    }

    /// A finite number (no param of ntk means anything by NaN or ±∞; predict's `times` reads "inf" itself).
    public mutating func double(_ key: String, default d: Double) throws -> Double {
        switch raw(key) {
        case nil: return defaulted(key, d) { .double($0) }
        case .int(let i)?: return Double(i)
        case .double(let x)? where x.isFinite: return x
        case .double(let x)?: throw fail(key, "must be a finite number, found \(x)")
        case let v?: throw fail(key, "expected a number, found \(v.typeName) \(v.canonical)")
        }
    }

    public mutating func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = raw(key) else { return defaulted(key, d) { .bool($0) } }
        guard case .bool(let b) = v else { throw fail(key, "expected true or false, found \(v.typeName) \(v.canonical)") }
        return b
    }

    public mutating func string(_ key: String, default d: String? = nil) throws -> String? {
        guard let v = raw(key) else { return defaulted(key, d) { $0.map { .string($0) } ?? .null } }
        guard case .string(let s) = v else { throw fail(key, "expected a string, found \(v.typeName) \(v.canonical)") }
        return s
    }

    public mutating func choice<E: RawRepresentable & CaseIterable>(_ key: String, default d: E) throws -> E where E.RawValue == String {
        guard let s = try string(key) else { return defaulted(key, d) { .string($0.rawValue) } }
        guard let e = E(rawValue: s) else {
            throw fail(key, "unknown value \"\(s)\" (one of: \(E.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return e
    }

    public mutating func intList(_ key: String) throws -> [Int]? {
        guard let v = raw(key) else { return nil }
        guard case .array(let a) = v else { throw fail(key, "expected a list of integers, found \(v.typeName) \(v.canonical)") }
        return try a.map {
            guard case .int(let i) = $0 else { throw fail(key, "expected a list of integers, found an element \($0.canonical)") }
            return i
        }
    }

    /// Rejects keys that were present but never read.
    public func finish() throws {
        let unknown = values.keys.filter { !used.contains($0) }.sorted()
        if let k = unknown.first {
            let near = PipelineSpec.closest(k, among: used.sorted())
            throw fail(k, "unknown key (known keys here: \(used.sorted().joined(separator: ", ")))",
                       hint: near.isEmpty ? nil : "did you mean \(near.joined(separator: " or "))?")
        }
    }
}

/// The params a stage read, in order, with their effective values: what `ntk params STAGE` prints and what `ntk exec`
/// checks its `--set` keys against and records in the artifact.
public final class ParamTrace {
    public private(set) var keys: [String] = []
    public private(set) var values: [String: (value: JSONValue, isDefault: Bool)] = [:]
    public init() {}
    func note(_ key: String, _ value: JSONValue, isDefault: Bool) {
        if values[key] == nil { keys.append(key) }
        values[key] = (value, isDefault)
    }
    /// Whether a param at `key` was read: itself, a mapping it is in, or a key inside it.
    public func covers(_ key: String) -> Bool {
        keys.contains { k in
            let k = k.hasPrefix("params.") ? String(k.dropFirst(7)) : k
            return k == key || key.hasPrefix(k + ".") || k.hasPrefix(key + ".")
        }
    }
}
