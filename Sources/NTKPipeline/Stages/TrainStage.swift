import Foundation
import NTK

/// `train`: trains the network of a `params` artifact on a `dataset` artifact (`params.train`, `seed` for SGD
/// shuffling) and records, at log-spaced steps (4 per decade) and the last: continuous time t = η·step, train and
/// test loss and accuracy, f(X_train), f(X_test), and ‖θˡ_t − θˡ_0‖_F/‖θˡ_0‖_F per layer (Figure 1's quantity).
///
/// Output (kind `trained`): `final_W0, final_b0, …` (θ_T, neural-tangents layout); `steps` [R] (int32), `time`,
/// `train_loss`, `test_loss`, `train_accuracy`, `test_accuracy` [R]; `fx_train` [R, n, k], `fx_test` [R, m, k];
/// `relative_change` [R, L] (one column per dense or conv layer, named in the metadata's `relative_change_layers`,
/// e.g. "W0 dense layers[1]"); and with `linearize: true` (the default) the same records of the linearized
/// network, prefixed `lin_`, trained on the same batches (PAPER Eq. 5: "train and linearize").
///
/// `train`: `loss` (mse | cross_entropy), `learning_rate`, `steps`, `batch_size` (null: full batch),
/// `momentum` (0), `lr_scale_w` / `lr_scale_b` (one multiplier per dense or conv layer, PAPER §1.6), `dtype` (float32 | float64),
/// `checkpoint_every` (steps between checkpoints; a killed run resumes from the last one and ends identical).
/// Artifacts hold no timings, so the same inputs always give the same bytes (speed is logged instead).
/// Divergence (NaN/Inf, or the loss growing 10⁴×) stops the run with a suggested stable learning rate.
public struct TrainStage: StageKind {
    public static let name = "train"
    public static let algorithmVersion = 3
    public static let summary = "train the network and its linearization (GD/SGD/momentum; MSE/CE) with log-spaced records → trained artifact"
    public static let outputs: [ArtifactKind] = [.trained]

    public private(set) var config: TrainingConfig
    /// `mean` (the loss averaged over the n·k outputs, neural-tangents' convention) or `sum` (the paper's equations:
    /// the total loss, so η acts per sample — implemented as η·n·k on the mean loss, recorded as
    /// `effective_learning_rate`; with minibatches the mean over the batch is scaled by the full n·k).
    public enum Reduction: String, CaseIterable, Sendable { case mean, sum }
    public let reduction: Reduction
    public let dtype: DataConfig.Precision
    public let checkpointEvery: Int
    /// Also train the linearization f_lin = f₀ + J₀(θ − θ₀) on the same batches ("train and linearize").
    public let linearize: Bool
    /// Where the settings live (`train`, or e.g. `fig3.train`), for error messages.
    let key: String

    public init(params: StageParams) throws {
        var r = try params.reader("train")
        key = "params." + params.resolve("train")
        var c = TrainingConfig()
        c.loss = try r.choice("loss", default: .mse)
        c.learningRate = try r.double("learning_rate", default: 1)
        c.steps = try r.int("steps", default: 1000, min: 0)!
        c.batchSize = try r.int("batch_size", min: 1)
        c.momentum = try r.double("momentum", default: 0)
        func scales(_ key: String) throws -> [Double]? {
            guard let v = r.raw(key) else { return nil }
            guard case .array(let a) = v else { throw r.fail(key, "expected a list with one multiplier per dense or conv layer") }
            return try a.map {
                switch $0 {
                case .int(let i): return Double(i)
                case .double(let d): return d
                default: throw r.fail(key, "expected numbers, found \($0.canonical)")
                }
            }
        }
        c.lrScaleW = try scales("lr_scale_w")
        c.lrScaleB = try scales("lr_scale_b")
        dtype = try r.choice("dtype", default: .float32)
        checkpointEvery = try r.int("checkpoint_every", default: 500, min: 1)!
        linearize = try r.bool("linearize", default: true)
        reduction = try r.choice("reduction", default: .mean)
        try r.finish()
        guard c.learningRate > 0 else { throw r.fail("learning_rate", "must be > 0") }
        c.seed = UInt64(bitPattern: Int64(try params.int("seed", default: 0)))
        config = c
    }

