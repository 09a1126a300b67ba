import Foundation
import NTK

/// `predict`: closed-form predictions of infinitely wide networks trained by gradient descent on MSE, from a
/// dataset and a kernels artifact: the NTK-GP (Eqs. 14–16: mean and variance of an infinite ensemble trained for
/// time t) and the NNGP (only the read-out trained; t = ∞ is the Bayesian posterior, Eq. 13), at each time in
/// `predict.times` (continuous time in steps of `learning_rate`; `inf` for ∞).
///
/// Output (kind `predictions`): `times` [T]; `ntk_mean_test`, `nngp_mean_test` [T, m, k]; `ntk_var_test`,
/// `nngp_var_test` [T, m] (with nngp_test_test in the kernels), `ntk_test_accuracy`, `ntk_test_mse`,
/// `nngp_test_accuracy`, `nngp_test_mse` [T]; metadata `metrics`: test accuracy and MSE per mode and time, `summary`
/// the same as scalars for the report (`ntkgp_infinite_test_accuracy`, `nngp_test_mse_t100`, …), any kernel
/// repairs, and with finite times `max_learning_rate` (neural-tangents': 2·n·k/λ_max of the NTK). With a `trained` artifact among the deps (and an empirical kernel at
/// θ₀, traced or full), also the linearized dynamics in closed form from the trained run's f₀ at its recorded
/// steps: `closed_steps`, `closed_fx_train` [R, n, k], `closed_fx_test` [R, m, k], and `metrics.closed_form`
/// (test RMSE against the network and against the trained linearization).
///
/// Params `predict`: `learning_rate` (1.0), `times` ([1, 10, 100, 1000, inf]), `diag_reg` (0; relative to the
/// mean diagonal, as neural-tangents).
public struct PredictStage: StageKind {
    public static let name = "predict"
    public static let algorithmVersion = 3
    public static let summary = "NTK-GP and NNGP predictions in closed form → predictions artifact"
    public static let outputs: [ArtifactKind] = [.predictions]
    public static let distributed = true

    public let learningRate: Double
    public let times: [Double?]
    public let diagReg: Double

    public init(params: StageParams) throws {
        var r = try params.reader("predict")
        learningRate = try r.double("learning_rate", default: 1)
        diagReg = try r.double("diag_reg", default: 0)
        switch r.raw("times") {
        case nil: times = [1, 10, 100, 1000, nil]
        case .array(let a)?:
            times = try a.map {
                switch $0 {
                case .int(let i): return Double(i)
                case .double(let d): return d.isInfinite ? nil : d
                case .string(let s) where s == "inf": return nil
                default: throw r.fail("times", "expected numbers or \"inf\", found \($0.canonical)")
                }
            }
        case let v?: throw r.fail("times", "expected a list of times, found \(v.typeName)")
        }
        if times.contains(where: { ($0 ?? 0) < 0 }) { throw r.fail("times", "times must be ≥ 0") }
        try r.finish()
    }

