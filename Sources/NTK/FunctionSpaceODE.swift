import Foundation

/// Gradient flow of the linearized network in function space for any loss (PAPER §2.8–§2.9, S3–S4 and S10–S11;
/// neural-tangents' `predict.gradient_descent`), integrated with the adaptive Dormand–Prince 5(4) method:
///
///     df_train/dt = −Θ̂(X, X)·∇_f L(f_train),     df_test/dt = −Θ̂(x, X)·∇_f L(f_train)
///
/// in continuous time t = η·steps, with the kernel traced ([n, n], applied to each output: Θ ⊗ I) or full
/// ([n·k, n·k], row a·k + i; then `kTestTrain` is [m·k, n·k]), and the loss
/// normalised as in `Loss` (mean over n·k). With momentum β (v ← βv + g, θ ← θ − ηv) the flow is second order,
///     f'' = −((1 − β)/√η)·f' − Θ̂·∇_f L,   in time τ = √η·steps   (neural-tangents' convention),
/// integrated as a first-order system in (f, f').
/// For MSE without momentum the closed form (`GradientDescentMSE`) is exact and cheaper; this is for the rest.
public struct FunctionSpaceODE {
    public let kTrainTrain: Matrix
    public let yTrain: Matrix
    public let loss: Loss
    public let momentum: Double?
    public let learningRate: Double
    /// Relative and absolute tolerances of the step-size control.
    public var rtol = 1e-9, atol = 1e-12

    public init(kTrainTrain: Matrix, yTrain: Matrix, loss: Loss, learningRate: Double = 1, momentum: Double? = nil) {
        self.kTrainTrain = kTrainTrain
        self.yTrain = yTrain
        self.loss = loss
        self.learningRate = learningRate
        self.momentum = momentum
    }

    /// Train and test outputs at each time (in steps; increasing), from f_train(0) = fxTrain0, f_test(0) = fxTest0.
    public func predict(times: [Double], fxTrain0: Matrix, fxTest0: Matrix? = nil, kTestTrain: Matrix? = nil) throws -> [(train: Matrix, test: Matrix?)] {
        let n = yTrain.rows, k = yTrain.cols, m = fxTest0?.rows ?? 0
        let sizeF = n * k + m * k
        // state: f_train | f_test (| their velocities with momentum)
        var state = fxTrain0.data + (fxTest0?.data ?? [])
        if momentum != nil { state += [Double](repeating: 0, count: sizeF) }
        let scale = momentum == nil ? learningRate : learningRate.squareRoot()  // time unit per step
        let friction = momentum.map { (1 - $0) / learningRate.squareRoot() } ?? 0
        var grad = [Double](repeating: 0, count: n * k)
        func derivative(_ s: [Double]) -> [Double] {
            s.withUnsafeBufferPointer { sp in
                yTrain.data.withUnsafeBufferPointer { yp in grad.withUnsafeMutableBufferPointer { _ = loss.evaluate(sp.baseAddress!, yp.baseAddress!, n: n, k: k, grad: $0.baseAddress!) } }
            }
            // the gradient of the mean loss is 1/(nk) of the summed loss's: the NTK acts on it directly
            // traced [n, n] kernel acts on each output column; a full [n·k, n·k] one on the flattened outputs
            let full = kTrainTrain.rows == n * k && k > 1
            let g = full ? Matrix(rows: n * k, cols: 1, data: grad) : Matrix(rows: n, cols: k, data: grad)
            var force = (-1 * Matrix.product(kTrainTrain, g)).data
            if let kTestTrain, m > 0 { force += (-1 * Matrix.product(kTestTrain, g)).data }
            guard momentum != nil else { return force }
            let velocity = Array(s[sizeF...])
            return velocity + zip(force, velocity).map { $0 - friction * $1 }
        }
        var out: [(Matrix, Matrix?)] = []
        var t = 0.0
        var h = 1e-3
        for target in times {
            let tEnd = target * scale
            while t < tEnd {
                h = min(h, tEnd - t)
                let (next, err) = dopriStep(state, h, derivative)
                let tolScale = zip(state, next).map { atol + rtol * max(abs($0), abs($1)) }
                let e = zip(err, tolScale).reduce(0.0) { max($0, abs($1.0) / $1.1) }
                guard e.isFinite else { throw LinearAlgebraError.nonFinite("function-space ODE state") }
                if e <= 1 {
                    t += h
                    state = next
                }
                h *= min(5, max(0.2, 0.9 * pow(max(e, 1e-10), -0.2)))
            }
            let train = Matrix(rows: n, cols: k, data: Array(state[0..<n * k]))
            let test = m > 0 ? Matrix(rows: m, cols: k, data: Array(state[n * k..<sizeF])) : nil
            out.append((train, test))
        }
        return out
    }

    /// One Dormand–Prince 5(4) step: the 5th-order solution and the difference to the embedded 4th-order one.
    func dopriStep(_ y: [Double], _ h: Double, _ f: ([Double]) -> [Double]) -> ([Double], [Double]) {
        func add(_ base: [Double], _ terms: [(Double, [Double])]) -> [Double] {
            var r = base
            for (c, v) in terms where c != 0 { for i in r.indices { r[i] += h * c * v[i] } }
            return r
        }
        let k1 = f(y)
        let k2 = f(add(y, [(1.0 / 5, k1)]))
        let k3 = f(add(y, [(3.0 / 40, k1), (9.0 / 40, k2)]))
        let k4 = f(add(y, [(44.0 / 45, k1), (-56.0 / 15, k2), (32.0 / 9, k3)]))
        let k5 = f(add(y, [(19372.0 / 6561, k1), (-25360.0 / 2187, k2), (64448.0 / 6561, k3), (-212.0 / 729, k4)]))
        let k6 = f(add(y, [(9017.0 / 3168, k1), (-355.0 / 33, k2), (46732.0 / 5247, k3), (49.0 / 176, k4), (-5103.0 / 18656, k5)]))
        let y5 = add(y, [(35.0 / 384, k1), (500.0 / 1113, k3), (125.0 / 192, k4), (-2187.0 / 6784, k5), (11.0 / 84, k6)])
        let k7 = f(y5)
        let y4 = add(y, [(5179.0 / 57600, k1), (7571.0 / 16695, k3), (393.0 / 640, k4), (-92097.0 / 339200, k5), (187.0 / 2100, k6), (1.0 / 40, k7)])
        return (y5, zip(y5, y4).map { $0 - $1 })
    }
}
