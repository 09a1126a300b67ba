import Foundation

/// Losses over n·k outputs, with neural-tangents' normalisation (mean over all n·k entries):
///     MSE = ½·mean((f − y)²),   ∂/∂f = (f − y)/(n·k)
///     CE  = −mean(y ⊙ log_softmax(f)),   ∂/∂f = (softmax(f)·Σ_i y_i − y)/(n·k)   (per row)
public enum Loss: String, CaseIterable, Sendable {
    case mse
    case cross_entropy

    /// The loss and, into `grad`, its gradient with respect to f.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func evaluate<T: NTKFloat>(_ f: UnsafePointer<T>, _ y: UnsafePointer<T>, n: Int, k: Int, grad: UnsafeMutablePointer<T>?) -> Double {
        let norm = Double(n * k)
        var total = 0.0
        switch self {
        case .mse:
            for i in 0..<n * k {
                let r = Double(f[i]) - Double(y[i])
                total += r * r
                grad?[i] = T(r / norm)
            }
            return 0.5 * total / norm
        case .cross_entropy:
            for r in 0..<n {
                let row = f + r * k, yr = y + r * k
                var m = -Double.infinity
                for j in 0..<k { m = max(m, Double(row[j])) }
                var z = 0.0
                for j in 0..<k { z += Foundation.exp(Double(row[j]) - m) }
                let logZ = m + Foundation.log(z)
                var ySum = 0.0
                for j in 0..<k {
                    total -= Double(yr[j]) * (Double(row[j]) - logZ)
                    ySum += Double(yr[j])
                }
                if let grad {
                    for j in 0..<k { grad[r * k + j] = T((Foundation.exp(Double(row[j]) - logZ) * ySum - Double(yr[j])) / norm) }
                }
            }
            return total / norm
        }
    }
}

/// How to train: loss, full-batch GD or minibatch SGD (seeded shuffling each epoch), momentum
/// (v ← β·v + g, θ ← θ − η·v), optional learning-rate multipliers per Dense layer for W and b (PAPER §1.6).
public struct TrainingConfig: Equatable, Sendable {
    public var loss: Loss = .mse
    public var learningRate = 1.0
    public var steps = 1000
    /// nil: full batch.
    public var batchSize: Int? = nil
    public var momentum = 0.0
    public var lrScaleW: [Double]? = nil
    public var lrScaleB: [Double]? = nil
    public var seed: UInt64 = 0
    public init() {}

    /// Steps at which to record: 0, log-spaced (4 per decade), and the last.
    public var logSteps: [Int] {
        var s: Set<Int> = [0, steps]
        var e = 0.0
        while pow(10, e) < Double(steps) { s.insert(Int(pow(10, e).rounded())); e += 0.25 }
        return s.sorted()
    }
}

/// The state of a training run, enough to resume it exactly.
public struct TrainingState: Sendable {
    public var step: Int
    public var theta: [Double]
    public var velocity: [Double]
    public var rngState: UInt64
    public var order: [Int]
    public var position: Int
    /// The first loss seen (the divergence test compares against it).
    public var initialLoss: Double?

    public init(step: Int, theta: [Double], velocity: [Double], rngState: UInt64, order: [Int], position: Int, initialLoss: Double?) {
        self.step = step; self.theta = theta; self.velocity = velocity; self.rngState = rngState
        self.order = order; self.position = position; self.initialLoss = initialLoss
    }
}

/// One recorded point of a training run.
public struct TrainingRecord: Sendable {
    public var step: Int
    /// Continuous time t = η·step.
    public var time: Double
    public var trainLoss: Double, testLoss: Double?
    public var trainAccuracy: Double?, testAccuracy: Double?
    /// f(X_train) [n·k], f(X_test) [m·k]
    public var fxTrain: [Double], fxTest: [Double]
    /// ‖θ_l − θ_l,0‖_F / ‖θ_l,0‖_F per dense or conv layer (W and b together) — Figure 1's quantity.
    public var relativeChange: [Double]

