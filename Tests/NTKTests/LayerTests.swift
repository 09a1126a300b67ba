import XCTest

@testable import NTK

/// Every layer's backward and tangent (JVP) pass against central finite differences in float64, and the empirical
/// NTK of networks built from every layer kind against J·Jᵀ of a finite-difference Jacobian. Each layer sits after
/// a parameter layer, so its backward pass is what carries the gradient to those parameters.
final class LayerTests: XCTestCase {
    func conv(_ c: Int, _ f: [Int], _ s: [Int] = [1, 1], _ p: Padding = .valid, w: Double = 1.3, b: Double = 0.2) -> Layer {
        .conv(channels: c, filter: f, strides: s, padding: p, wStd: w, bStd: b)
    }
    func dense(_ out: Int) -> Layer { .dense(out: out, wStd: 1.2, bStd: 0.3) }

    /// The networks under test: each layer kind, each padding, strides > 1, both poolings, residual, layer norm.
    var cases: [(String, [Layer], Shape)] {
        let img = Shape(spatial: [5, 6], channels: 2)
        var out: [(String, [Layer], Shape)] = [
            ("conv SAME", [conv(3, [3, 3], [1, 1], .same), .activation(.tanh), .flatten, dense(2)], img),
            ("conv VALID strides", [conv(3, [2, 3], [2, 1], .valid), .activation(.erf), .flatten, dense(2)], img),
            ("conv CIRCULAR stride 2", [conv(2, [3, 3], [2, 2], .circular), .activation(.gelu), .flatten, dense(3)], img),
            ("conv 1x1", [conv(3, [1, 1]), .activation(.softplus), conv(2, [1, 1]), .flatten, dense(2)], img),
            ("avg_pool VALID", [conv(3, [2, 2]), .avgPool(window: [2, 2], strides: [2, 2], padding: .valid, normalizeEdges: false),
                                .flatten, dense(2)], img),
            ("avg_pool SAME", [conv(3, [2, 2]), .avgPool(window: [3, 2], strides: [1, 2], padding: .same, normalizeEdges: false),
                               .activation(.relu), .flatten, dense(2)], img),
            ("avg_pool SAME normalized", [conv(2, [1, 1]), .avgPool(window: [3, 3], strides: [2, 1], padding: .same, normalizeEdges: true),
                                          .flatten, dense(2)], img),
            ("avg_pool CIRCULAR", [conv(2, [1, 1]), .avgPool(window: [2, 3], strides: [1, 1], padding: .circular, normalizeEdges: false),
                                   .flatten, dense(2)], img),
            ("global_avg_pool", [conv(4, [3, 3], [1, 1], .same), .activation(.abs), .globalAvgPool, dense(3)], img),
            ("layer_norm image", [conv(4, [2, 2]), .layerNorm(eps: 1e-12), .activation(.leakyRelu(0.1)), .flatten, dense(2)], img),
            ("layer_norm vector", [dense(5), .layerNorm(eps: 1e-6), .activation(.tanh), dense(2)], .vector(4)),
            ("residual", [conv(3, [3, 3], [1, 1], .same),
                          .residual([.activation(.relu), conv(3, [3, 3], [1, 1], .same), .activation(.erf), conv(3, [1, 1])]),
                          .flatten, dense(2)], img),
            ("residual empty and nested", [dense(4), .residual([]), .residual([.activation(.tanh), .residual([dense(4)]), dense(4)]),
                                          .activation(.gelu), dense(2)], .vector(3)),
            ("mlp", [dense(6), .activation(.relu), dense(5), .activation(.identity), dense(3)], .vector(4)),
        ] + winogradCases
        for a in [Activation.relu, .leakyRelu(0.2), .abs, .identity, .erf, .tanh, .gelu, .softplus] {
            out.append(("activation \(a)", [dense(4), .activation(a), dense(2)], .vector(3)))
        }
        return out
    }

