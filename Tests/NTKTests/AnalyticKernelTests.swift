import Foundation
import XCTest

@testable import NTK

final class AnalyticKernelTests: XCTestCase {
    /// PAPER.md §2.10's reference table: x = (1, 0), x' = (0.6, 0.8), output-layer kernels, to 1e-6.
    func testPaperReferenceTable() throws {
        let rows: [(Activation, Double, Double, Int, [Double])] = [
            (.relu, 2.0, 0.1, 1, [1.200000, 0.873788, 2.300000, 1.377482]),
            (.relu, 2.0, 0.1, 3, [1.400000, 1.163813, 5.000000, 2.799274]),
            (.relu, 2.0, 0.1, 5, [1.600000, 1.416389, 8.100000, 4.380336]),
            (.relu, 2.0, 0.0, 1, [1.000000, 0.677548, 2.000000, 1.100447]),
            (.relu, 2.0, 0.0, 3, [1.000000, 0.775312, 4.000000, 1.952287]),
            (.erf, 1.5, 0.0, 1, [0.614498, 0.351670, 1.330696, 0.720150]),
            (.erf, 1.5, 0.0, 3, [0.530351, 0.280806, 2.575094, 1.183418]),
            (.erf, 1.5, 0.0, 5, [0.508878, 0.250527, 4.108693, 1.615998]),
        ]
        let x = Matrix(rows: 2, cols: 2, data: [1, 0, 0.6, 0.8])
        for (act, w2, b2, depth, expected) in rows {
            let spec = NetworkSpec(inputDim: 2, widths: Array(repeating: 100, count: depth), outputs: 1, activation: act,
                                   wStd: w2.squareRoot(), bStd: b2.squareRoot())
            let k = try AnalyticKernels.compute(x1: x, spec: spec)
            let got = [k.nngp[0, 0], k.nngp[0, 1], k.ntk[0, 0], k.ntk[0, 1]]
            for (g, e) in zip(got, expected) { XCTAssertEqual(g, e, accuracy: 1e-6, "\(act) σw²=\(w2) σb²=\(b2) L=\(depth)") }
            XCTAssertEqual(k.nngp[1, 0], k.nngp[0, 1])
            // Sanity from the paper: relu, σ_w² = 2, σ_b² = 0: diagonal NTK = (L+1)·K(x,x).
            if act == .relu && b2 == 0 { XCTAssertEqual(k.ntk[0, 0], Double(depth + 1) * k.nngp[0, 0], accuracy: 1e-12) }
        }
    }

    /// T and Ṫ against 2·10⁶-sample Monte Carlo (seeded), to 1e-3, for closed forms and quadrature alike.
    func testExpectationsAgainstMonteCarlo() throws {
        let (d1, d2, q) = (0.7, 1.3, 0.5)
        let s1 = d1.squareRoot(), c = q / (d1 * d2).squareRoot(), s2 = d2.squareRoot(), sc = (1 - c * c).squareRoot()
        for act in [Activation.relu, .erf, .tanh, .gelu, .softplus, .leakyRelu(0.2), .abs] {
            var rng = SplitMix64(seed: 42)
            var t = 0.0, td = 0.0
            let n = 2_000_000
            for _ in 0..<n {
                let z1 = rng.normal(), z2 = rng.normal()
                let a = act.evaluate(s1 * z1), b = act.evaluate(s2 * (c * z1 + sc * z2))
                t += a.value * b.value
                td += a.derivative * b.derivative
            }
            let e = try AnalyticKernels.expectations(act, d1: d1, d2: d2, q: q)
            XCTAssertEqual(e.t, t / Double(n), accuracy: 1e-3, "T of \(act)")
            XCTAssertEqual(e.tdot, td / Double(n), accuracy: 1e-3, "Ṫ of \(act)")
        }
    }

    /// The quadrature path reproduces the closed forms to 1e-10: the piecewise-linear family exactly (the
    /// angle is split at the kinks), erf with 48 nodes and gelu with 96 (smooth but slower to converge).
    func testQuadratureMatchesClosedForms() throws {
        for act in [Activation.relu, .erf, .abs, .leakyRelu(0.1), .identity, .gelu] {
            for (d1, d2, q) in [(1.0, 1.0, 0.3), (0.5, 2.0, -0.9), (1.0, 1.0, 1.0), (2.0, 0.3, 0.0), (0.05, 3.0, 0.1)] {
                let closed = try AnalyticKernels.expectations(act, d1: d1, d2: d2, q: q)
                let nodes = act == .erf ? 48 : act == .gelu ? 96 : 16
                let quad = try AnalyticKernels.expectations(act, d1: d1, d2: d2, q: q, quadratureNodes: nodes)
                XCTAssertEqual(quad.t, closed.t, accuracy: 1e-10 * max(1, abs(closed.t)), "T \(act) \((d1, d2, q))")
                XCTAssertEqual(quad.tdot, closed.tdot, accuracy: 1e-10 * max(1, abs(closed.tdot)), "Ṫ \(act) \((d1, d2, q))")
            }
        }
    }