    public init(step: Int, time: Double, trainLoss: Double, testLoss: Double?, trainAccuracy: Double?, testAccuracy: Double?,
                fxTrain: [Double], fxTest: [Double], relativeChange: [Double]) {
        self.step = step; self.time = time; self.trainLoss = trainLoss; self.testLoss = testLoss
        self.trainAccuracy = trainAccuracy; self.testAccuracy = testAccuracy
        self.fxTrain = fxTrain; self.fxTest = fxTest; self.relativeChange = relativeChange
    }
}

public struct TrainingDiverged: Error, CustomStringConvertible {
    public var step: Int
    public var loss: Double
    public var learningRate: Double
    public var suggestion: String
    public var description: String {
        "training diverged at step \(step): loss \(loss.isFinite ? String(format: "%.4g", loss) : "\(loss)") with learning rate \(learningRate). \(suggestion)"
    }
}

/// What is trained: the network itself, or its first-order Taylor expansion around θ₀ (PAPER Eq. 5),
/// f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)·(θ − θ₀), evaluated with one tangent (JVP) pass at θ₀, whose gradient
/// J(θ₀)ᵀ·∂L/∂f is the ordinary backward pass at θ₀.
public enum TrainedModel: String, Sendable { case network, linearized }

/// Trains a network (or its linearization) in precision T with preallocated buffers.
///
/// Buffer rule (llm.c's "allocate once"): every array here and in `Passes` is sized in `init` and never resized,
/// and the object holds its only reference, so a pointer taken from one stays valid for the object's lifetime;
/// the hot loop uses such pointers and allocates nothing. Data: x [n, n₀], y [n, k] (test optional);
/// classification accuracy is measured when `labels` are given (argmax of f; sign for k = 1).
public final class Trainer<T: NTKFloat> {
    public let network: Network
    public let config: TrainingConfig
    public let model: TrainedModel
    public let passes: Passes<T>
    let theta0T: [T]
    /// linearized: θ − θ₀, f(θ₀), and the tangent J·(θ − θ₀)
    var direction: [T], baseOut: [T], tangentOut: [T], baseOutAtTheta0: [T]
    /// The inputs whose θ₀ activations the passes currently hold (linearized model).
    var cachedInput: (UnsafePointer<T>, Int)?
    let xTrain: [T], yTrain: [T], xTest: [T], yTest: [T]
    let labelsTrain: [Int]?, labelsTest: [Int]?
    public let nTrain: Int, nTest: Int
    public let theta0: [Double]
    public private(set) var theta: [T]
    var velocity: [T]
    var grad: [T]
    var dOut: [T]
    var batchX: [T], batchY: [T]
    var rng: SplitMix64
    var order: [Int]
    var position: Int
    public private(set) var step = 0
    let lrPerParameter: [T]
    var initialLoss: Double?

    public convenience init(spec: NetworkSpec, theta0: [Double], xTrain: Matrix, yTrain: Matrix, xTest: Matrix? = nil,
                            yTest: Matrix? = nil, labelsTrain: [Int]? = nil, labelsTest: [Int]? = nil, config: TrainingConfig,
                            model: TrainedModel = .network) {
        self.init(network: Network(spec), theta0: theta0, xTrain: xTrain, yTrain: yTrain, xTest: xTest, yTest: yTest,
                  labelsTrain: labelsTrain, labelsTest: labelsTest, config: config, model: model)
    }

