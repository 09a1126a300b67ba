import Foundation
import NTK

/// `empirical_kernels`: the empirical NTK Θ̂ and NNGP K̂ (read-out features) of a finite network on a dataset —
/// at θ₀ (a `params` artifact) or at θ_T (the `final_*` weights of a `trained` artifact, for the kernel-change
/// measurements of Figure 1). Output (kind `kernels`, the same tensor names as `analytic_kernels`, so `predict`
/// runs on either): `ntk_train_train` [n, n] traced (mean over logits) or [n·k, n·k] full, `ntk_test_train`,
/// `nngp_train_train`, `nngp_test_train`, `nngp_test_test`; metadata `source: empirical`, `at: theta0|thetaT`.
///
/// On explicit files (`ntk exec empirical_kernels --in x.npz --in params.npz --out k.npz`): a plain `.npz` with `x1`
/// [N1, d] and optionally `x2` [N2, d], and a `params` artifact → `ntk` ([N1, N2] traced or [N1·k, N2·k] full)
/// and `nngp` [N1, N2].
///
/// Params `empirical`: `output` (traced | full), `dtype` (float32 | float64; kernels are stored in float64).
public struct EmpiricalKernelsStage: StageKind {
    public static let name = "empirical_kernels"
    public static let algorithmVersion = 1
    public static let summary = "empirical NTK/NNGP of a finite network at θ₀ or θ_T → kernels artifact"
    public static let outputs: [ArtifactKind] = [.kernels]

    public let full: Bool
    public let dtype: DataConfig.Precision

    public init(params: StageParams) throws {
        var r = try params.reader("empirical")
        let output = try r.string("output", default: "traced")!
        guard output == "traced" || output == "full" else { throw r.fail("output", "unknown value \"\(output)\" (one of: traced, full)") }
        full = output == "full"
        dtype = try r.choice("dtype", default: .float64)
        try r.finish()
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
            let net = MLP(spec: try ParamsArtifact(file: pfile, path: ppath).spec, theta: try ParamsArtifact(file: pfile, path: ppath).theta)
            guard net.spec.inputDim == plain.x1.cols else { throw NTKError("x1 has \(plain.x1.cols) features, the network expects \(net.spec.inputDim)", at: ppath) }
            func run<T: NTKFloat>(_: T.Type) -> [Tensor] {
                let e = EmpiricalNTK<T>(net)
                let r = e.compute(x1: plain.x1, x2: plain.x2, output: full ? .full : .traced)
                let n2 = plain.x2?.rows ?? plain.x1.rows
                return [Tensor(name: "ntk", shape: [r.rows, r.cols], values: r.ntk.map { Double($0) }),
                        Tensor(name: "nngp", shape: [plain.x1.rows, n2], values: e.nngp(x1: plain.x1, x2: plain.x2).map { Double($0) })]
            }
            return [ArtifactFile(kind: .kernels, metadata: meta, tensors: dtype == .float32 ? run(Float.self) : run(Double.self))]
        }
        let (dpath, dfile) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: dfile, path: dpath)
        let net: MLP
        // θ_T from a trained artifact if one is among the deps, else θ₀ from the params artifact.
        if let d = ctx.deps.first(where: { $0.resolved.hasSuffix(".npz") && (try? ArtifactFile.read($0.resolved).kind) == .trained }) {
            let t = try ArtifactFile.read(d.resolved)
            let (ppath, pfile) = try ctx.artifact(.params)
            let p = try ParamsArtifact(file: pfile, path: ppath)
            net = MLP(spec: p.spec, theta: try ParamsArtifact.theta(from: Dictionary(uniqueKeysWithValues: t.tensors.map { ($0.name, $0) }),
                                                                   spec: p.spec, prefix: "final_", location: d.path))
            meta["at"] = .string("thetaT")
        } else {
            let (ppath, pfile) = try ctx.artifact(.params)
            let p = try ParamsArtifact(file: pfile, path: ppath)
            net = MLP(spec: p.spec, theta: p.theta)
            meta["at"] = .string("theta0")
        }
        guard net.spec.inputDim == ds.features, net.spec.outputs == ds.outputs else {
            throw NTKError("network \(net.spec.inputDim)→\(net.spec.outputs) does not fit the dataset (\(ds.features) features, \(ds.outputs) outputs)")
        }
        let xtr = Matrix(rows: ds.nTrain, cols: ds.features, data: ds.xTrain), xte = Matrix(rows: ds.nTest, cols: ds.features, data: ds.xTest)
        let k = ds.outputs, n = ds.nTrain, m = ds.nTest
        let started = Date()
        func run<T: NTKFloat>(_: T.Type) -> [Tensor] {
            let e = EmpiricalNTK<T>(net)
            let out: EmpiricalNTK<T>.Output = full ? .full : .traced
            let tt = e.compute(x1: xtr, output: out), st = e.compute(x1: xte, x2: xtr, output: out)
            let d = { (v: [T]) in v.map { Double($0) } }
            return [
                Tensor(name: "ntk_train_train", shape: full ? [n * k, n * k] : [n, n], values: d(tt.ntk)),
                Tensor(name: "ntk_test_train", shape: full ? [m * k, n * k] : [m, n], values: d(st.ntk)),
                Tensor(name: "nngp_train_train", shape: [n, n], values: d(e.nngp(x1: xtr))),
                Tensor(name: "nngp_test_train", shape: [m, n], values: d(e.nngp(x1: xte, x2: xtr))),
                Tensor(name: "nngp_test_test", shape: [m, m], values: d(e.nngp(x1: xte))),
            ]
        }
        let tensors = dtype == .float32 ? run(Float.self) : run(Double.self)
        ctx.reporter.log(String(format: "empirical NTK (%@, %@) of %d+%d inputs in %.2f s", full ? "full" : "traced", dtype.rawValue, n, m,
                                Date().timeIntervalSince(started)))
        return [ArtifactFile(kind: .kernels, metadata: meta, tensors: tensors)]
    }
}
