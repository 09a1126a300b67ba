import Foundation
import NTK

/// `evaluate`: puts side by side, on the same data and the same θ₀ (PAPER Figure 3 and §4), at every recorded step
/// of a `trained` artifact:
/// - `network`: the network trained in weight space, and `linearized`: its linearization trained on the same
///   batches (both from the trained artifact);
/// - `closed_empirical`: the linearized dynamics in closed form (Eqs. 8–11) with the empirical Θ̂₀ — from an
///   `empirical_kernels` artifact at θ₀ among the deps;
/// - `closed_analytic`: the same closed form with the infinite-width Θ (an `analytic_kernels` artifact), from the
///   network's own f₀;
/// - `ntkgp`, `nngp`: the mean of the infinite ensemble (Eq. 14) and the NNGP read-out-only mean (S22), MSE only.
///
/// Output (kind `evaluation`), with R records, S sample test points, k outputs:
/// `steps` [R] (int32), `time` [R] (t = η·step); per model M: `train_loss_M`, `test_loss_M`, `test_accuracy_M` [R]
/// (loss as trained: ½·mean MSE or mean cross-entropy), `samples_M` [R, S, k] (outputs at the first S test points);
/// per pair of models A, B: `rmse_A__B` [R] (√mean over test points and outputs); `weight_change` [R, L] and
/// `lin_weight_change` (‖θˡ_t − θˡ₀‖/‖θˡ₀‖ per dense or conv layer, input layer first, named in the metadata's
/// `weight_change_layers`: `W0_dense`, `W1_conv`, …). Metadata `summary` holds the scalars at the last
/// step (the same names, plus `weight_change_W<l>_<kind>`, `ntk_change`/`nngp_change` = ‖Θ̂_T − Θ̂₀‖_F/‖Θ̂₀‖_F with an
/// `empirical_kernels` artifact at θ_T among the deps, `output_scale` = √mean y², the t = ∞ accuracies of the
/// NTK-GP and the NNGP posterior, and per pair `max_gap_test_accuracy_A__B` / `max_gap_test_loss_A__B`: the largest
/// |difference| of the two test curves over the records); `settings` merges the params recorded by every dep.
///
/// More `trained` artifacts among the deps (e.g. the same network in another parameterization, Figure S8) join as
/// models `network_b`, `network_c`, … (their stage names in metadata `model_labels`).
///
/// Params `evaluate` (optional): `samples` (4), `closed_form` (true; false skips the closed forms and the GP means,
/// e.g. for minibatches or momentum, whose dynamics the MSE closed form does not describe).
public struct EvaluateStage: StageKind {
    public static let name = "evaluate"
    public static let algorithmVersion = 1
    public static let summary = "network vs linearization vs closed form (Θ̂₀, Θ) vs NTK-GP/NNGP over training time → evaluation artifact"
    public static let outputs: [ArtifactKind] = [.evaluation]

    public let samples: Int
    public let withClosedForms: Bool

    public init(params: StageParams) throws {
        let key = params.resolve("evaluate")
        if params.anyKey || params.declared.contains(key), params.values.at(path: key) != nil {
            var r = try params.reader("evaluate")
            samples = try r.int("samples", default: 4, min: 1)!
            withClosedForms = try r.bool("closed_form", default: true)
            try r.finish()
        } else { samples = 4; withClosedForms = true }
    }

    public var requiredDeps: [String] { [] }

