import Foundation
import NTK
import XCTest

@testable import NTKPipeline

/// `model.layers` through the real binary: a convolutional network on 4×4×1 images loaded, initialised, trained with
/// its linearization and given its empirical NTK; the fully-connected shorthand equal to its layer list; bad layer
/// lists and weights named by layer and key, with nothing written.
final class LayerPipelineTests: XCTestCase {
    static let cnn = """
        [{conv: {channels: 4, filter: [3, 3], padding: SAME}}, relu, {avg_pool: {window: 2, strides: 2}},
         {residual: [erf, {conv: {channels: 4, filter: 2, padding: CIRCULAR, b_std: 0}}]}, layer_norm,
         global_avg_pool, {dense: {out: 3}}]
        """

    static func yaml(model: String, train: String = "", empirical: String = "") -> String {
        """
        schema: 1
        params:
          seed: 3
          data: {format: idx, num_classes: 3, path: data, n_train: 24, n_test: 9, standardize: global}
          model: \(model)
          train: {learning_rate: 0.5, steps: 30, momentum: 0.9, dtype: float64, checkpoint_every: 7\(train)}
          empirical: {dtype: float64\(empirical)}
          kernel: {}
        stages:
          load:
            deps: ["${data.path}"]
            params: [seed, data]
            outs: [artifacts/dataset.npz]
          init:
            deps: [artifacts/dataset.npz]
            params: [seed, model]
            outs: [artifacts/params.npz]
          train:
            deps: [artifacts/dataset.npz, artifacts/params.npz]
            params: [seed, train]
            outs: [artifacts/trained.npz]
          empirical:
            kind: empirical_kernels
            deps: [artifacts/dataset.npz, artifacts/params.npz]
            params: [empirical]
            outs: [artifacts/empirical.npz]
        """
    }

    func project(_ yaml: String) -> String {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data", perClass: 12)
        try! yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        return d
    }

