/// `pipeline.lock` (beside pipeline.yaml; `experiments/x.yaml` → `experiments/x.lock`): what each stage
/// last ran with — kind, algorithm version, param values, and the SHA-256 and size of every dep and out
/// (DVC's dvc.lock). Written atomically, with sorted keys and paths, after a stage's outs are in place, so a
/// crash never leaves an entry describing outs that were not written.
public struct Lock: Equatable {
    public struct FileEntry: Equatable {
        public var path: String
        public var sha256: String
        public var size: Int
        var json: JSONValue { .object(["path": .string(path), "sha256": .string(sha256), "size": .int(size)]) }
    }
    public struct StageEntry: Equatable {
        public var kind: String
        public var algorithmVersion: Int
        public var params: JSONValue
        public var deps: [FileEntry]
        public var outs: [FileEntry]
    }

    public var stages: [String: StageEntry] = [:]
    public init() {}

    public static func path(forPipeline p: String) -> String {
        (p.hasSuffix(".yaml") ? String(p.dropLast(5)) : p.hasSuffix(".yml") ? String(p.dropLast(4)) : p) + ".lock"
    }

    public static func read(_ path: String) throws -> Lock {
        guard Files.exists(path) else { return Lock() }
        return try parse(try Files.read(path), path: path)
    }

    /// The lock in a lock file's bytes (`path` names it in errors).
    static func parse(_ bytes: [UInt8], path: String) throws -> Lock {
        let v: JSONValue
        do { v = try JSONValue.parse(String(decoding: bytes, as: UTF8.self)) } catch let e as NTKError {
            throw NTKError("corrupt lock file: \(e.problem)", at: path, hint: "delete it to rerun every stage")
        }
        var lock = Lock()
        guard case .object(let stages)? = v["stages"] else { throw NTKError("corrupt lock file: no stages", at: path) }
        func files(_ v: JSONValue?) -> [FileEntry] {
            guard case .array(let a)? = v else { return [] }
            return a.compactMap {
                guard case .string(let p)? = $0["path"], case .string(let h)? = $0["sha256"], case .int(let s)? = $0["size"] else { return nil }
                return FileEntry(path: p, sha256: h, size: s)
            }
        }
        for (name, e) in stages {
            guard case .string(let kind)? = e["kind"], case .int(let version)? = e["algorithm_version"] else {
                throw NTKError("corrupt lock entry for stage \(name)", at: path)
            }
            lock.stages[name] = StageEntry(kind: kind, algorithmVersion: version, params: e["params"] ?? .null,
                                           deps: files(e["deps"]), outs: files(e["outs"]))
        }
        return lock
    }

    public var json: JSONValue {
        .object([
            "schema": .int(1),
            "stages": .object(stages.mapValues { e in
                .object([
                    "kind": .string(e.kind), "algorithm_version": .int(e.algorithmVersion), "params": e.params,
                    "deps": .array(e.deps.sorted { $0.path < $1.path }.map(\.json)),
                    "outs": .array(e.outs.sorted { $0.path < $1.path }.map(\.json)),
                ])
            }),
        ])
    }

    public func write(_ path: String) throws { try Files.writeAtomically(path, text: json.pretty) }
}
