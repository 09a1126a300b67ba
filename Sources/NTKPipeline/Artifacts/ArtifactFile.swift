import NTK

/// What an artifact holds; every stage output declares one, and a stage checks the kinds of its inputs.
///
/// Most are `.npz` artifacts (below); `report`, `metrics` and `table` are documents for people and other tools
/// (HTML, JSON, CSV) that a stage returns as bytes and the runner writes and hashes like any other out.
public enum ArtifactKind: String, CaseIterable, Sendable {
    case dataset, params, trained, kernels, predictions, evaluation
    /// A stage's partial result (e.g. finished kernel blocks), kept until the stage completes.
    case checkpoint
    /// One process's blocks of distributed kernels, listed (with its hash) by a `kernels` manifest.
    case tile
    /// Self-contained HTML, JSON, CSV.
    case report, metrics, table

    /// The file extension an out of this kind must have.
    public var fileExtension: String {
        switch self {
        case .report: "html"
        case .metrics: "json"
        case .table: "csv"
        default: "npz"
        }
    }
    public var isDocument: Bool { fileExtension != "npz" }
}

/// An artifact on disk: a `.npz` (zip of `.npy` members) that `numpy.load` opens, plus one member
/// `metadata.json` describing it:
///
/// ```json
/// {"format": "ntk-artifact", "format_version": 1, "kind": "dataset", "producer": "ntk 0.1.0",
///  "simd": "avx2+fma", "stage": "load", "params": {...}, "seed": 0, "inputs": {"data/mnist": "<sha256>"},
///  "tensors": [{"name": "x_train", "dtype": "float32", "shape": [4000, 784]}, ...], ...}
/// ```
///
/// In numpy: `z = np.load(path); z["x_train"]; json.loads(z["metadata.json"])`.
///
/// This is the only untyped layer: typed artifacts (`DatasetArtifact`, …) convert to and from it, and
/// `ntk dump` prints it. Writes are atomic; reads verify every CRC, every header byte (see `Zip`), the
/// kind, and that the tensors match the shapes and dtypes the metadata lists.
public struct ArtifactFile {
    public static let format = "ntk-artifact"
    public static let formatVersion = 1
    public static let metadataMember = "metadata.json"

    public var kind: ArtifactKind
    /// Everything else recorded about the artifact (stage, params, seed, inputs, …).
    public var metadata: [String: JSONValue]
    public var tensors: [Tensor]
    /// The bytes of a document kind (HTML, JSON, CSV), written as they are; nil for `.npz` artifacts.
    public var document: [UInt8]? = nil

    public init(kind: ArtifactKind, metadata: [String: JSONValue], tensors: [Tensor]) {
        self.kind = kind
        self.metadata = metadata
        self.tensors = tensors
    }

    /// A document out (kind `report`, `metrics` or `table`).
    public init(document kind: ArtifactKind, text: String) {
        precondition(kind.isDocument)
        self.init(kind: kind, metadata: [:], tensors: [])
        document = Array(text.utf8)
    }

    public func tensor(_ name: String) -> Tensor? { tensors.first { $0.name == name } }

    /// Kernels and predictions must be finite: the first NaN or ±Inf of their float tensors as an error (nil: none;
    /// `times` may hold +∞).
    /// Called before any out of a stage is written, so a non-finite result fails the stage and replaces nothing.
    public func nonFiniteError(stage: String, out: String) -> NTKError? {
        guard let (t, bad, value) = firstNonFinite() else { return nil }
        return NTKError("stage \(stage): \(t.name) \(t.shape) holds \(value) at flat index \(bad); nothing was written",
                        at: out,
                        hint: "check the inputs (a dataset or kernel with NaN, a diverging parameter) and the params")
    }

    /// The same check on an artifact a stage reads (written by another tool, or by an older ntk): an error naming it.
    public func nonFiniteInputError(_ path: String) -> NTKError? {
        guard let (t, bad, value) = firstNonFinite() else { return nil }
        return NTKError("\(t.name) \(t.shape) holds \(value) at flat index \(bad): "
                        + "a \(kind.rawValue) artifact must be finite",
                        at: path, hint: "rebuild it (ntk run --force STAGE), or check the tool that wrote it")
    }

    /// The first NaN or ±Inf in a kernels or predictions artifact (t = ∞ in `times` is a time like any other).
    private func firstNonFinite() -> (Tensor, Int, Double)? {
        guard kind == .kernels || kind == .predictions else { return nil }
        for t in tensors {
            if let (bad, value) = t.firstNonFinite(), !(t.name == "times" && value.isInfinite && value > 0) {
                return (t, bad, value)
            }
        }
        return nil
    }

    /// The params the producing stage read under `name` (e.g. "train"), declared as `name` or as `….name`.
    public func param(_ name: String) -> JSONValue? {
        guard case .object(let p)? = metadata["params"] else { return nil }
        return p[name] ?? p.first { $0.key.hasSuffix("." + name) }?.value
    }

    /// The metadata as written: the caller's fields plus format, kind, producer, SIMD path and tensor table.
    public var fullMetadata: JSONValue {
        var m = metadata
        m["format"] = .string(Self.format)
        m["format_version"] = .int(Self.formatVersion)
        m["kind"] = .string(kind.rawValue)
        m["producer"] = .string("ntk \(ntkVersion)")
        m["simd"] = .string(Platform.simdPath)
        m["tensors"] = .array(tensors.map {
            .object(["name": .string($0.name), "dtype": .string($0.dtype.rawValue), "shape": .array($0.shape.map { .int($0) })])
        })
        return .object(m)
    }

