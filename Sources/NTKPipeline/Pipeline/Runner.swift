import Foundation
import NTK

/// Runs a pipeline the DVC way: a stage reruns only when its kind or algorithm version, a param it
/// declares, the content of a dep, or the content of an out differs from its lock entry (or `--force`).
/// Downstream stages rerun because their deps' hashes change — no separate propagation.
///
/// Running one stage: compute (reading only declared deps and params) → write every out atomically →
/// hash the outs → write the lock entry last. A crash at any point leaves the old outs or complete new
/// ones, and a lock entry that describes what is really on disk or is stale (so the stage reruns).
public final class Runner {
    public let spec: PipelineSpec
    /// Directory the pipeline's relative paths start from.
    public let root: String
    /// `root` in canonical form (absolute, symlinks resolved), computed once.
    let canonicalRoot: String
    public let lockPath: String
    let reporter: Reporter
    let hasher: ContentHasher
    private var kinds: [String: any StageKind] = [:]
    /// The processes of a distributed run (`mpirun -np P ntk run`; nil: one process). `distributed` stage kinds
    /// then run on every process (`spreads`), and their lock entries record `mpi_ranks` (a run with another P reruns
    /// them).
    public var grid: ProcessGrid? = nil
    /// Threads process 0 takes for the stages it runs alone on a grid (the others wait); nil: as many as it has.
    public var leaderThreads: Int? = nil
    private var producer: [String: String] = [:]  // normalised out path → stage name

    public struct StageStatus: Equatable {
        public var stage: String
        /// Why it would rerun; empty when up to date.
        public var reasons: [String]
        /// What a run would resume from ("checkpoint at step 100 of 200"), if a checkpoint for the current inputs exists.
        public var checkpoint: String? = nil
        public var upToDate: Bool { reasons.isEmpty }
    }

    /// Loads and validates everything up front, so a bad key in the last stage fails before the first runs.
    /// `verify`: rehash every dep and out instead of trusting the stat cache (see `ContentHasher`).
    public init(pipeline path: String, overrides: [String] = [], reporter: Reporter = SilentReporter(),
                verify: Bool = false) throws {
        var spec = try PipelineSpec.load(path, overrides: overrides)
        root = (path as NSString).deletingLastPathComponent
        // one spelling per file before any check, hash, lock entry or `sources` record (./x, a/../x, an absolute
        // path into the project or through a symlinked directory all name the same file)
        let base = Files.canonical(root.isEmpty ? "." : root)
        canonicalRoot = base
        for i in spec.stages.indices {
            spec.stages[i].deps = spec.stages[i].deps.map { Files.canonical($0, relativeTo: base) }
            spec.stages[i].outs = spec.stages[i].outs.map { Files.canonical($0, relativeTo: base) }
        }
        self.spec = spec
        lockPath = Lock.path(forPipeline: path)
        self.reporter = reporter
        hasher = ContentHasher(cachePath: (root.isEmpty ? "." : root) + "/.ntk/hashes.json", verify: verify)
        for s in spec.stages {
            guard let kind = stageKind(named: s.kind) else {
                throw NTKError("unknown stage kind '\(s.kind)' (known: \(stageKinds.map { $0.name }.joined(separator: ", ")))",
                               at: spec.locate("stages.\(s.name)"), key: "stages.\(s.name).kind")
            }
            let params = StageParams(stage: s.name, values: s.values, declared: s.params, locate: spec.locate)
            let k = try kind.init(params: params)
            let declared = Set(s.deps.map(normalise))
            for r in k.requiredDeps where !declared.contains(normalise(r)) {
                throw NTKError("reads '\(r)' (named by its params) but does not list it in deps, so a change to it would not rerun the stage",
                               at: spec.locate("stages.\(s.name).deps"), key: "stages.\(s.name).deps")
            }
            guard s.outs.count == kind.outputs.count else {
                throw NTKError("kind '\(kind.name)' writes \(kind.outputs.count) out(s) (\(kind.outputs.map(\.rawValue).joined(separator: ", "))), but \(s.outs.count) are listed",
                               at: spec.locate("stages.\(s.name).outs"), key: "stages.\(s.name).outs")
            }
            kinds[s.name] = k
            for (o, want) in zip(s.outs, kind.outputs) where (o as NSString).pathExtension != want.fileExtension {
                throw NTKError("out '\(o)' holds a \(want.rawValue) and must end in .\(want.fileExtension)",
                               at: spec.locate("stages.\(s.name).outs"), key: "stages.\(s.name).outs")
            }
            for o in s.outs {
                let n = normalise(o)
                if let other = producer[n] { throw NTKError("out '\(o)' is written by both stage \(other) and stage \(s.name)",
                                                              at: spec.locate("stages.\(s.name).outs"), key: "stages.\(s.name).outs") }
                producer[n] = s.name
            }
        }
        _ = try order(targets: [])  // rejects cycles
    }