    /// One model's outputs at every record: [R] arrays of [n·k] and [m·k].
    struct Series { var train: [[Double]]; var test: [[Double]] }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        let (dpath, dfile) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: dfile, path: dpath)
        let trainedAll = try ctx.artifacts(.trained)
        guard let (tpath, t) = trainedAll.first else { throw NTKError("needs a 'trained' artifact among its deps", key: "stages.\(ctx.stage).deps") }
        let n = ds.nTrain, m = ds.nTest, k = ds.outputs
        guard let steps = t.tensor("steps")?.integers(), steps.first == 0, let time = t.tensor("time")?.doubles(),
              let fxTrain = t.tensor("fx_train"), fxTrain.shape == [steps.count, n, k], t.tensor("fx_test")?.shape == [steps.count, m, k] else {
            throw NTKError("needs a trained artifact with records from step 0 on this dataset (\(n) train, \(m) test, \(k) outputs)", at: tpath)
        }
        let r = steps.count
        func split(_ name: String, _ rows: Int) -> [[Double]]? {
            guard let v = t.tensor(name)?.doubles() else { return nil }
            return (0..<r).map { Array(v[$0 * rows * k..<($0 + 1) * rows * k]) }
        }
        guard case .object(let train)? = t.param("train") else {
            throw NTKError("trained artifact without its train params", at: tpath)
        }
        let lr = t.metadata["effective_learning_rate"]?.number ?? train["learning_rate"]?.number ?? 1
        let loss: Loss = { if case .string(let v)? = train["loss"], let l = Loss(rawValue: v) { return l }; return .mse }()

        // The models, in a fixed order.
        var models: [(String, Series)] = [("network", Series(train: split("fx_train", n)!, test: split("fx_test", m)!))]
        if let a = split("lin_fx_train", n), let b = split("lin_fx_test", m) { models.append(("linearized", Series(train: a, test: b))) }
        var labels: [String: JSONValue] = [:]
        for (i, other) in trainedAll.dropFirst().enumerated() {
            guard other.file.tensor("steps")?.integers() == steps, let a = other.file.tensor("fx_train"), let b = other.file.tensor("fx_test"),
                  a.shape == [r, n, k], b.shape == [r, m, k] else {
                throw NTKError("records at other steps or of another dataset than \(tpath)'s; train both with the same steps", at: other.path)
            }
            let (av, bv) = (a.doubles(), b.doubles())
            let name = "network_" + String(UnicodeScalar(UInt8(98 + i)))
            models.append((name, Series(train: (0..<r).map { Array(av[$0 * n * k..<($0 + 1) * n * k]) }, test: (0..<r).map { Array(bv[$0 * m * k..<($0 + 1) * m * k]) })))
            labels[name] = other.file.metadata["stage"] ?? .string(name)
        }
        let y = Matrix(rows: n, cols: k, data: ds.yTrain)
        let f0 = Matrix(rows: n, cols: k, data: models[0].1.train[0]), g0 = Matrix(rows: m, cols: k, data: models[0].1.test[0])
        var repairs: [String] = []
        var summary: [String: Double] = [:]
        let kernels = try ctx.artifacts(.kernels)
        func kernelFile(source: String, at: String? = nil) -> (path: String, file: ArtifactFile)? {
            kernels.first { $0.file.metadata["source"] == .string(source) && (at == nil || $0.file.metadata["at"] == .string(at!)) }
        }
        func tensor(_ f: (path: String, file: ArtifactFile), _ name: String, _ rows: Int, _ cols: Int) throws -> Matrix {
            guard let x = f.file.tensor(name), x.shape == [rows, cols] else {
                throw NTKError("needs \(name) of shape [\(rows), \(cols)] — made from another dataset?", at: f.path)
            }
            return Matrix(rows: rows, cols: cols, data: x.doubles())
        }
        /// The closed form with the kernels of `f` (prepared: a kernel whose eigendecomposition exists is reused).
        func closedForm(_ f: (path: String, file: ArtifactFile), prepared: PreparedKernel? = nil) throws -> Series {
            let full = f.file.tensor("ntk_train_train")?.shape == [n * k, n * k] && k > 1
            let (rn, rm) = full ? (n * k, m * k) : (n, m)
            let ktt = try prepared ?? PreparedKernel(try tensor(f, "ntk_train_train", rn, rn), name: "ntk_train_train")
            let c = try ClosedFormDynamics(ktt: ktt, kst: try tensor(f, "ntk_test_train", rm, rn), y: y, f0: f0, g0: g0, steps: steps,
                                           learningRate: lr, loss: loss)
            repairs += c.repairs
            return Series(train: c.train.map(\.data), test: c.test.map(\.data))
        }
        let empirical0 = kernelFile(source: "empirical", at: "theta0"), analytic = kernelFile(source: "analytic")
        if let e = empirical0, withClosedForms { models.append(("closed_empirical", try closedForm(e))) }
        // With the analytic kernels: the closed form with Θ (sharing the NTK-GP's eigendecomposition of Θ for MSE),
        // and the NTK-GP and NNGP means.
        if let a = analytic, withClosedForms {
            var ens: EnsemblePredictor? = nil
            if loss == .mse {
                ens = try EnsemblePredictor(nngpTrainTrain: try tensor(a, "nngp_train_train", n, n), ntkTrainTrain: try tensor(a, "ntk_train_train", n, n),
                                            yTrain: y, learningRate: lr)
            }
            models.append(("closed_analytic", try closedForm(a, prepared: ens?.ntk)))
            if let ens {
                let ntd = try tensor(a, "ntk_test_train", m, n), gtd = try tensor(a, "nngp_test_train", m, n)
                for mode in EnsemblePredictor.Mode.allCases {
                    let tests = try steps.map { try ens.predict(mode, t: Double($0), ntkTestTrain: ntd, nngpTestTrain: gtd, nngpTestTest: nil).mean.data }
                    let trains = try steps.map { try ens.trainMean(mode, t: Double($0)).data }
                    models.append((mode == .ntk ? "ntkgp" : "nngp", Series(train: trains, test: tests)))
                    let inf = try ens.predict(mode, t: nil, ntkTestTrain: ntd, nngpTestTrain: gtd, nngpTestTest: nil).mean.data
                    summary["\(mode == .ntk ? "ntkgp" : "nngp")_infinite_test_accuracy"] = Scores.accuracy(inf, k: k, labels: ds.labelsTest, classes: ds.classes)
                }
                repairs += ens.repairs
            }
        }

        var tensors = [Tensor(name: "steps", shape: [r], int32: steps.map { Int32($0) }), Tensor(name: "time", shape: [r], values: time)]
        func add(_ name: String, _ shape: [Int], _ values: [Double], last: Double? = nil) {
            tensors.append(Tensor(name: name, shape: shape, values: values))
            if let last { summary[name] = last }
        }
        func lossOf(_ f: [Double], _ yv: [Double]) -> Double {
            f.withUnsafeBufferPointer { fp in yv.withUnsafeBufferPointer { loss.evaluate(fp.baseAddress!, $0.baseAddress!, n: f.count / k, k: k, grad: nil) } }
        }
        let s = min(samples, m)
        var curves: [String: (loss: [Double], accuracy: [Double])] = [:]
        for (name, series) in models {
            let trainLoss = series.train.map { lossOf($0, ds.yTrain) }, testLoss = series.test.map { lossOf($0, ds.yTest) }
            let acc = series.test.map { Scores.accuracy($0, k: k, labels: ds.labelsTest, classes: ds.classes) }
            guard (trainLoss + testLoss).allSatisfy(\.isFinite) else {
                throw NTKError("\(name): outputs are not finite (the training or the closed form diverged)", at: tpath)
            }
            add("train_loss_\(name)", [r], trainLoss, last: trainLoss.last)
            add("test_loss_\(name)", [r], testLoss, last: testLoss.last)
            add("test_accuracy_\(name)", [r], acc, last: acc.last)
            add("samples_\(name)", [r, s, k], series.test.flatMap { $0[0..<s * k] })
            curves[name] = (testLoss, acc)
        }
        for i in models.indices { for j in models.indices where j > i {
            let (a, fa) = models[i], (b, fb) = models[j]
            let e = (0..<r).map { Scores.rmse(fa.test[$0], fb.test[$0]) }
            add("rmse_\(a)__\(b)", [r], e, last: e.last)
            // how far apart the two test curves get at any record (Figures 4 and S2 state it)
            let ca = curves[a]!, cb = curves[b]!
            summary["max_gap_test_accuracy_\(a)__\(b)"] = zip(ca.accuracy, cb.accuracy).map { abs($0 - $1) }.max() ?? 0
            summary["max_gap_test_loss_\(a)__\(b)"] = zip(ca.loss, cb.loss).map { abs($0 - $1) }.max() ?? 0
        } }
        for p in ["", "lin_"] {
            guard let w = t.tensor(p + "relative_change"), w.shape.count == 2, w.shape[0] == r else { continue }
            let v = w.doubles(), layers = w.shape[1]
            add(p + "weight_change", w.shape, v)
            for (l, name) in Self.layerKeys(t, count: layers).enumerated() { summary["\(p)weight_change_\(name)"] = v[(r - 1) * layers + l] }
        }
        if let e0 = empirical0, let eT = kernelFile(source: "empirical", at: "thetaT") {
            for name in ["ntk", "nngp"] {
                guard let a = e0.file.tensor(name + "_train_train")?.doubles(), let b = eT.file.tensor(name + "_train_train")?.doubles(), a.count == b.count else {
                    throw NTKError("the empirical kernels at θ₀ and θ_T differ in shape", at: eT.path)
                }
                let num = zip(a, b).reduce(0) { $0 + ($1.1 - $1.0) * ($1.1 - $1.0) }, den = a.reduce(0) { $0 + $1 * $1 }
                summary[name + "_change"] = (num / den).squareRoot()
            }
        }
        summary["output_scale"] = (ds.yTest.reduce(0) { $0 + $1 * $1 } / Double(max(ds.yTest.count, 1))).squareRoot()
        if let e = summary["rmse_network__linearized"] { summary["rmse_network__linearized_relative"] = e / summary["output_scale"]! }

        var meta = ctx.metadata(kind: Self.name)
        meta["summary"] = .object(summary.mapValues { .double($0) })
        meta["models"] = .array(models.map { .string($0.0) })
        if let w = t.tensor("relative_change"), w.shape.count == 2 {
            meta["weight_change_layers"] = .array(Self.layerKeys(t, count: w.shape[1]).map { .string($0) })
        }
        meta["model_labels"] = .object(labels)
        meta["settings"] = Self.settings(ctx)
        repairs = repairs.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }  // a shared kernel reports once
        meta["repairs"] = .array(repairs.map { .string($0) })
        for rp in repairs { ctx.reporter.log("repair: " + rp) }
        let pick = ["rmse_network__linearized", "rmse_network__closed_empirical", "rmse_network__closed_analytic", "test_accuracy_network"]
        ctx.reporter.log("at step \(steps.last!): " + pick.compactMap { key in summary[key].map { String(format: "%@ %.4g", key, $0) } }.joined(separator: ", "))
        return [ArtifactFile(kind: .evaluation, metadata: meta, tensors: tensors)]
    }

    /// The settings of the run: the stage's own params and those every upstream artifact recorded (data, model,
    /// train, kernel, …), merged by their last name (`fig3.train` → `train`), the nearest first.
    /// `W<l>_<kind>` per column of a trained artifact's `relative_change` (from its `relative_change_layers`; artifacts
    /// from before layer lists were fully connected: `W<l>_dense`).
    static func layerKeys(_ t: ArtifactFile, count: Int) -> [String] {
        if case .array(let names)? = t.metadata["relative_change_layers"], names.count == count {
            return names.map { n in
                let parts = (n.text ?? "").split(separator: " ")
                return parts.count >= 2 ? "\(parts[0])_\(parts[1])" : (n.text ?? "")
            }
        }
        return (0..<count).map { "W\($0)_dense" }
    }

    static func settings(_ ctx: StageContext) -> JSONValue {
        var merged: [String: JSONValue] = [:]
        func add(_ p: [String: JSONValue]) {
            for (key, value) in p {
                let name = String(key.split(separator: ".").last ?? Substring(key))
                if merged[name] == nil { merged[name] = value }
            }
        }
        if case .object(let own) = ctx.params.locked { add(own) }
        for f in (try? ctx.artifactDeps().map(\.file)) ?? [] {
            guard case .object(let p)? = f.metadata["params"] else { continue }
            add(p)
            if case .object(let model)? = f.metadata["model"], merged["model"] == nil { merged["model"] = .object(model) }
        }
        return .object(merged)
    }
}