    /// 3×3 stride-1 convs with ≥ 8 input channels, which run on Winograd tiles: odd sizes (cropped tiles), each
    /// padding, their input gradient carried to an earlier conv.
    var winogradCases: [(String, [Layer], Shape)] {
        let img = Shape(spatial: [5, 6], channels: 2)
        return [
            ("winograd SAME", [conv(8, [1, 1]), .activation(.tanh), conv(3, [3, 3], [1, 1], .same), .activation(.erf), .flatten,
                               dense(2)], img),
            ("winograd VALID", [conv(8, [2, 2]), conv(3, [3, 3]), .flatten, dense(2)], img),
            ("winograd CIRCULAR", [conv(9, [1, 1]), .activation(.gelu), conv(2, [3, 3], [1, 1], .circular), .globalAvgPool, dense(2)],
             Shape(spatial: [3, 7], channels: 2)),
        ]
    }

    func randoms(_ n: Int, seed: UInt64, scale: Double = 1) -> [Double] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in scale * (Double(rng.next() >> 11) / Double(1 << 53) * 2 - 1) }
    }

    func forward(_ p: Passes<Double>, _ theta: [Double], _ x: [Double], _ n: Int) -> [Double] {
        theta.withUnsafeBufferPointer { th in x.withUnsafeBufferPointer { p.forward(theta: th.baseAddress!, x: $0.baseAddress!, n: n) } }
        return Array(UnsafeBufferPointer(start: p.outputPointer, count: n * p.network.outputs))
    }

    func testBackwardAndTangentMatchFiniteDifferences() throws {
        for param in Parameterization.allCases {
            for (name, layers, shape) in cases {
                let net = try Network(layers: layers, input: shape, parameterization: param)
                let n = 3, k = net.outputs, h = 1e-6
                // avoid relu/abs kinks: inputs and parameters in generic position
                let theta = net.initialize(seed: 11).map { param == .standard ? $0 : $0 * 0.8 }
                let x = randoms(n * shape.count, seed: 5)
                let passes = Passes<Double>(network: net, maxBatch: n)
                let c = randoms(n * k, seed: 9)
                // backward: ∂(c·f)/∂θ
                _ = forward(passes, theta, x, n)
                var grad = [Double](repeating: 0, count: net.parameterCount)
                theta.withUnsafeBufferPointer { th in
                    x.withUnsafeBufferPointer { xp in passes.backward(theta: th.baseAddress!, x: xp.baseAddress!, n: n, dOutput: c, grad: &grad) }
                }
                var fd = [Double](repeating: 0, count: net.parameterCount)
                for i in 0..<net.parameterCount {
                    var tp = theta, tm = theta
                    tp[i] += h; tm[i] -= h
                    let fp = forward(passes, tp, x, n), fm = forward(passes, tm, x, n)
                    fd[i] = zip(c, zip(fp, fm)).reduce(0) { $0 + $1.0 * ($1.1.0 - $1.1.1) } / (2 * h)
                }
                let scale = fd.map(abs).max()!
                let err = zip(grad, fd).map { abs($0 - $1) }.max()! / scale
                XCTAssertLessThan(err, 1e-7, "\(name) \(param): backward vs finite differences")
                // tangent: J·v
                let v = randoms(net.parameterCount, seed: 3)
                _ = forward(passes, theta, x, n)
                var jv = [Double](repeating: 0, count: n * k)
                theta.withUnsafeBufferPointer { th in
                    x.withUnsafeBufferPointer { xp in
                        v.withUnsafeBufferPointer { passes.jvp(theta: th.baseAddress!, x: xp.baseAddress!, n: n, direction: $0.baseAddress!, out: &jv) }
                    }
                }
                let fp = forward(passes, zip(theta, v).map { $0 + h * $1 }, x, n), fm = forward(passes, zip(theta, v).map { $0 - h * $1 }, x, n)
                let jfd = zip(fp, fm).map { ($0 - $1) / (2 * h) }
                let jerr = zip(jv, jfd).map { abs($0 - $1) }.max()! / jfd.map(abs).max()!
                XCTAssertLessThan(jerr, 1e-7, "\(name) \(param): tangent vs finite differences")
            }
        }
    }

    /// The Winograd convs (both tile sizes) and the short-k convs (patches ≤ 32: the first conv of each case) give
    /// what im2col + GEMM gives, to rounding: forward, backward (θ and input gradients) and tangent.
    func testWinogradAndShortPatchConvsEqualIm2col() throws {
        let strided = ("short patches, strided",
                       [conv(9, [3, 3], [2, 2], .same), .activation(.relu), conv(8, [3, 3], [1, 1], .same),
                        .flatten, dense(2)], Shape(spatial: [7, 6], channels: 3))
        for (name, layers, shape) in winogradCases + [strided] {
            let net = try Network(layers: layers, input: shape)
            let n = 3, k = net.outputs
            let theta = net.initialize(seed: 4), x = randoms(n * shape.count, seed: 8), c = randoms(n * k, seed: 2)
            let v = randoms(net.parameterCount, seed: 6)
            var results: [[Double]] = []
            // im2col first (the reference), then Winograd with each tile size: F(2×2, 3×3) and F(4×4, 3×3)
            for tile in [nil, 2, 4] {
                let p = Passes<Double>(network: net, maxBatch: n)
                p.allowsWinograd = tile != nil
                p.allowsSmallK = tile != nil
                p.winogradTileSize = tile
                let convs = net.nodes.compactMap { if case .conv(_, let g) = $0.op { g } else { nil } }
                XCTAssertEqual(convs.contains { p.usesWinograd($0) }, tile != nil, name)
                XCTAssertEqual(p.usesSmallK(convs[0]), tile != nil, name)
                if let tile { XCTAssertTrue(convs.contains { p.usesWinograd($0) && p.winogradTile($0) == tile }, name) }
                let f = forward(p, theta, x, n)
                var grad = [Double](repeating: 0, count: net.parameterCount), jv = [Double](repeating: 0, count: n * k)
                theta.withUnsafeBufferPointer { th in
                    x.withUnsafeBufferPointer { xp in
                        p.backward(theta: th.baseAddress!, x: xp.baseAddress!, n: n, dOutput: c, grad: &grad)
                        v.withUnsafeBufferPointer { p.jvp(theta: th.baseAddress!, x: xp.baseAddress!, n: n, direction: $0.baseAddress!, out: &jv) }
                    }
                }
                results.append(f + grad + jv)
            }
            let scale = results[0].map(abs).max()!
            XCTAssertGreaterThan(scale, 0, name)
            for (tile, r) in zip([2, 4], results.dropFirst()) {
                let err = zip(r, results[0]).map { abs($0 - $1) }.max()! / scale
                XCTAssertLessThan(err, 1e-12, "\(name): short-k and Winograd F(\(tile)×\(tile), 3×3) vs im2col")
            }
        }
    }

    /// In float32 the fast convs stay close to float64 im2col on a block of the benchmark's CNN (28×28 MNIST-sized
    /// input, the 3×3×1 first conv on the short-k kernels, a 64 → 64 conv on F(4×4, 3×3) tiles): forward and θ
    /// gradient within 2e-5 of the largest entry (F(4×4, 3×3) loses about 1e-6 relative per product).
    func testFastConvsInFloat32StayCloseToFloat64() throws {
        let layers = [conv(64, [3, 3], [1, 1], .same), .activation(.relu),
                      .avgPool(window: [2, 2], strides: [2, 2], padding: .valid, normalizeEdges: false),
                      conv(64, [3, 3], [1, 1], .same), .activation(.relu), .globalAvgPool, dense(3)]
        let net = try Network(layers: layers, input: Shape(spatial: [28, 28], channels: 1))
        let n = 4, k = net.outputs
        let theta = net.initialize(seed: 3), x = randoms(n * 784, seed: 5), c = randoms(n * k, seed: 7)
        let reference = Passes<Double>(network: net, maxBatch: n)
        reference.allowsWinograd = false
        reference.allowsSmallK = false
        let fast = Passes<Float>(network: net, maxBatch: n)
        let convs = net.nodes.compactMap { if case .conv(_, let g) = $0.op { g } else { nil } }
        XCTAssertTrue(fast.usesSmallK(convs[0]))
        XCTAssertTrue(fast.usesWinograd(convs[1]) && fast.winogradTile(convs[1]) == 4)
        var g64 = [Double](repeating: 0, count: net.parameterCount)
        var g32 = [Float](repeating: 0, count: net.parameterCount)
        let f64 = forward(reference, theta, x, n)
        theta.withUnsafeBufferPointer { th in
            x.withUnsafeBufferPointer {
                reference.backward(theta: th.baseAddress!, x: $0.baseAddress!, n: n, dOutput: c, grad: &g64)
            }
        }
        let theta32 = theta.map(Float.init), x32 = x.map(Float.init), c32 = c.map(Float.init)
        theta32.withUnsafeBufferPointer { th in
            x32.withUnsafeBufferPointer {
                fast.forward(theta: th.baseAddress!, x: $0.baseAddress!, n: n)
                fast.backward(theta: th.baseAddress!, x: $0.baseAddress!, n: n, dOutput: c32, grad: &g32)
            }
        }
        let f32 = Array(UnsafeBufferPointer(start: fast.outputPointer, count: n * k)).map(Double.init)
        for (what, a, b) in [("forward", f32, f64), ("gradient", g32.map(Double.init), g64)] {
            let err = zip(a, b).map { abs($0 - $1) }.max()! / b.map(abs).max()!
            XCTAssertLessThan(err, 2e-5, what)
            XCTAssertGreaterThan(b.map(abs).max()!, 0, what)
        }
    }

    func testEmpiricalNTKEqualsFiniteDifferenceJacobian() throws {
        for (name, layers, shape) in cases {
            let net = try Network(layers: layers, input: shape)
            let n1 = 3, n2 = 2, k = net.outputs, h = 1e-6
            let theta = net.initialize(seed: 2).map { $0 * 0.8 }
            let x1 = randoms(n1 * shape.count, seed: 7), x2 = randoms(n2 * shape.count, seed: 8)
            let passes = Passes<Double>(network: net, maxBatch: max(n1, n2))
            func jacobian(_ x: [Double], _ n: Int) -> [[Double]] {  // [n·k][P]
                var j = [[Double]](repeating: [Double](repeating: 0, count: net.parameterCount), count: n * k)
                for i in 0..<net.parameterCount {
                    var tp = theta, tm = theta
                    tp[i] += h; tm[i] -= h
                    let fp = forward(passes, tp, x, n), fm = forward(passes, tm, x, n)
                    for r in 0..<n * k { j[r][i] = (fp[r] - fm[r]) / (2 * h) }
                }
                return j
            }
            let j1 = jacobian(x1, n1), j2 = jacobian(x2, n2)
            func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
            let m1 = Matrix(rows: n1, cols: shape.count, data: x1), m2 = Matrix(rows: n2, cols: shape.count, data: x2)
            for tile in [nil, 1] {
                var e = EmpiricalNTK<Double>(network: net, theta: theta)
                e.tileSamples = tile
                for (second, n2r, jb) in [(m2 as Matrix?, n2, j2), (nil, n1, j1)] {
                    let full = e.compute(x1: m1, x2: second, output: .full, perLayer: true)
                    let traced = e.compute(x1: m1, x2: second, output: .traced, perLayer: true)
                    var worst = 0.0, scale = 0.0
                    for a in 0..<n1 {
                        for b in 0..<n2r {
                            var tr = 0.0
                            for i in 0..<k {
                                for jj in 0..<k {
                                    let ref = dot(j1[a * k + i], jb[b * k + jj])
                                    if i == jj { tr += ref / Double(k) }
                                    worst = max(worst, abs(full.ntk[(a * k + i) * n2r * k + b * k + jj] - ref))
                                    scale = max(scale, abs(ref))
                                }
                            }
                            worst = max(worst, abs(traced.ntk[a * n2r + b] - tr))
                            // the per-layer parts sum to the kernel
                            let parts = traced.perLayer.reduce(0.0) { $0 + $1.w[a * n2r + b] + ($1.b?[a * n2r + b] ?? 0) }
                            worst = max(worst, abs(parts - traced.ntk[a * n2r + b]))
                        }
                    }
                    XCTAssertLessThan(worst / scale, 1e-7, "\(name) tiles \(String(describing: tile)) x2 \(second != nil)")
                }
            }
        }
    }

    /// dense on an image acts on the channels at every position (neural-tangents' Dense): the same θ layout,
    /// outputs, empirical NTK and infinite-width kernels as the 1×1 conv it is.
    func testDenseOnAnImageIsAPointwiseConv() throws {
        let img = Shape(spatial: [5, 4], channels: 3)
        let a = try Network(layers: [.dense(out: 6, wStd: 1.3, bStd: 0.2), .activation(.relu), .flatten, dense(2)],
                            input: img)
        let b = try Network(layers: [.conv(channels: 6, filter: [1, 1], strides: [1, 1], padding: .valid, wStd: 1.3,
                                           bStd: 0.2), .activation(.relu), .flatten, dense(2)], input: img)
        XCTAssertEqual(a.parameterCount, b.parameterCount)
        XCTAssertEqual(a.nodes[0].outShape, Shape(spatial: [5, 4], channels: 6))
        let theta = a.initialize(seed: 3)
        XCTAssertEqual(theta, b.initialize(seed: 3))
        var rng = SplitMix64(seed: 9)
        let x = Matrix(rows: 3, cols: img.count, data: (0..<(3 * img.count)).map { _ in rng.normal() })
        let ea = EmpiricalNTK<Double>(network: a, theta: theta), eb = EmpiricalNTK<Double>(network: b, theta: theta)
        XCTAssertEqual(ea.compute(x1: x, output: .full).ntk, eb.compute(x1: x, output: .full).ntk)
        XCTAssertEqual(ea.nngp(x1: x), eb.nngp(x1: x))
        let ka = try AnalyticKernels.compute(x1: x, network: a), kb = try AnalyticKernels.compute(x1: x, network: b)
        XCTAssertEqual(ka.ntk.data, kb.ntk.data)
        XCTAssertEqual(ka.nngp.data, kb.nngp.data)
    }

    func testLayerListsThatDoNotFitAreErrorsNamingTheLayer() {
        let img = Shape(spatial: [4, 4], channels: 2)
        let bad: [([Layer], Shape, String)] = [
            ([.dense(out: 0, wStd: 1, bStd: 0), .flatten, dense(2)], img, "layers[0].out: must be ≥ 1"),
            ([.dense(out: 3, wStd: 1, bStd: 0)], img, "layers: the network ends with an image [4, 4, 3]"),
            ([conv(2, [3, 3]), .residual([conv(3, [1, 1])]), .flatten, dense(2)], img, "layers[1]: the residual branch changes"),
            ([.avgPool(window: [5, 5], strides: [1, 1], padding: .valid, normalizeEdges: false), .flatten, dense(2)], img,
             "layers[0].window: [5, 5] is larger than its input"),
            ([conv(2, [3, 3])], img, "the network ends with an image"),
            ([conv(2, [3, 3]), .flatten, .residual([.flatten, .dense(out: 0, wStd: 1, bStd: 0)])], img, "layers[2].residual[1].out: must be ≥ 1"),
            ([conv(2, [2, 2], [0, 1])], img, "layers[0].strides"),
            ([.globalAvgPool], .vector(3), "layers[0]: global_avg_pool needs an image"),
            ([conv(2, [3, 3], w: -1)], img, "layers[0].W_std"),
        ]
        for (layers, shape, message) in bad {
            XCTAssertThrowsError(try Network(layers: layers, input: shape)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(error) should contain \(message)")
            }
        }
    }

    /// The fully-connected shorthand compiles to dense/φ pairs with the MLP's parameter layout, and z → φ(z) share
    /// one buffer (the activation runs in place).
    func testMLPIsAListOfLayers() throws {
        let spec = NetworkSpec(inputDim: 4, widths: [6, 5], outputs: 3, activation: .relu, wStd: [1.2, 1.4, 0.9], bStd: [0.3, 0, 0.2])
        let net = Network(spec)
        XCTAssertEqual(net.layers, [.dense(out: 6, wStd: 1.2, bStd: 0.3), .activation(.relu), .dense(out: 5, wStd: 1.4, bStd: 0),
                                    .activation(.relu), .dense(out: 3, wStd: 0.9, bStd: 0.2)])
        XCTAssertEqual(net.parameters.map(\.w), [0, 30, 60])
        XCTAssertEqual(net.parameters.map(\.b), [24, nil, 75])
        XCTAssertEqual(net.parameterCount, 78)
        XCTAssertEqual(net.nodes[1].input, net.nodes[1].output)
        XCTAssertEqual(net.table.map(\.output.count), [6, 6, 5, 5, 3])
    }
}
