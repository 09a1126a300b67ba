import Foundation

/// A JSON value: params from pipeline.yaml, lock entries and artifact metadata all use it, so there is one
/// representation of "a config value" and one canonical serialisation (sorted keys, shortest round-trip
/// numbers) — the bytes hashed into the lock and written into artifacts are deterministic.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// Value at a dotted path (`data.n_train`), or nil.
    public func at(path: String) -> JSONValue? {
        var v: JSONValue? = self
        for part in path.split(separator: ".") { v = v?[String(part)] }
        return v
    }

    /// A copy with the value at a dotted path replaced (intermediate objects created as needed).
    public func setting(path: [String], to value: JSONValue) -> JSONValue {
        guard let head = path.first else { return value }
        var o: [String: JSONValue] = [:]
        if case .object(let existing) = self { o = existing }
        o[head] = (o[head] ?? .object([:])).setting(path: Array(path.dropFirst()), to: value)
        return .object(o)
    }

    var isScalar: Bool {
        switch self {
        case .array, .object: false
        default: true
        }
    }

    /// The value of a number (integer or not); nil for anything else.
    public var number: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }

    /// The value of a string; nil for anything else.
    public var text: String? { if case .string(let s) = self { s } else { nil } }

    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "a list"
        case .object: "a mapping"
        }
    }

    /// Canonical compact JSON: object keys sorted, integers without a fraction, doubles in Swift's
    /// shortest round-trip form, non-finite doubles as strings ("nan", "inf", "-inf").
    public var canonical: String {
        var out = ""
        write(to: &out, indent: nil, level: 0)
        return out
    }

    /// Canonical JSON with two-space indentation (for files people read).
    public var pretty: String {
        var out = ""
        write(to: &out, indent: "  ", level: 0)
        return out + "\n"
    }

    private func write(to out: inout String, indent: String?, level: Int) {
        let nl = indent.map { "\n" + String(repeating: $0, count: level + 1) } ?? ""
        let close = indent.map { "\n" + String(repeating: $0, count: level) } ?? ""
        let colon = indent == nil ? ":" : ": "
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "\"nan\"" } else if d.isInfinite { out += d > 0 ? "\"inf\"" : "\"-inf\"" } else {
                out += d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : "\(d)"
            }
        case .string(let s): JSONValue.escape(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            if indent != nil, a.allSatisfy(\.isScalar) {  // short lists of numbers stay on one line
                out += "[" + a.map(\.canonical).joined(separator: ", ") + "]"
                return
            }
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                out += nl
                v.write(to: &out, indent: indent, level: level + 1)
            }
            out += close + "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            out += "{"
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                out += nl
                JSONValue.escape(k, into: &out)
                out += colon
                o[k]!.write(to: &out, indent: indent, level: level + 1)
            }
            out += close + "}"
        }
    }

    private static func escape(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    /// Parses JSON text (RFC 8259). A small recursive-descent parser, so integers stay integers and
    /// booleans stay booleans (Foundation's parser blurs both on Linux).
    public static func parse(_ text: String) throws -> JSONValue {
        var p = JSONParser(bytes: Array(text.utf8))
        let v = try p.value()
        p.skipSpace()
        guard p.i == p.bytes.count else { throw p.error("trailing characters") }
        return v
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    var i = 0
    /// Lists and objects open around the current value; past `maxDepth` the text is refused (a recursion this deep
    /// would overflow the stack: 200k nested brackets in a lock or metadata crashed the reader).
    var depth = 0
    static let maxDepth = 512
    init(bytes: [UInt8]) { self.bytes = bytes }

    func error(_ what: String) -> NTKError { NTKError("invalid JSON at byte \(i): \(what)") }

    mutating func skipSpace() {
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
    }

    mutating func literal(_ word: String, _ v: JSONValue) throws -> JSONValue {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else { throw error("expected \(word)") }
        i += w.count
        return v
    }

    mutating func value() throws -> JSONValue {
        skipSpace()
        guard i < bytes.count else { throw error("unexpected end") }
        let opens = bytes[i] == UInt8(ascii: "[") || bytes[i] == UInt8(ascii: "{")
        if opens {
            guard depth < Self.maxDepth else { throw error("nested deeper than \(Self.maxDepth) lists or objects") }
            depth += 1
        }
        defer { if opens { depth -= 1 } }
        switch bytes[i] {
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "["):
            i += 1
            var a: [JSONValue] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
            while true {
                a.append(try value())
                skipSpace()
                guard i < bytes.count else { throw error("unterminated list") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                throw error("expected , or ]")
            }
        case UInt8(ascii: "{"):
            i += 1
            var o: [String: JSONValue] = [:]
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a key") }
                let k = try string()
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected :") }
                i += 1
                o[k] = try value()
                skipSpace()
                guard i < bytes.count else { throw error("unterminated object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                throw error("expected , or }")
            }
        default: return try number()
        }
    }

    mutating func string() throws -> String {
        i += 1  // opening quote
        var out: [UInt8] = []
        while i < bytes.count {
            let c = bytes[i]
            i += 1
            if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
            if c != UInt8(ascii: "\\") { out.append(c); continue }
            guard i < bytes.count else { break }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard i + 4 <= bytes.count, let u = UInt32(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16)
                else { throw error("bad \\u escape") }
                i += 4
                out.append(contentsOf: Array(String(Unicode.Scalar(u) ?? "?").utf8))
            default: out.append(e)
            }
        }
        throw error("unterminated string")
    }

    mutating func number() throws -> JSONValue {
        let start = i
        while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) { i += 1 }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if let n = Int(text) { return .int(n) }
        if let d = Double(text) { return .double(d) }
        throw error("unexpected character")
    }
}