    /// For each `report` stage among `stages`: its headline numbers (from its metrics.json) and where the page is.
    public func reportSummary(stages names: [String]) throws -> [String] {
        var lines: [String] = []
        for s in spec.stages where names.contains(s.name) && s.kind == ReportStage.name && s.outs.count == 3 {
            // absolute: outs are relative to the pipeline file, which need not be in the working directory
            let html = Files.canonical(resolve(s.outs[0]))
            if case .object(let m)? = try? JSONValue.parse(String(decoding: try Files.read(resolve(s.outs[1])), as: UTF8.self)),
               case .array(let sections)? = m["sections"] {
                for case .object(let sec) in sections {
                    guard case .object(let h)? = sec["headline"], !h.isEmpty else { continue }
                    let title = sec["title"]?.text ?? ""
                    lines.append(title + ": " + h.sorted { $0.key < $1.key }.map { "\($0.key) = \(String(format: "%.4g", $0.value.number ?? .nan))" }.joined(separator: ", "))
                }
            }
            lines.append("report: " + html)
        }
        return lines
    }

    func resolve(_ p: String) -> String { p.hasPrefix("/") || root.isEmpty ? p : root + "/" + p }
    /// The canonical spelling of a path (deps and outs are stored canonical already).
    func normalise(_ p: String) -> String { Files.canonical(p, relativeTo: canonicalRoot) }

    /// Stages upstream of (and including) the targets, in dependency order; all stages if no targets.
    public func order(targets: [String]) throws -> [PipelineSpec.Stage] {
        var named = Set<String>()
        for t in targets {
            let matches = spec.stages(named: t)
            if matches.isEmpty {
                let groups = spec.stages.reduce(into: [String]()) { if !$0.contains($1.group) { $0.append($1.group) } }
                let near = PipelineSpec.closest(t, among: groups + spec.stages.map(\.name).filter { !groups.contains($0) })
                throw NTKError("no stage named '\(t)'", at: spec.file,
                               hint: near.isEmpty ? "`ntk status` lists the stages" : "did you mean \(near.joined(separator: " or "))?")
            }
            named.formUnion(matches.map(\.name))
        }
        var result: [PipelineSpec.Stage] = []
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        func visit(_ s: PipelineSpec.Stage) throws {
            if state[s.name] == 2 { return }
            if state[s.name] == 1 { throw NTKError("stages form a cycle through '\(s.name)'", at: spec.file) }
            state[s.name] = 1
            for d in s.deps { if let up = producer[normalise(d)], let u = spec.stage(up) { try visit(u) } }
            state[s.name] = 2
            result.append(s)
        }
        for s in spec.stages where targets.isEmpty || named.contains(s.name) { try visit(s) }
        return result
    }

