import Foundation
import NTK

/// A built-in stage kind: reads its declared params and deps, computes, and returns its outs.
///
/// A stage never writes files itself: it returns the artifacts, and the runner writes them atomically and
/// only after the whole stage succeeded — so a failing stage leaves every earlier artifact untouched.
public protocol StageKind {
    /// Name used as `kind:` in pipeline.yaml.
    static var name: String { get }
    /// Bumped whenever the stage's results change for the same inputs; a change reruns the stage.
    static var algorithmVersion: Int { get }
    /// One line for `ntk stages` / help.
    static var summary: String { get }
    /// Kinds of the artifacts this stage writes, in the order of `outs`.
    static var outputs: [ArtifactKind] { get }
    /// Reads and validates the params (before anything runs).
    init(params: StageParams) throws
    /// Paths the stage reads that its params name (e.g. `data.path`); they must be among its deps so a
    /// change to them reruns the stage. Artifact inputs are found among the deps by kind instead.
    var requiredDeps: [String] { get }
    func run(_ ctx: StageContext) throws -> [ArtifactFile]
    /// True for kinds that run on every process of a distributed run (`ctx.grid`), each computing its part; the
    /// others run on process 0 alone while the rest wait.
    static var distributed: Bool { get }
}

extension StageKind {
    public static var distributed: Bool { false }
}

/// All stage kinds ntk knows.
public let stageKinds: [any StageKind.Type] = [LoadStage.self, InitStage.self, TrainStage.self, AnalyticKernelsStage.self, EmpiricalKernelsStage.self,
                                              PredictStage.self, EvaluateStage.self, EnsembleStage.self, KernelConvergenceStage.self, ReportStage.self]

public func stageKind(named name: String) -> (any StageKind.Type)? { stageKinds.first { $0.name == name } }

/// The params a stage declared, and nothing else: reading an undeclared key is an error, so the lock
/// (which records the declared params) always covers what the stage used.
public struct StageParams {
    public let stage: String
    public let values: JSONValue
    public let declared: [String]
    public let locate: (String) -> String?
    /// Outside a pipeline (`ntk exec`) every param may be read; missing ones take their defaults.
    public let anyKey: Bool
    /// Records what the stage reads (nil: nothing recorded).
    public let trace: ParamTrace?

    public init(stage: String, values: JSONValue, declared: [String], anyKey: Bool = false,
                locate: @escaping (String) -> String? = { _ in nil }, trace: ParamTrace? = nil) {
        self.stage = stage
        self.values = values
        self.declared = declared
        self.anyKey = anyKey
        self.locate = locate
        self.trace = trace
    }

    /// The declared param a stage means by `key`: `key` itself, or else the one declared key that ends in `.key` —
    /// so experiments sharing a file keep their settings apart (`params: [fig1.model, fig1.train]` is read as
    /// `model` and `train`).
    public func resolve(_ key: String) -> String {
        if anyKey || declared.contains(key) { return key }
        let scoped = declared.filter { $0.hasSuffix("." + key) }
        return scoped.count == 1 ? scoped[0] : key
    }

    func check(_ key: String) throws {
        guard anyKey || declared.contains(key) else {
            let scoped = declared.filter { $0.hasSuffix("." + key) }
            throw NTKError(scoped.count > 1 ? "reads params.\(key), and \(scoped.joined(separator: " and ")) both end in .\(key); declare one"
                                            : "reads params.\(key) but does not list it under params (add \(key) to stages.\(stage).params)",
                           at: locate("stages.\(stage).params"), key: "stages.\(stage)")
        }
    }

    /// A reader for the mapping at `key` (e.g. "data", or a declared "fig1.data").
    public func reader(_ key: String) throws -> ConfigReader {
        let key = resolve(key)
        try check(key)
        if let v = values.at(path: key), case .object = v {} else if let v = values.at(path: key) {
            trace?.note("params." + key, v, isDefault: false)
        }
        return try ConfigReader(values.at(path: key), path: "params." + key, locate: locate, trace: trace)
    }

