import Foundation
import NTK

/// `empirical_kernels`: the empirical NTK Θ̂ and NNGP K̂ (read-out features) of a finite network on a dataset —
/// at θ₀ (a `params` artifact) or at θ_T (the `final_*` weights of a `trained` artifact, for the kernel-change
/// measurements of Figure 1). Output (kind `kernels`, the same tensor names as `analytic_kernels`, so `predict`
/// runs on either): `ntk_train_train` [n, n] traced (mean over logits) or [n·k, n·k] full, `ntk_test_train`,
/// `nngp_train_train`, `nngp_test_train`, `nngp_test_test`; metadata `source: empirical`, `at: theta0|thetaT`.
///
/// On explicit files (`ntk exec empirical_kernels --in x.npz --in params.npz --out k.npz`): a plain `.npz` with `x1`
/// [N1, D] and optionally `x2` [N2, D] (D the values of one sample, NHWC), and a `params` artifact → `ntk` ([N1, N2] traced or [N1·k, N2·k] full)
/// and `nngp` [N1, N2].
///
/// Params `empirical`: `output` (traced | full), `dtype` (float32 | float64; kernels are stored in float64),
/// `per_layer` (false; true adds each dense or conv layer's contribution — which neural-tangents does not give — as
/// `ntk_train_train_W<l>`, `ntk_train_train_b<l>`, `ntk_test_train_W<l>`, `ntk_test_train_b<l>`, same shapes as
/// the sums; l = 0 is the input layer, the bias terms are absent when b_std = 0), `max_memory`.
public struct EmpiricalKernelsStage: StageKind {
    public static let name = "empirical_kernels"
    public static let algorithmVersion = 1
    public static let summary = "empirical NTK/NNGP of a finite network at θ₀ or θ_T → kernels artifact"
    public static let outputs: [ArtifactKind] = [.kernels]

    public let full: Bool
    public let dtype: DataConfig.Precision
    /// Working-memory cap: with it, the traced kernels are computed in tiles whose features are checkpointed.
    public let maxMemory: Int?
    public let perLayer: Bool

    public init(params: StageParams) throws {
        var r = try params.reader("empirical")
        let output = try r.string("output", default: "traced")!
        guard output == "traced" || output == "full" else { throw r.fail("output", "unknown value \"\(output)\" (one of: traced, full)") }
        full = output == "full"
        dtype = try r.choice("dtype", default: .float64)
        if let cap = try r.string("max_memory") {
            guard let bytes = parseBytes(cap), bytes > 0 else { throw r.fail("max_memory", "expected a size like 512M or 4G, found \"\(cap)\"") }
            maxMemory = bytes
        } else { maxMemory = nil }
        perLayer = try r.bool("per_layer", default: false)
        try r.finish()
        if perLayer && maxMemory != nil { throw r.fail("per_layer", "per-layer contributions are computed without tiles (drop max_memory)") }
        if full && maxMemory != nil { throw r.fail("max_memory", "tiles support the traced kernel only (output: traced)") }
    }

