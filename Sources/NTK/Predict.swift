import Foundation

/// A symmetric kernel prepared for the closed-form predictors: checked for NaN/Inf, symmetrised, regularised
/// (neural-tangents' `diag_reg`: K + diag_reg·(trace(K)/n)·I, or absolute), eigendecomposed once, and — for
/// t = ∞ — Cholesky-factored once, with the regulariser escalated until the factorisation succeeds.
/// Every repair is recorded in `repairs` (and shown by the pipeline), never applied silently.
public final class PreparedKernel {
    public let kernel: Matrix
    public private(set) var repairs: [String] = []
    public let name: String
    /// ε of the diagonal regulariser added to `kernel` (0 without diag_reg).
    public private(set) var regularizer = 0.0
    private var eigen: (values: [Double], vectors: Matrix)?
    private var factor: Matrix?

    public init(_ k: Matrix, name: String, diagReg: Double = 0, diagRegAbsolute: Bool = false) throws {
        precondition(k.rows == k.cols, "\(name) must be square")
        guard k.data.allSatisfy(\.isFinite) else { throw LinearAlgebraError.nonFinite(name) }
        self.name = name
        var a = k
        var asym = 0.0, scale = 0.0
        for i in 0..<a.rows {
            for j in 0..<i {
                asym = max(asym, abs(a[i, j] - a[j, i]))
                scale = max(scale, abs(a[i, j]))
                let m = 0.5 * (a[i, j] + a[j, i])
                a[i, j] = m
                a[j, i] = m
            }
        }
        if asym > 1e-10 * max(scale, 1e-300) {
            repairs.append(String(format: "%@ was not symmetric (max |K − Kᵀ| = %.3g); used (K + Kᵀ)/2", name, asym))
        }
        if diagReg != 0 {
            let eps = diagRegAbsolute ? diagReg : diagReg * a.diagonal.reduce(0, +) / Double(max(a.rows, 1))
            for i in 0..<a.rows { a[i, i] += eps }
            regularizer = eps
        }
        kernel = a
    }

    public var n: Int { kernel.rows }

    /// Eigenvalues (ascending) and eigenvectors; negative eigenvalues are reported (the predictors clip them to
    /// 0, as neural-tangents does).
    public func eigh() throws -> (values: [Double], vectors: Matrix) {
        if let eigen { return eigen }
        let e = try LAPACK.eigh(kernel)
        if let r = Self.negativeEigenvalues(name, e.values) { repairs.append(r) }
        eigen = e
        return e
    }

    /// The repair note for a kernel's eigenvalues (ascending) below −1e-12·|λ_max|, which the predictors clip to 0;
    /// nil if there are none.
    public static func negativeEigenvalues(_ name: String, _ values: [Double]) -> String? {
        let top = values.last ?? 0
        let negative = values.filter { $0 < -1e-12 * max(abs(top), 1e-300) }
        guard let low = negative.min() else { return nil }
        return String(format: "%@ is not positive semi-definite: %d negative eigenvalue(s), most negative %.3g "
                      + "(λ_max %.3g); clipped to 0", name, negative.count, low, top)
    }

    /// The Cholesky factor of the kernel, adding ε·I with ε escalating ×10 from 1e-12·trace/n when the kernel is
    /// not numerically positive definite.
    public func cholesky() throws -> Matrix {
        if let factor { return factor }
        if let f = LAPACK.cholesky(kernel) { factor = f; return f }
        let mean = max(kernel.diagonal.reduce(0, +) / Double(max(n, 1)), 1e-300)
        var eps = 1e-12 * mean
        while eps <= mean {
            var a = kernel
            for i in 0..<n { a[i, i] += eps }
            if let f = LAPACK.cholesky(a) {
                repairs.append(String(format: "%@ is not positive definite; added %.3g·I (%.1e of its mean diagonal) for the Cholesky solve", name, eps, eps / mean))
                factor = f
                return f
            }
            eps *= 10
        }
        throw LinearAlgebraError.notPositiveDefinite(name + " (even with a diagonal regulariser equal to its mean diagonal)")
    }

