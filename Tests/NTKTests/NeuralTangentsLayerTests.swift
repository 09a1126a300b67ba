import Foundation
import NTKPipeline
import XCTest

@testable import NTK

/// Convolutional, pooling, residual and layer-norm networks against neural-tangents 0.6.5 in float64, on fixtures
/// made by Tests/Fixtures/make_layer_fixtures.py: the network is read from NT's own resolved `layers` through our
/// grammar parser, the weights are NT's W0, b0, …; compared are the forward outputs, the empirical NTK (traced,
/// full, per parameter tensor) and 100 heavy-ball steps of the network and of its linearization.
final class NeuralTangentsLayerTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/Fixtures/nt_layers/"
    static let cases = ["cnn_flatten", "cnn_circular_gap", "resnet_layer_norm", "standard_valid"]

    struct Case {
        var network: Network
        var theta: [Double]
        var z: [String: Tensor]
    }

    func load(_ file: String) throws -> Case {
        let z = try UserArrays.read(Self.dir + file)
        func text(_ name: String) throws -> String {
            String(decoding: try XCTUnwrap(z[name], name).doubles().map { UInt8($0) }, as: UTF8.self)
        }
        let layers = try LayerGrammar.parse(JSONValue.parse(try text("cfg_layers_resolved")), key: "layers", wStd: 1, bStd: 0)
        let x = try XCTUnwrap(z["in_x"] ?? z["in_x_train"])
        let shape = Shape(spatial: Array(x.shape.dropFirst().dropLast()), channels: x.shape.last!)
        let network = try Network(layers: layers, input: shape, parameterization: Parameterization(rawValue: try text("in_parameterization"))!)
        var theta: [Double] = []
        for (l, p) in network.parameters.enumerated() {
            let w = try XCTUnwrap(z["in_W\(l)"])
            XCTAssertEqual(w.shape, p.wShape, "W\(l)")
            theta += w.doubles()
            if p.b != nil { theta += try XCTUnwrap(z["in_b\(l)"]).doubles() }
        }
        XCTAssertEqual(theta.count, network.parameterCount)
        return Case(network: network, theta: theta, z: z)
    }

    func relative(_ ours: [Double], _ theirs: [Double]) -> Double {
        precondition(ours.count == theirs.count, "\(ours.count) vs \(theirs.count)")
        return zip(ours, theirs).map { abs($0 - $1) }.max()! / max(theirs.map(abs).max()!, 1e-300)
    }

    func matrix(_ t: Tensor) -> Matrix { Matrix(rows: t.shape[0], cols: t.shape.dropFirst().reduce(1, *), data: t.doubles()) }

    func testForwardAndEmpiricalNTKMatchNeuralTangents() throws {
        for name in Self.cases {
            let c = try load("\(name)_empirical.npz")
            let x = matrix(try XCTUnwrap(c.z["in_x"])), x2 = matrix(try XCTUnwrap(c.z["in_x2"]))
            let k = c.network.outputs
            let passes = Passes<Double>(network: c.network, maxBatch: x.rows)
            c.theta.withUnsafeBufferPointer { th in x.data.withUnsafeBufferPointer { passes.forward(theta: th.baseAddress!, x: $0.baseAddress!, n: x.rows) } }
            let f = Array(UnsafeBufferPointer(start: passes.outputPointer, count: x.rows * k))
            let fErr = relative(f, try XCTUnwrap(c.z["f_x"]).doubles())
            XCTAssertLessThan(fErr, 1e-12, "\(name) forward")
            let e = EmpiricalNTK<Double>(network: c.network, theta: c.theta)
            let traced = e.compute(x1: x, x2: x2, output: .traced, perLayer: true)
            let full = e.compute(x1: x, x2: x2, output: .full)
            let tErr = relative(traced.ntk, try XCTUnwrap(c.z["ntk_traced"]).doubles())
            // NT's [N1, N2, k, k] → our [N1·k, N2·k] (row a·k + i, column b·k + j)
            let nt = try XCTUnwrap(c.z["ntk_full"]).doubles(), n1 = x.rows, n2 = x2.rows
            var reordered = [Double](repeating: 0, count: nt.count)
            for a in 0..<n1 { for b in 0..<n2 { for i in 0..<k { for j in 0..<k {
                reordered[(a * k + i) * n2 * k + b * k + j] = nt[((a * n2 + b) * k + i) * k + j]
            } } } }
            let fullErr = relative(full.ntk, reordered)
            // per parameter tensor, NT's order W0, b0, W1, …
            let byParam = try XCTUnwrap(c.z["ntk_traced_by_param"]).doubles(), size = n1 * n2
            var parts: [Double] = []
            for part in traced.perLayer { parts += part.w; parts += try XCTUnwrap(part.b) }
            let pErr = relative(parts, byParam)
            XCTAssertLessThan(tErr, 1e-10, "\(name) traced")
            XCTAssertLessThan(fullErr, 1e-10, "\(name) full")
            XCTAssertLessThan(pErr, 1e-10, "\(name) per parameter (\(byParam.count / size) tensors)")
            print("\(name) vs neural-tangents: forward \(fErr), NTK traced \(tErr), full \(fullErr), per parameter \(pErr)")
        }
    }

    func testMomentumTrainingAndLinearizationMatchNeuralTangents() throws {
        for name in Self.cases {
            let c = try load("\(name)_train.npz")
            let z = c.z
            let xtr = matrix(try XCTUnwrap(z["in_x_train"])), ytr = matrix(try XCTUnwrap(z["in_y_train"]))
            let xte = matrix(try XCTUnwrap(z["in_x_test"])), yte = matrix(try XCTUnwrap(z["in_y_test"]))
            var config = TrainingConfig()
            config.learningRate = try XCTUnwrap(z["cfg_learning_rate"]).doubles()[0]
            config.momentum = try XCTUnwrap(z["cfg_momentum"]).doubles()[0]
            config.steps = Int(try XCTUnwrap(z["cfg_steps"]).doubles()[0])
            let record = try XCTUnwrap(z["steps"]).doubles().map { Int($0) }
            var worst = 0.0
            for (model, prefix) in [(TrainedModel.network, ""), (.linearized, "lin_")] {
                let t = Trainer<Double>(network: c.network, theta0: c.theta, xTrain: xtr, yTrain: ytr, xTest: xte, yTest: yte,
                                        config: config, model: model)
                let ntTrain = try XCTUnwrap(z["\(prefix)fx_train"]).doubles(), ntTest = try XCTUnwrap(z["\(prefix)fx_test"]).doubles()
                let ntLoss = try XCTUnwrap(z["\(prefix)loss_train"]).doubles()
                for (r, step) in record.enumerated() {
                    while t.step < step { try t.stepOnce() }
                    let rec = t.record()
                    let a = relative(rec.fxTrain, Array(ntTrain[r * rec.fxTrain.count..<(r + 1) * rec.fxTrain.count]))
                    let b = relative(rec.fxTest, Array(ntTest[r * rec.fxTest.count..<(r + 1) * rec.fxTest.count]))
                    let l = abs(rec.trainLoss - ntLoss[r]) / ntLoss[r]
                    worst = max(worst, a, b, l)
                    XCTAssertLessThan(max(a, b, l), 1e-8, "\(name) \(model) step \(step)")
                }
                if model == .network {
                    var final: [Double] = []
                    for (l, p) in c.network.parameters.enumerated() {
                        final += try XCTUnwrap(z["final_W\(l)"]).doubles()
                        if p.b != nil { final += try XCTUnwrap(z["final_b\(l)"]).doubles() }
                    }
                    let e = relative(t.state.theta, final)
                    worst = max(worst, e)
                    XCTAssertLessThan(e, 1e-8, "\(name) final weights")
                }
            }
            print("\(name) vs neural-tangents: 100 heavy-ball steps, network and linearization, max relative difference \(worst)")
        }
    }

    /// The grammar: names and one-key mappings, integer or pair sizes, NT's defaults; every default explicit in the
    /// JSON written back (which parses to the same layers); typos and unknown keys located.
    func testLayerGrammar() throws {
        let text = #"[{"conv": {"channels": 4, "filter": 3, "padding": "SAME"}}, "relu", {"avg_pool": {"window": [2, 2]}},"#
            + #" {"residual": [{"leaky_relu": {"alpha": 0.2}}, {"conv": {"channels": 4, "filter": [1, 1], "b_std": 0}}]},"#
            + #" "flatten", {"layer_norm": {}}, {"dense": {"out": 3, "W_std": 2}}]"#
        let layers = try LayerGrammar.parse(JSONValue.parse(text), key: "model.layers", wStd: 1.5, bStd: 0.1)
        XCTAssertEqual(layers, [
            .conv(channels: 4, filter: [3, 3], strides: [1, 1], padding: .same, wStd: 1.5, bStd: 0.1), .activation(.relu),
            .avgPool(window: [2, 2], strides: [1, 1], padding: .valid, normalizeEdges: false),
            .residual([.activation(.leakyRelu(0.2)), .conv(channels: 4, filter: [1, 1], strides: [1, 1], padding: .valid, wStd: 1.5, bStd: 0)]),
            .flatten, .layerNorm(eps: 1e-12), .dense(out: 3, wStd: 2, bStd: 0.1),
        ])
        XCTAssertEqual(try LayerGrammar.parse(LayerGrammar.json(layers), key: "l", wStd: 9, bStd: 9), layers)
        let bad: [(String, String)] = [
            (#"["reul"]"#, #"model.layers[0]: unknown layer "reul" (did you mean "relu"?)"#),
            (#"[{"conv": {"channels": 2, "filter": 3, "pading": "SAME"}}]"#, "model.layers[0].conv.pading"),
            (#"[{"residual": [{"dense": {}}]}]"#, "model.layers[0].residual[0].dense.out"),
            (#"[{"avg_pool": {"window": [2, 2], "padding": "same"}}]"#, "model.layers[0].avg_pool.padding"),
            (#"[{"conv": {"channels": 2.5, "filter": 3}}]"#, "model.layers[0].conv.channels"),
        ]
        for (input, message) in bad {
            XCTAssertThrowsError(try LayerGrammar.parse(JSONValue.parse(input), key: "model.layers", wStd: 1, bStd: 0)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(error) should name \(message)")
            }
        }
    }

    /// CNN-GP / CNTK: the infinite-width NNGP and NTK of conv + flatten (NT's diagonal_spatial), pooling + global
    /// average pooling (the full spatial covariance), a pre-activation residual network with layer_norm and gelu,
    /// and standard parameterization with strided VALID convs — x1 against x2 and x1 with itself, to 1e-10.
    func testAnalyticKernelsMatchNeuralTangents() throws {
        let cases = ["analytic_conv_flatten": KernelProgram.Form.diagonal, "analytic_conv_pool_gap": .full,
                     "analytic_resnet_layer_norm": .diagonal, "analytic_standard_valid": .full,
                     "analytic_standard_flatten": .diagonal]
        for (name, form) in cases.sorted(by: { $0.key < $1.key }) {
            for suffix in ["", "_sym"] {
                let z = try UserArrays.read(Self.dir + name + suffix + ".npz")
                func text(_ key: String) throws -> String {
                    String(decoding: try XCTUnwrap(z[key], key).doubles().map { UInt8($0) }, as: UTF8.self)
                }
                let layers = try LayerGrammar.parse(JSONValue.parse(try text("cfg_layers_resolved")), key: "layers",
                                                    wStd: 1, bStd: 0)
                let x1 = try XCTUnwrap(z["in_x1"])
                let shape = Shape(spatial: Array(x1.shape.dropFirst().dropLast()), channels: x1.shape.last!)
                let param = Parameterization(rawValue: try text("in_parameterization"))!
                let network = try Network(layers: layers, input: shape, parameterization: param)
                XCTAssertEqual(try KernelProgram(network).form, form, name)
                XCTAssertEqual(try XCTUnwrap(z["nt_diagonal_spatial"]).doubles(), [form == .diagonal ? 1 : 0], name)
                let k = try AnalyticKernels.compute(x1: matrix(x1), x2: z["in_x2"].map(matrix), network: network)
                // x1 with itself: NT's relu NTK has arccos(c) at c ≈ 1 on the diagonal, good to ~1e-7 only
                // (peers/README.md, "Tolerances"); ours takes the diagonal from the c = 1 recursion exactly.
                let n2 = k.nngp.cols, sym = suffix == "_sym"
                let off = (0..<k.nngp.data.count).filter { !sym || $0 / n2 != $0 % n2 }
                let diag = (0..<k.nngp.data.count).filter { sym && $0 / n2 == $0 % n2 }
                for (label, ours, theirs) in [("NNGP", k.nngp.data, try XCTUnwrap(z["nngp"]).doubles()),
                                              ("NTK", k.ntk.data, try XCTUnwrap(z["ntk"]).doubles())] {
                    let scale = theirs.map(abs).max()!
                    let e = off.map { abs(ours[$0] - theirs[$0]) }.max()! / scale
                    let d = diag.map { abs(ours[$0] - theirs[$0]) }.max().map { $0 / scale } ?? 0
                    print("\(name)\(suffix) \(label): \(e) relative to neural-tangents (diagonal \(d))")
                    XCTAssertLessThan(e, 1e-10, "\(name)\(suffix) \(label)")
                    XCTAssertLessThan(d, 1e-7, "\(name)\(suffix) \(label) diagonal")
                }
            }
        }
    }

    /// The float32 path (`Options.float32`: float32 state, float64 activation maths per entry) against neural-tangents
    /// run in float32 on the same cases, and against our own float64 kernels: both float32 results are within float32
    /// rounding (≈ 2e-7 of the largest entry, measured) of the float64 kernels and of each other.
    func testFloat32AnalyticKernelsMatchNeuralTangentsInFloat32() throws {
        for name in ["analytic_conv_flatten", "analytic_conv_pool_gap", "analytic_resnet_layer_norm",
                     "analytic_standard_valid", "analytic_standard_flatten"] {
            let z = try UserArrays.read(Self.dir + name + "_f32.npz")
            func text(_ key: String) throws -> String {
                String(decoding: try XCTUnwrap(z[key], key).doubles().map { UInt8($0) }, as: UTF8.self)
            }
            XCTAssertEqual(z["nngp"]?.dtype, .float32, "\(name): neural-tangents ran in float32")
            let layers = try LayerGrammar.parse(JSONValue.parse(try text("cfg_layers_resolved")), key: "layers",
                                                wStd: 1, bStd: 0)
            let x1 = try XCTUnwrap(z["in_x1"]), x2 = try XCTUnwrap(z["in_x2"])
            let shape = Shape(spatial: Array(x1.shape.dropFirst().dropLast()), channels: x1.shape.last!)
            let network = try Network(layers: layers, input: shape,
                                      parameterization: Parameterization(rawValue: try text("in_parameterization"))!)
            var o = AnalyticKernels.Options()
            o.float32 = true
            let k32 = try AnalyticKernels.compute(x1: matrix(x1), x2: matrix(x2), network: network, options: o)
            let k64 = try AnalyticKernels.compute(x1: matrix(x1), x2: matrix(x2), network: network)
            let nt = (nngp: try XCTUnwrap(z["nngp"]).doubles(), ntk: try XCTUnwrap(z["ntk"]).doubles())
            for (label, ours, exact, theirs) in [("NNGP", k32.nngp.data, k64.nngp.data, nt.nngp),
                                                 ("NTK", k32.ntk.data, k64.ntk.data, nt.ntk)] {
                let scale = exact.map(abs).max()!
                func error(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { abs($0 - $1) }.max()! / scale }
                let vsNT = error(ours, theirs), ours64 = error(ours, exact), nt64 = error(theirs, exact)
                print("\(name) \(label) float32: \(vsNT) relative to neural-tangents float32; vs float64: "
                      + "ours \(ours64), neural-tangents \(nt64)")
                XCTAssertLessThan(vsNT, 1e-6, "\(name) \(label)")
                XCTAssertLessThan(ours64, 1e-6, "\(name) \(label)")
            }
        }
    }
}
