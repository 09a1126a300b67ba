import Foundation
import XCTest

@testable import NTK

final class PredictorTests: XCTestCase {
    func data(n: Int = 12, m: Int = 5, d: Int = 6, k: Int = 3, seed: UInt64 = 1) throws -> (ktt: Matrix, ktd: Matrix, y: Matrix, f0: Matrix, g0: Matrix) {
        var rng = SplitMix64(seed: seed)
        let xtr = Matrix(rows: n, cols: d, data: (0..<n * d).map { _ in rng.normal() })
        let xte = Matrix(rows: m, cols: d, data: (0..<m * d).map { _ in rng.normal() })
        let spec = NetworkSpec(inputDim: d, widths: [64, 64], outputs: k, activation: .relu, wStd: 1.4, bStd: 0.2)
        let ktt = try AnalyticKernels.compute(x1: xtr, spec: spec).ntk, ktd = try AnalyticKernels.compute(x1: xte, x2: xtr, spec: spec).ntk
        return (ktt, ktd, Matrix(rows: n, cols: k, data: (0..<n * k).map { _ in rng.normal() }),
                Matrix(rows: n, cols: k, data: (0..<n * k).map { _ in 0.3 * rng.normal() }), Matrix(rows: m, cols: k, data: (0..<m * k).map { _ in 0.3 * rng.normal() }))
    }

    /// Exact discrete GD (I − ηΘ/(nk))^s approaches gradient flow at t = η·s as η → 0 (error O(η)).
    func testDiscreteStepsApproachContinuousTime() throws {
        let (ktt, ktd, y, f0, g0) = try data()
        let total = 3.0  // continuous time η·steps
        var lastError = Double.infinity
        for steps in [10, 100, 1000] {
            let eta = total / Double(steps)
            let p = try GradientDescentMSE(kTrainTrain: ktt, yTrain: y, learningRate: eta)
            let disc = try p.test(at: [.steps(steps)], fxTrain0: f0, fxTest0: g0, kTestTrain: ktd)[0]
            let cont = try p.test(at: [.continuous(Double(steps))], fxTrain0: f0, fxTest0: g0, kTestTrain: ktd)[0]
            let err = (disc - cont).frobeniusNorm / cont.frobeniusNorm
            XCTAssertLessThan(err, lastError / 5, "steps \(steps)")
            lastError = err
        }
        XCTAssertLessThan(lastError, 1e-3)
    }

    /// Discrete steps equal the explicit recursion f ← f − η/(nk)·Θ(f − y) (train) and the matching test update.
    func testDiscreteStepsEqualTheRecursion() throws {
        let (ktt, ktd, y, f0, g0) = try data()
        let eta = 0.7 * (try GradientDescentMSE(kTrainTrain: ktt, yTrain: y).maxLearningRate())
        let p = try GradientDescentMSE(kTrainTrain: ktt, yTrain: y, learningRate: eta)
        var f = f0, g = g0
        let c = eta / Double(y.rows * y.cols)
        for _ in 0..<50 {
            let r = f - y
            g = g - c * Matrix.product(ktd, r)
            f = f - c * Matrix.product(ktt, r)
        }
        XCTAssertLessThan(try p.train(at: [.steps(50)], fxTrain0: f0)[0].maxRelativeError(to: f, floor: 1e-3), 1e-10)
        XCTAssertLessThan(try p.test(at: [.steps(50)], fxTrain0: f0, fxTest0: g0, kTestTrain: ktd)[0].maxRelativeError(to: g, floor: 1e-3), 1e-10)
    }

    /// The full [nk, nk] kernel Θ ⊗ I_k gives the same predictions as the traced [n, n] kernel.
    func testFullKernelOfKroneckerFormEqualsTraced() throws {
        let (ktt, ktd, y, f0, g0) = try data(n: 6, m: 4, k: 2)
        func kron(_ a: Matrix, _ k: Int) -> Matrix {
            var out = Matrix(rows: a.rows * k, cols: a.cols * k)
            for i in 0..<a.rows { for j in 0..<a.cols { for o in 0..<k { out[i * k + o, j * k + o] = a[i, j] } } }
            return out
        }
        let traced = try GradientDescentMSE(kTrainTrain: ktt, yTrain: y, learningRate: 0.5)
        let full = try GradientDescentMSE(kTrainTrain: kron(ktt, 2), yTrain: y, learningRate: 0.5)
        let times: [PredictionTime] = [.continuous(3), .steps(7), .infinity]
        for (a, b) in zip(try traced.test(at: times, fxTrain0: f0, fxTest0: g0, kTestTrain: ktd),
                          try full.test(at: times, fxTrain0: f0, fxTest0: g0, kTestTrain: kron(ktd, 2))) {
            XCTAssertLessThan(a.maxRelativeError(to: b, floor: 1e-3), 1e-10)
        }
    }

    /// A kernel that is not PSD (a float32-rounded, rank-deficient NTK plus a negative perturbation) still
    /// gives finite predictions at every time, and says what it repaired.
    func testNonPSDKernelIsRepairedAndReported() throws {
        var (ktt, ktd, y, f0, g0) = try data(n: 10)
        // Make it singular and indefinite: duplicate a training point, round to float32, subtract a bit.
        for j in 0..<ktt.cols { ktt[1, j] = ktt[0, j]; ktt[j, 1] = ktt[j, 0] }
        ktt[1, 1] = ktt[0, 0]
        ktt.data = ktt.data.map { Double(Float($0)) }
        for i in 0..<ktt.rows { ktt[i, i] -= 1e-4 }
        let p = try GradientDescentMSE(kTrainTrain: ktt, yTrain: y)
        let out = try p.test(at: [.continuous(1), .continuous(1e6), .steps(10), .infinity], fxTrain0: f0, fxTest0: g0, kTestTrain: ktd)
        for o in out { XCTAssertTrue(o.data.allSatisfy(\.isFinite)) }
        let text = p.kernel.repairs.joined(separator: "\n")
        XCTAssertTrue(text.contains("not positive semi-definite"), text)
        XCTAssertTrue(text.contains("added"), text)
        let e = try EnsemblePredictor(nngpTrainTrain: ktt, ntkTrainTrain: ktt, yTrain: y)
        let g = try e.predict(.ntk, t: nil, ntkTestTrain: ktd, nngpTestTrain: ktd, nngpTestTest: Matrix.identity(ktd.rows))
        XCTAssertTrue(g.mean.data.allSatisfy(\.isFinite) && g.covariance!.data.allSatisfy(\.isFinite))
        XCTAssertFalse(e.repairs.isEmpty)
    }

    func testNaNKernelIsRejected() throws {
        var (ktt, _, y, _, _) = try data(n: 4)
        ktt[2, 3] = .nan
        XCTAssertThrowsError(try GradientDescentMSE(kTrainTrain: ktt, yTrain: y)) { e in
            XCTAssertTrue("\(e)".contains("k_train_train contains NaN or Inf"), "\(e)")
        }
    }

    func testZeroAndInfiniteTime() throws {
        let (ktt, ktd, y, f0, g0) = try data()
        let p = try GradientDescentMSE(kTrainTrain: ktt, yTrain: y, diagReg: 1e-4)
        XCTAssertEqual(try p.test(at: [.continuous(0)], fxTrain0: f0, fxTest0: g0, kTestTrain: ktd)[0], g0)
        XCTAssertEqual(try p.train(at: [.steps(0)], fxTrain0: f0)[0], f0)
        XCTAssertEqual(try p.train(at: [.infinity], fxTrain0: f0)[0], y)
    }
}