    /// Why each stage would rerun (empty reasons: up to date). Hashes files; runs nothing.
    public func status(targets: [String] = []) throws -> [StageStatus] {
        let lock = try Lock.read(lockPath)
        var stale: Set<String> = []
        var out: [StageStatus] = []
        for s in try order(targets: targets) {
            var reasons = try self.reasons(s, lock: lock)
            for d in s.deps { if let up = producer[normalise(d)], stale.contains(up) { reasons.append("upstream stage \(up) will rerun") } }
            if !reasons.isEmpty { stale.insert(s.name) }
            out.append(StageStatus(stage: s.name, reasons: reasons, checkpoint: reasons.isEmpty ? nil : try checkpointNote(s)))
        }
        hasher.save()
        return out
    }

    /// Temporary files a killed run left (`<out>.ntk-tmp`, the lock's, and any under .ntk): no run holds them now —
    /// this process has the run lock — so they go (a kill -9 mid-write could leave hundreds of MB).
    func removeStalePartials() {
        let tmp = Files.temporarySuffix
        var stale = (spec.stages.flatMap(\.outs).map(resolve) + [lockPath]).map { $0 + tmp }.filter(Files.exists)
        let state = (root.isEmpty ? "." : root) + "/.ntk"
        stale += (FileManager.default.subpaths(atPath: state) ?? []).filter { $0.hasSuffix(tmp) }
            .map { state + "/" + $0 }
        for p in stale { try? FileManager.default.removeItem(atPath: p) }
        if !stale.isEmpty { reporter.log("removed \(stale.count) temporary file(s) left by an interrupted run") }
    }

    /// Where stage s keeps its partial results for these inputs: `.ntk/checkpoints/<stage>/<key>`, the key a hash of
    /// its kind, algorithm version, params and dep hashes.
    /// The same for the deps as they are now (a missing dep is an error naming it).
    func checkpointStore(_ s: PipelineSpec.Stage) throws -> Checkpoints {
        checkpointStore(s, depHashes: try s.deps.map { d in
            guard let h = try hasher.hash(resolve(d)) else {
                throw NTKError("dep '\(d)' does not exist", at: spec.locate("stages.\(s.name).deps"),
                               key: "stages.\(s.name).deps")
            }
            return h.sha256
        })
    }

    func checkpointStore(_ s: PipelineSpec.Stage, depHashes: [String]) -> Checkpoints {
        let key = SHA256.hex(Array((JSONValue.object([
            "kind": .string(s.kind), "version": .int(type(of: kinds[s.name]!).algorithmVersion), "params": locked(s),
            "deps": .array(depHashes.map { .string($0) }),
        ]).canonical).utf8))
        return Checkpoints(directory: (root.isEmpty ? "." : root) + "/.ntk/checkpoints/\(s.name)/\(key.prefix(16))")
    }

    /// The checkpoint a run of s would resume from, in words; nil when there is none for its current inputs (a dep
    /// that is missing or will be rebuilt means there is none).
    func checkpointNote(_ s: PipelineSpec.Stage) throws -> String? {
        var hashes: [String] = []
        for d in s.deps {
            guard let h = try hasher.hash(resolve(d)) else { return nil }
            hashes.append(h.sha256)
        }
        let store = checkpointStore(s, depHashes: hashes)
        let pieces = ((try? FileManager.default.contentsOfDirectory(atPath: store.directory)) ?? []).filter { $0.hasSuffix(".npz") }
        guard !pieces.isEmpty else { return nil }
        if pieces == ["train.npz"], let f = store.load("train"),
           let scalars = f.tensors.first(where: { $0.name.hasSuffix("state_scalars") })?.doubles(), let step = scalars.first {
            return "checkpoint at step \(Int(step)): a run resumes there"
        }
        return "checkpoint with \(pieces.count) finished piece\(pieces.count == 1 ? "" : "s"): a run resumes from them"
    }

