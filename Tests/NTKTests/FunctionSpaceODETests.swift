import Foundation
import XCTest

@testable import NTK

final class FunctionSpaceODETests: XCTestCase {
    func setup(k: Int = 3) throws -> (net: MLP, x: Matrix, xt: Matrix, y: Matrix) {
        var rng = SplitMix64(seed: 12)
        let x = Matrix(rows: 8, cols: 4, data: (0..<32).map { _ in rng.normal() }), xt = Matrix(rows: 3, cols: 4, data: (0..<12).map { _ in rng.normal() })
        var y = Matrix(rows: 8, cols: k)
        for r in 0..<8 { y[r, Int(rng.below(k))] = 1 }
        let net = MLP.initialize(NetworkSpec(inputDim: 4, widths: [32, 32], outputs: k, activation: .tanh, wStd: 1.3, bStd: 0.2), seed: 2)
        return (net, x, xt, y)
    }

    /// For MSE the ODE reproduces the closed form exp(−ηΘt/(nk)) (traced and full kernels).
    func testMSEMatchesClosedForm() throws {
        let (net, x, xt, y) = try setup()
        let e = EmpiricalNTK<Double>(net)
        let f0 = net.forward(x).output, g0 = net.forward(xt).output
        for output in [EmpiricalNTK<Double>.Output.traced, .full] {
            let kk = e.compute(x1: x, output: output), ks = e.compute(x1: xt, x2: x, output: output)
            let ktt = Matrix(rows: kk.rows, cols: kk.cols, data: kk.ntk), kst = Matrix(rows: ks.rows, cols: ks.cols, data: ks.ntk)
            let ode = FunctionSpaceODE(kTrainTrain: ktt, yTrain: y, loss: .mse, learningRate: 0.5)
            let closed = try GradientDescentMSE(kTrainTrain: ktt, yTrain: y, learningRate: 0.5)
            let times = [1.0, 20, 300]
            let got = try ode.predict(times: times, fxTrain0: f0, fxTest0: g0, kTestTrain: kst)
            let train = try closed.train(at: times.map { .continuous($0) }, fxTrain0: f0)
            let test = try closed.test(at: times.map { .continuous($0) }, fxTrain0: f0, fxTest0: g0, kTestTrain: kst)
            for i in times.indices {
                XCTAssertLessThan(got[i].train.maxRelativeError(to: train[i], floor: 1e-2), 1e-7, "\(output) t=\(times[i])")
                XCTAssertLessThan(got[i].test!.maxRelativeError(to: test[i], floor: 1e-2), 1e-7, "\(output) t=\(times[i])")
            }
        }
    }

    /// Cross-entropy: the linearized network trained by GD with step η approaches the ODE at t = η·steps as η → 0.
    func testCrossEntropyFlowIsTheSmallStepLimitOfLinearizedGD() throws {
        let (net, x, xt, y) = try setup()
        let e = EmpiricalNTK<Double>(net)
        let kk = e.compute(x1: x, output: .full), ks = e.compute(x1: xt, x2: x, output: .full)
        let f0 = net.forward(x).output, g0 = net.forward(xt).output
        let total = 40.0
        let ode = try FunctionSpaceODE(kTrainTrain: Matrix(rows: kk.rows, cols: kk.cols, data: kk.ntk), yTrain: y, loss: .cross_entropy)
            .predict(times: [total], fxTrain0: f0, fxTest0: g0, kTestTrain: Matrix(rows: ks.rows, cols: ks.cols, data: ks.ntk))[0]
        var errors: [Double] = []
        for steps in [40, 160] {
            var c = TrainingConfig()
            c.loss = .cross_entropy
            c.learningRate = total / Double(steps)
            let t = Trainer<Double>(spec: net.spec, theta0: net.theta, xTrain: x, yTrain: y, xTest: xt, yTest: Matrix(rows: 3, cols: 3), config: c, model: .linearized)
            for _ in 0..<steps { try t.stepOnce() }
            let r = t.record()
            errors.append((Matrix(rows: 3, cols: 3, data: r.fxTest) - ode.test!).frobeniusNorm / ode.test!.frobeniusNorm)
        }
        XCTAssertLessThan(errors[1], errors[0] / 3, "error ∝ η: \(errors)")
        XCTAssertLessThan(errors[1], 2e-2)
        XCTAssertGreaterThan((ode.test! - g0).frobeniusNorm, 0.1, "the outputs moved")
    }

    /// Momentum (v ← βv + g, θ ← θ − ηv) with β = 1 − c·√η: linearized GD approaches the second-order flow
    /// f'' = −c·f' − Θ̂·∇L in τ = √η·steps as η → 0 (MSE here, so only the momentum part is new).
    func testMomentumFlowIsTheSmallStepLimit() throws {
        let (net, x, xt, y) = try setup()
        let e = EmpiricalNTK<Double>(net)
        let kk = e.compute(x1: x, output: .full), ks = e.compute(x1: xt, x2: x, output: .full)
        let g0 = net.forward(xt).output
        let tau = 6.0, c = 1.5
        var errors: [Double] = []
        for steps in [60, 240] {
            let eta = pow(tau / Double(steps), 2), beta = 1 - c * eta.squareRoot()
            let ode = try FunctionSpaceODE(kTrainTrain: Matrix(rows: kk.rows, cols: kk.cols, data: kk.ntk), yTrain: y, loss: .mse, learningRate: eta, momentum: beta)
                .predict(times: [Double(steps)], fxTrain0: net.forward(x).output, fxTest0: g0, kTestTrain: Matrix(rows: ks.rows, cols: ks.cols, data: ks.ntk))[0]
            var cfg = TrainingConfig()
            cfg.learningRate = eta
            cfg.momentum = beta
            let t = Trainer<Double>(spec: net.spec, theta0: net.theta, xTrain: x, yTrain: y, xTest: xt, yTest: Matrix(rows: 3, cols: 3), config: cfg, model: .linearized)
            for _ in 0..<steps { try t.stepOnce() }
            errors.append((Matrix(rows: 3, cols: 3, data: t.record().fxTest) - ode.test!).frobeniusNorm / (ode.test! - g0).frobeniusNorm)
        }
        XCTAssertLessThan(errors[1], errors[0] / 2.5, "error shrinks with η: \(errors)")
        XCTAssertLessThan(errors[1], 5e-2)
    }
}
