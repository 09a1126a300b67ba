import Foundation
import NTKPipeline
import XCTest

@testable import NTK

final class LinearizedTests: XCTestCase {
    /// J(θ)·v from the tangent pass against central finite differences of f along v (float64).
    func testJVPAgainstFiniteDifferences() {
        var rng = SplitMix64(seed: 4)
        let x = Matrix(rows: 5, cols: 4, data: (0..<20).map { _ in rng.normal() })
        for param in Parameterization.allCases {
            for act in [Activation.tanh, .erf, .gelu, .relu, .softplus] {
                let spec = NetworkSpec(inputDim: 4, widths: [9, 7], outputs: 3, activation: act, wStd: [1.2, 1.4, 0.8], bStd: [0.3, 0, 0.2], parameterization: param)
                let net = MLP.initialize(spec, seed: 6)
                let v = (0..<net.parameterCount).map { _ in rng.normal() }
                let passes = Passes<Double>(spec: spec, maxBatch: 5)
                var jv = [Double](repeating: 0, count: 15)
                net.theta.withUnsafeBufferPointer { th in
                    x.data.withUnsafeBufferPointer { xp in
                        passes.forward(theta: th.baseAddress!, x: xp.baseAddress!, n: 5)
                        passes.jvp(theta: th.baseAddress!, x: xp.baseAddress!, n: 5, direction: v, out: &jv)
                    }
                }
                let h = 1e-6
                let up = MLP(spec: spec, theta: zip(net.theta, v).map { $0 + h * $1 }).forward(x).output
                let down = MLP(spec: spec, theta: zip(net.theta, v).map { $0 - h * $1 }).forward(x).output
                for i in 0..<15 {
                    let fd = (up.data[i] - down.data[i]) / (2 * h)
                    XCTAssertEqual(jv[i], fd, accuracy: 1e-7 * max(1, abs(fd)), "\(param) \(act)")
                }
            }
        }
    }

    /// Records evaluate the training and test sets in chunks when they are larger than the passes' rows: the same
    /// outputs, bit for bit, as in one pass over all rows — for the network and its linearization, SGD on a CNN.
    func testChunkedEvaluationEqualsOnePass() throws {
        var rng = SplitMix64(seed: 12)
        let layers: [Layer] = [
            .conv(channels: 6, filter: [3, 3], strides: [1, 1], padding: .same, wStd: 1.4, bStd: 0.1),
            .activation(.tanh), .avgPool(window: [2, 2], strides: [2, 2], padding: .valid, normalizeEdges: false),
            .flatten, .dense(out: 3, wStd: 1.2, bStd: 0.1),
        ]
        let net = try Network(layers: layers, input: Shape(spatial: [6, 6], channels: 2))
        let theta = net.initialize(seed: 3)
        func m(_ rows: Int, _ cols: Int) -> Matrix {
            Matrix(rows: rows, cols: cols, data: (0..<rows * cols).map { _ in rng.normal() })
        }
        let (x, y, xt, yt) = (m(21, 72), m(21, 3), m(11, 72), m(11, 3))
        var c = TrainingConfig()
        c.learningRate = 0.05; c.momentum = 0.9; c.batchSize = 4; c.seed = 5
        for model in [TrainedModel.network, .linearized] {
            let one = Trainer<Double>(network: net, theta0: theta, xTrain: x, yTrain: y, xTest: xt, yTest: yt,
                                      config: c, model: model)
            let chunked = Trainer<Double>(network: net, theta0: theta, xTrain: x, yTrain: y, xTest: xt, yTest: yt,
                                          config: c, model: model, passRows: 4)
            XCTAssertEqual(one.passes.maxBatch, 21)
            XCTAssertEqual(chunked.passes.maxBatch, 4)
            for _ in 0..<3 {
                for _ in 0..<5 { try one.stepOnce(); try chunked.stepOnce() }
                let a = one.record(), b = chunked.record()
                XCTAssertEqual(a.fxTrain, b.fxTrain, "\(model)")
                XCTAssertEqual(a.fxTest, b.fxTest, "\(model)")
                XCTAssertEqual(a.trainLoss, b.trainLoss, "\(model)")
            }
        }
    }

