import Foundation
import NTK

/// `kernel_convergence`: how fast the empirical kernels of finite networks approach the infinite-width ones
/// (PAPER Figures S9/S10, §4.2): draws `draws` independently initialised single-output networks of `params.model`
/// (any layer list the analytic kernels take: fully-connected, convolutional, residual),
/// computes Θ̂ and K̂ (read-out features) on the first `inputs` training inputs, and for M = 1, 2, 4, … ≤ draws the
/// relative Frobenius error of the average of M draws against the analytic Θ and K,
///     e_Θ(M) = ‖mean of M Θ̂ − Θ‖_F / ‖Θ‖_F,
/// itself averaged over the draws/M disjoint groups of M draws (so M = 1 uses every draw).
///
/// Output (kind `evaluation`): `m` [J] (int32), `ntk_error`, `nngp_error` [J]; metadata `summary`: `ntk_error_M<m>`,
/// `nngp_error_M<m>` for each m. Params: `seed` (draw i uses seed + i), `model` (k = 1 output; the kernels of each
/// output are the same), `convergence`: `inputs` (64), `draws` (16), `dtype` (float64 | float32).
public struct KernelConvergenceStage: StageKind {
    public static let name = "kernel_convergence"
    public static let algorithmVersion = 1
    public static let summary = "empirical vs analytic NTK/NNGP error for M averaged initialisations → evaluation artifact"
    public static let outputs: [ArtifactKind] = [.evaluation]

    public let model: ModelConfig
    public let inputs: Int
    public let draws: Int
    public let dtype: DataConfig.Precision
    public let seed: Int

    public init(params: StageParams) throws {
        var mr = try params.reader("model")
        model = try ModelConfig(&mr)
        var r = try params.reader("convergence")
        inputs = try r.int("inputs", default: 64, min: 2)!
        draws = try r.int("draws", default: 16, min: 1)!
        dtype = try r.choice("dtype", default: .float64)
        try r.finish()
        seed = try params.int("seed", default: 0)
    }

    public var requiredDeps: [String] { [] }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        let (dpath, dfile) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: dfile, path: dpath)
        guard ds.nTrain >= inputs else { throw NTKError("needs \(inputs) training inputs, the dataset has \(ds.nTrain)", at: dpath, key: "params.convergence.inputs") }
        let x = Matrix(rows: inputs, cols: ds.features, data: Array(ds.xTrain[0..<inputs * ds.features]))
        let (net, _) = try model.kernelNetwork(input: ds.inputShape, singleOutput: true)
        let exact = try AnalyticKernels.compute(x1: x, network: net)
        var ntkDraws: [[Double]] = [], nngpDraws: [[Double]] = []
        let task = ctx.reporter.begin("empirical kernels of \(draws) networks \(describe(net))", total: draws,
                                      unit: "draws")
        for i in 0..<draws {
            let theta = net.initialize(seed: UInt64(bitPattern: Int64(seed + i)))
            func kernels<T: NTKFloat>(_: T.Type) -> ([Double], [Double]) {
                let e = EmpiricalNTK<T>(network: net, theta: theta)
                return (e.compute(x1: x, output: .traced).ntk.map { Double($0) }, e.nngp(x1: x).map { Double($0) })
            }
            let (a, b) = dtype == .float32 ? kernels(Float.self) : kernels(Double.self)
            ntkDraws.append(a); nngpDraws.append(b)
            task.update(i + 1)
        }
        task.finish()
        var ms: [Int] = []
        var m = 1
        while m <= draws { ms.append(m); m *= 2 }
        func errors(_ samples: [[Double]], _ exact: [Double]) -> [Double] {
            let norm = exact.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return ms.map { m in
                let groups = draws / m
                return (0..<groups).map { g -> Double in
                    var mean = [Double](repeating: 0, count: exact.count)
                    for s in samples[g * m..<(g + 1) * m] { for j in mean.indices { mean[j] += s[j] / Double(m) } }
                    return zip(mean, exact).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot() / norm
                }.reduce(0, +) / Double(groups)
            }
        }
        let ntkErr = errors(ntkDraws, exact.ntk.data), nngpErr = errors(nngpDraws, exact.nngp.data)
        var summary: [String: JSONValue] = [:]
        for (i, m) in ms.enumerated() {
            summary["ntk_error_M\(m)"] = .double(ntkErr[i])
            summary["nngp_error_M\(m)"] = .double(nngpErr[i])
        }
        ctx.reporter.log(String(format: "%@: ‖Θ̂ − Θ‖/‖Θ‖ = %.4f (M = 1), %.4f (M = %d)", describe(net), ntkErr[0],
                                ntkErr.last!, ms.last!))
        var meta = ctx.metadata(kind: Self.name)
        meta["summary"] = .object(summary)
        meta["settings"] = .object(["model": model.json, "convergence": .object(["inputs": .int(inputs), "draws": .int(draws), "dtype": .string(dtype.rawValue)])])
        return [ArtifactFile(kind: .evaluation, metadata: meta, tensors: [
            Tensor(name: "m", shape: [ms.count], int32: ms.map { Int32($0) }),
            Tensor(name: "ntk_error", shape: [ms.count], values: ntkErr),
            Tensor(name: "nngp_error", shape: [ms.count], values: nngpErr),
        ])]
    }

    /// The layers' kinds and widths in one line: "784 → dense 512 → relu → dense 1", "28×28×1 → conv 64 → relu → …".
    func describe(_ net: Network) -> String {
        let input = net.inputShape.dims.map(String.init).joined(separator: "×")
        return ([input] + net.table.map { $0.parameters > 0 ? "\($0.kind) \($0.output.channels)" : $0.kind })
            .joined(separator: " → ")
    }
}
