import Foundation
import NTKPipeline
import XCTest

@testable import NTK

final class TrainingTests: XCTestCase {
    func data(n: Int = 7, d: Int = 4, k: Int = 3, seed: UInt64 = 1) -> (Matrix, Matrix) {
        var rng = SplitMix64(seed: seed)
        let x = Matrix(rows: n, cols: d, data: (0..<n * d).map { _ in rng.normal() })
        var y = Matrix(rows: n, cols: k)
        for r in 0..<n { y[r, Int(rng.below(k))] = 1 }
        return (x, y)
    }

    /// ∂L/∂θ from the backward pass against central finite differences of the loss (float64, relative ≤ 1e-6),
    /// for every activation × parameterization × loss.
    func testGradientsAgainstFiniteDifferences() {
        let (x, y) = data()
        for act in [Activation.relu, .leakyRelu(0.1), .abs, .erf, .tanh, .identity, .gelu, .softplus] {
            for param in Parameterization.allCases {
                for loss in Loss.allCases {
                    let spec = NetworkSpec(inputDim: 4, widths: [6, 5], outputs: 3, activation: act, wStd: [1.2, 1.4, 0.9], bStd: [0.3, 0, 0.2],
                                           parameterization: param)
                    let net = MLP.initialize(spec, seed: 4)
                    let passes = Passes<Double>(spec: spec, maxBatch: 7)
                    func lossAt(_ theta: [Double]) -> Double {
                        theta.withUnsafeBufferPointer { th in x.data.withUnsafeBufferPointer { passes.forward(theta: th.baseAddress!, x: $0.baseAddress!, n: 7) } }
                        return y.data.withUnsafeBufferPointer { loss.evaluate(passes.outputPointer, $0.baseAddress!, n: 7, k: 3, grad: nil) }
                    }
                    // analytic gradient
                    var dOut = [Double](repeating: 0, count: 21), grad = [Double](repeating: 0, count: net.parameterCount)
                    _ = lossAt(net.theta)
                    _ = y.data.withUnsafeBufferPointer { loss.evaluate(passes.outputPointer, $0.baseAddress!, n: 7, k: 3, grad: &dOut) }
                    net.theta.withUnsafeBufferPointer { th in
                        x.data.withUnsafeBufferPointer { xp in passes.backward(theta: th.baseAddress!, x: xp.baseAddress!, n: 7, dOutput: dOut, grad: &grad) }
                    }
                    var worst = 0.0
                    let scale = grad.map(abs).max()!
                    for i in 0..<net.parameterCount {
                        var tp = net.theta, tm = net.theta
                        let h = 1e-6
                        tp[i] += h; tm[i] -= h
                        let fd = (lossAt(tp) - lossAt(tm)) / (2 * h)
                        worst = max(worst, abs(fd - grad[i]) / max(abs(fd), 1e-3 * scale))
                    }
                    // relu/leaky/abs: a finite difference across a kink would disagree; random inputs avoid it.
                    XCTAssertLessThan(worst, 1e-6, "\(act) \(param) \(loss)")
                }
            }
        }
    }

    /// PAPER §1.6 (S37): standard parameterization trained with η0/n_max equals NTK parameterization trained with
    /// per-layer rates η_W,l = n_l/(n_max·σ_w²)·η0, η_b = η0/(n_max·σ_b²) — to float64 round-off over 100 steps.
    func testStandardAndNTKParameterizationsAreEquivalent() throws {
        let (x, y) = data(n: 8)
        let widths = [16, 24], wStd = [1.3, 1.1, 0.8], bStd = [0.4, 0.2, 0.3]
        let ntkSpec = NetworkSpec(inputDim: 4, widths: widths, outputs: 3, activation: .tanh, wStd: wStd, bStd: bStd, parameterization: .ntk)
        var stdSpec = ntkSpec
        stdSpec.parameterization = .standard
        let ntkNet = MLP.initialize(ntkSpec, seed: 2)
        // The same function: W = σ_w/√fan_in·ω, b = σ_b·β.
        var stdNet = MLP(spec: stdSpec, theta: ntkNet.theta)
        for (l, layer) in stdNet.layers.enumerated() {
            for i in layer.w..<layer.w + layer.fanIn * layer.fanOut { stdNet.theta[i] *= wStd[l] / Double(layer.fanIn).squareRoot() }
            if let b = layer.b { for i in b..<b + layer.fanOut { stdNet.theta[i] *= bStd[l] } }
        }
        let nMax = Double(widths.max()!), eta0 = 2.0
        var c1 = TrainingConfig(), c2 = TrainingConfig()
        c1.learningRate = eta0 / nMax
        c1.steps = 100
        c2.learningRate = eta0
        c2.lrScaleW = ntkNet.layers.enumerated().map { l, layer in Double(layer.fanIn) / (nMax * wStd[l] * wStd[l]) }
        c2.lrScaleB = bStd.map { 1 / (nMax * $0 * $0) }
        let tStd = Trainer<Double>(spec: stdSpec, theta0: stdNet.theta, xTrain: x, yTrain: y, config: c1)
        let tNTK = Trainer<Double>(spec: ntkSpec, theta0: ntkNet.theta, xTrain: x, yTrain: y, config: c2)
        for _ in 0..<100 {
            try tStd.stepOnce()
            try tNTK.stepOnce()
        }
        let a = tStd.record().fxTrain, b = tNTK.record().fxTrain
        let worst = zip(a, b).map { abs($0 - $1) / max(abs($1), 1e-3) }.max()!
        XCTAssertLessThan(worst, 1e-12)
        // and it trained for real (the loss halved at least):
        XCTAssertLessThan(tStd.record().trainLoss, 0.5 * Loss.mse.evaluateMatrix(MLP(spec: stdSpec, theta: stdNet.theta).forward(x).output, y))
    }