    /// f_lin at θ₀ is f₀ exactly; weight-space GD of the linearized network equals the exact discrete closed form
    /// f_s = y + (I − ηΘ̂₀/(nk))^s (f₀ − y) with the full empirical NTK — to 1e-9 relative after 1,000 steps (float64).
    func testLinearizedGDEqualsDiscreteClosedForm() throws {
        var rng = SplitMix64(seed: 8)
        let n = 10, m = 4, k = 3
        let x = Matrix(rows: n, cols: 5, data: (0..<n * 5).map { _ in rng.normal() }), xt = Matrix(rows: m, cols: 5, data: (0..<m * 5).map { _ in rng.normal() })
        let y = Matrix(rows: n, cols: k, data: (0..<n * k).map { _ in rng.normal() })
        let spec = NetworkSpec(inputDim: 5, widths: [64, 48], outputs: k, activation: .erf, wStd: 1.3, bStd: 0.2)
        let net = MLP.initialize(spec, seed: 3)
        let ntk = EmpiricalNTK<Double>(net)
        let full = ntk.compute(x1: x, output: .full), fullTest = ntk.compute(x1: xt, x2: x, output: .full)
        let kTT = Matrix(rows: n * k, cols: n * k, data: full.ntk), kST = Matrix(rows: m * k, cols: n * k, data: fullTest.ntk)
        var c = TrainingConfig()
        c.learningRate = 0.5 * (try GradientDescentMSE(kTrainTrain: kTT, yTrain: y).maxLearningRate())
        let lin = Trainer<Double>(spec: spec, theta0: net.theta, xTrain: x, yTrain: y, xTest: xt, yTest: Matrix(rows: m, cols: k), config: c, model: .linearized)
        // f₀ as the network's own forward pass computes it (same passes, same rounding)
        let f0rec = Trainer<Double>(spec: spec, theta0: net.theta, xTrain: x, yTrain: y, xTest: xt, yTest: Matrix(rows: m, cols: k), config: c).record()
        let f0 = Matrix(rows: n, cols: k, data: f0rec.fxTrain), g0 = Matrix(rows: m, cols: k, data: f0rec.fxTest)
        let start = lin.record()
        XCTAssertEqual(start.fxTrain, f0.data, "f_lin(θ₀) = f₀ exactly")
        XCTAssertEqual(start.fxTest, g0.data)
        for _ in 0..<1000 { try lin.stepOnce() }
        let rec = lin.record()
        let closed = try GradientDescentMSE(kTrainTrain: kTT, yTrain: y, learningRate: c.learningRate)
        let trainClosed = try closed.train(at: [.steps(1000)], fxTrain0: f0)[0]
        let testClosed = try closed.test(at: [.steps(1000)], fxTrain0: f0, fxTest0: g0, kTestTrain: kST)[0]
        let scale = max(trainClosed.data.map(abs).max()!, 1e-3)
        for (a, b) in zip(rec.fxTrain, trainClosed.data) { XCTAssertEqual(a, b, accuracy: 1e-9 * max(abs(b), scale)) }
        for (a, b) in zip(rec.fxTest, testClosed.data) { XCTAssertEqual(a, b, accuracy: 1e-9 * max(abs(b), scale)) }
        XCTAssertLessThan(rec.trainLoss, 0.1 * start.trainLoss, "it trained")
    }

    /// The linearized model trained 100 steps matches neural-tangents' `nt.linearize` loop to 1e-8 (float64).
    func testLinearizedTrainingMatchesNeuralTangents() throws {
        for act in [Activation.relu, .erf] {
            let z = try UserArrays.read(NeuralTangentsTests.dir + "train_\(act).npz")
            func m(_ name: String) -> Matrix {
                let t = z[name]!
                return Matrix(rows: t.shape[0], cols: t.shape.count > 1 ? t.shape[1] : 1, data: t.doubles())
            }
            let spec = NetworkSpec(inputDim: 6, widths: [32, 32], outputs: 3, activation: act, wStd: 1.3, bStd: 0.2)
            let theta = (0..<3).flatMap { z["in_W\($0)"]!.doubles() + z["in_b\($0)"]!.doubles() }
            var c = TrainingConfig()
            c.learningRate = 0.5
            let t = Trainer<Double>(spec: spec, theta0: theta, xTrain: m("in_x_train"), yTrain: m("in_y_train"), xTest: m("in_x_test"),
                                    yTest: m("in_y_test"), config: c, model: .linearized)
            let ref = z["lin_fx_train"]!.doubles(), refTest = z["lin_fx_test"]!.doubles()
            for (r, s) in [0, 1, 10, 100].enumerated() {
                while t.step < s { try t.stepOnce() }
                let rec = t.record()
                for (a, b) in zip(rec.fxTrain, ref[r * 30..<(r + 1) * 30]) { XCTAssertEqual(a, b, accuracy: 1e-8 * max(abs(b), 1e-2), "\(act) step \(s)") }
                for (a, b) in zip(rec.fxTest, refTest[r * 12..<(r + 1) * 12]) { XCTAssertEqual(a, b, accuracy: 1e-8 * max(abs(b), 1e-2), "\(act) test step \(s)") }
            }
        }
    }
}
