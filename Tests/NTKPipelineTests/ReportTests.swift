import Foundation
import NTK
import XCTest

@testable import NTKPipeline

/// The evaluate, kernel_convergence and report stages through the real binary, and the plot primitives.
final class ReportTests: XCTestCase {
    static let yaml = """
        schema: 1
        params:
          seed: 0
          data: {format: idx, num_classes: 3, path: data, n_train: 20, n_test: 9, classes: [0, 2], targets: pm1, standardize: global, l2_normalize: true, dtype: float64}
          model: {depth: 1, width: 32, activation: relu, w_std: 1.4, b_std: 0.1}
          train: {loss: mse, learning_rate: 0.5, steps: 50, dtype: float64}
          empirical: {output: traced, dtype: float64}
          kernel: {test_test: false}
          conv:
            model: {depth: 1, width: 8, activation: relu, w_std: 1.4, b_std: 0.1}
            convergence: {inputs: 10, draws: 4}
          report:
            title: tiny
            sections:
              - {title: over time, from: eval, notes: "a note", headline: [rmse_network__linearized]}
              - title: vs width
                from: conv
                sweep: {x: width, plots: [{title: kernel error, y: [ntk_error_M1, ntk_error_M4], guides: [-0.5]}]}
        stages:
          load: {deps: ["${data.path}"], params: [seed, data], outs: [artifacts/dataset.npz]}
          init: {deps: [artifacts/dataset.npz], params: [seed, model], outs: [artifacts/params.npz]}
          train: {deps: [artifacts/dataset.npz, artifacts/params.npz], params: [seed, train], outs: [artifacts/trained.npz]}
          ntk0: {kind: empirical_kernels, deps: [artifacts/dataset.npz, artifacts/params.npz], params: [empirical], outs: [artifacts/empirical0.npz]}
          kernels: {kind: analytic_kernels, deps: [artifacts/dataset.npz], params: [model, kernel], outs: [artifacts/analytic.npz]}
          eval:
            kind: evaluate
            deps: [artifacts/dataset.npz, artifacts/trained.npz, artifacts/empirical0.npz, artifacts/analytic.npz]
            outs: [artifacts/evaluation.npz]
          conv:
            kind: kernel_convergence
            matrix: {conv.model.width: [8, 16, 32]}
            deps: [artifacts/dataset.npz]
            params: [seed, conv.model, conv.convergence]
            outs: ["artifacts/conv/w${conv.model.width}.npz"]
          report:
            deps: ["outs:eval", "outs:conv"]
            params: [report]
            outs: [artifacts/report.html, artifacts/metrics.json, artifacts/series.csv]
        """

    func project(_ yaml: String = yaml) -> String {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data", perClass: 12)
        try! yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        return d
    }

    func testEvaluateAndReportEndToEnd() throws {
        let d = project()
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("report: ") && r.stderr.contains("artifacts/report.html"), r.stderr)
        XCTAssertTrue(r.stderr.contains("over time: rmse_network__linearized = "), r.stderr)

        // The closed form with Θ̂₀ is the linearization trained in weight space (float64, exact discrete steps).
        let e = try ArtifactFile.read(d + "/artifacts/evaluation.npz")
        let steps = e.tensor("steps")!.integers()!
        XCTAssertEqual(steps.first, 0)
        XCTAssertLessThan(e.tensor("rmse_linearized__closed_empirical")!.doubles().max()!, 1e-9)
        XCTAssertEqual(e.tensor("rmse_network__linearized")!.doubles()[0], 0)
        XCTAssertEqual(e.tensor("rmse_network__closed_analytic")!.doubles()[0], 0)
        let lossNet = e.tensor("train_loss_network")!.doubles()
        XCTAssertLessThan(lossNet.last!, lossNet.first!)
        guard case .object(let summary)? = e.metadata["summary"] else { return XCTFail("no summary") }
        for key in ["weight_change_W0_dense", "weight_change_W1_dense", "ntkgp_infinite_test_accuracy", "rmse_network__closed_empirical"] {
            XCTAssertNotNil(summary[key]?.number, key)
        }

        // Kernel convergence: averaging more initialisations lowers the error.
        let c = try ArtifactFile.read(d + "/artifacts/conv/w8.npz")
        XCTAssertEqual(c.tensor("m")!.integers(), [1, 2, 4])
        let err = c.tensor("ntk_error")!.doubles()
        XCTAssertLessThan(err[2], err[0])