    /// The key of the stage's settings mapping: `preferred` if declared (or outside a pipeline), else the
    /// only declared param whose value is a mapping.
    public func mappingKey(preferring preferred: String) throws -> String {
        if anyKey || declared.contains(preferred) || resolve(preferred) != preferred { return resolve(preferred) }
        let maps = declared.filter { if case .object? = values.at(path: $0) { true } else { false } }
        guard maps.count == 1 else {
            throw NTKError("needs one mapping of settings among its params (\(preferred), or exactly one other); found \(maps.isEmpty ? "none" : maps.joined(separator: ", "))",
                           at: locate("stages.\(stage).params"), key: "stages.\(stage).params")
        }
        return maps[0]
    }

    /// An integer param at `key` (e.g. "seed"); `defaultValue` only applies outside a pipeline.
    public func int(_ key: String, default defaultValue: Int) throws -> Int {
        let key = resolve(key)
        try check(key)
        if anyKey && values.at(path: key) == nil {
            trace?.note("params." + key, .int(defaultValue), isDefault: true)
            return defaultValue
        }
        guard case .int(let i)? = values.at(path: key) else {
            throw NTKError("expected an integer, found \(values.at(path: key)?.canonical ?? "nothing")", at: locate("params." + key), key: "params." + key)
        }
        trace?.note("params." + key, .int(i), isDefault: false)
        return i
    }

    /// The declared params as recorded in the lock and the artifact metadata.
    public var locked: JSONValue {
        if anyKey, let trace {
            // outside a pipeline: the params the stage read, and nothing else
            let read = PipelineSpec.paths(of: values).filter { trace.covers($0) }
            var out = JSONValue.object([:])
            for p in read where !read.contains(where: { p.hasPrefix($0 + ".") }) {
                out = out.setting(path: p.split(separator: ".").map(String.init), to: values.at(path: p)!)
            }
            return out
        }
        if anyKey { return values }
        return .object(Dictionary(uniqueKeysWithValues: declared.map { ($0, values.at(path: $0) ?? .null) }))
    }
}

/// What a running stage may touch: its params, its deps (with content hashes), a reporter.
public struct StageContext {
    public let stage: String
    public let params: StageParams
    /// Declared deps, resolved to paths on disk, with their SHA-256.
    public let deps: [(path: String, resolved: String, sha256: String)]
    public let reporter: Reporter
    /// Where partial results survive a killed run (nil outside a pipeline).
    public var checkpoints: Checkpoints? = nil
    /// The processes of a distributed run (`mpirun -np P ntk run`), for kinds that are `distributed`; nil otherwise.
    public var grid: ProcessGrid? = nil
    /// The stage's outs, resolved to paths on disk: where a distributed stage writes its tiles beside them (the
    /// runner writes the artifacts the stage returns).
    public var outs: [String] = []
    let artifactCache = ArtifactCache()

    /// The canonical spelling of a path as the pipeline writes it (`Files.canonical` relative to the pipeline's
    /// directory; outside a pipeline, relative to the working directory).
    public var canonical: (String) -> String = { Files.canonical($0, relativeTo: Files.canonical(".")) }

    /// The dep declared as `path` (compared in canonical form: `./x`, `a/../x` and an absolute spelling are one).
    public func dep(_ path: String) throws -> (path: String, resolved: String, sha256: String) {
        let want = canonical(path)
        guard let d = deps.first(where: { canonical($0.path) == want }) else {
            throw NTKError("'\(path)' is not among the stage's deps", key: "stages.\(stage).deps")
        }
        return d
    }

    /// Every dep that is an ntk artifact (declared path, resolved path, contents), in the order of the deps. Each is
    /// read and verified once per stage run, however many times a stage asks.
    public func artifactDeps() throws -> [(path: String, resolved: String, file: ArtifactFile)] {
        try deps.compactMap { d in
            if let cached = artifactCache.files[d.resolved] { return cached.map { (d.path, d.resolved, $0) } }
            let f = d.resolved.hasSuffix(".npz") && ArtifactFile.looksLikeArtifact(d.resolved) ? try ArtifactFile.read(d.resolved) : nil
            if let e = f?.nonFiniteInputError(d.path) { throw e }
            artifactCache.files[d.resolved] = .some(f)
            return f.map { (d.path, d.resolved, $0) }
        }
    }