    /// x rows hold one sample each in the network's input layout (NHWC images flattened per row).
    public init(network: Network, theta0: [Double], xTrain: Matrix, yTrain: Matrix, xTest: Matrix? = nil, yTest: Matrix? = nil,
                labelsTrain: [Int]? = nil, labelsTest: [Int]? = nil, config: TrainingConfig,
                model: TrainedModel = .network, passRows: Int? = nil) {
        self.network = network
        self.config = config
        self.model = model
        nTrain = xTrain.rows
        nTest = xTest?.rows ?? 0
        let batch = min(config.batchSize ?? nTrain, nTrain)
        // `passRows` (tests): the rows of the evaluation chunks, at least a batch
        let rows = passRows.map { max($0, batch) } ?? Self.passRows(network, batch: batch, rows: max(nTrain, nTest, 1))
        passes = Passes<T>(network: network, maxBatch: rows)
        func cast(_ m: Matrix?) -> [T] { (m?.data ?? []).map { T($0) } }
        self.xTrain = cast(xTrain); self.yTrain = cast(yTrain); self.xTest = cast(xTest); self.yTest = cast(yTest)
        self.labelsTrain = labelsTrain; self.labelsTest = labelsTest
        self.theta0 = theta0
        theta = theta0.map { T($0) }
        theta0T = theta
        direction = model == .linearized ? [T](repeating: 0, count: theta0.count) : []
        let outCount = model == .linearized ? max(nTrain, nTest, 1) * network.outputs : 0
        baseOut = [T](repeating: 0, count: outCount)
        tangentOut = baseOut
        baseOutAtTheta0 = baseOut
        velocity = [T](repeating: 0, count: theta0.count)
        grad = velocity
        dOut = [T](repeating: 0, count: batch * network.outputs)
        batchX = [T](repeating: 0, count: batch * network.inputShape.count)
        batchY = [T](repeating: 0, count: batch * network.outputs)
        rng = SplitMix64(seed: config.seed)
        order = Array(0..<nTrain)
        position = nTrain  // forces a shuffle before the first SGD batch
        // Per-parameter learning rate: η times the layer's multiplier for W or b.
        var lr = [T](repeating: T(config.learningRate), count: theta0.count)
        for (l, layer) in network.parameters.enumerated() {
            if let s = config.lrScaleW?[l] { for i in layer.w..<layer.w + layer.wCount { lr[i] = T(config.learningRate * s) } }
            if let s = config.lrScaleB?[l], let b = layer.b { for i in b..<b + layer.fanOut { lr[i] = T(config.learningRate * s) } }
        }
        lrPerParameter = lr
    }

    var batchSize: Int { min(config.batchSize ?? nTrain, nTrain) }

    /// Working memory of the passes' buffers for evaluating the training and test sets (`record`), which run in
    /// chunks of rows when the sets are larger than a training batch.
    static var evaluationBytes: Int { 512 << 20 }

    /// Rows the passes hold: the training batch, or more up to all `rows` while their buffers (about four values per
    /// node and row: forward values, φ' caches, tangents and δs) stay within `evaluationBytes`.
    static func passRows(_ network: Network, batch: Int, rows: Int) -> Int {
        let perRow = 4 * MemoryLayout<T>.stride * network.nodes.reduce(0) { $0 + $1.outShape.count }
        return max(batch, min(rows, evaluationBytes / max(perRow, 1)))
    }