    func testConvolutionalNetworkEndToEnd() throws {
        let d = project(Self.yaml(model: "{layers: \(Self.cnn.replacingOccurrences(of: "\n", with: " ")), w_std: 1.3, b_std: 0.2}"))
        var r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        // The dataset keeps images; the params artifact holds HWIO filters and the layer list.
        let ds = try DatasetArtifact(file: try ArtifactFile.read(d + "/artifacts/dataset.npz"), path: "")
        XCTAssertEqual(ds.sampleShape, [4, 4, 1])
        XCTAssertEqual(try ArtifactFile.read(d + "/artifacts/dataset.npz").tensor("x_train")?.shape, [24, 4, 4, 1])
        let pf = try ArtifactFile.read(d + "/artifacts/params.npz")
        XCTAssertEqual(pf.tensor("W0")?.shape, [3, 3, 1, 4])
        XCTAssertEqual(pf.tensor("W1")?.shape, [2, 2, 4, 4])
        XCTAssertNil(pf.tensor("b1"), "b_std = 0: no bias")
        XCTAssertEqual(pf.tensor("W2")?.shape, [4, 3])
        let p = try ParamsArtifact(file: pf, path: "")
        XCTAssertEqual(p.network.inputShape, Shape(spatial: [4, 4], channels: 1))
        XCTAssertEqual(p.theta, p.network.initialize(seed: 3), "θ₀ is the seeded init")
        guard case .conv(4, [3, 3], [1, 1], .same, 1.3, 0.2)? = p.network.layers.first else { return XCTFail("\(p.network.layers)") }
        // The trained artifact: both models learn, one weight-change column per conv/dense layer, named.
        let t = try ArtifactFile.read(d + "/artifacts/trained.npz")
        for prefix in ["", "lin_"] {
            let loss = try XCTUnwrap(t.tensor(prefix + "train_loss")).doubles()
            XCTAssertLessThan(loss.last!, 0.8 * loss.first!, prefix)
            XCTAssertEqual(t.tensor(prefix + "relative_change")?.shape.last, 3)
        }
        XCTAssertEqual(t.metadata["relative_change_layers"], .array([
            .string("W0 conv layers[0]"), .string("W1 conv layers[3].residual[1]"), .string("W2 dense layers[6]"),
        ]))
        XCTAssertEqual(t.tensor("final_W0")?.shape, [3, 3, 1, 4])
        // The empirical NTK of the stage is the library's on the same weights.
        let e = try ArtifactFile.read(d + "/artifacts/empirical.npz")
        let x = Matrix(rows: ds.nTrain, cols: ds.features, data: ds.xTrain)
        XCTAssertEqual(e.tensor("ntk_train_train")?.doubles(), EmpiricalNTK<Double>(network: p.network, theta: p.theta).compute(x1: x).ntk)
        // `ntk dump` shows the layer table.
        r = try TestSupport.ntk(["dump", "artifacts/params.npz"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        let table = r.stdout.replacingOccurrences(of: " +", with: " ", options: .regularExpression)
        for part in ["network: input [4, 4, 1], \(p.theta.count) parameters", "layers[0] conv [4, 4, 4] 40", "layers[2] avg_pool [2, 2, 4] 0",
                     "layers[3].residual[1] conv [2, 2, 4] 64", "layers[3] residual [2, 2, 4] 0", "layers[5] global_avg_pool [4] 0",
                     "layers[6] dense [3] 15"] {
            XCTAssertTrue(table.contains(part), "dump lacks \(part):\n\(r.stdout)")
        }
    }

    /// The per-layer contributions sum to the kernel, and the tiled kernel (a small memory cap) equals the untiled one.
    func testConvolutionalEmpiricalKernelTiledAndPerLayer() throws {
        let model = "{layers: \(Self.cnn.replacingOccurrences(of: "\n", with: " ")), w_std: 1.3, b_std: 0.2}"
        let whole = project(Self.yaml(model: model, empirical: ", per_layer: true"))
        let tiles = project(Self.yaml(model: model, empirical: ", max_memory: 40K"))
        for d in [whole, tiles] {
            let r = try TestSupport.ntk(["run", "empirical"], in: d)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let a = try ArtifactFile.read(whole + "/artifacts/empirical.npz"), b = try ArtifactFile.read(tiles + "/artifacts/empirical.npz")
        let k = try XCTUnwrap(a.tensor("ntk_train_train")).doubles(), kt = try XCTUnwrap(b.tensor("ntk_train_train")).doubles()
        XCTAssertLessThan(zip(k, kt).map { abs($0 - $1) }.max()!, 1e-12 * k.map(abs).max()!)
        var sum = [Double](repeating: 0, count: k.count)
        for name in ["W0", "b0", "W1", "W2", "b2"] {
            let c = try XCTUnwrap(a.tensor("ntk_train_train_\(name)"), name).doubles()
            for i in sum.indices { sum[i] += c[i] }
        }
        XCTAssertNil(a.tensor("ntk_train_train_b1"))
        XCTAssertLessThan(zip(k, sum).map { abs($0 - $1) }.max()!, 1e-12 * k.map(abs).max()!)
    }

    /// The shorthand and the layer list it stands for give the same bytes of every artifact.
    func testShorthandIsItsLayerList() throws {
        let short = project(Self.yaml(model: "{depth: 2, width: 32, activation: tanh, w_std: 1.4, b_std: 0.1}"))
        let list = project(Self.yaml(model: """
            {layers: [flatten, {dense: {out: 32}}, tanh, {dense: {out: 32}}, tanh, {dense: {out: 3}}], w_std: 1.4, b_std: 0.1}
            """))
        for d in [short, list] {
            let r = try TestSupport.ntk(["run"], in: d)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        for name in ["params", "trained", "empirical"] {
            let a = try ArtifactFile.read("\(short)/artifacts/\(name).npz"), b = try ArtifactFile.read("\(list)/artifacts/\(name).npz")
            XCTAssertEqual(a.tensors.map(\.name), b.tensors.map(\.name), name)
            for (x, y) in zip(a.tensors, b.tensors) { XCTAssertEqual(x.bytes, y.bytes, "\(name): \(x.name)") }
            XCTAssertEqual(a.metadata["network"], b.metadata["network"], name)
        }
    }

    /// The analytic kernels take a fully-connected layer list as its shorthand, and CNNs; lists without Gaussian
    /// inputs to an activation are refused, named.
    func testAnalyticKernelsOfLayerLists() throws {
        func analytic(_ model: String) throws -> (String, TestSupport.Result) {
            let d = project(Self.yaml(model: model) + """

                  analytic:
                    kind: analytic_kernels
                    deps: [artifacts/dataset.npz]
                    params: [model, kernel]
                    outs: [artifacts/analytic.npz]
                """)
            return (d, try TestSupport.ntk(["run", "analytic"], in: d))
        }
        let (short, a) = try analytic("{depth: 2, width: 8, activation: erf, w_std: 1.4, b_std: 0.1}")
        let (list, b) = try analytic("{layers: [flatten, {dense: {out: 8}}, erf, {dense: {out: 8}}, erf, {dense: {out: 3}}], w_std: 1.4, b_std: 0.1}")
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(b.status, 0, b.stderr)
        let ka = try ArtifactFile.read(short + "/artifacts/analytic.npz"), kb = try ArtifactFile.read(list + "/artifacts/analytic.npz")
        for name in ["nngp_train_train", "ntk_train_train", "ntk_test_train"] { XCTAssertEqual(ka.tensor(name)?.bytes, kb.tensor(name)?.bytes, name) }
        // a CNN: its CNN-GP / CNTK kernels, finite, symmetric, with the spatial form recorded
        let (cnn, c) = try analytic("""
            {layers: [{conv: {channels: 4, filter: [3, 3], padding: SAME}}, relu, {avg_pool: {window: 2, strides: 2}},
             {conv: {channels: 4, filter: 1}}, {residual: [erf, {conv: {channels: 4, filter: 2, padding: CIRCULAR}}]},
             layer_norm, global_avg_pool, {dense: {out: 3}}]}
            """.replacingOccurrences(of: "\n", with: " "))
        XCTAssertEqual(c.status, 0, c.stderr)
        let kc = try ArtifactFile.read(cnn + "/artifacts/analytic.npz")
        XCTAssertNotNil(kc.metadata["spatial"])
        let ntk = try XCTUnwrap(kc.tensor("ntk_train_train")), n = ntk.shape[0], v = ntk.doubles()
        XCTAssertTrue(v.allSatisfy(\.isFinite))
        XCTAssertEqual((0..<n).map { v[$0 * n + 1] }, (0..<n).map { v[n + $0] })
        // relu straight after relu has no Gaussian input: refused like neural-tangents, named, nothing written
        let (bad, e) = try analytic(
            "{layers: [{conv: {channels: 2, filter: 3}}, relu, relu, flatten, {dense: {out: 3}}]}")
        XCTAssertEqual(e.status, 1, e.stderr)
        XCTAssertTrue(e.stderr.contains("params.model.layers[2]") && e.stderr.contains("Gaussian"), e.stderr)
        XCTAssertFalse(Files.exists(bad + "/artifacts/analytic.npz"))
    }

    /// Downstream of CNN kernels, unchanged: `evaluate` puts a trained CNN beside the closed form with its CNTK and
    /// the NTK-GP / NNGP of its CNN-GP, and `predict` takes the same kernels.
    func testEvaluateAndPredictTakeCNNKernels() throws {
        let cnn = "{layers: [{conv: {channels: 8, filter: 3, padding: SAME}}, relu, "
            + "{avg_pool: {window: 2, strides: 2}},"
            + " {conv: {channels: 8, filter: 1}}, erf, global_avg_pool, {dense: {out: 3}}], w_std: 1.3, b_std: 0.2}"
        let d = project((Self.yaml(model: cnn) + """

              analytic:
                kind: analytic_kernels
                deps: [artifacts/dataset.npz]
                params: [model, kernel]
                outs: [artifacts/analytic.npz]
              eval:
                kind: evaluate
                deps: [artifacts/dataset.npz, artifacts/trained.npz, artifacts/analytic.npz]
                outs: [artifacts/evaluation.npz]
              predict:
                deps: [artifacts/dataset.npz, artifacts/analytic.npz]
                params: [predict]
                outs: [artifacts/predictions.npz]
            """).replacingOccurrences(of: "  kernel: {}", with: "  kernel: {}\n  predict: {times: [1, inf]}"))
        let r = try TestSupport.ntk(["run", "eval", "predict"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try ArtifactFile.read(d + "/artifacts/analytic.npz").metadata["spatial"], .string("full"))
        let e = try ArtifactFile.read(d + "/artifacts/evaluation.npz")
        guard case .object(let summary)? = e.metadata["summary"] else { return XCTFail("no summary") }
        for key in ["test_loss_closed_analytic", "ntkgp_infinite_test_accuracy", "nngp_infinite_test_accuracy"] {
            XCTAssertTrue(summary[key]?.number?.isFinite == true, "\(key): \(summary.keys.sorted())")
        }
        let p = try ArtifactFile.read(d + "/artifacts/predictions.npz")
        XCTAssertEqual(p.tensor("ntk_test_accuracy")?.shape, [2])
    }

    /// Bad layer lists and weights: exit 1, the message names the layer's path and key, nothing is written.
    func testBadLayerListsAreNamed() throws {
        let cases: [(model: String, stage: String, expect: [String])] = [
            ("{layers: [{dense: {out: 8}}, relu, {dense: {out: 3}}]}", "init",
             ["params.model.layers", "the network ends with an image [4, 4, 3]", "flatten"]),
            ("{layers: [{conv: {channels: 2, filter: 3}}, {residual: [{conv: {channels: 3, filter: 1}}]}, flatten, {dense: {out: 3}}]}",
             "init", ["params.model.layers[1]", "residual"]),
            ("{layers: [{avg_pool: {window: 5}}, flatten, {dense: {out: 3}}]}", "init", ["params.model.layers[0]", "window"]),
            ("{layers: [{conv2d: {channels: 2, filter: 3}}, flatten, {dense: {out: 3}}]}", "init",
             ["params.model.layers[0]", "conv2d", "did you mean \"conv\""]),
            ("{layers: [{conv: {channels: 2, filter: 3, stride: 2}}, flatten, {dense: {out: 3}}]}", "init",
             ["params.model.layers[0].conv.stride", "unknown key"]),
            ("{layers: [flatten, {dense: {out: 5}}]}", "init", ["params.model.layers[1]", "5 outputs", "the data 3"]),
            ("{layers: [flatten, {dense: {out: 3}}], depth: 2}", "init", ["params.model.depth", "shorthand"]),
        ]
        for c in cases {
            let d = project(Self.yaml(model: c.model))
            let r = try TestSupport.ntk(["run", c.stage], in: d)
            XCTAssertEqual(r.status, 1, "\(c.model): \(r.stderr)")
            for part in c.expect { XCTAssertTrue(r.stderr.contains(part), "\(c.model): lacks \(part):\n\(r.stderr)") }
            XCTAssertFalse(Files.exists(d + "/artifacts/params.npz"), c.model)
        }
        // A user's weights whose conv filter has the wrong shape.
        var yaml = Self.yaml(model: "{layers: \(Self.cnn.replacingOccurrences(of: "\n", with: " "))}")
        yaml = yaml.replacingOccurrences(of: "deps: [artifacts/dataset.npz]\n    params: [seed, model]",
                                         with: "deps: [artifacts/dataset.npz, mine.npz]\n    params: [seed, model]")
        let d = project(yaml)
        let wrong = try Network(layers: [.conv(channels: 4, filter: [2, 2], strides: [1, 1], padding: .same, wStd: 1, bStd: 1),
                                         .flatten, .dense(out: 3, wStd: 1, bStd: 1)], input: Shape(spatial: [4, 4], channels: 1))
        try ArtifactFile(kind: .params, metadata: [:], tensors: ParamsArtifact(network: wrong, theta: wrong.initialize(seed: 1)).tensors())
            .write(to: d + "/mine.npz")
        let r = try TestSupport.ntk(["run", "init"], in: d)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("mine.npz") && r.stderr.contains("W0 has shape [2, 2, 1, 4], but params.model.layers[0] (conv) needs [3, 3, 1, 4]"),
                      r.stderr)
        XCTAssertFalse(Files.exists(d + "/artifacts/params.npz"))
        // lr_scale_w needs one multiplier per conv/dense layer, and says which they are.
        let s = project(Self.yaml(model: "{layers: \(Self.cnn.replacingOccurrences(of: "\n", with: " "))}", train: ", lr_scale_w: [1, 2]"))
        let t = try TestSupport.ntk(["run", "train"], in: s)
        XCTAssertEqual(t.status, 1, t.stderr)
        XCTAssertTrue(t.stderr.contains("params.train.lr_scale_w") && t.stderr.contains("needs 3 multipliers")
                      && t.stderr.contains("layers[3].residual[1] conv"), t.stderr)
        XCTAssertFalse(Files.exists(s + "/artifacts/trained.npz"))
    }
}
