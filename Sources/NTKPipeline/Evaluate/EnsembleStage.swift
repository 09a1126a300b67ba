import Foundation
import NTK

/// `ensemble`: the output distribution of many independently initialised networks trained by gradient descent,
/// against the infinite-width predictions (PAPER Figure 2): the NTK-GP (Eqs. 14–15, the whole network trained)
/// and the NNGP with only the read-out trained (S22–S23). Member i starts from seed + i and is trained with
/// `params.train` (full-batch GD on MSE for the comparison to hold) on the dataset's training set; its test outputs
/// (e.g. the interpolated inputs x(α) of a `load` stage with `interpolate`) are recorded at the snapshot times.
///
/// Output (kind `evaluation`), M members, S snapshots, P test inputs (first output): `snapshot_times` [S]
/// (t = η·step), `outputs` [M, S, P] (every member: Figure S1), `ensemble_mean`, `ensemble_var` [S, P] (sample
/// variance); with an `analytic_kernels` artifact with `nngp_test_test` among the deps, `ntkgp_mean`,
/// `ntkgp_var`, `nngp_mean`, `nngp_var` [S, P]; `alpha` [P] if the dataset has it. Summary: `mean_z_max`
/// = max over t, x of |mean − μ_NTK|/√(var/M) (standard errors), `var_z_max` = max |var − σ²_NTK| over its
/// Monte-Carlo error σ²_NTK·√(2/(M − 1)) (the standard error floored at 10⁻³ of the largest σ at that time, the
/// Monte-Carlo error at 10⁻³ of the largest σ², for the training inputs where both vanish), the same per snapshot (`…_t<i>`), and `nngp_mean_z_last`: the NNGP mean's distance in
/// standard errors at the last snapshot.
///
/// Params: `seed`, `model`, `train` (as the train stage), `ensemble`: `members` (64), `snapshots` (times t; [0, 16, 256]).
public struct EnsembleStage: StageKind {
    public static let name = "ensemble"
    public static let algorithmVersion = 2
    public static let summary = "an ensemble of trained networks vs the NTK-GP and NNGP output distributions → evaluation artifact"
    public static let outputs: [ArtifactKind] = [.evaluation]

    public let model: ModelConfig
    public let train: TrainStage
    public let members: Int
    public let snapshots: [Double]
    public let seed: Int

    public init(params: StageParams) throws {
        var m = try params.reader("model")
        model = try ModelConfig(&m)
        train = try TrainStage(params: params)
        guard train.reduction == .mean else {
            throw NTKError("the ensemble is compared with Gaussian processes of the mean loss; use reduction: mean", key: "params.train.reduction")
        }
        var r = try params.reader("ensemble")
        members = try r.int("members", default: 64, min: 2)!
        switch r.raw("snapshots") {
        case nil: snapshots = [0, 16, 256]
        case .array(let a)?: snapshots = try a.map { guard let v = $0.number, v >= 0 else { throw r.fail("snapshots", "expected times ≥ 0") }; return v }
        case let v?: throw r.fail("snapshots", "expected a list of times, found \(v.typeName)")
        }
        try r.finish()
        let eta = train.config.learningRate
        for t in snapshots where abs((t / eta).rounded() - t / eta) > 1e-9 || Int((t / eta).rounded()) > train.config.steps {
            throw r.fail("snapshots", "time \(t) is not a step of η = \(eta) within \(train.config.steps) steps")
        }
        seed = try params.int("seed", default: 0)
    }