    /// Same init weights and data as neural-tangents' reference loop (Tests/Fixtures/nt/train_*.npz): outputs after
    /// 0, 1, 10 and 100 full-batch GD steps on MSE match to 1e-8 relative in float64.
    func testTrainingMatchesNeuralTangentsReference() throws {
        for act in [Activation.relu, .erf] {
            let z = try UserArrays.read(NeuralTangentsTests.dir + "train_\(act).npz")
            func m(_ name: String) -> Matrix {
                let t = z[name]!
                return Matrix(rows: t.shape[0], cols: t.shape.count > 1 ? t.shape[1] : 1, data: t.doubles())
            }
            let x = m("in_x_train"), y = m("in_y_train"), xt = m("in_x_test")
            let spec = NetworkSpec(inputDim: 6, widths: [32, 32], outputs: 3, activation: act, wStd: 1.3, bStd: 0.2)
            let theta = (0..<3).flatMap { z["in_W\($0)"]!.doubles() + z["in_b\($0)"]!.doubles() }
            var c = TrainingConfig()
            c.learningRate = 0.5
            c.steps = 100
            let t = Trainer<Double>(spec: spec, theta0: theta, xTrain: x, yTrain: y, xTest: xt, yTest: m("in_y_test"), config: c)
            let ref = z["fx_train"]!.doubles(), refTest = z["fx_test"]!.doubles()
            for (r, s) in [0, 1, 10, 100].enumerated() {
                while t.step < s { try t.stepOnce() }
                let rec = t.record()
                for (a, b) in zip(rec.fxTrain, ref[r * 30..<(r + 1) * 30]) { XCTAssertEqual(a, b, accuracy: 1e-8 * max(abs(b), 1e-2), "\(act) step \(s)") }
                for (a, b) in zip(rec.fxTest, refTest[r * 12..<(r + 1) * 12]) { XCTAssertEqual(a, b, accuracy: 1e-8 * max(abs(b), 1e-2), "\(act) test step \(s)") }
            }
            for (a, b) in zip(t.state.theta, (0..<3).flatMap { z["final_W\($0)"]!.doubles() + z["final_b\($0)"]!.doubles() }) {
                XCTAssertEqual(a, b, accuracy: 1e-8 * max(abs(b), 1e-2))
            }
        }
    }

    /// A run stopped and resumed from its state ends bit-identical to an uninterrupted one (SGD + momentum, f32).
    func testResumeIsExact() throws {
        let (x, y) = data(n: 20)
        let spec = NetworkSpec(inputDim: 4, widths: [16], outputs: 3, activation: .relu, wStd: 1.4, bStd: 0.1)
        var c = TrainingConfig()
        c.batchSize = 6
        c.momentum = 0.9
        c.learningRate = 0.3
        c.loss = .cross_entropy
        c.seed = 8
        let theta0 = MLP.initialize(spec, seed: 1).theta
        let straight = Trainer<Float>(spec: spec, theta0: theta0, xTrain: x, yTrain: y, config: c)
        for _ in 0..<40 { try straight.stepOnce() }
        let first = Trainer<Float>(spec: spec, theta0: theta0, xTrain: x, yTrain: y, config: c)
        for _ in 0..<17 { try first.stepOnce() }
        let resumed = Trainer<Float>(spec: spec, theta0: theta0, xTrain: x, yTrain: y, config: c)
        resumed.restore(first.state)
        for _ in 17..<40 { try resumed.stepOnce() }
        XCTAssertEqual(resumed.state.theta, straight.state.theta)
    }

    func testDivergenceIsReported() {
        let (x, y) = data()
        let spec = NetworkSpec(inputDim: 4, widths: [32], outputs: 3, activation: .relu, wStd: 1.4, bStd: 0.1)
        var c = TrainingConfig()
        c.learningRate = 1e4
        let t = Trainer<Double>(spec: spec, theta0: MLP.initialize(spec, seed: 1).theta, xTrain: x, yTrain: y, config: c)
        XCTAssertThrowsError(try { for _ in 0..<50 { try t.stepOnce() } }()) { e in
            XCTAssertTrue(e is TrainingDiverged, "\(e)")
        }
    }
}

extension Loss {
    func evaluateMatrix(_ f: Matrix, _ y: Matrix) -> Double {
        f.data.withUnsafeBufferPointer { fp in y.data.withUnsafeBufferPointer { evaluate(fp.baseAddress!, $0.baseAddress!, n: f.rows, k: f.cols, grad: nil) } }
    }
}