    /// Writes the artifact atomically. `level`: 0 stores members uncompressed (fastest), 1…9 deflates.
    public func write(to path: String, level: Int = 1) throws {
        if let document { return try Files.writeAtomically(path, bytes: document) }
        try Files.writeAtomically(path) { write in
            var zip = Zip.Writer()
            try zip.add(name: Self.metadataMember, data: Array(fullMetadata.pretty.utf8), level: level, to: write)
            for t in tensors {
                try zip.add(name: t.name + ".npy", data: NPY.header(dtype: t.dtype, shape: t.shape) + t.bytes, level: level, to: write)
            }
            try zip.finish(to: write)
        }
    }

    /// Whether a file looks like an ntk artifact (a zip whose first member is metadata.json) — a plain numpy .npz
    /// is not one; a damaged artifact still is (and reading it then fails loudly).
    public static func looksLikeArtifact(_ path: String) -> Bool {
        guard let f = try? Files.read(path) else { return false }
        // a zip too damaged to list: let the strict read say what is wrong with it
        guard let entries = try? Zip.entries(f, strict: false) else { return f.starts(with: [0x50, 0x4b]) }
        // the name is stored twice (local header at offset 0, central directory): one flipped copy still counts
        let name = Array(metadataMember.utf8)
        let inLocalHeader = f.count >= 30 + name.count && Array(f[30..<30 + name.count]) == name
        return entries.first?.name == metadataMember || inLocalHeader
    }

    /// Reads and verifies an artifact written by ntk.
    public static func read(_ path: String) throws -> ArtifactFile {
        let f = try Files.read(path)
        do { return try parse(f) } catch let e as NTKError { throw e.located(path) }
    }

    static func parse(_ f: [UInt8]) throws -> ArtifactFile {
        let entries: [Zip.Entry]
        do { entries = try Zip.entries(f, strict: true) } catch let e as NTKError {
            throw NTKError("not a valid ntk artifact: \(e.problem)", hint: "the file is truncated or corrupt; rerun the stage that writes it (ntk run --force STAGE)")
        }
        guard let me = entries.first, me.name == metadataMember else {
            throw NTKError("not an ntk artifact (no \(metadataMember) member)")
        }
        let meta: JSONValue
        do { meta = try JSONValue.parse(String(decoding: try Zip.extract(f, me, strict: true), as: UTF8.self)) } catch let e as NTKError {
            throw NTKError("\(metadataMember): \(e.problem)")
        }
        guard case .object(var m) = meta, m["format"] == .string(format) else {
            throw NTKError("not an ntk artifact (metadata has no \"format\": \"\(format)\")")
        }
        guard m["format_version"] == .int(formatVersion) else {
            throw NTKError("artifact format version \(m["format_version"]?.canonical ?? "?") is not supported (this ntk reads version \(formatVersion))",
                           hint: "rerun the stage with this version of ntk")
        }
        guard case .string(let k)? = m["kind"], let kind = ArtifactKind(rawValue: k) else {
            throw NTKError("unknown artifact kind \(m["kind"]?.canonical ?? "(none)")")
        }
        guard case .array(let table)? = m["tensors"], table.count == entries.count - 1 else {
            throw NTKError("metadata tensor table does not match the \(entries.count - 1) array members")
        }
        var tensors: [Tensor] = []
        for (e, spec) in zip(entries.dropFirst(), table) {
            guard e.name.hasSuffix(".npy") else { throw NTKError("unexpected member '\(e.name)'") }
            let t = try NPY.parse(try Zip.extract(f, e, strict: true), name: String(e.name.dropLast(4)))
            let expected: JSONValue = .object(["name": .string(t.name), "dtype": .string(t.dtype.rawValue), "shape": .array(t.shape.map { .int($0) })])
            guard spec == expected else {
                throw NTKError("tensor '\(t.name)': its array (\(t.dtype.rawValue) \(t.shape)) disagrees with the metadata (\(spec.canonical))")
            }
            tensors.append(t)
        }
        for key in ["format", "format_version", "kind", "tensors"] { m[key] = nil }
        return ArtifactFile(kind: kind, metadata: m, tensors: tensors)
    }
}

/// Arrays from a user's `.npz` or `.npy` file (written by numpy or anything else): lenient about headers,
/// strict about CRCs, dtypes and shapes. A `.npy` file gives one array named after the file.
public enum UserArrays {
    public static func read(_ path: String) throws -> [String: Tensor] { try parse(try Files.read(path), path: path) }

    /// The arrays in a `.npz` or `.npy` file's bytes (`path` names it in errors and a `.npy` array).
    static func parse(_ f: [UInt8], path: String) throws -> [String: Tensor] {
        do {
            if f.starts(with: NPY.magic) {
                let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
                return [name: try NPY.parse(f, name: name)]
            }
            var out: [String: Tensor] = [:]
            for e in try Zip.entries(f, strict: false) where e.name.hasSuffix(".npy") {
                let name = String(e.name.dropLast(4))
                out[name] = try NPY.parse(try Zip.extract(f, e), name: name)
            }
            return out
        } catch let e as NTKError { throw e.located(path) }
    }
}

import Foundation