    /// Every dep that is an artifact of `kind`, in the order of the deps.
    /// Distributed kernels (a manifest of tiles) only reach a stage running on the grid they were made for.
    public func artifacts(_ kind: ArtifactKind) throws -> [(path: String, file: ArtifactFile)] {
        let found = try artifactDeps().filter { $0.file.kind == kind }.map { ($0.resolved, $0.file) }
        for (path, file) in found { try checkWhole(path, file) }
        return found
    }

    /// A stage off the grid given distributed kernels: an error that says how to run it.
    func checkWhole(_ path: String, _ file: ArtifactFile) throws {
        guard grid == nil, let p = DistributedKernelsArtifact.processes(file) else { return }
        throw NTKError("these kernels are distributed over \(p) processes (tiles beside the manifest); stage "
                       + "\(stage) reads whole kernels", at: path,
                       hint: "run predict under mpirun with \(p) processes (ntk run --ranks \(p)); for other stages "
                           + "rerun the kernels stage without --ranks")
    }

    /// The one dep that is an artifact of `kind`; an error if none is, naming what each dep is.
    public func artifact(_ kind: ArtifactKind) throws -> (path: String, file: ArtifactFile) {
        let all = try artifactDeps()
        if let a = all.first(where: { $0.file.kind == kind }) {
            try checkWhole(a.resolved, a.file)
            return (a.resolved, a.file)
        }
        let seen = all.map { "\($0.path) is a '\($0.file.kind.rawValue)' artifact" }
        throw NTKError("needs a '\(kind.rawValue)' artifact among its deps" + (seen.isEmpty ? "" : " (\(seen.joined(separator: "; ")))"),
                       key: "stages.\(stage).deps")
    }

    /// Metadata every artifact of this stage records: stage, params, seed (if declared), input hashes.
    public func metadata(kind: String) -> [String: JSONValue] {
        var m: [String: JSONValue] = [
            "stage": .string(stage), "stage_kind": .string(kind), "params": params.locked,
            "inputs": .object(Dictionary(uniqueKeysWithValues: deps.map { ($0.path, .string($0.sha256)) })),
        ]
        let seed = params.resolve("seed")
        if let s = params.values.at(path: seed), params.anyKey || params.declared.contains(seed) { m["seed"] = s }
        return m
    }
}

/// The artifacts a stage run has read (nil: the dep is not an ntk artifact), shared by copies of its context.
final class ArtifactCache { var files: [String: ArtifactFile?] = [:] }

/// Partial results of one stage run, under `.ntk/checkpoints/<stage>/<key>/`, where the key is a hash of
/// everything that determines the stage's result (kind, algorithm version, params, dep hashes): a resumed run
/// with the same inputs picks up the finished pieces; any change starts afresh. The runner deletes the
/// directory once the stage's outs are written.
public final class Checkpoints {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    func path(_ name: String) -> String { directory + "/" + name + ".npz" }

    /// A finished piece, or nil (missing or unreadable: it is recomputed).
    public func load(_ name: String) -> ArtifactFile? {
        guard Files.exists(path(name)), let f = try? ArtifactFile.read(path(name)), f.kind == .checkpoint else { return nil }
        return f
    }

    public func save(_ name: String, _ tensors: [Tensor]) throws {
        try ArtifactFile(kind: .checkpoint, metadata: [:], tensors: tensors).write(to: path(name), level: 0)
        let step = tensors.first { $0.name.hasSuffix("state_scalars") }?.doubles().first
        Interruption.checkpointSaved(step.map { "checkpoint at step \(Int($0))" } ?? "checkpoint (\(name) and the pieces before it)")
    }

    func removeAll() { try? FileManager.default.removeItem(atPath: directory) }
}
