import Foundation
import NTKPipeline
import XCTest

@testable import NTK

final class EmpiricalNTKTests: XCTestCase {
    /// J Jᵀ from a finite-difference Jacobian equals our layer-wise Θ̂ — traced and full, per layer (W and b) and
    /// summed — to 1e-8 relative (float64, tiny networks, both parameterizations, x vs x' and x vs itself).
    func testEqualsFiniteDifferenceJacobian() {
        var rng = SplitMix64(seed: 21)
        let x1 = Matrix(rows: 4, cols: 3, data: (0..<12).map { _ in rng.normal() }), x2 = Matrix(rows: 3, cols: 3, data: (0..<9).map { _ in rng.normal() })
        for param in Parameterization.allCases {
            for act in [Activation.erf, .tanh, .relu] {
                let spec = NetworkSpec(inputDim: 3, widths: [7, 5], outputs: 2, activation: act, wStd: [1.3, 0.9, 1.1], bStd: [0.2, 0.0, 0.5], parameterization: param)
                let net = MLP.initialize(spec, seed: 5)
                let j1 = finiteDifferenceJacobian(net, x1), j2 = finiteDifferenceJacobian(net, x2)
                let engine = EmpiricalNTK<Double>(net)
                for (a, b, sym) in [(x1, x2, false), (x1, x1, true)] {
                    let ja = j1, jb = sym ? j1 : j2
                    let full = engine.compute(x1: a, x2: sym ? nil : b, output: .full, perLayer: true)
                    let traced = engine.compute(x1: a, x2: sym ? nil : b, output: .traced, perLayer: true)
                    func dot(_ u: [Double], _ v: [Double], _ range: Range<Int>) -> Double { range.reduce(0) { $0 + u[$1] * v[$1] } }
                    let all = 0..<net.parameterCount
                    for r in 0..<ja.count {
                        for c in 0..<jb.count {
                            let want = dot(ja[r], jb[c], all)
                            XCTAssertEqual(full.ntk[r * jb.count + c], want, accuracy: 1e-8 * max(1, abs(want)), "\(param) \(act) full (\(r),\(c))")
                        }
                    }
                    for r in 0..<a.rows {
                        for c in 0..<b.rows {
                            let want = (dot(ja[2 * r], jb[2 * c], all) + dot(ja[2 * r + 1], jb[2 * c + 1], all)) / 2
                            XCTAssertEqual(traced.ntk[r * b.rows + c], want, accuracy: 1e-8 * max(1, abs(want)), "\(param) \(act) traced")
                        }
                    }
                    // per layer: W_l and b_l ranges of θ
                    for (l, layer) in net.layers.enumerated() {
                        let wr = layer.w..<layer.w + layer.fanIn * layer.fanOut
                        for r in 0..<ja.count {
                            for c in 0..<jb.count {
                                let want = dot(ja[r], jb[c], wr)
                                XCTAssertEqual(full.perLayer[l].w[r * jb.count + c], want, accuracy: 1e-8 * max(1, abs(want)), "\(param) \(act) W\(l)")
                                if let bo = layer.b {
                                    let wb = dot(ja[r], jb[c], bo..<bo + layer.fanOut)
                                    XCTAssertEqual(full.perLayer[l].b![r * jb.count + c], wb, accuracy: 1e-8 * max(1, abs(wb)), "\(param) \(act) b\(l)")
                                } else {
                                    XCTAssertNil(full.perLayer[l].b)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// neural-tangents' `empirical_ntk_fn` on the same weights (Tests/Fixtures/nt/empirical_*.npz): traced and
    /// trace_axes=() to 1e-6 relative, in float64.
    func testMatchesNeuralTangents() throws {
        for act in [Activation.relu, .erf] {
            let z = try UserArrays.read(NeuralTangentsTests.dir + "empirical_\(act).npz")
            let spec = NetworkSpec(inputDim: 5, widths: [24, 16], outputs: 3, activation: act, wStd: 1.4, bStd: 0.3)
            let theta = (0..<3).flatMap { z["in_W\($0)"]!.doubles() + z["in_b\($0)"]!.doubles() }
            let net = MLP(spec: spec, theta: theta)
            let x = Matrix(rows: 6, cols: 5, data: z["in_x"]!.doubles()), x2 = Matrix(rows: 4, cols: 5, data: z["in_x2"]!.doubles())
            let e = EmpiricalNTK<Double>(net)
            let traced = e.compute(x1: x, x2: x2).ntk, full = e.compute(x1: x, x2: x2, output: .full).ntk
            let ntTraced = z["ntk_traced"]!.doubles(), ntFull = z["ntk_full"]!.doubles()  // [6, 4, 3, 3]
            let scale = ntTraced.map(abs).max()!
            for (a, b) in zip(traced, ntTraced) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(abs(b), 1e-3 * scale), "\(act) traced") }
            for a in 0..<6 { for b in 0..<4 { for i in 0..<3 { for j in 0..<3 {
                let ours = full[(a * 3 + i) * 12 + b * 3 + j], theirs = ntFull[((a * 4 + b) * 3 + i) * 3 + j]
                XCTAssertEqual(ours, theirs, accuracy: 1e-6 * max(abs(theirs), 1e-3 * scale), "\(act) full")
            } } } }
            // and the network outputs themselves
            let f = net.forward(x).output.data
            for (a, b) in zip(f, z["f_x"]!.doubles()) { XCTAssertEqual(a, b, accuracy: 1e-10 * max(1, abs(b))) }
        }
    }

    /// The traced kernel of the old helper (MLP.swift) and the float32 engine agree with the float64 engine.
    func testPrecisionsAndHelpersAgree() {
        var rng = SplitMix64(seed: 2)
        let x = Matrix(rows: 9, cols: 6, data: (0..<54).map { _ in rng.normal() })
        let spec = NetworkSpec(inputDim: 6, widths: [64, 32], outputs: 4, activation: .gelu, wStd: 1.2, bStd: 0.1)
        let net = MLP.initialize(spec, seed: 1)
        let d = EmpiricalNTK<Double>(net).compute(x1: x).ntk, f = EmpiricalNTK<Float>(net).compute(x1: x).ntk
        let helper = EmpiricalKernels.compute(net, x1: x).ntk
        for i in 0..<d.count {
            XCTAssertEqual(Double(f[i]), d[i], accuracy: 1e-4 * max(1, abs(d[i])))
            XCTAssertEqual(helper.data[i], d[i], accuracy: 1e-10 * max(1, abs(d[i])))
        }
    }
}

/// J [rows: (sample a, output i) as a·k + i, cols: parameters] by central differences (h = 1e-6, float64).
func finiteDifferenceJacobian(_ net: MLP, _ x: Matrix) -> [[Double]] {
    var net = net
    let k = net.spec.outputs
    var j = [[Double]](repeating: [Double](repeating: 0, count: net.parameterCount), count: x.rows * k)
    for p in 0..<net.parameterCount {
        let t = net.theta[p], h = 1e-6
        net.theta[p] = t + h
        let up = net.forward(x).output
        net.theta[p] = t - h
        let down = net.forward(x).output
        net.theta[p] = t
        for r in 0..<x.rows * k { j[r][p] = (up.data[r] - down.data[r]) / (2 * h) }
    }
    return j
}

extension EmpiricalNTKTests {
    /// Every tiling of the output (1, 2, 3 samples per tile side, and the default) gives J Jᵀ of a finite-difference
    /// Jacobian, full and traced, per layer and summed, for networks with no hidden layer, one, and three — the
    /// read-out-only term, the compact last hidden layer and the signal GEMMs below it — x vs x' and x vs itself.
    func testEveryTilingEqualsFiniteDifferenceJacobian() {
        var rng = SplitMix64(seed: 31)
        let x1 = Matrix(rows: 5, cols: 3, data: (0..<15).map { _ in rng.normal() }), x2 = Matrix(rows: 4, cols: 3, data: (0..<12).map { _ in rng.normal() })
        for widths in [[], [6], [5, 4, 6]] {
            let spec = NetworkSpec(inputDim: 3, widths: widths, outputs: 3, activation: .tanh, wStd: 1.2, bStd: 0.3)
            let net = MLP.initialize(spec, seed: 8)
            let j1 = finiteDifferenceJacobian(net, x1), j2 = finiteDifferenceJacobian(net, x2)
            func dot(_ u: [Double], _ v: [Double], _ range: Range<Int>) -> Double { range.reduce(0) { $0 + u[$1] * v[$1] } }
            for tile in [1, 2, 3, nil] {
                var e = EmpiricalNTK<Double>(net)
                e.tileSamples = tile
                for sym in [true, false] {
                    let ja = j1, jb = sym ? j1 : j2, nb = sym ? 5 : 4
                    let full = e.compute(x1: x1, x2: sym ? nil : x2, output: .full, perLayer: true)
                    let traced = e.compute(x1: x1, x2: sym ? nil : x2, output: .traced, perLayer: true)
                    XCTAssertEqual(full.ntk.count, 15 * nb * 3)
                    let label = "widths \(widths) tile \(tile.map(String.init) ?? "default") \(sym ? "x, x" : "x, x'")"
                    for r in 0..<15 {
                        for c in 0..<nb * 3 {
                            let want = dot(ja[r], jb[c], 0..<net.parameterCount)
                            XCTAssertEqual(full.ntk[r * nb * 3 + c], want, accuracy: 1e-8 * max(1, abs(want)), "full \(label)")
                            for (l, layer) in net.layers.enumerated() {
                                let w = dot(ja[r], jb[c], layer.w..<layer.w + layer.fanIn * layer.fanOut)
                                XCTAssertEqual(full.perLayer[l].w[r * nb * 3 + c], w, accuracy: 1e-8 * max(1, abs(w)), "W\(l) \(label)")
                                let b = dot(ja[r], jb[c], layer.b!..<layer.b! + layer.fanOut)
                                XCTAssertEqual(full.perLayer[l].b![r * nb * 3 + c], b, accuracy: 1e-8 * max(1, abs(b)), "b\(l) \(label)")
                            }
                        }
                    }
                    for a in 0..<5 {
                        for b in 0..<nb {
                            let want = (0..<3).reduce(0.0) { $0 + dot(ja[a * 3 + $1], jb[b * 3 + $1], 0..<net.parameterCount) } / 3
                            XCTAssertEqual(traced.ntk[a * nb + b], want, accuracy: 1e-8 * max(1, abs(want)), "traced \(label)")
                            let l = net.layers.count - 1, layer = net.layers[l]
                            let w = (0..<3).reduce(0.0) { $0 + dot(ja[a * 3 + $1], jb[b * 3 + $1], layer.w..<layer.w + layer.fanIn * layer.fanOut) } / 3
                            XCTAssertEqual(traced.perLayer[l].w[a * nb + b], w, accuracy: 1e-8 * max(1, abs(w)), "traced read-out W \(label)")
                        }
                    }
                }
            }
        }
    }

    /// The tiled computation (tile sizes that do not divide N) equals the one-shot traced kernel.
    func testTiledEqualsOneShot() {
        var rng = SplitMix64(seed: 9)
        let x1 = Matrix(rows: 23, cols: 5, data: (0..<115).map { _ in rng.normal() }), x2 = Matrix(rows: 10, cols: 5, data: (0..<50).map { _ in rng.normal() })
        for param in Parameterization.allCases {
            let spec = NetworkSpec(inputDim: 5, widths: [32, 16], outputs: 3, activation: .relu, wStd: [1.3, 1.3, 1.3], bStd: [0.1, 0, 0.2], parameterization: param)
            let e = EmpiricalNTK<Double>(MLP.initialize(spec, seed: 2))
            for tile in [4, 7, 23, 50] {
                var computed = 0
                let sym = e.computeTiled(n1: 23, n2: 23, symmetric: true, tileRows: tile) { _, _, rows in computed += 1; return e.tileFeatures(x1, rows: rows) }
                let oneShot = e.compute(x1: x1).ntk
                for (a, b) in zip(sym, oneShot) { XCTAssertEqual(a, b, accuracy: 1e-10 * max(1, abs(b)), "\(param) tile \(tile)") }
                let cross = e.computeTiled(n1: 23, n2: 10, symmetric: false, tileRows: tile) { set, _, rows in e.tileFeatures(set == 0 ? x1 : x2, rows: rows) }
                for (a, b) in zip(cross, e.compute(x1: x1, x2: x2).ntk) { XCTAssertEqual(a, b, accuracy: 1e-10 * max(1, abs(b)), "\(param) cross tile \(tile)") }
                XCTAssertLessThanOrEqual(computed, (23 + tile - 1) / tile * ((23 + tile - 1) / tile + 1) / 2 + (23 + tile - 1) / tile)
            }
        }
    }
}