    /// The model's outputs for n rows of x, into `passes.output` (network) or `baseOut` (linearized); the
    /// passes' caches then hold the activations the backward pass needs (at θ, or at θ₀ when linearized).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func evaluate(_ x: UnsafePointer<T>, n: Int) -> UnsafePointer<T> {
        switch model {
        case .network:
            theta.withUnsafeBufferPointer { passes.forward(theta: $0.baseAddress!, x: x, n: n) }
            return passes.outputPointer
        case .linearized:
            let k = network.outputs
            theta0T.withUnsafeBufferPointer { th0 in
                // θ₀ never changes: the forward pass at θ₀ is reused while the same inputs come back (full batch)
                if cachedInput?.0 != x || cachedInput?.1 != n {
                    passes.forward(theta: th0.baseAddress!, x: x, n: n)
                    baseOutAtTheta0.withUnsafeMutableBufferPointer { b in
                        b.baseAddress!.update(from: passes.outputPointer, count: n * k)
                    }
                    cachedInput = (x, n)
                }
                direction.withUnsafeMutableBufferPointer { dir in
                    theta.withUnsafeBufferPointer { th in
                        dir.baseAddress!.update(from: th.baseAddress!, count: dir.count)
                        T.axpy(dir.baseAddress!, -1, th0.baseAddress!, dir.count)  // θ − θ₀
                    }
                    tangentOut.withUnsafeMutableBufferPointer { tp in
                        passes.jvp(theta: th0.baseAddress!, x: x, n: n, direction: dir.baseAddress!, out: tp.baseAddress!)
                    }
                }
            }
            baseOut.withUnsafeMutableBufferPointer { b in
                baseOutAtTheta0.withUnsafeBufferPointer { b.baseAddress!.update(from: $0.baseAddress!, count: n * k) }
                tangentOut.withUnsafeBufferPointer { T.axpy(b.baseAddress!, 1, $0.baseAddress!, n * k) }  // f₀ + J·(θ − θ₀)
            }
            return baseOut.withUnsafeBufferPointer { $0.baseAddress! }
        }
    }
    var fullBatch: Bool { batchSize == nTrain }

    /// One optimizer step on the next batch; returns the batch loss before the step.
    @discardableResult
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func stepOnce() throws -> Double {
        let b = batchSize, k = network.outputs
        var loss = 0.0
        // the backward pass runs at θ (network) or θ₀ (linearized: its gradient is J(θ₀)ᵀ·∂L/∂f)
        let backwardTheta = model == .network ? theta : theta0T
        backwardTheta.withUnsafeBufferPointer { th in
            let xPtr: UnsafePointer<T>, yPtr: UnsafePointer<T>
            if fullBatch {
                xPtr = xTrain.withUnsafeBufferPointer { $0.baseAddress! }
                yPtr = yTrain.withUnsafeBufferPointer { $0.baseAddress! }
            } else {
                nextBatch()
                xPtr = batchX.withUnsafeBufferPointer { $0.baseAddress! }
                yPtr = batchY.withUnsafeBufferPointer { $0.baseAddress! }
            }
            let f = evaluate(xPtr, n: b)
            loss = dOut.withUnsafeMutableBufferPointer { g in config.loss.evaluate(f, yPtr, n: b, k: k, grad: g.baseAddress!) }
            grad.withUnsafeMutableBufferPointer { g in
                g.update(repeating: 0)
                dOut.withUnsafeBufferPointer { passes.backward(theta: th.baseAddress!, x: xPtr, n: b, dOutput: $0.baseAddress!, grad: g.baseAddress!) }
            }
        }
        if initialLoss == nil { initialLoss = loss }
        guard loss.isFinite, loss <= 1e4 * max(initialLoss!, 1e-12) else {
            throw TrainingDiverged(step: step, loss: loss, learningRate: config.learningRate, suggestion: "")
        }
        // v ← β·v + g;  θ ← θ − η⊙v   (β = 0: plain gradient descent)
        let beta = T(config.momentum)
        velocity.withUnsafeMutableBufferPointer { v in
            grad.withUnsafeBufferPointer { g in
                if config.momentum == 0 { v.baseAddress!.update(from: g.baseAddress!, count: g.count) } else {
                    T.scale(v.baseAddress!, beta, v.count)
                    T.axpy(v.baseAddress!, 1, g.baseAddress!, v.count)
                }
            }
            theta.withUnsafeMutableBufferPointer { th in
                lrPerParameter.withUnsafeBufferPointer { lr in
                    // θ ← θ − lr ⊙ v  (grad buffer reused as scratch)
                    grad.withUnsafeMutableBufferPointer { s in
                        T.hadamard(s.baseAddress!, lr.baseAddress!, v.baseAddress!, s.count)
                        T.axpy(th.baseAddress!, -1, s.baseAddress!, th.count)
                    }
                }
            }
        }
        step += 1
        return loss
    }

    /// Copies the next `batchSize` samples (seeded reshuffle at each epoch) into the batch buffers.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func nextBatch() {
        let b = batchSize, k = network.outputs, d = network.inputShape.count
        cachedInput = nil  // the batch buffer's contents change under the same pointer
        for r in 0..<b {
            if position >= nTrain {
                rng.shuffle(&order)
                position = 0
            }
            let i = order[position]
            position += 1
            for j in 0..<d { batchX[r * d + j] = xTrain[i * d + j] }
            for j in 0..<k { batchY[r * k + j] = yTrain[i * k + j] }
        }
    }

    /// Outputs, losses, accuracies and per-layer weight change at the current θ.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func record() -> TrainingRecord {
        let k = network.outputs
        // in chunks of the passes' rows (all of them when they fit: the full-batch θ₀ cache of the linearized model
        // then stays valid)
        let d = network.inputShape.count
        func outputs(_ x: [T], _ n: Int) -> [Double] {
            var out = [Double]()
            out.reserveCapacity(n * k)
            x.withUnsafeBufferPointer { xp in
                for r0 in stride(from: 0, to: n, by: passes.maxBatch) {
                    let m = min(passes.maxBatch, n - r0), f = evaluate(xp.baseAddress! + r0 * d, n: m)
                    for i in 0..<m * k { out.append(Double(f[i])) }
                }
            }
            return out
        }
        let ftr = outputs(xTrain, nTrain), fte = outputs(xTest, nTest)
        func loss(_ f: [Double], _ y: [T]) -> Double {
            let ft = f.map { T($0) }
            return ft.withUnsafeBufferPointer { fp in y.withUnsafeBufferPointer { config.loss.evaluate(fp.baseAddress!, $0.baseAddress!, n: f.count / k, k: k, grad: nil) } }
        }
        func accuracy(_ f: [Double], _ labels: [Int]?) -> Double? {
            guard let labels, !labels.isEmpty else { return nil }
            var right = 0
            for (r, l) in labels.enumerated() {
                let p = k == 1 ? (f[r] > 0 ? 1 : 0) : (0..<k).max { f[r * k + $0] < f[r * k + $1] }!
                if p == l { right += 1 }
            }
            return Double(right) / Double(labels.count)
        }
        let change = network.parameters.map { layer -> Double in
            var ranges = [layer.w..<layer.w + layer.wCount]
            if let b = layer.b { ranges.append(b..<b + layer.fanOut) }
            var num = 0.0, den = 0.0
            for r in ranges { for i in r { let d = Double(theta[i]) - theta0[i]; num += d * d; den += theta0[i] * theta0[i] } }
            return (num / max(den, 1e-300)).squareRoot()
        }
        return TrainingRecord(step: step, time: config.learningRate * Double(step), trainLoss: loss(ftr, yTrain),
                              testLoss: nTest > 0 ? loss(fte, yTest) : nil, trainAccuracy: accuracy(ftr, labelsTrain),
                              testAccuracy: accuracy(fte, labelsTest), fxTrain: ftr, fxTest: fte, relativeChange: change)
    }

    public var state: TrainingState {
        TrainingState(step: step, theta: theta.map { Double($0) }, velocity: velocity.map { Double($0) }, rngState: rng.state,
                      order: order, position: position, initialLoss: initialLoss)
    }

    /// Continues from a saved state (θ, velocity, RNG, epoch order and position): the run then ends exactly as an
    /// uninterrupted one would (the state holds the values exactly: float32 round-trips through float64).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func restore(_ s: TrainingState) {
        step = s.step
        theta = s.theta.map { T($0) }
        velocity = s.velocity.map { T($0) }
        rng = SplitMix64(seed: s.rngState)
        order = s.order
        position = s.position
        initialLoss = s.initialLoss
    }
}