    public var requiredDeps: [String] { [] }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        let (dpath, dfile) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: dfile, path: dpath)
        let n = ds.nTrain, p = ds.nTest, k = ds.outputs
        let network = try model.network(input: ds.inputShape, outputs: k)
        let eta = train.config.learningRate
        let steps = snapshots.map { Int(($0 / eta).rounded()) }
        var config = train.config
        config.steps = steps.max() ?? 0
        let x = Matrix(rows: n, cols: ds.features, data: ds.xTrain), y = Matrix(rows: n, cols: k, data: ds.yTrain)
        let xt = Matrix(rows: p, cols: ds.features, data: ds.xTest), yt = Matrix(rows: p, cols: k, data: ds.yTest)
        var outputs = [Double](repeating: 0, count: members * steps.count * p)  // [M, S, P], first output
        let task = ctx.reporter.begin("training \(members) networks \(network.summary) for \(config.steps) steps", total: members, unit: "networks")
        for i in 0..<members {
            let theta0 = network.initialize(seed: UInt64(bitPattern: Int64(seed + i)))
            func run<T: NTKFloat>(_: T.Type) throws {
                let t = Trainer<T>(network: network, theta0: theta0, xTrain: x, yTrain: y, xTest: xt, yTest: yt, config: config)
                for (s, target) in steps.enumerated().sorted(by: { $0.element < $1.element }) {
                    while t.step < target { _ = try t.stepOnce() }
                    let f = t.record().fxTest
                    for j in 0..<p { outputs[(i * steps.count + s) * p + j] = f[j * k] }
                }
            }
            do { try train.dtype == .float32 ? run(Float.self) : run(Double.self) } catch let d as TrainingDiverged {
                throw NTKError("member \(i) diverged at step \(d.step) with learning rate \(eta)", key: "params.train.learning_rate")
            }
            task.update(i + 1)
        }
        task.finish()
        let sCount = steps.count
        var mean = [Double](repeating: 0, count: sCount * p), variance = mean
        for s in 0..<sCount { for j in 0..<p {
            let v = (0..<members).map { outputs[($0 * sCount + s) * p + j] }
            let m = v.reduce(0, +) / Double(members)
            mean[s * p + j] = m
            variance[s * p + j] = v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(members - 1)
        } }
        var tensors = [Tensor(name: "snapshot_times", shape: [sCount], values: snapshots),
                       Tensor(name: "outputs", shape: [members, sCount, p], values: outputs),
                       Tensor(name: "ensemble_mean", shape: [sCount, p], values: mean),
                       Tensor(name: "ensemble_var", shape: [sCount, p], values: variance)]
        if let alpha = dfile.tensor("alpha") { tensors.append(alpha) }
        var summary: [String: JSONValue] = [:]
        var repairs: [String] = []
        if let (kpath, kf) = try ctx.artifacts(.kernels).first(where: { $0.file.metadata["source"] == .string("analytic") }) {
            func kernel(_ name: String, _ r: Int, _ c: Int) throws -> Matrix {
                guard let t = kf.tensor(name), t.shape == [r, c] else { throw NTKError("needs \(name) of shape [\(r), \(c)] (set kernel.test_test: true)", at: kpath) }
                return Matrix(rows: r, cols: c, data: t.doubles())
            }
            let ens = try EnsemblePredictor(nngpTrainTrain: try kernel("nngp_train_train", n, n), ntkTrainTrain: try kernel("ntk_train_train", n, n),
                                            yTrain: y, learningRate: eta)
            let ntd = try kernel("ntk_test_train", p, n), gtd = try kernel("nngp_test_train", p, n), gtt = try kernel("nngp_test_test", p, p)
            var zMean = 0.0, zVar = 0.0
            for mode in EnsemblePredictor.Mode.allCases {
                var gm: [Double] = [], gv: [Double] = []
                for (s, step) in steps.enumerated() {
                    let g = try ens.predict(mode, t: Double(step), ntkTestTrain: ntd, nngpTestTrain: gtd, nngpTestTest: gtt)
                    let mu = (0..<p).map { g.mean[$0, 0] }, sigma2 = g.covariance!.diagonal.map { max($0, 0) }
                    gm += mu; gv += sigma2
                    var zm = 0.0, zv = 0.0
                    // Floors at 10⁻³ of the largest σ² (σ) at this time, for the training inputs, where the spread and the
                    // difference both vanish late in training down to float round-off.
                    let floor = 1e-3 * (sigma2.max() ?? 0), sdFloor = 1e-3 * (sigma2.max() ?? 0).squareRoot()
                    let mcFactor = (2 / Double(members - 1)).squareRoot()
                    for j in 0..<p {
                        let se: Double = (variance[s * p + j] / Double(members)).squareRoot()
                        zm = max(zm, abs(mean[s * p + j] - mu[j]) / max(se, sdFloor, 1e-12))
                        let mcError: Double = max(sigma2[j] * mcFactor, floor, 1e-300)
                        zv = max(zv, abs(variance[s * p + j] - sigma2[j]) / mcError)
                    }
                    if mode == .ntk {
                        summary["mean_z_max_t\(s)"] = .double(zm)
                        summary["var_z_max_t\(s)"] = .double(zv)
                        zMean = max(zMean, zm); zVar = max(zVar, zv)
                    } else if s == sCount - 1 {
                        summary["nngp_mean_z_last"] = .double(zm)
                    }
                }
                tensors.append(Tensor(name: "\(mode == .ntk ? "ntkgp" : "nngp")_mean", shape: [sCount, p], values: gm))
                tensors.append(Tensor(name: "\(mode == .ntk ? "ntkgp" : "nngp")_var", shape: [sCount, p], values: gv))
            }
            summary["mean_z_max"] = .double(zMean)
            summary["var_z_max"] = .double(zVar)
            repairs = ens.repairs
            ctx.reporter.log(String(format: "ensemble of %d vs NTK-GP: mean within %.2f standard errors, variance within %.2f Monte-Carlo errors; NNGP mean at the last time: %.1f standard errors away",
                                    members, zMean, zVar, summary["nngp_mean_z_last"]?.number ?? .nan))
        }
        var meta = ctx.metadata(kind: Self.name)
        meta["summary"] = .object(summary)
        meta["repairs"] = .array(repairs.map { .string($0) })
        meta["settings"] = EvaluateStage.settings(ctx)
        meta["members"] = .int(members)
        return [ArtifactFile(kind: .evaluation, metadata: meta, tensors: tensors)]
    }
}