    public var requiredDeps: [String] { [] }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        if let grid = ctx.grid {
            // distributed kernels: every process; whole ones (empirical, full): process 0 alone, as without MPI
            if DistributedKernelsArtifact.processes(try ctx.artifact(.kernels).file) != nil {
                return try runDistributed(ctx, grid)
            }
            if grid.rank != 0 { return [] }
        }
        let (dpath, dfile) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: dfile, path: dpath)
        let (kpath, kfile) = try ctx.artifact(.kernels)
        func kernel(_ name: String, _ rows: Int, _ cols: Int) throws -> Matrix {
            guard let t = kfile.tensor(name) else { throw NTKError("kernels artifact has no tensor '\(name)'", at: kpath) }
            guard t.shape == [rows, cols] else {
                throw NTKError("\(name) has shape \(t.shape) but the dataset needs [\(rows), \(cols)] — made from another dataset?", at: kpath)
            }
            return Matrix(rows: rows, cols: cols, data: t.doubles())
        }
        let n = ds.nTrain, m = ds.nTest, k = ds.outputs
        let y = Matrix(rows: n, cols: k, data: ds.yTrain), yTest = Matrix(rows: m, cols: k, data: ds.yTest)
        var tensors: [Tensor] = []
        var metrics: [String: JSONValue] = [:], summary: [String: JSONValue] = [:]
        var repairs: [String] = []
        var maxLearningRate: Double?
        let traced = kfile.tensor("ntk_train_train")?.shape == [n, n]
        if traced {
            let ens = try EnsemblePredictor(nngpTrainTrain: try kernel("nngp_train_train", n, n), ntkTrainTrain: try kernel("ntk_train_train", n, n),
                                            yTrain: y, learningRate: learningRate, diagReg: diagReg)
            let ntd = try kernel("ntk_test_train", m, n), gtd = try kernel("nngp_test_train", m, n)
            let gtt = kfile.tensor("nngp_test_test") != nil ? try kernel("nngp_test_test", m, m) : nil
            tensors.append(Tensor(name: "times", shape: [times.count], values: times.map { $0 ?? .infinity }))
            for mode in EnsemblePredictor.Mode.allCases {
                let results = try times.map { t -> (mean: [Double], variance: [Double]?) in
                    let g = try ens.predict(mode, t: t, ntkTestTrain: ntd, nngpTestTrain: gtd, nngpTestTest: gtt)
                    return (g.mean.data, g.covariance?.diagonal)
                }
                try record(mode, results, ds, tensors: &tensors, metrics: &metrics, summary: &summary, ctx.reporter)
            }
            repairs += ens.repairs
            if times.contains(where: { $0 != nil }) {  // the eigendecomposition is there: neural-tangents'
                // max_learning_rate, 2·n·k/λ_max of Θ as given (without the regulariser)
                let top = (try ens.ntk.eigh().values.last ?? 0) - ens.ntk.regularizer
                maxLearningRate = GradientDescentMSE.maxLearningRate(lambdaMax: top, entries: Double(n * k))
            }
        }
        // With a trained artifact among the deps: the linearized dynamics in closed form from the same f₀, at the
        // recorded steps, beside the trained network and its trained linearization (PAPER Figure 3's comparison).
        if let (tpath, t) = try ctx.artifacts(.trained).first {
            try closedForm(t, path: tpath, kernel: kernel, traced: traced, y: y, n: n, m: m, k: k, tensors: &tensors, metrics: &metrics, repairs: &repairs, ctx: ctx)
        } else if !traced {
            throw NTKError("full [n·k, n·k] kernels are used for the closed-form dynamics of a trained network: add its trained artifact to the deps", at: kpath)
        }
        return [artifact(ctx, tensors, metrics, summary, repairs, maxLearningRate: maxLearningRate)]
    }

    /// The predictions artifact (both paths): tensors, metadata `metrics`, `summary`, `repairs` (also logged),
    /// `learning_rate` and, when known, `max_learning_rate`.
    func artifact(_ ctx: StageContext, _ tensors: [Tensor], _ metrics: [String: JSONValue],
                  _ summary: [String: JSONValue], _ repairs: [String], maxLearningRate: Double?,
                  extra: [String: JSONValue] = [:]) -> ArtifactFile {
        for r in repairs { ctx.reporter.log("repair: " + r) }
        var meta = ctx.metadata(kind: Self.name).merging(extra) { $1 }
        meta["metrics"] = .object(metrics)
        meta["summary"] = .object(summary)
        meta["repairs"] = .array(repairs.map { .string($0) })
        meta["learning_rate"] = .double(learningRate)
        if let maxLearningRate { meta["max_learning_rate"] = .double(maxLearningRate) }
        return ArtifactFile(kind: .predictions, metadata: meta, tensors: tensors)
    }

    /// The tensors, metrics and summary numbers of one mode's predictions at each of `times`: means [T, m, k],
    /// variances [T, m] (if given), test accuracy and MSE [T].
    func record(_ mode: EnsemblePredictor.Mode, _ results: [(mean: [Double], variance: [Double]?)],
                _ ds: DatasetArtifact, tensors: inout [Tensor], metrics: inout [String: JSONValue],
                summary: inout [String: JSONValue], _ reporter: Reporter) throws {
        let (m, k) = (ds.nTest, ds.outputs)
        var means: [Double] = [], vars: [Double] = [], accuracies: [Double] = [], errors: [Double] = []
        var rows: [JSONValue] = []
        for (t, r) in zip(times, results) {
            guard r.mean.allSatisfy(\.isFinite), r.variance?.allSatisfy(\.isFinite) ?? true else {
                throw NTKError("\(mode.rawValue) predictions are not finite at t = \(t.map { "\($0)" } ?? "∞")")
            }
            means += r.mean
            if let v = r.variance { vars += v }
            let acc = Scores.accuracy(r.mean, k: k, labels: ds.labelsTest, classes: ds.classes)
            let mse = Scores.mse(r.mean, ds.yTest)
            rows.append(.object(["t": t.map { .double($0) } ?? .string("inf"), "test_accuracy": .double(acc),
                                 "test_mse": .double(mse)]))
            accuracies.append(acc)
            errors.append(mse)
            // the report's names (as `evaluate`'s): ntkgp_/nngp_infinite_test_accuracy, …_test_accuracy_t100
            let name = mode == .ntk ? "ntkgp" : "nngp", at = t.map { "_t" + SVGPlot.short($0) }
            summary[at.map { name + "_test_accuracy" + $0 } ?? name + "_infinite_test_accuracy"] = .double(acc)
            summary[at.map { name + "_test_mse" + $0 } ?? name + "_infinite_test_mse"] = .double(mse)
            reporter.log(String(format: "%@ t=%@: test accuracy %.4f, MSE %.5f", mode == .ntk ? "NTK-GP" : "NNGP  ",
                                t.map { String(format: "%g", $0) } ?? "∞", acc, mse))
        }
        tensors.append(Tensor(name: "\(mode.rawValue)_mean_test", shape: [times.count, m, k], values: means))
        if !vars.isEmpty {
            tensors.append(Tensor(name: "\(mode.rawValue)_var_test", shape: [times.count, m], values: vars))
        }
        tensors.append(Tensor(name: "\(mode.rawValue)_test_accuracy", shape: [times.count], values: accuracies))
        tensors.append(Tensor(name: "\(mode.rawValue)_test_mse", shape: [times.count], values: errors))
        metrics[mode.rawValue] = .array(rows)
    }

    /// On a process grid, from distributed kernels (`DistributedKernelsArtifact`): the NTK-GP and NNGP means and
    /// variances by ScaLAPACK (`DistributedPredict`: Cholesky solves for t = ∞ alone, eigendecompositions otherwise,
    /// with `max_learning_rate` in the metadata); each process reads only its own tile; process 0 writes the (small)
    /// predictions artifact: the tensors and metrics of a single-process run, the variances always (the manifest
    /// carries K(x, x) of the test set). With mixed times, t = ∞ too comes from the eigendecompositions (1/λ,
    /// negative λ clipped) where one process solves by Cholesky: the two agree to the kernel's conditioning.
    func runDistributed(_ ctx: StageContext, _ grid: ProcessGrid) throws -> [ArtifactFile] {
        if let (tpath, _) = try ctx.artifacts(.trained).first {
            throw NTKError("the closed form of a trained network needs whole kernels; these are distributed", at: tpath,
                           hint: "drop the trained artifact from this stage's deps, or run it without --ranks")
        }
        let (dpath, dfile) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: dfile, path: dpath)
        let (kpath, kfile) = try ctx.artifact(.kernels)  // a manifest of tiles (`run` checked)
        let (n, m) = (ds.nTrain, ds.nTest)
        // this process's share: the four kernels, then (finite times) about five [n, n] and four [n, m] blocks
        let words = times == [nil] ? 2 * n * n + 4 * n * m : 5 * n * n + 6 * n * m
        let share = (words + grid.size - 1) / grid.size
        if let excess = MemoryBudget.excess([share, 8]) {
            throw NTKError("this process's share of the predictions from \(n) training and \(m) test samples \(excess)",
                           hint: "use more processes (mpirun -np), or times: [inf] (no eigendecompositions)")
        }
        let names: Set<String> = ["nngp_train_train", "ntk_train_train", "nngp_train_test", "ntk_train_test"]
        var tiles = try DistributedKernelsArtifact.readTiles(kfile, path: kpath, grid: grid, names: names)
        func take(_ name: String, _ shape: [Int]) throws -> BlockCyclicMatrix {
            guard let t = tiles.removeValue(forKey: name), [t.globalRows, t.globalCols] == shape else {
                throw NTKError("the distributed kernels have no \(name) of shape \(shape) — made from another dataset?",
                               at: kpath)
            }
            return t
        }
        var kXX = try take("nngp_train_train", [n, n]), thetaXX = try take("ntk_train_train", [n, n])
        let kXT = try take("nngp_train_test", [n, m])
        var thetaXT = try take("ntk_train_test", [n, m])
        guard let diagonal = kfile.tensor("nngp_test_test_diagonal")?.doubles(), diagonal.count == m else {
            throw NTKError("the manifest has no nngp_test_test_diagonal [\(m)]", at: kpath)
        }
        let y = Matrix(rows: n, cols: ds.outputs, data: ds.yTrain)
        var ntk: [(mean: [Double], variance: [Double]?)], nngp: [(mean: [Double], variance: [Double]?)]
        var lambdaMax: Double?, repairs: [String] = []
        if times == [nil] {  // Cholesky solves only
            let r = try DistributedPredict.infinite(grid: grid, kXX: &kXX, thetaXX: &thetaXX, kXT: kXT,
                                                    thetaXT: &thetaXT, y: y, kTTDiagonal: diagonal, diagReg: diagReg)
            (ntk, nngp) = ([(r.ntkMean.data, r.ntkVariance)], [(r.nngpMean.data, r.nngpVariance)])
        } else {  // eigendecompositions
            let r = try DistributedPredict.atTimes(times, learningRate: learningRate, grid: grid, kXX: &kXX,
                                                   thetaXX: &thetaXX, kXT: kXT, thetaXT: thetaXT, y: y,
                                                   kTTDiagonal: diagonal, diagReg: diagReg)
            ntk = r.ntk.map { ($0.mean.data, $0.variance) }
            nngp = r.nngp.map { ($0.mean.data, $0.variance) }
            lambdaMax = r.lambdaMax
            repairs = r.repairs
        }
        guard grid.rank == 0 else { return [] }
        var tensors = [Tensor(name: "times", shape: [times.count], values: times.map { $0 ?? .infinity })]
        var metrics: [String: JSONValue] = [:], summary: [String: JSONValue] = [:]
        try record(.ntk, ntk, ds, tensors: &tensors, metrics: &metrics, summary: &summary, ctx.reporter)
        try record(.nngp, nngp, ds, tensors: &tensors, metrics: &metrics, summary: &summary, ctx.reporter)
        let maxLearningRate = lambdaMax.map {
            GradientDescentMSE.maxLearningRate(lambdaMax: $0, entries: Double(n * ds.outputs))
        }
        return [artifact(ctx, tensors, metrics, summary, repairs, maxLearningRate: maxLearningRate,
                         extra: ["processes": .int(grid.size)])]
    }

    /// f_t = f₀ + (closed form) at each recorded step of a trained artifact: exact discrete gradient descent for MSE
    /// ((I − ηΘ̂/(nk))^s, traced or full kernel), the Dormand–Prince flow for cross-entropy; with RMSEs against the
    /// network's and the linearization's recorded test outputs.
    func closedForm(_ t: ArtifactFile, path: String, kernel: (String, Int, Int) throws -> Matrix, traced: Bool, y: Matrix, n: Int, m: Int, k: Int,
                    tensors: inout [Tensor], metrics: inout [String: JSONValue], repairs: inout [String], ctx: StageContext) throws {
        guard let steps = t.tensor("steps")?.integers(), steps.first == 0, let fxTrain = t.tensor("fx_train"), let fxTest = t.tensor("fx_test"),
              fxTrain.shape == [steps.count, n, k], fxTest.shape == [steps.count, m, k] else {
            throw NTKError("trained artifact without records from step 0 of this dataset's shape", at: path)
        }
        guard case .object(let tr)? = t.param("train") else { throw NTKError("trained artifact without its train params", at: path) }
        let lr = t.metadata["effective_learning_rate"]?.number ?? tr["learning_rate"]?.number ?? 1
        let loss: Loss = { if case .string(let v)? = tr["loss"], let l = Loss(rawValue: v) { return l }; return .mse }()
        let rk = traced ? n : n * k, ck = traced ? m : m * k
        let ktt = try kernel("ntk_train_train", rk, rk), kst = try kernel("ntk_test_train", ck, rk)
        let ftr = fxTrain.doubles(), fte = fxTest.doubles()
        let f0 = Matrix(rows: n, cols: k, data: Array(ftr[0..<n * k])), g0 = Matrix(rows: m, cols: k, data: Array(fte[0..<m * k]))
        let closed = try ClosedFormDynamics(ktt: try PreparedKernel(ktt, name: "ntk_train_train"), kst: kst, y: y, f0: f0, g0: g0, steps: steps, learningRate: lr, loss: loss)
        let closedTrain = closed.train, closedTest = closed.test
        repairs += closed.repairs
        tensors.append(Tensor(name: "closed_steps", shape: [steps.count], int32: steps.map { Int32($0) }))
        tensors.append(Tensor(name: "closed_fx_train", shape: [steps.count, n, k], values: closedTrain.flatMap(\.data)))
        tensors.append(Tensor(name: "closed_fx_test", shape: [steps.count, m, k], values: closedTest.flatMap(\.data)))
        let linTest = t.tensor("lin_fx_test")?.doubles()
        var rows: [JSONValue] = []
        for (i, s) in steps.enumerated() {
            let range = i * m * k..<(i + 1) * m * k
            var row: [String: JSONValue] = ["step": .int(s), "rmse_closed_vs_network": .double(Scores.rmse(fte[range], closedTest[i].data))]
            if let linTest {
                row["rmse_closed_vs_linearized"] = .double(Scores.rmse(linTest[range], closedTest[i].data))
                row["rmse_network_vs_linearized"] = .double(Scores.rmse(fte[range], linTest[range]))
            }
            rows.append(.object(row))
        }
        metrics["closed_form"] = .array(rows)
        if case .object(let last)? = rows.last {
            ctx.reporter.log("closed form with this kernel vs the trained network at step \(steps.last!): test RMSE \(last["rmse_closed_vs_network"]!.canonical)"
                             + (last["rmse_closed_vs_linearized"].map { ", vs the trained linearization \($0.canonical)" } ?? ""))
        }
    }
}