    /// What differs between the stage as declared now and its lock entry.
    func reasons(_ s: PipelineSpec.Stage, lock: Lock) throws -> [String] {
        guard let e = lock.stages[s.name] else { return ["never run"] }
        let kind = type(of: kinds[s.name]!)
        var r: [String] = []
        if e.kind != s.kind { r.append("kind changed (\(e.kind) → \(s.kind))") }
        if e.algorithmVersion != kind.algorithmVersion { r.append("algorithm version changed (\(e.algorithmVersion) → \(kind.algorithmVersion))") }
        r += Self.paramDiff(old: e.params, new: locked(s), prefix: "")
        let lockedDeps = Dictionary(e.deps.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        if Set(lockedDeps.keys) != Set(s.deps) { r.append("deps list changed") }
        for d in s.deps {
            guard let h = try hasher.hash(resolve(d)) else {
                r.append(producer[normalise(d)] != nil ? "dep \(d) missing (stage \(producer[normalise(d)]!) makes it)" : "dep \(d) missing")
                continue
            }
            if let l = lockedDeps[d], l.sha256 != h.sha256 { r.append("dep \(d) changed") }
        }
        let lockedOuts = Dictionary(e.outs.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        if Set(lockedOuts.keys) != Set(s.outs) { r.append("outs list changed") }
        for o in s.outs {
            guard let h = try hasher.hash(resolve(o)) else { r.append("out \(o) missing"); continue }
            if let l = lockedOuts[o], l.sha256 != h.sha256 { r.append("out \(o) changed") }
            // a distributed stage's manifest (small) lists its tiles: each must be there
            if case .object(let p) = e.params, p["mpi_ranks"] != nil,
               let problem = DistributedKernelsArtifact.tileProblem(resolve(o)) {
                r.append("out \(o): \(problem)")
            }
        }
        return r
    }

    /// The params stage s records in its lock entry (and checkpoint key): its declared params, plus `mpi_ranks`
    /// for a `distributed` kind run on a grid — its outs are laid out for that many processes.
    func locked(_ s: PipelineSpec.Stage) -> JSONValue {
        let params = StageParams(stage: s.name, values: s.values, declared: s.params).locked
        guard let grid, spreads(s), case .object(var o) = params else { return params }
        o["mpi_ranks"] = .int(grid.size)
        return .object(o)
    }

    /// Whether stage s runs on every process of the grid: a `distributed` kind, and — if it writes kernels, which
    /// it would then leave as tiles — only read by `distributed` kinds (a kernels stage that feeds `evaluate` keeps
    /// its kernels whole, on process 0, so that evaluate can read them).
    func spreads(_ s: PipelineSpec.Stage) -> Bool {
        let kind = type(of: kinds[s.name]!)
        guard grid != nil, kind.distributed else { return false }
        guard kind.outputs.contains(.kernels) else { return true }
        return spec.stages.allSatisfy { t in
            !t.deps.contains { producer[normalise($0)] == s.name } || type(of: kinds[t.name]!).distributed
        }
    }

    static func paramDiff(old: JSONValue, new: JSONValue, prefix: String) -> [String] {
        if case .object(let a) = old, case .object(let b) = new {
            return Set(a.keys).union(b.keys).sorted().flatMap { k in
                let p = prefix.isEmpty ? k : prefix + "." + k
                switch (a[k], b[k]) {
                case (nil, _?): return ["param \(p) added"]
                case (_?, nil): return ["param \(p) removed"]
                case (let x?, let y?): return paramDiff(old: x, new: y, prefix: p)
                default: return []
                }
            }
        }
        func short(_ v: JSONValue) -> String { let c = v.canonical; return c.count <= 60 ? c : String(c.prefix(57)) + "…" }
        return old == new ? [] : ["param \(prefix) changed (\(short(old)) → \(short(new)))"]
    }

    public struct Outcome: Equatable {
        public var stage: String
        public var ran: Bool
        public var reasons: [String]
        public var seconds: Double
    }

    /// Runs what is stale among the targets (all stages if none) and what they need, in order.
    ///
    /// On a process grid, process 0 does all of this — holds the run lock, decides what is stale, hashes, writes the
    /// outs and the lock — and tells every process which stage runs next and where its checkpoints are: a stage
    /// that `spreads` runs on every process (each computing and writing its own tiles), any other on process 0 with
    /// all its cores while the rest wait. An error on any process ends the whole run (the caller aborts the grid).
    public func run(targets: [String] = [], force: Bool = false) throws -> [Outcome] {
        let leader = (grid?.rank ?? 0) == 0
        let guardFile = leader ? try RunGuard(directory: (root.isEmpty ? "." : root) + "/.ntk") : nil
        defer { guardFile?.release() }
        if leader { removeStalePartials() }
        var lock = leader ? try Lock.read(lockPath) : Lock()
        var outcomes: [Outcome] = []
        defer { if leader { hasher.save() } }
        for s in try order(targets: targets) {
            var reasons = leader ? try self.reasons(s, lock: lock) : []
            if leader && force && (targets.isEmpty || targets.contains(s.name) || targets.contains(s.group)) {
                reasons.insert("forced", at: 0)
            }
            // on a grid, every process learns from process 0 whether s runs (empty: no) and where it checkpoints
            let checkpoints = try grid.map { $0.broadcast(reasons.isEmpty ? "" : try checkpointStore(s).directory) }
            if checkpoints?.isEmpty ?? reasons.isEmpty {
                if leader { reporter.log("\(s.name): up to date") }
                outcomes.append(Outcome(stage: s.name, ran: false, reasons: [], seconds: 0))
                continue
            }
            let everywhere = spreads(s)
            if leader {
                reporter.log("\(s.name): running (\(reasons.joined(separator: "; ")))"
                             + (everywhere ? " on \(grid!.size) process\(grid!.size == 1 ? "" : "es")" : ""))
            }
            let started = Date()
            if everywhere || leader {
                let saved = OwnThreads.workers
                if grid != nil && !everywhere { OwnThreads.workers = leaderThreads ?? ProcessGrid.coresAllowed }
                defer { OwnThreads.workers = saved }
                do {
                    if let entry = try execute(s, checkpointDirectory: checkpoints, onGrid: everywhere) {
                        lock.stages[s.name] = entry
                    }
                } catch let e as NTKError {
                    // A dep another stage makes is damaged (a flipped byte the stat cache did not see): rebuild it,
                    // retry (one process only: on a grid the others could not follow).
                    guard grid == nil, let (dep, up, problem) = damagedDep(s, e), let u = spec.stage(up) else {
                        throw e
                    }
                    reporter.log("\(s.name): dep \(dep) is damaged (\(problem)); rebuilding it with stage \(up)")
                    hasher.forget(resolve(dep))
                    lock.stages[up] = try execute(u)
                    try lock.write(lockPath)
                    lock.stages[s.name] = try execute(s)
                }
            }
            grid?.barrier()
            let secs = Date().timeIntervalSince(started)
            if leader {
                try lock.write(lockPath)  // last: the entry describes outs that are already in place
                reporter.log(String(format: "%@: done in %.2f s", s.name, secs))
            }
            outcomes.append(Outcome(stage: s.name, ran: true, reasons: reasons, seconds: secs))
        }
        return outcomes
    }

    /// The dep of s that `error` is about, when it is an artifact another stage makes and it does not read back
    /// intact (CRC, headers): (dep, its producer, what is wrong). nil for any other error.
    func damagedDep(_ s: PipelineSpec.Stage, _ error: NTKError) -> (String, String, String)? {
        guard let at = error.location else { return nil }
        for d in s.deps where normalise(resolve(d)) == normalise(at) {
            guard let up = producer[normalise(d)], up != s.name else { return nil }
            do { _ = try ArtifactFile.read(resolve(d)) } catch let e as NTKError {
                return (d, up, e.problem)
            } catch { return nil }
        }
        return nil
    }

    /// Runs one stage and writes its outs; returns its new lock entry. On a grid (`onGrid`: the stage runs on every
    /// process, with its checkpoints in `checkpointDirectory`) only process 0 hashes, writes the outs the stage
    /// returns and makes the entry; the others return nil.
    func execute(_ s: PipelineSpec.Stage, checkpointDirectory: String? = nil, onGrid: Bool = false) throws
        -> Lock.StageEntry? {
        let kind = kinds[s.name]!
        var deps: [Lock.FileEntry] = []
        let leader = (grid?.rank ?? 0) == 0
        for d in s.deps {
            if !leader {
                deps.append(Lock.FileEntry(path: d, sha256: "", size: 0))
                continue
            }
            guard let h = try hasher.hash(resolve(d)) else {
                throw NTKError("dep '\(d)' does not exist" + (producer[normalise(d)] == nil ? " and no stage makes it" : ""),
                               at: spec.locate("stages.\(s.name).deps"), key: "stages.\(s.name).deps")
            }
            deps.append(Lock.FileEntry(path: d, sha256: h.sha256, size: h.size))
        }
        let params = StageParams(stage: s.name, values: s.values, declared: s.params, locate: spec.locate)
        var ctx = StageContext(stage: s.name, params: params,
                               deps: zip(s.deps, deps).map { ($0.0, resolve($0.0), $0.1.sha256) }, reporter: reporter)
        let checkpoints = checkpointDirectory.map(Checkpoints.init)
            ?? checkpointStore(s, depHashes: deps.map(\.sha256))
        Interruption.stageStarted(s.name)
        defer { Interruption.stageEnded() }
        ctx.checkpoints = checkpoints
        ctx.canonical = normalise
        ctx.outs = s.outs.map(resolve)
        if onGrid { ctx.grid = grid }
        let files: [ArtifactFile]
        do { files = try kind.run(ctx) } catch { throw NTKError(wrapping: error, stage: s.name) }
        if !leader { return nil }
        precondition(files.count == s.outs.count)
        for (i, (o, f)) in zip(s.outs, files).enumerated() {
            guard f.kind == type(of: kind).outputs[i] else {
                throw NTKError("stage \(s.name) returned a \(f.kind.rawValue) artifact for out \(i), where its kind writes "
                               + type(of: kind).outputs[i].rawValue + " (a bug in ntk: please report it)", at: o)
            }
            if let e = f.nonFiniteError(stage: s.name, out: o) { throw e }
        }
        for (o, f) in zip(s.outs, files) {
            try f.write(to: resolve(o))
            DistributedKernelsArtifact.removeStaleTiles(out: resolve(o), written: f)
        }
        let outs = try s.outs.map { o -> Lock.FileEntry in
            guard let h = try hasher.hash(resolve(o)) else { throw NTKError("out vanished after writing", at: resolve(o)) }
            return Lock.FileEntry(path: o, sha256: h.sha256, size: h.size)
        }
        // Older checkpoints of this stage (other keys) are stale too.
        try? FileManager.default.removeItem(atPath: (checkpoints.directory as NSString).deletingLastPathComponent)
        return Lock.StageEntry(kind: s.kind, algorithmVersion: type(of: kind).algorithmVersion, params: locked(s),
                               deps: deps, outs: outs)
    }
}

/// An exclusive lock (flock) on `<dir>/run.lock` held while a pipeline runs, so two `ntk run` processes
/// never write the same artifacts or lock file. Released automatically if the process dies.
final class RunGuard {
    private var fd: Int32
    init(directory: String) throws {
        try Files.makeDirectory(directory)
        let path = directory + "/run.lock"
        fd = open(path, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw NTKError("cannot open", at: path) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw NTKError("another ntk run is using this pipeline", at: path, hint: "wait for it to finish")
        }
    }
    func release() {
        if fd >= 0 { flock(fd, LOCK_UN); close(fd); fd = -1 }
    }
}

extension Runner {
    /// The params stage `name` reads (each expansion of a matrix stage), in the order it reads them, with their
    /// effective values — the file's, `--set`'s, or the kind's defaults (marked).
    public func effectiveParams(_ name: String) throws -> [(stage: String, trace: ParamTrace)] {
        let stages = spec.stages(named: name)
        guard !stages.isEmpty else { _ = try order(targets: [name]); return [] }
        return try stages.map { s in
            let trace = ParamTrace()
            _ = try stageKind(named: s.kind)!.init(params: StageParams(stage: s.name, values: s.values, declared: s.params,
                                                                       locate: spec.locate, trace: trace))
            return (s.name, trace)
        }
    }

    /// The params a stage kind reads outside a pipeline (`ntk exec`) and their defaults.
    public static func defaultParams(kind name: String) throws -> ParamTrace {
        guard let kind = stageKind(named: name) else {
            throw NTKError("unknown stage kind '\(name)' (known: \(stageKinds.map { $0.name }.joined(separator: ", ")))")
        }
        let trace = ParamTrace()
        _ = try kind.init(params: StageParams(stage: name, values: .object([:]), declared: [], anyKey: true, trace: trace))
        return trace
    }

    /// Runs one stage kind outside any pipeline (`ntk exec`): explicit input paths, params from a file's
    /// `params:` block plus overrides (defaults for anything missing), explicit output paths. No lock.
    public static func exec(kind name: String, paramsFile: String?, overrides: [String], inputs: [String], outs: [String],
                            reporter: Reporter = SilentReporter()) throws {
        guard let kind = stageKind(named: name) else {
            throw NTKError("unknown stage kind '\(name)' (known: \(stageKinds.map { $0.name }.joined(separator: ", ")))")
        }
        let base = try paramsFile.map { try PipelineSpec.load($0).params } ?? .object([:])
        let values = try PipelineSpec.applying(overrides, to: base)
        let trace = ParamTrace()
        let params = StageParams(stage: name, values: values, declared: [], anyKey: true, trace: trace)
        let k = try kind.init(params: params)
        // every --set key must be one the kind reads: anything else would be ignored and recorded as if used
        for o in overrides {
            let key = String(o[..<o.firstIndex(of: "=")!])
            guard trace.covers(key) else {
                let read = trace.keys.map { $0.hasPrefix("params.") ? String($0.dropFirst(7)) : $0 }
                let near = PipelineSpec.closest(key, among: read)
                throw NTKError("kind '\(name)' does not read params.\(key)", key: "--set \(key)",
                               hint: (near.isEmpty ? "" : "did you mean \(near.joined(separator: " or "))? ")
                                   + "`ntk params --kind \(name)` lists what it reads")
            }
        }
        guard outs.count == kind.outputs.count else {
            throw NTKError("kind '\(name)' writes \(kind.outputs.count) artifact(s) (\(kind.outputs.map(\.rawValue).joined(separator: ", "))); give that many --out paths")
        }
        var deps: [(path: String, resolved: String, sha256: String)] = []
        for p in inputs + k.requiredDeps where !deps.contains(where: { $0.path == p }) {
            guard let h = try ContentHasher(cachePath: nil).hash(p) else { throw NTKError("input does not exist", at: p) }
            deps.append((p, p, h.sha256))
        }
        let files: [ArtifactFile]
        do { files = try k.run(StageContext(stage: name, params: params, deps: deps, reporter: reporter)) } catch {
            throw NTKError(wrapping: error, stage: name)
        }
        for (o, f) in zip(outs, files) { if let e = f.nonFiniteError(stage: name, out: o) { throw e } }
        for (o, f) in zip(outs, files) { try f.write(to: o) }
    }
}