    /// f(K)·B in the eigenbasis: V·diag(f(λ))·Vᵀ·B.
    func apply(_ f: (Double) -> Double, to b: Matrix) throws -> Matrix {
        let (values, v) = try eigh()
        var c = Matrix.product(v, b, transA: true)
        for i in 0..<c.rows {
            let s = f(values[i])
            for j in 0..<c.cols { c[i, j] *= s }
        }
        return Matrix.product(v, c)
    }

    /// K⁻¹·B through the Cholesky factor.
    func solve(_ b: Matrix) throws -> Matrix { LAPACK.choleskySolve(try cholesky(), b) }
}

/// Time in the predictors: continuous gradient flow at t = η·steps, exact discrete gradient descent after a
/// whole number of steps, or t = ∞.
public enum PredictionTime: Equatable, Sendable {
    case continuous(Double)
    case steps(Int)
    case infinity
}

/// Closed-form dynamics of gradient descent on MSE = ½·mean over the n·k entries (neural-tangents'
/// `predict.gradient_descent_mse`), given a kernel on the training set (the empirical NTK of the linearised
/// network, or the analytic NTK):
///
///     f_train(t) = y + e^{−ηΘt/(nk)}(f₀ − y)                     (continuous; PAPER Eq. 9)
///     f_test(t)  = f₀(x) + Θ(x, X)·Θ⁻¹(e^{−ηΘt/(nk)} − I)(f₀ − y)  (Eqs. 10–11)
///     discrete:  e^{−ηΘt/(nk)} → (I − ηΘ/(nk))^steps;   t = ∞: f_train = y, f_test by a Cholesky solve.
///
/// `kTrainTrain` is [n, n] ("traced": the same kernel for each of the k outputs, Θ ⊗ I_k) or [n·k, n·k]
/// ("full": row index a·k + i, neural-tangents' [n, n, k, k] transposed to [n, k, n, k]); `kTestTrain`
/// correspondingly [m, n] or [m·k, n·k]. Negative eigenvalues are clipped to 0 (as neural-tangents does);
/// a zero eigenvalue takes the t → 0 limit of expm1(−λt)/λ, −t, instead of neural-tangents' NaN.
public struct GradientDescentMSE {
    public let kernel: PreparedKernel
    public let yTrain: Matrix
    public let learningRate: Double
    /// n·k, the number of entries the MSE averages over.
    public let normalization: Double
    let full: Bool

    public init(kTrainTrain: Matrix, yTrain: Matrix, learningRate: Double = 1, diagReg: Double = 0, diagRegAbsolute: Bool = false) throws {
        let nk = yTrain.rows * yTrain.cols
        precondition(kTrainTrain.rows == yTrain.rows || kTrainTrain.rows == nk, "kTrainTrain must be [n, n] or [n·k, n·k]")
        self.init(kernel: try PreparedKernel(kTrainTrain, name: "k_train_train", diagReg: diagReg, diagRegAbsolute: diagRegAbsolute),
                  yTrain: yTrain, learningRate: learningRate)
    }

    /// With a kernel prepared elsewhere (e.g. an `EnsemblePredictor`'s NTK): its eigendecomposition is reused.
    public init(kernel: PreparedKernel, yTrain: Matrix, learningRate: Double = 1) {
        let nk = yTrain.rows * yTrain.cols
        full = kernel.kernel.rows == nk && yTrain.cols > 1
        self.kernel = kernel
        self.yTrain = yTrain
        self.learningRate = learningRate
        normalization = Double(nk)
    }

    /// Matrices as the kernel sees them: [n, k] (traced) or the [n·k, 1] flattening (full).
    func shaped(_ m: Matrix) -> Matrix { full ? Matrix(rows: m.rows * m.cols, cols: 1, data: m.data) : m }
    func unshaped(_ m: Matrix, rows: Int) -> Matrix { full ? Matrix(rows: rows, cols: yTrain.cols, data: m.data) : m }

