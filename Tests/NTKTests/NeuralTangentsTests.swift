import Foundation
import NTKPipeline
import XCTest

@testable import NTK

/// Our kernels and predictors against neural-tangents 0.6.5 in float64, on fixtures made by
/// Tests/Fixtures/make_nt_fixtures.py (inputs and NT's outputs in one .npz each).
final class NeuralTangentsTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/Fixtures/nt/"

    func load(_ name: String) throws -> [String: Tensor] { try UserArrays.read(Self.dir + name) }

    func matrix(_ t: Tensor?) throws -> Matrix {
        let t = try XCTUnwrap(t)
        let cols = t.shape.count >= 2 ? t.shape.dropFirst().reduce(1, *) : 1
        return Matrix(rows: t.shape.first ?? 1, cols: cols, data: t.doubles())
    }

    func scalar(_ t: Tensor?) throws -> Double { try XCTUnwrap(t?.doubles().first) }

    func testAnalyticKernelsMatchNeuralTangents() throws {
        var worstOff = 0.0, worstDiag = 0.0
        for act in ["relu", "erf"] {
            for depth in 1...3 {
                for kind in ["sym", "x2"] {
                    let z = try load("analytic_\(act)_L\(depth)_\(kind).npz")
                    let x1 = try matrix(z["in_x1"]), x2 = kind == "x2" ? try matrix(z["in_x2"]) : nil
                    let spec = NetworkSpec(inputDim: x1.cols, widths: Array(repeating: 512, count: depth), outputs: 1,
                                           activation: Activation(name: act)!, wStd: try scalar(z["cfg_W_std"]), bStd: try scalar(z["cfg_b_std"]))
                    let k = try AnalyticKernels.compute(x1: x1, x2: x2, spec: spec)
                    for (ours, theirs) in [(k.nngp, try matrix(z["nngp"])), (k.ntk, try matrix(z["ntk"]))] {
                        for i in 0..<ours.rows {
                            for j in 0..<ours.cols {
                                let rel = abs(ours[i, j] - theirs[i, j]) / abs(theirs[i, j])
                                if kind == "sym" && i == j { worstDiag = max(worstDiag, rel) } else { worstOff = max(worstOff, rel) }
                                let tol = kind == "sym" && i == j && act == "relu" ? 1e-7 : 1e-10
                                XCTAssertLessThan(rel, tol, "\(act) L=\(depth) \(kind) (\(i),\(j))")
                            }
                        }
                    }
                }
            }
        }
        print("analytic vs neural-tangents: max relative difference off the diagonal \(worstOff), on the diagonal \(worstDiag)")
    }

    /// Parallel inputs, where arccos's infinite slope at c = 1 meets rounding. For relu, c = 1 exactly at every
    /// layer there, so the recursion reduces to K^l = σ_w²·K^{l−1}/2 (+ σ_b²), Θ^l = K^l + σ_w²·Θ^{l−1}/2: a few
    /// multiplications, exact to rounding — the reference here.
    /// - On the symmetric diagonal both tools use the c = 1 formulas (ours: the diagonal recursion; NT: its
    ///   `nngp_fn_diag` path) and are exact to 1e-15.
    /// - For a parallel pair across x1 and x2, both compute K12 by a matrix product whose rounding differs from
    ///   the separately computed K11·K22; √(K11·K22 − K12²) turns that ε into √ε, so both are only good to ~1e-8
    ///   (1e-7 allowed). On these fixtures (n₀ = 5) both happen to be exact.
    func testParallelInputsAgainstTheExactRecursion() throws {
        var diagOurs = 0.0, diagNT = 0.0, parOurs = 0.0, parNT = 0.0
        for depth in [1, 3] {
            let zs = try load("analytic_relu_L\(depth)_sym.npz"), zp = try load("analytic_relu_L\(depth)_parallel.npz")
            let x = try matrix(zs["in_x1"]), x2 = try matrix(zp["in_x2"])
            func exact(_ row: ArraySlice<Double>, scale: Double, w2: Double, b2: Double) -> Double {
                var k = w2 * row.reduce(0) { $0 + $1 * $1 } / Double(row.count) * scale + b2, t = k
                for _ in 0..<depth { k = w2 * k / 2 + b2; t = k + w2 * t / 2 }
                return t
            }
            let w2s = pow(try scalar(zs["cfg_W_std"]), 2), b2s = pow(try scalar(zs["cfg_b_std"]), 2)
            let sym = try AnalyticKernels.compute(x1: x, spec: NetworkSpec(inputDim: x.cols, widths: Array(repeating: 512, count: depth), outputs: 1,
                                                                          activation: .relu, wStd: w2s.squareRoot(), bStd: b2s.squareRoot()))
            let ntSym = try matrix(zs["ntk"])
            for i in 0..<x.rows {
                let t = exact(x.row(i), scale: 1, w2: w2s, b2: b2s)
                diagOurs = max(diagOurs, abs(sym.ntk[i, i] - t) / t)
                diagNT = max(diagNT, abs(ntSym[i, i] - t) / t)
            }
            let par = try AnalyticKernels.compute(x1: x, x2: x2, spec: NetworkSpec(inputDim: x.cols, widths: Array(repeating: 512, count: depth),
                                                                                outputs: 1, activation: .relu, wStd: 1.5, bStd: 0))
            let ntPar = try matrix(zp["ntk"])
            for (i, scale) in [(0, 1.0), (1, 2.0)] {  // x2[0] = x1[0], x2[1] = 2·x1[1]
                let t = exact(x.row(i), scale: scale, w2: 2.25, b2: 0)
                parOurs = max(parOurs, abs(par.ntk[i, i] - t) / t)
                parNT = max(parNT, abs(ntPar[i, i] - t) / t)
            }
        }
        XCTAssertLessThan(diagOurs, 1e-15)
        XCTAssertLessThan(diagNT, 1e-15)
        XCTAssertLessThan(parOurs, 1e-7)
        XCTAssertLessThan(parNT, 1e-7)
        print("relu NTK at parallel inputs, relative error vs the exact c = 1 recursion: diagonal ours \(diagOurs), NT \(diagNT); x1-vs-x2 pairs ours \(parOurs), NT \(parNT)")
    }

    func testGradientDescentMSEMatchesNeuralTangents() throws {
        let z = try load("predict_relu.npz")
        let y = try matrix(z["in_y_train"]), f0 = try matrix(z["in_fx_train_0"]), g0 = try matrix(z["in_fx_test_0"])
        let ktt = try matrix(z["analytic_ntk_train_train"]), ktd = try matrix(z["analytic_ntk_test_train"])
        // Our analytic kernels first: the predictor then runs on our own numbers.
        let spec = NetworkSpec(inputDim: 4, widths: [512, 512], outputs: 2, activation: .relu, wStd: try scalar(z["cfg_W_std"]), bStd: try scalar(z["cfg_b_std"]))
        let xtr = try matrix(z["in_x_train"]), xte = try matrix(z["in_x_test"])
        // (the diagonal of NT's train-train relu kernel carries its √ε arccos error, see the test below)
        XCTAssertLessThan(try AnalyticKernels.compute(x1: xtr, spec: spec).ntk.maxRelativeError(to: ktt, floor: 1e-3), 1e-8)
        XCTAssertLessThan(try AnalyticKernels.compute(x1: xte, x2: xtr, spec: spec).ntk.maxRelativeError(to: ktd, floor: 1e-3), 1e-10)

        let lr = try scalar(z["cfg_learning_rate"])
        let times = try XCTUnwrap(z["cfg_t"]).doubles()
        let p = try GradientDescentMSE(kTrainTrain: ktt, yTrain: y, learningRate: lr)
        let train = try p.train(at: times.map { .continuous($0) } + [.infinity], fxTrain0: f0)
        let test = try p.test(at: times.map { .continuous($0) } + [.infinity], fxTrain0: f0, fxTest0: g0, kTestTrain: ktd)
        let ntTrain = try XCTUnwrap(z["fx_train_t"]).doubles(), ntTest = try XCTUnwrap(z["fx_test_t"]).doubles()
        for (i, _) in times.enumerated() {
            let a = Matrix(rows: y.rows, cols: y.cols, data: Array(ntTrain[i * y.count..<(i + 1) * y.count]))
            let b = Matrix(rows: g0.rows, cols: g0.cols, data: Array(ntTest[i * g0.count..<(i + 1) * g0.count]))
            XCTAssertLessThan(train[i].maxRelativeError(to: a, floor: 1e-2), 1e-8, "train t=\(times[i])")
            XCTAssertLessThan(test[i].maxRelativeError(to: b, floor: 1e-2), 1e-8, "test t=\(times[i])")
        }
        XCTAssertLessThan(train.last!.maxRelativeError(to: try matrix(z["fx_train_inf"]), floor: 1e-2), 1e-8)
        XCTAssertLessThan(test.last!.maxRelativeError(to: try matrix(z["fx_test_inf"]), floor: 1e-2), 1e-8)
        // Invariants: t = 0 gives f₀; t = ∞ on the training set gives y.
        XCTAssertEqual(train[0], f0)
        XCTAssertEqual(train.last!, y)
    }

    /// gradient_descent_mse_ensemble, with diag_reg = 0 and 0.1 (the solves regularised, the NTK-GP covariance's
    /// K_dd not — neural-tangents' `nngp_dd`): means and covariances at every time and at ∞, to 1e-10.
    func testEnsembleMatchesNeuralTangents() throws {
        for file in ["predict_relu.npz", "predict_relu_diag_reg.npz"] {
            let z = try load(file)
            let y = try matrix(z["in_y_train"])
            let e = try EnsemblePredictor(nngpTrainTrain: try matrix(z["analytic_nngp_train_train"]),
                                          ntkTrainTrain: try matrix(z["analytic_ntk_train_train"]), yTrain: y,
                                          learningRate: try scalar(z["cfg_learning_rate"]),
                                          diagReg: try scalar(z["cfg_diag_reg"]))
            let ntd = try matrix(z["analytic_ntk_test_train"]), gtd = try matrix(z["analytic_nngp_test_train"])
            let gtt = try matrix(z["analytic_nngp_test_test"])
            let times = try XCTUnwrap(z["cfg_t"]).doubles()
            let (m, k) = (gtd.rows, y.cols)
            func close(_ a: Matrix, _ b: Matrix, _ what: String) {
                XCTAssertLessThan(a.maxRelativeError(to: b, floor: 1e-2), 1e-10, "\(file) \(what)")
            }
            for mode in EnsemblePredictor.Mode.allCases {
                let name = "ens_" + mode.rawValue
                let means = try XCTUnwrap(z[name + "_mean"]).doubles(), covs = try XCTUnwrap(z[name + "_cov"]).doubles()
                let trainMeans = try XCTUnwrap(z[name + "_mean_train"]).doubles()
                for (i, t) in times.enumerated() {
                    let g = try e.predict(mode, t: t, ntkTestTrain: ntd, nngpTestTrain: gtd, nngpTestTest: gtt)
                    close(g.mean, Matrix(rows: m, cols: k, data: Array(means[i * m * k..<(i + 1) * m * k])),
                          "\(mode) mean t=\(t)")
                    close(try XCTUnwrap(g.covariance), Matrix(rows: m, cols: m, data: Array(covs[i * m * m..<(i + 1) * m * m])),
                          "\(mode) cov t=\(t)")
                    let train = Array(trainMeans[i * y.count..<(i + 1) * y.count])
                    close(try e.trainMean(mode, t: t), Matrix(rows: y.rows, cols: k, data: train), "\(mode) train mean t=\(t)")
                }
                let g = try e.predict(mode, t: nil, ntkTestTrain: ntd, nngpTestTrain: gtd, nngpTestTest: gtt)
                close(g.mean, try matrix(z[name + "_mean_inf"]), "\(mode) mean ∞")
                close(try XCTUnwrap(g.covariance), try matrix(z[name + "_cov_inf"]), "\(mode) cov ∞")
            }
        }
    }
}

extension Matrix {
    var count: Int { rows * cols }
}
