import Foundation
import XCTest

@testable import NTK

final class EmpiricalKernelTests: XCTestCase {
    /// The layer-wise empirical NTK equals J·Jᵀ/k from a Jacobian built by central finite differences of the
    /// forward pass (float64, a tiny network), for both parameterizations; K̂ is the read-out feature kernel.
    func testEmpiricalNTKEqualsFiniteDifferenceJacobian() {
        var rng = SplitMix64(seed: 11)
        let x = Matrix(rows: 3, cols: 4, data: (0..<12).map { _ in rng.normal() })
        for param in Parameterization.allCases {
            for act in [Activation.relu, .erf, .tanh] {
                let spec = NetworkSpec(inputDim: 4, widths: [5, 3], outputs: 2, activation: act, wStd: [1.3, 1.1, 0.9], bStd: [0.2, 0, 0.4], parameterization: param)
                var net = MLP.initialize(spec, seed: 3)
                let k = EmpiricalKernels.compute(net, x1: x)
                // Jacobian [N·k, P] by central differences.
                let p = net.parameterCount, h = 1e-6
                var jac = [[Double]](repeating: [Double](repeating: 0, count: p), count: 3 * 2)
                for j in 0..<p {
                    let t0 = net.theta[j]
                    net.theta[j] = t0 + h
                    let up = net.forward(x).output
                    net.theta[j] = t0 - h
                    let down = net.forward(x).output
                    net.theta[j] = t0
                    for r in 0..<6 { jac[r][j] = (up.data[r] - down.data[r]) / (2 * h) }
                }
                for a in 0..<3 {
                    for b in 0..<3 {
                        var traced = 0.0
                        for i in 0..<2 { traced += zip(jac[a * 2 + i], jac[b * 2 + i]).reduce(0) { $0 + $1.0 * $1.1 } }
                        XCTAssertEqual(k.ntk[a, b], traced / 2, accuracy: 1e-7 * max(1, abs(traced)), "\(param) \(act) (\(a),\(b))")
                    }
                }
                // K̂: read-out features x̄ = [σ_w·a_L/√n_L, σ_b].
                let aL = net.forward(x).cache.inputs.last!
                for a in 0..<3 {
                    for b in 0..<3 {
                        let dot = zip(aL.row(a), aL.row(b)).reduce(0) { $0 + $1.0 * $1.1 }
                        XCTAssertEqual(k.nngp[a, b], 0.81 * dot / 3 + 0.16, accuracy: 1e-12, "\(param) \(act) K̂")
                    }
                }
            }
        }
    }

    /// Monte Carlo: the mean empirical NTK and NNGP over 100 independently initialised networks of width 1,024
    /// agree with the analytic kernels to relative Frobenius error ≤ 0.04 (neural-tangents' own tolerance).
    func testMonteCarloMeanApproachesAnalyticKernels() throws {
        var rng = SplitMix64(seed: 5)
        let x = Matrix(rows: 6, cols: 5, data: (0..<30).map { _ in rng.normal() / 2 })
        for act in [Activation.relu, .erf] {
            let spec = NetworkSpec(inputDim: 5, widths: [1024, 1024], outputs: 1, activation: act, wStd: 1.4, bStd: 0.1)
            let analytic = try AnalyticKernels.compute(x1: x, spec: spec)
            var ntk = Matrix(rows: 6, cols: 6), nngp = ntk
            let m = 100
            for s in 0..<m {
                let k = EmpiricalKernels.compute(MLP.initialize(spec, seed: UInt64(1000 + s)), x1: x)
                ntk = ntk + k.ntk
                nngp = nngp + k.nngp
            }
            ntk = (1 / Double(m)) * ntk
            nngp = (1 / Double(m)) * nngp
            let eNTK = (ntk - analytic.ntk).frobeniusNorm / analytic.ntk.frobeniusNorm
            let eNNGP = (nngp - analytic.nngp).frobeniusNorm / analytic.nngp.frobeniusNorm
            XCTAssertLessThan(eNTK, 0.04, "\(act) NTK")
            XCTAssertLessThan(eNNGP, 0.04, "\(act) NNGP")
            print("Monte Carlo (M = \(m), width 1024) vs analytic, \(act): NTK \(eNTK), NNGP \(eNNGP)")
        }
    }

    func testInitIsSeededAndMatchesParameterization() {
        let spec = NetworkSpec(inputDim: 30, widths: [400], outputs: 2, activation: .relu, wStd: 2, bStd: 0.5, parameterization: .standard)
        let a = MLP.initialize(spec, seed: 9), b = MLP.initialize(spec, seed: 9)
        XCTAssertEqual(a.theta, b.theta)
        XCTAssertNotEqual(a.theta, MLP.initialize(spec, seed: 10).theta)
        let w0 = a.theta[a.layers[0].w..<a.layers[0].w + 30 * 400]
        let variance = w0.reduce(0) { $0 + $1 * $1 } / Double(w0.count)
        XCTAssertEqual(variance, 4.0 / 30, accuracy: 0.01 * 4 / 30 * 3)  // σ_w²/fan_in, 12,000 draws
        XCTAssertEqual(a.parameterCount, 30 * 400 + 400 + 400 * 2 + 2)
    }
}