    public var requiredDeps: [String] { [] }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        let (dpath, dfile) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: dfile, path: dpath)
        let (ppath, pfile) = try ctx.artifact(.params)
        let params = try ParamsArtifact(file: pfile, path: ppath)
        try ds.check(params.network, at: ppath)
        for (key, list) in [("lr_scale_w", config.lrScaleW), ("lr_scale_b", config.lrScaleB)] {
            let layers = params.network.parameters
            if let list, list.count != layers.count {
                throw NTKError("needs \(layers.count) multipliers, one per dense or conv layer (\(layers.map { "\($0.path) \($0.kind)" }.joined(separator: ", "))), found \(list.count)",
                               key: "\(self.key).\(key)")
            }
        }
        var me = self
        if reduction == .sum { me.config.learningRate *= Double(ds.nTrain * ds.outputs) }
        switch dtype {
        case .float32: return [try me.train(Float.self, ds, params, ctx)]
        case .float64: return [try me.train(Double.self, ds, params, ctx)]
        }
    }

    func train<T: NTKFloat>(_: T.Type, _ ds: DatasetArtifact, _ p: ParamsArtifact, _ ctx: StageContext) throws -> ArtifactFile {
        let k = ds.outputs
        let classOf = Dictionary(uniqueKeysWithValues: ds.classes.enumerated().map { (Int32($0.element), $0.offset) })
        func makeTrainer(_ model: TrainedModel) -> Trainer<T> {
            Trainer<T>(network: p.network, theta0: p.theta,
                       xTrain: Matrix(rows: ds.nTrain, cols: ds.features, data: ds.xTrain), yTrain: Matrix(rows: ds.nTrain, cols: k, data: ds.yTrain),
                       xTest: Matrix(rows: ds.nTest, cols: ds.features, data: ds.xTest), yTest: Matrix(rows: ds.nTest, cols: k, data: ds.yTest),
                       labelsTrain: ds.labelsTrain.map { classOf[$0] ?? -1 }, labelsTest: ds.labelsTest.map { classOf[$0] ?? -1 },
                       config: config, model: model)
        }
        // The network and (optionally) its linearization, stepped together: same seed, same batches.
        let trainers = [makeTrainer(.network)] + (linearize ? [makeTrainer(.linearized)] : [])
        let prefixes = ["", "lin_"]
        var records = [[TrainingRecord]](repeating: [], count: trainers.count)
        if let f = ctx.checkpoints?.load("train") {
            var restored = 0
            for (i, t) in trainers.enumerated() {
                if let s = Self.state(from: f, prefix: prefixes[i]) {
                    t.restore(s)
                    records[i] = Self.records(from: f, prefix: prefixes[i], n: ds.nTrain, m: ds.nTest, k: k)
                    restored += 1
                }
            }
            if restored == trainers.count { ctx.reporter.log("resumed training at step \(trainers[0].step) of \(config.steps) from a checkpoint") } else {
                for t in trainers { t.restore(Self.freshState(t)) }
                records = [[TrainingRecord]](repeating: [], count: trainers.count)
            }
        }
        let logAt = Set(config.logSteps)
        let task = ctx.reporter.begin(linearize ? "training network and linearization, \(T.dtypeName)" : "training \(T.dtypeName)",
                                      total: max(config.steps, 1), unit: "steps")
        let started = Date()
        task.update(trainers[0].step)   // where this run starts: the rate counts only the steps it makes
        while true {
            let step = trainers[0].step
            if logAt.contains(step) && records[0].last?.step != step {
                for (i, t) in trainers.enumerated() { records[i].append(t.record()) }
            }
            if step >= config.steps { break }
            var losses: [Double] = []
            for (i, t) in trainers.enumerated() {
                do { losses.append(try t.stepOnce()) } catch let d as TrainingDiverged {
                    throw NTKError("training \(i == 0 ? "the network" : "the linearized network") diverged at step \(d.step): the loss is \(d.loss.isFinite ? String(format: "%.3g", d.loss) : "\(d.loss)") with learning rate \(config.learningRate)",
                                   key: key + ".learning_rate", hint: suggestion(ds, p))
                }
            }
            let now = trainers[0].step
            if now % checkpointEvery == 0 && now < config.steps, let store = ctx.checkpoints {
                try store.save("train", trainers.enumerated().flatMap { i, t in Self.tensors(t.state, records: records[i], prefix: prefixes[i]) })
            }
            if now % max(1, config.steps / 100) == 0 {
                let f = losses.map { String(format: "%.4g", $0) }
                task.update(now, note: "loss " + f[0] + (f.count > 1 ? " (lin " + f[1] + ")" : ""))
            }
        }
        task.finish()
        let secs = Date().timeIntervalSince(started)
        for (i, rs) in records.enumerated() {
            guard let last = rs.last else { continue }
            ctx.reporter.log(String(format: "%@ step %d (t = %g): train loss %.5f%@%@", i == 0 ? "network:   " : "linearized:", last.step, last.time, last.trainLoss,
                                    last.testLoss.map { String(format: ", test loss %.5f", $0) } ?? "",
                                    last.testAccuracy.map { String(format: ", test accuracy %.4f", $0) } ?? ""))
        }
        if records.count == 2, let a = records[0].last, let b = records[1].last, !a.fxTest.isEmpty {
            let rmse = (zip(a.fxTest, b.fxTest).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(a.fxTest.count)).squareRoot()
            ctx.reporter.log(String(format: "RMSE between the network's and the linearization's test outputs at step %d: %.3g; %.1f steps/s", a.step, rmse,
                                    secs > 0 ? Double(config.steps) / secs : 0))
        }
        var meta = ctx.metadata(kind: Self.name)
        meta["network"] = p.networkJSON
        meta["relative_change_layers"] = .array(Self.parameterNames(p.network).map { .string($0) })
        meta["dtype"] = .string(T.dtypeName)
        meta["linearized"] = .bool(linearize)
        meta["effective_learning_rate"] = .double(config.learningRate)
        let final = ParamsArtifact(network: p.network, theta: trainers[0].state.theta)
        return ArtifactFile(kind: .trained, metadata: meta, tensors: final.tensors(prefix: "final_")
            + records.enumerated().flatMap { i, rs in Self.recordTensors(rs, prefix: prefixes[i], n: ds.nTrain, m: ds.nTest, k: k) })
    }

    /// The stable-learning-rate hint: for MSE, 2·N·k/λ_max of the traced empirical NTK at θ₀, estimated on up to
    /// 512 training points and scaled by N/512 (the top eigenvalue of a kernel Gram matrix grows ∝ N).
    func suggestion(_ ds: DatasetArtifact, _ p: ParamsArtifact) -> String {
        let n = min(ds.nTrain, 512)
        let x = Matrix(rows: n, cols: ds.features, data: Array(ds.xTrain.prefix(n * ds.features)))
        let k = Matrix(rows: n, cols: n, data: EmpiricalNTK<Double>(network: p.network, theta: p.theta).compute(x1: x).ntk)
        guard let top = try? LAPACK.eigh(k).values.last, top > 0 else { return "try a smaller learning rate" }
        let lambda = top * Double(ds.nTrain) / Double(n)
        let lr = 2 * Double(ds.nTrain * ds.outputs) / lambda
        return String(format: "for MSE, gradient descent is stable below 2·N·k/λ_max ≈ %.3g (λ_max of the empirical NTK at θ₀, estimated on %d training points, scaled by N/%d)%@",
                      lr, n, n, config.loss == .mse ? "" : "; for cross-entropy use it as a guide")
    }

    /// Names of the parameter layers, W-index first: "W0 dense layers[1]" — the columns of `relative_change`.
    static func parameterNames(_ net: Network) -> [String] {
        net.parameters.enumerated().map { "W\($0.offset) \($0.element.kind.rawValue) \($0.element.path)" }
    }

    // MARK: records and state as tensors (the artifact and the checkpoint share the format)

    static func recordTensors(_ rs: [TrainingRecord], prefix p: String = "", n: Int, m: Int, k: Int) -> [Tensor] {
        let r = rs.count, layers = rs.first?.relativeChange.count ?? 0
        return [
            Tensor(name: p + "steps", shape: [r], int32: rs.map { Int32($0.step) }),
            Tensor(name: p + "time", shape: [r], values: rs.map(\.time)),
            Tensor(name: p + "train_loss", shape: [r], values: rs.map(\.trainLoss)),
            Tensor(name: p + "test_loss", shape: [r], values: rs.map { $0.testLoss ?? .nan }),
            Tensor(name: p + "train_accuracy", shape: [r], values: rs.map { $0.trainAccuracy ?? .nan }),
            Tensor(name: p + "test_accuracy", shape: [r], values: rs.map { $0.testAccuracy ?? .nan }),
            Tensor(name: p + "fx_train", shape: [r, n, k], values: rs.flatMap(\.fxTrain)),
            Tensor(name: p + "fx_test", shape: [r, m, k], values: rs.flatMap(\.fxTest)),
            Tensor(name: p + "relative_change", shape: [r, layers], values: rs.flatMap(\.relativeChange)),
        ]
    }

    static func records(from f: ArtifactFile, prefix p: String = "", n: Int, m: Int, k: Int) -> [TrainingRecord] {
        guard let steps = f.tensor(p + "steps")?.integers() else { return [] }
        let time = f.tensor(p + "time")!.doubles(), tl = f.tensor(p + "train_loss")!.doubles(), vl = f.tensor(p + "test_loss")!.doubles()
        let ta = f.tensor(p + "train_accuracy")!.doubles(), va = f.tensor(p + "test_accuracy")!.doubles()
        let ftr = f.tensor(p + "fx_train")!.doubles(), fte = f.tensor(p + "fx_test")!.doubles(), rc = f.tensor(p + "relative_change")!
        let layers = rc.shape.count == 2 ? rc.shape[1] : 0
        let rcv = rc.doubles()
        func opt(_ v: Double) -> Double? { v.isNaN ? nil : v }
        return steps.indices.map { i in
            TrainingRecord(step: steps[i], time: time[i], trainLoss: tl[i], testLoss: opt(vl[i]), trainAccuracy: opt(ta[i]), testAccuracy: opt(va[i]),
                           fxTrain: Array(ftr[i * n * k..<(i + 1) * n * k]), fxTest: Array(fte[i * m * k..<(i + 1) * m * k]),
                           relativeChange: Array(rcv[i * layers..<(i + 1) * layers]))
        }
    }

    static func tensors(_ s: TrainingState, records: [TrainingRecord], prefix p: String) -> [Tensor] {
        let n = records.first?.fxTrain.count ?? 0, m = records.first?.fxTest.count ?? 0
        return [
            Tensor(name: p + "state_theta", shape: [s.theta.count], values: s.theta),
            Tensor(name: p + "state_velocity", shape: [s.velocity.count], values: s.velocity),
            Tensor(name: p + "state_order", shape: [s.order.count], int32: s.order.map { Int32($0) }),
            Tensor(name: p + "state_scalars", shape: [4], values: [Double(s.step), Double(s.position), Double(bitPattern: s.rngState), s.initialLoss ?? .nan]),
        ] + recordTensors(records, prefix: p, n: n, m: m, k: 1)
    }

    static func freshState<T>(_ t: Trainer<T>) -> TrainingState {
        TrainingState(step: 0, theta: t.theta0, velocity: [Double](repeating: 0, count: t.theta0.count), rngState: t.config.seed,
                      order: Array(0..<t.nTrain), position: t.nTrain, initialLoss: nil)
    }

    static func state(from f: ArtifactFile, prefix p: String) -> TrainingState? {
        guard let th = f.tensor(p + "state_theta"), let v = f.tensor(p + "state_velocity"), let o = f.tensor(p + "state_order")?.integers(),
              let sc = f.tensor(p + "state_scalars")?.doubles(), sc.count == 4 else { return nil }
        return TrainingState(step: Int(sc[0]), theta: th.doubles(), velocity: v.doubles(), rngState: sc[2].bitPattern, order: o,
                             position: Int(sc[1]), initialLoss: sc[3].isNaN ? nil : sc[3])
    }
}