    func testSymmetricBlockedAndGeneralPathsAgree() throws {
        var rng = SplitMix64(seed: 7)
        let x = Matrix(rows: 13, cols: 5, data: (0..<65).map { _ in rng.normal() })
        for act in [Activation.relu, .erf, .tanh] {
            for param in Parameterization.allCases {
                let spec = NetworkSpec(inputDim: 5, widths: [64, 32], outputs: 1, activation: act, wStd: 1.3, bStd: 0.2, parameterization: param)
                var o = AnalyticKernels.Options()
                o.quadratureNodes = 8
                let full = try AnalyticKernels.compute(x1: x, spec: spec, options: o)
                let general = try AnalyticKernels.compute(x1: x, x2: x, spec: spec, options: o)
                o.maxWorkspaceBytes = 8 * 13 * 2 * 3  // three rows per block
                o.threads = 1
                let blocked = try AnalyticKernels.compute(x1: x, spec: spec, options: o)
                // Equal to rounding: OpenBLAS's SYRK and GEMM kernels (SkylakeX, Haswell, …) may sum the Gram's
                // products in different orders for a whole matrix and for row blocks of it.
                for (a, b, name) in [(blocked.nngp, full.nngp, "nngp"), (blocked.ntk, full.ntk, "ntk")] {
                    let scale = b.data.map(abs).max()!
                    XCTAssertLessThanOrEqual(zip(a.data, b.data).map { abs($0 - $1) }.max()!, 1e-14 * scale, "\(name) \(act) \(param)")
                }
                // Off the diagonal the general path (x2 = x given) agrees; on the diagonal it carries the √ε error of
                // arccos near c = 1 from the Gram product's rounding, which the symmetric path avoids.
                for i in 0..<13 {
                    for j in 0..<13 {
                        // tanh: (x_i, x_j) and (x_j, x_i) differ by the quadrature error (8 nodes here)
                        let tol = act == .tanh ? 1e-4 : i == j ? 1e-6 : 1e-11
                        XCTAssertEqual(general.nngp[i, j], full.nngp[i, j], accuracy: tol * abs(full.nngp[i, j]) + 1e-13, "\(act) \(param) (\(i),\(j))")
                        XCTAssertEqual(general.ntk[i, j], full.ntk[i, j], accuracy: tol * abs(full.ntk[i, j]) + 1e-13, "\(act) \(param) (\(i),\(j))")
                    }
                }
                XCTAssertEqual(full.nngp, full.nngp.transposed)
                if act == .tanh { XCTAssertNotNil(full.quadratureError) } else { XCTAssertNil(full.quadratureError) }
            }
        }
    }
}

extension AnalyticKernelTests {
    /// The reported quadrature error is honest: the true error (against 96 nodes) is within 3× of the
    /// estimate (m vs 1.5·m nodes), and it shrinks with more nodes.
    func testQuadratureErrorEstimate() throws {
        var rng = SplitMix64(seed: 3)
        let x = Matrix(rows: 4, cols: 3, data: (0..<12).map { _ in rng.normal() })
        let spec = NetworkSpec(inputDim: 3, widths: [10, 10], outputs: 1, activation: .tanh, wStd: 1.5, bStd: 0.1)
        var o = AnalyticKernels.Options()
        o.quadratureNodes = 96
        let reference = try AnalyticKernels.compute(x1: x, spec: spec, options: o)
        var last = Double.infinity
        for m in [12, 24, 48] {
            o.quadratureNodes = m
            let k = try AnalyticKernels.compute(x1: x, spec: spec, options: o)
            let scale = reference.ntk.data.map(abs).max()!
            let trueError = max(k.nngp.maxRelativeError(to: reference.nngp, floor: scale), k.ntk.maxRelativeError(to: reference.ntk, floor: scale))
            let estimate = try XCTUnwrap(k.quadratureError)
            XCTAssertLessThanOrEqual(trueError, 3 * estimate + 1e-14, "m = \(m)")
            XCTAssertLessThan(estimate, last)
            last = estimate
        }
        XCTAssertLessThan(last, 1e-5)
    }
}