    public var requiredDeps: [String] { [] }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        var meta = ctx.metadata(kind: Self.name)
        meta["source"] = .string("empirical")
        meta["output"] = .string(full ? "full" : "traced")
        meta["dtype"] = .string(dtype.rawValue)
        // On explicit files: a plain .npz with x1 (and optionally x2) and a params artifact → `ntk`, `nngp`.
        if let plain = try AnalyticKernelsStage.plainInputs(ctx) {
            let (ppath, pfile) = try ctx.artifact(.params)
            let p = try ParamsArtifact(file: pfile, path: ppath)
            let sample = DatasetArtifact.shape(of: plain.sample, features: plain.x1.cols)
            guard p.network.accepts(sample) else {
                throw NTKError("x1 has samples \(sample), the network takes samples \(p.network.inputShape)", at: ppath)
            }
            func run<T: NTKFloat>(_: T.Type) -> [Tensor] {
                let e = EmpiricalNTK<T>(network: p.network, theta: p.theta)
                let r = e.compute(x1: plain.x1, x2: plain.x2, output: full ? .full : .traced)
                let n2 = plain.x2?.rows ?? plain.x1.rows
                return [Tensor(name: "ntk", shape: [r.rows, r.cols], values: r.ntk.map { Double($0) }),
                        Tensor(name: "nngp", shape: [plain.x1.rows, n2], values: e.nngp(x1: plain.x1, x2: plain.x2).map { Double($0) })]
            }
            return [ArtifactFile(kind: .kernels, metadata: meta, tensors: dtype == .float32 ? run(Float.self) : run(Double.self))]
        }
        let (dpath, dfile) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: dfile, path: dpath)
        // θ_T from a trained artifact if one is among the deps, else θ₀ from the params artifact.
        let (ppath, pfile) = try ctx.artifact(.params)
        let p = try ParamsArtifact(file: pfile, path: ppath)
        let theta: [Double]
        if let (tpath, t) = try ctx.artifacts(.trained).first {
            theta = try ParamsArtifact.theta(from: Dictionary(uniqueKeysWithValues: t.tensors.map { ($0.name, $0) }), network: p.network,
                                             prefix: "final_", location: tpath)
            meta["at"] = .string("thetaT")
        } else {
            theta = p.theta
            meta["at"] = .string("theta0")
        }
        try ds.check(p.network, at: ppath)
        let need = estimate(n: ds.nTrain + ds.nTest, net: p.network)
        if maxMemory == nil && !perLayer && need > 1 << 34 {
            ctx.reporter.log("note: the features need about \(need >> 30) GiB; set empirical.max_memory to work in tiles")
        }
        let xtr = Matrix(rows: ds.nTrain, cols: ds.features, data: ds.xTrain), xte = Matrix(rows: ds.nTest, cols: ds.features, data: ds.xTest)
        let k = ds.outputs, n = ds.nTrain, m = ds.nTest
        // The NTKs (k×k blocks when full) and the NNGPs in float64 tensors, beside the kernels they come from.
        let ntkElements = full ? n * k * (n + m) * k : n * (n + m)
        if let excess = MemoryBudget.excess([2, ntkElements + (n + m) * (n + m), 8]) {
            throw NTKError("the \(full ? "full" : "traced") kernels of \(n) training and \(m) test samples \(excess)",
                           hint: "use fewer samples (the data's n_train, n_test)" + (full ? ", or output: traced" : ""))
        }
        let started = Date()
        func run<T: NTKFloat>(_: T.Type) throws -> [Tensor] {
            let e = EmpiricalNTK<T>(network: p.network, theta: theta)
            let out: EmpiricalNTK<T>.Output = full ? .full : .traced
            let d = { (v: [T]) in v.map { Double($0) } }
            var tt: [T] = [], st: [T] = []
            var layers: [Tensor] = []
            if let cap = maxMemory {
                let rows = tileRows(cap: cap, net: p.network, size: MemoryLayout<T>.size)
                ctx.reporter.log("tiles of \(rows) rows under the \(cap >> 20) MiB working-memory cap")
                tt = try tiled(e, "train_train", xtr, nil, rows, ctx)
                st = try tiled(e, "test_train", xte, xtr, rows, ctx)
            } else {
                for (name, x1, x2, shape) in [("train_train", xtr, nil, full ? [n * k, n * k] : [n, n]), ("test_train", xte, xtr, full ? [m * k, n * k] : [m, n])] {
                    let r = e.compute(x1: x1, x2: x2, output: out, perLayer: perLayer)
                    if name == "train_train" { tt = r.ntk } else { st = r.ntk }
                    for (l, c) in r.perLayer.enumerated() {
                        layers.append(Tensor(name: "ntk_\(name)_W\(l)", shape: shape, values: d(c.w)))
                        if let b = c.b { layers.append(Tensor(name: "ntk_\(name)_b\(l)", shape: shape, values: d(b))) }
                    }
                }
            }
            let sums = [
                Tensor(name: "ntk_train_train", shape: full ? [n * k, n * k] : [n, n], values: d(tt)),
                Tensor(name: "ntk_test_train", shape: full ? [m * k, n * k] : [m, n], values: d(st)),
                Tensor(name: "nngp_train_train", shape: [n, n], values: d(e.nngp(x1: xtr))),
                Tensor(name: "nngp_test_train", shape: [m, n], values: d(e.nngp(x1: xte, x2: xtr))),
                Tensor(name: "nngp_test_test", shape: [m, m], values: d(e.nngp(x1: xte))),
            ]
            return sums + layers
        }
        let tensors = dtype == .float32 ? try run(Float.self) : try run(Double.self)
        ctx.reporter.log(String(format: "empirical NTK (%@, %@) of %d+%d inputs in %.2f s", full ? "full" : "traced", dtype.rawValue, n, m,
                                Date().timeIntervalSince(started)))
        return [ArtifactFile(kind: .kernels, metadata: meta, tensors: tensors)]
    }

    /// Bytes per input row of the features (`EmpiricalNTK.Features`) and of the passes that compute them, in precision
    /// of `size` bytes: dense layers h_l [fan_in] and Δ_l [k·fan_out], conv layers their per-sample filter and bias
    /// gradients [k·(kh·kw·C_in·C_out + C_out)], the forward values and two signal buffers of the k cotangents.
    func bytesPerRow(_ net: Network, size: Int) -> Int {
        let k = net.outputs
        let features = net.parameters.reduce(0) { $0 + ($1.kind == .dense ? $1.fanIn + k * $1.fanOut : k * $1.count) }
        let passes = net.valueCounts.reduce(0, +) + 2 * k * (net.valueCounts.max() ?? 0)
        return size * (features + passes)
    }

    /// All features of n rows in float64 (for the note on untiled runs).
    func estimate(n: Int, net: Network) -> Int { n * bytesPerRow(net, size: 8) }

    /// Rows per tile so that two tiles' features, the transient buffers of building one, and the two B×B Gram
    /// buffers fit in `cap` bytes.
    func tileRows(cap: Int, net: Network, size: Int) -> Int {
        let byFeatures = cap / (3 * max(bytesPerRow(net, size: size), 1)), byGram = Int((Double(cap) / Double(8 * size)).squareRoot())
        return max(1, min(byFeatures, byGram))
    }

    /// One traced kernel in tiles, each tile's features computed once and checkpointed (a killed run resumes).
    func tiled<T: NTKFloat>(_ e: EmpiricalNTK<T>, _ name: String, _ x1: Matrix, _ x2: Matrix?, _ rows: Int, _ ctx: StageContext) throws -> [T] {
        let task = ctx.reporter.begin("empirical NTK \(name) in tiles", total: 1, unit: "tile pairs")
        var resumed = 0
        let result = try e.computeTiled(n1: x1.rows, n2: (x2 ?? x1).rows, symmetric: x2 == nil, tileRows: rows, features: { set, tile, range in
            let key = "\(name)-\(set == 0 ? "x1" : "x2")-\(tile)"
            if let f = ctx.checkpoints?.load(key), let tf = Self.decode(f, rows: range, layers: e.network.parameters.count, as: T.self) {
                resumed += 1
                return tf
            }
            let tf = e.tileFeatures(set == 0 ? x1 : x2!, rows: range)
            try ctx.checkpoints?.save(key, Self.encode(tf))
            return tf
        }, progress: { done, total in
            task.update(done * 100 / max(total, 1))
        })
        task.finish()
        if resumed > 0 { ctx.reporter.log("\(name): \(resumed) tile(s) of features resumed from checkpoints") }
        return result
    }

    /// One block's features as tensors (a0…, s0…, j0…, jb0…, last) for a checkpoint, and back.
    public static func encode<T: NTKFloat>(_ f: EmpiricalNTK<T>.Features) -> [Tensor] {
        func named(_ prefix: String, _ arrays: [[T]]) -> [Tensor] {
            arrays.enumerated().map { Tensor(name: "\(prefix)\($0.offset)", shape: [$0.element.count], values: $0.element) }
        }
        return named("a", f.acts) + named("s", f.signals) + named("j", f.jacobians) + named("jb", f.biasJacobians)
            + [Tensor(name: "last", shape: [f.lastHidden.count], values: f.lastHidden)]
    }

    public static func decode<T: NTKFloat>(_ file: ArtifactFile, rows: Range<Int>, layers: Int, as _: T.Type) -> EmpiricalNTK<T>.Features? {
        func values(_ name: String) -> [T]? {
            guard let t = file.tensor(name) else { return nil }
            return T.self == Float.self ? t.floats().map { T($0) } : t.doubles().map { T($0) }
        }
        var acts: [[T]] = [], signals: [[T]] = [], jacobians: [[T]] = [], biasJacobians: [[T]] = []
        for l in 0..<layers {
            guard let a = values("a\(l)"), let s = values("s\(l)"), let j = values("j\(l)"), let jb = values("jb\(l)") else { return nil }
            acts.append(a)
            signals.append(s)
            jacobians.append(j)
            biasJacobians.append(jb)
        }
        guard let last = values("last") else { return nil }
        return EmpiricalNTK<T>.Features(rows: rows, acts: acts, signals: signals, lastHidden: last, jacobians: jacobians,
                                        biasJacobians: biasJacobians)
    }
}