        // Every plot has data; every number on the page, in metrics.json and in series.csv is finite.
        let html = String(decoding: try Files.read(d + "/artifacts/report.html"), as: UTF8.self)
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 6)  // 5 over time + 1 sweep
        XCTAssertFalse(html.contains("no data"))
        for svg in html.components(separatedBy: "<svg").dropFirst() { XCTAssertTrue(svg.contains("<polyline"), "a plot without a curve") }
        for cell in html.components(separatedBy: "<td>").dropFirst().map({ String($0.prefix { $0 != "<" }) }) {
            XCTAssertFalse(["nan", "inf", "-inf"].contains(cell.lowercased()), "non-finite number on the page")
        }
        XCTAssertFalse(html.contains("http://") && html.contains("<script"), "the page must not load anything")
        let metrics = try JSONValue.parse(String(decoding: try Files.read(d + "/artifacts/metrics.json"), as: UTF8.self))
        func numbers(_ v: JSONValue) -> [Double] {
            switch v {
            case .object(let o): o.values.flatMap(numbers)
            case .array(let a): a.flatMap(numbers)
            default: v.number.map { [$0] } ?? []
            }
        }
        XCTAssertGreaterThan(numbers(metrics).count, 20)
        XCTAssertTrue(numbers(metrics).allSatisfy(\.isFinite))
        let rows = String(decoding: try Files.read(d + "/artifacts/series.csv"), as: UTF8.self).split(separator: "\n").dropFirst()
        XCTAssertGreaterThan(rows.count, 50)
        for row in rows {
            let f = row.split(separator: ",")
            XCTAssertTrue(Double(f[f.count - 1])?.isFinite == true && Double(f[f.count - 2])?.isFinite == true, String(row))
        }

        // A second run is a no-op; changing the report's title reruns only the report.
        XCTAssertTrue(try TestSupport.ntk(["run"], in: d).stderr.contains("everything is up to date"))
        let again = try TestSupport.ntk(["run", "--set", "report.title=other"], in: d)
        XCTAssertTrue(again.stderr.contains("ran 1 of"), again.stderr)
        // Adding a width runs only that expansion (and the report, whose deps grew).
        let wider = Self.yaml.replacingOccurrences(of: "[8, 16, 32]", with: "[8, 16, 32, 64]")
        try wider.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        let more = try TestSupport.ntk(["run", "--set", "report.title=other"], in: d)
        XCTAssertTrue(more.stderr.contains("conv@width=64: running") && more.stderr.contains("ran 2 of"), more.stderr)
    }

    func testBadReportConfigurationsAreRejected() throws {
        let d = project(Self.yaml.replacingOccurrences(of: "from: conv", with: "from: nothing"))
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no evaluation artifact of stage 'nothing'"), r.stderr)
        XCTAssertFalse(Files.exists(d + "/artifacts/report.html"))
        XCTAssertTrue(Files.exists(d + "/artifacts/evaluation.npz"), "the stages before the report ran and were kept")

        let e = project(Self.yaml.replacingOccurrences(of: "artifacts/metrics.json", with: "artifacts/metrics.npz"))
        let bad = try TestSupport.ntk(["run"], in: e)
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("out 'artifacts/metrics.npz' holds a metrics and must end in .json"), bad.stderr)
        XCTAssertTrue(bad.stderr.contains("pipeline.yaml:"), "the error is located: \(bad.stderr)")

        let g = project(Self.yaml.replacingOccurrences(of: "y: [ntk_error_M1, ntk_error_M4]", with: "y: [ntk_eror_M1]"))
        let typo = try TestSupport.ntk(["run"], in: g)
        XCTAssertEqual(typo.status, 1)
        XCTAssertTrue(typo.stderr.contains("no artifact of conv has 'ntk_eror_M1' in its summary"), typo.stderr)

        let f = project(Self.yaml.replacingOccurrences(of: "\"outs:conv\"", with: "\"outs:convv\""))
        let missing = try TestSupport.ntk(["run"], in: f)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("'outs:convv': no stage named convv"), missing.stderr)
    }

    func testEnsembleAgainstTheGaussianProcesses() throws {
        let yaml = """
            schema: 1
            params:
              seed: 0
              data: {format: idx, num_classes: 3, path: data, n_train: 12, n_test: 3, classes: [0, 2], targets: pm1, standardize: global,
                     dtype: float64, interpolate: {points: 6, from: -1, to: 1.5}}
              model: {depth: 1, width: 64, activation: tanh, w_std: 1.2, b_std: 0}
              kernel: {test_test: true}
              train: {loss: mse, learning_rate: 0.5, steps: 40, dtype: float64, linearize: false}
              ensemble: {members: 8, snapshots: [0, 5, 20]}
              report: {title: e, sections: [{title: ensemble, from: ensemble, headline: [mean_z_max]}]}
            stages:
              load: {deps: ["${data.path}"], params: [seed, data], outs: [artifacts/dataset.npz]}
              kernels: {kind: analytic_kernels, deps: [artifacts/dataset.npz], params: [model, kernel], outs: [artifacts/analytic.npz]}
              ensemble: {deps: [artifacts/dataset.npz, artifacts/analytic.npz], params: [seed, model, train, ensemble], outs: [artifacts/ensemble.npz]}
              report: {deps: ["outs:ensemble"], params: [report], outs: [artifacts/report.html, artifacts/metrics.json, artifacts/series.csv]}
            """
        let d = project(yaml)
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        // The test set interpolates training sample 0 (α = 1) and the first of the other class (α = 0).
        let ds = try DatasetArtifact(file: try ArtifactFile.read(d + "/artifacts/dataset.npz"), path: "")
        let alpha = try ArtifactFile.read(d + "/artifacts/dataset.npz").tensor("alpha")!.doubles()
        XCTAssertEqual(alpha, [-1, -0.5, 0, 0.5, 1, 1.5])
        let b = ds.labelsTrain.firstIndex { $0 != ds.labelsTrain[0] }!
        XCTAssertEqual(Array(ds.xTest[4 * ds.features..<5 * ds.features]), Array(ds.xTrain[0..<ds.features]))
        XCTAssertEqual(Array(ds.xTest[2 * ds.features..<3 * ds.features]), Array(ds.xTrain[b * ds.features..<(b + 1) * ds.features]))
        // At t = 0 the NTK-GP is the prior: mean 0, variance K(x, x).
        let e = try ArtifactFile.read(d + "/artifacts/ensemble.npz")
        XCTAssertEqual(e.tensor("outputs")!.shape, [8, 3, 6])
        let prior = try ArtifactFile.read(d + "/artifacts/analytic.npz").tensor("nngp_test_test")!.doubles()
        let v0 = Array(e.tensor("ntkgp_var")!.doubles()[0..<6]), m0 = Array(e.tensor("ntkgp_mean")!.doubles()[0..<6])
        for j in 0..<6 { XCTAssertEqual(v0[j], prior[j * 6 + j], accuracy: 1e-12); XCTAssertEqual(m0[j], 0, accuracy: 1e-12) }
        // Late, the GP mean passes through the training targets at α = 0 and 1.
        let mLast = Array(e.tensor("ntkgp_mean")!.doubles()[12..<18])
        XCTAssertLessThan(abs(mLast[4] - ds.yTrain[0]), 0.5)
        guard case .object(let sum)? = e.metadata["summary"] else { return XCTFail("no summary") }
        for key in ["mean_z_max", "var_z_max", "nngp_mean_z_last"] { XCTAssertTrue(sum[key]?.number?.isFinite == true, key) }
        let html = String(decoding: try Files.read(d + "/artifacts/report.html"), as: UTF8.self)
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 3)  // one plot per snapshot
    }

    func testPlotPrimitives() {
        let x = [8.0, 16, 32, 64, 128], y = x.map { 3 * pow($0, -0.5) }
        XCTAssertEqual(SVGPlot.fitSlope(x, y)!.slope, -0.5, accuracy: 1e-12)
        var p = SVGPlot(title: "t", xLabel: "x", yLabel: "y", logX: true, logY: true)
        p.series = [.init(label: "a", x: [0, 1, 2, 4], y: [1, -1, 2, 3], color: 0, fit: true)]
        XCTAssertEqual(p.plottedPoints, 2)  // x = 0 and y < 0 cannot be drawn on log axes
        XCTAssertTrue(p.svg().contains("<polyline"))
        var empty = SVGPlot(title: "e", xLabel: "x", yLabel: "y")
        empty.series = [.init(label: "a", x: [.nan], y: [1], color: 0)]
        XCTAssertTrue(empty.svg().contains("no data"))
        XCTAssertEqual(ReportStage.expansionValues("fig1_eval@depth=3,width=256"), ["depth": 3, "width": 256])
        XCTAssertEqual(SVGPlot.linearTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1.0].map { $0 }, accuracy: 1e-12)
    }
}

private func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}
