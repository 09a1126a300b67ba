import Foundation
import NTK

/// `predict`: closed-form predictions of infinitely wide networks trained by gradient descent on MSE, from a
/// dataset and a kernels artifact: the NTK-GP (Eqs. 14–16: mean and variance of an infinite ensemble trained for
/// time t) and the NNGP (only the read-out trained; t = ∞ is the Bayesian posterior, Eq. 13), at each time in
/// `predict.times` (continuous time in steps of `learning_rate`; `inf` for ∞).
///
/// Output (kind `predictions`): `times` [T]; `ntk_mean_test`, `nngp_mean_test` [T, m, k]; `ntk_var_test`,
/// `nngp_var_test` [T, m] (with nngp_test_test in the kernels); metadata `metrics`: test accuracy and MSE per
/// mode and time, and any kernel repairs.
///
/// Params `predict`: `learning_rate` (1.0), `times` ([1, 10, 100, 1000, inf]), `diag_reg` (0; relative to the
/// mean diagonal, as neural-tangents).
public struct PredictStage: StageKind {
    public static let name = "predict"
    public static let algorithmVersion = 1
    public static let summary = "NTK-GP and NNGP predictions in closed form → predictions artifact"
    public static let outputs: [ArtifactKind] = [.predictions]

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
        let ens = try EnsemblePredictor(nngpTrainTrain: try kernel("nngp_train_train", n, n), ntkTrainTrain: try kernel("ntk_train_train", n, n),
                                        yTrain: y, learningRate: learningRate, diagReg: diagReg)
        let ntd = try kernel("ntk_test_train", m, n), gtd = try kernel("nngp_test_train", m, n)
        let gtt = kfile.tensor("nngp_test_test") != nil ? try kernel("nngp_test_test", m, m) : nil
        let classOf = Dictionary(uniqueKeysWithValues: ds.classes.enumerated().map { (Int32($0.element), $0.offset) })

        var tensors: [Tensor] = [Tensor(name: "times", shape: [times.count], values: times.map { $0 ?? .infinity })]
        var metrics: [String: JSONValue] = [:]
        for mode in EnsemblePredictor.Mode.allCases {
            var means: [Double] = [], vars: [Double] = []
            var rows: [JSONValue] = []
            for t in times {
                let g = try ens.predict(mode, t: t, ntkTestTrain: ntd, nngpTestTrain: gtd, nngpTestTest: gtt)
                guard g.mean.data.allSatisfy(\.isFinite) else { throw NTKError("\(mode.rawValue) predictions are not finite at t = \(t.map { "\($0)" } ?? "∞")") }
                means += g.mean.data
                if let c = g.covariance { vars += c.diagonal }
                let acc = accuracy(g.mean, labels: ds.labelsTest, classOf: classOf)
                let mse = 0.5 * (g.mean - yTest).data.reduce(0) { $0 + $1 * $1 } / Double(m * k)
                rows.append(.object(["t": t.map { .double($0) } ?? .string("inf"), "test_accuracy": .double(acc), "test_mse": .double(mse)]))
                ctx.reporter.log(String(format: "%@ t=%@: test accuracy %.4f, MSE %.5f", mode == .ntk ? "NTK-GP" : "NNGP  ", t.map { String(format: "%g", $0) } ?? "∞", acc, mse))
            }
            tensors.append(Tensor(name: "\(mode.rawValue)_mean_test", shape: [times.count, m, k], values: means))
            if !vars.isEmpty { tensors.append(Tensor(name: "\(mode.rawValue)_var_test", shape: [times.count, m], values: vars)) }
            metrics[mode.rawValue] = .array(rows)
        }
        for r in ens.repairs { ctx.reporter.log("repair: " + r) }
        var meta = ctx.metadata(kind: Self.name)
        meta["metrics"] = .object(metrics)
        meta["repairs"] = .array(ens.repairs.map { .string($0) })
        meta["learning_rate"] = .double(learningRate)
        return [ArtifactFile(kind: .predictions, metadata: meta, tensors: tensors)]
    }

    /// Fraction of test samples whose predicted class is right: argmax over k > 1 outputs, the sign for ±1 targets.
    func accuracy(_ mean: Matrix, labels: [Int32], classOf: [Int32: Int]) -> Double {
        var right = 0
        for i in 0..<mean.rows {
            let predicted: Int
            if mean.cols == 1 { predicted = mean[i, 0] > 0 ? 1 : 0 } else {
                predicted = (0..<mean.cols).max { mean[i, $0] < mean[i, $1] }!
            }
            if classOf[labels[i]] == predicted { right += 1 }
        }
        return Double(right) / Double(max(mean.rows, 1))
    }
}