    /// g(λ) with f_train = f₀ + V·g(λ)·Vᵀ(f₀ − y) and f_test = f₀ + K_td·V·(g(λ)/λ)·Vᵀ(f₀ − y).
    func factor(_ time: PredictionTime, _ lambda: Double) -> Double {
        let c = learningRate / normalization
        switch time {
        case .continuous(let t): return expm1(-max(lambda, 0) * c * t)
        case .steps(let s): return pow(1 - c * lambda, Double(s)) - 1
        case .infinity: return -1
        }
    }

    func factorOverLambda(_ time: PredictionTime, _ lambda: Double) -> Double {
        let c = learningRate / normalization
        if lambda > 0 { return factor(time, lambda) / lambda }
        switch time {  // λ ≤ 0: clipped (continuous, as neural-tangents) or the λ → 0 limit
        case .continuous(let t): return lambda < 0 ? 0 : -c * t
        case .steps(let s): return lambda < 0 ? (pow(1 - c * lambda, Double(s)) - 1) / lambda : -c * Double(s)
        case .infinity: return 0
        }
    }

    /// Training-set outputs [n, k] at each time.
    public func train(at times: [PredictionTime], fxTrain0: Matrix) throws -> [Matrix] {
        let rhs = shaped(fxTrain0 - yTrain)
        return try times.map { time in
            if time == .infinity { return yTrain }
            let d = try kernel.apply({ factor(time, $0) }, to: rhs)
            return fxTrain0 + unshaped(d, rows: fxTrain0.rows)
        }
    }

    /// Test-set outputs [m, k] at each time.
    public func test(at times: [PredictionTime], fxTrain0: Matrix, fxTest0: Matrix, kTestTrain: Matrix) throws -> [Matrix] {
        let rhs = shaped(fxTrain0 - yTrain)
        return try times.map { time in
            let inner = time == .infinity ? -1 * (try kernel.solve(rhs)) : try kernel.apply({ factorOverLambda(time, $0) }, to: rhs)
            let d = Matrix.product(kTestTrain, inner)
            let out = fxTest0 + unshaped(d, rows: fxTest0.rows)
            guard out.data.allSatisfy(\.isFinite) else { throw LinearAlgebraError.nonFinite("test predictions") }
            return out
        }
    }

    /// The largest learning rate for which discrete GD (with momentum β) on this kernel is stable:
    /// 2·(1 + β)·n·k/λ_max (neural-tangents' `max_learning_rate`).
    public func maxLearningRate(momentum: Double = 0) throws -> Double {
        Self.maxLearningRate(lambdaMax: try kernel.eigh().values.last ?? 0, entries: normalization, momentum: momentum)
    }

    /// 2·(1 + β)·n·k/λ_max, for a kernel's largest eigenvalue and the n·k entries the MSE averages over.
    public static func maxLearningRate(lambdaMax: Double, entries: Double, momentum: Double = 0) -> Double {
        2 * (1 + momentum) * entries / max(lambdaMax, 1e-300)
    }
}

/// The output distribution of an infinite ensemble of infinitely wide networks trained by gradient descent on
/// MSE (neural-tangents' `predict.gradient_descent_mse_ensemble`; PAPER Eqs. 13–16, S22–S23), from f₀ = 0.
///
/// `diag_reg` regularises the kernels that are inverted (Θ_dd, K_dd) but not K_dd where the NTK-GP covariance uses
/// it as it is (neural-tangents' `nngp_dd`).
/// NTK-GP (the whole network trained), with Θ the NTK, K the NNGP, op_t = Θ⁻¹(I − e^{−ηΘt/(nk)}):
///     mean = Θ_td·op_t·y,   cov = K_tt + Θ_td·op_t·K_dd·op_tᵀ·Θ_dt − (Θ_td·op_t·K_dt + transpose)
/// NNGP (only the read-out trained; t = ∞ is the Bayesian posterior), with op_t = K⁻¹(I − e^{−ηKt/(nk)}):
///     mean = K_td·op_t·y,   cov = K_tt − K_td·K⁻¹(I − e^{−2ηKt/(nk)})·K_dt   (the corrected S23)
public struct EnsemblePredictor {
    public let nngp: PreparedKernel
    public let ntk: PreparedKernel
    public let yTrain: Matrix
    public let learningRate: Double
    public let normalization: Double

