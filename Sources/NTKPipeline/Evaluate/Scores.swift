import NTK

/// Scores of outputs f [n, k] (row-major) against a dataset's targets and labels — one definition for every stage.
enum Scores {
    /// ½·mean over n·k of (f − y)²: the MSE the train stage minimises.
    static func mse(_ f: some Collection<Double>, _ y: some Collection<Double>) -> Double {
        0.5 * zip(f, y).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(max(y.count, 1))
    }

    /// √(mean over n·k of (a − b)²): the paper's RMSE between two models' outputs.
    static func rmse(_ a: some Collection<Double>, _ b: some Collection<Double>) -> Double {
        (zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(max(a.count, 1))).squareRoot()
    }

    /// Fraction of rows whose predicted class is right: argmax over k > 1 outputs, the sign for one ±1 output.
    /// `labels` are dataset labels; `classes` maps output index → label.
    static func accuracy(_ f: [Double], k: Int, labels: [Int32], classes: [Int]) -> Double {
        let classOf = Dictionary(uniqueKeysWithValues: classes.enumerated().map { (Int32($0.element), $0.offset) })
        var right = 0
        for (i, l) in labels.enumerated() {
            let p = k == 1 ? (f[i] > 0 ? 1 : 0) : (0..<k).max { f[i * k + $0] < f[i * k + $1] }!
            if classOf[l] == p { right += 1 }
        }
        return Double(right) / Double(max(labels.count, 1))
    }
}

/// The linearized network's outputs in closed form (PAPER Eqs. 8–11) from the outputs f₀ of a trained run, at its
/// recorded steps: exact discrete gradient descent for MSE ((I − ηΘ/(n·k))^s), the Dormand–Prince flow of
/// S5–S11 for cross-entropy. `ktt` is Θ(train, train) [n, n] traced or [n·k, n·k] full (prepared once: its
/// eigendecomposition may be shared), `kst` Θ(test, train).
struct ClosedFormDynamics {
    var train: [Matrix]
    var test: [Matrix]
    var repairs: [String]

    init(ktt: PreparedKernel, kst: Matrix, y: Matrix, f0: Matrix, g0: Matrix, steps: [Int], learningRate: Double, loss: Loss) throws {
        switch loss {
        case .mse:
            let p = GradientDescentMSE(kernel: ktt, yTrain: y, learningRate: learningRate)
            train = try p.train(at: steps.map { .steps($0) }, fxTrain0: f0)
            test = try p.test(at: steps.map { .steps($0) }, fxTrain0: f0, fxTest0: g0, kTestTrain: kst)
            repairs = p.kernel.repairs
        case .cross_entropy:
            let r = try FunctionSpaceODE(kTrainTrain: ktt.kernel, yTrain: y, loss: .cross_entropy, learningRate: learningRate)
                .predict(times: steps.map(Double.init), fxTrain0: f0, fxTest0: g0, kTestTrain: kst)
            train = r.map(\.train)
            test = r.map { $0.test! }
            repairs = []
        }
    }
}