    public init(nngpTrainTrain: Matrix, ntkTrainTrain: Matrix, yTrain: Matrix, learningRate: Double = 1, diagReg: Double = 0,
                diagRegAbsolute: Bool = false) throws {
        nngp = try PreparedKernel(nngpTrainTrain, name: "nngp_train_train", diagReg: diagReg, diagRegAbsolute: diagRegAbsolute)
        ntk = try PreparedKernel(ntkTrainTrain, name: "ntk_train_train", diagReg: diagReg, diagRegAbsolute: diagRegAbsolute)
        self.yTrain = yTrain
        self.learningRate = learningRate
        normalization = Double(yTrain.rows * yTrain.cols)
    }

    public enum Mode: String, CaseIterable, Sendable { case ntk, nngp }

    public struct Gaussian {
        /// [m, k]
        public var mean: Matrix
        /// [m, m] (the same for each output), if asked for
        public var covariance: Matrix?
    }

    /// op_t·B = K⁻¹(I − e^{−ηKt/(nk)})·B (continuous t, scaled by `timeFactor`), or K⁻¹·B at t = ∞.
    func op(_ k: PreparedKernel, _ t: Double?, _ b: Matrix, timeFactor: Double = 1) throws -> Matrix {
        guard let t else { return try k.solve(b) }
        let c = learningRate / normalization * t * timeFactor
        return try k.apply({ Self.flow($0, c) }, to: b)
    }

    /// op_t's factor on an eigenvalue λ: (1 − e^{−λc})/λ with c = η·t/(n·k) (c = nil: t = ∞, 1/λ); λ < 0 (clipped)
    /// gives 0, λ = 0 its limit c.
    public static func flow(_ lambda: Double, _ c: Double?) -> Double {
        guard lambda > 0 else { return lambda < 0 ? 0 : c ?? 0 }
        guard let c else { return 1 / lambda }
        return -expm1(-lambda * c) / lambda
    }

    /// Test-set mean (and covariance) at continuous time t (nil: ∞). Kernels: `ntkTestTrain` and
    /// `nngpTestTrain` [m, n], `nngpTestTest` [m, m] (needed for the covariance only).
    public func predict(_ mode: Mode, t: Double?, ntkTestTrain: Matrix, nngpTestTrain: Matrix, nngpTestTest: Matrix?) throws -> Gaussian {
        switch mode {
        case .ntk:
            let mean = Matrix.product(ntkTestTrain, try op(ntk, t, yTrain))
            guard let ktt = nngpTestTest else { return Gaussian(mean: mean, covariance: nil) }
            let term1 = try op(ntk, t, ntkTestTrain.transposed)  // [n, m]
            let term2 = Matrix.product(ntkTestTrain, try op(ntk, t, nngpTestTrain.transposed))  // [m, m]
            // K_dd as it is, without the regulariser (as neural-tangents: only the solves are regularised)
            let kw = Matrix.product(nngp.kernel, term1) - nngp.regularizer * term1
            let quad = Matrix.product(term1, kw, transA: true)
            return Gaussian(mean: mean, covariance: ktt + quad - term2 - term2.transposed)
        case .nngp:
            let mean = Matrix.product(nngpTestTrain, try op(nngp, t, yTrain))
            guard let ktt = nngpTestTest else { return Gaussian(mean: mean, covariance: nil) }
            let reduce = Matrix.product(nngpTestTrain, try op(nngp, t, nngpTestTrain.transposed, timeFactor: 2))
            return Gaussian(mean: mean, covariance: ktt - reduce)
        }
    }

    /// Training-set mean at continuous time t: (I − e^{−ηKt/(nk)})·y for the mode's kernel K.
    public func trainMean(_ mode: Mode, t: Double) throws -> Matrix {
        let k = mode == .ntk ? ntk : nngp
        let c = learningRate / normalization * t
        return try k.apply({ λ in -expm1(-max(λ, 0) * c) }, to: yTrain)
    }

    public var repairs: [String] { nngp.repairs + ntk.repairs }
}
