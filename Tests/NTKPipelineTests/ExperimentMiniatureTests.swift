import Foundation
import XCTest

@testable import NTKPipeline

/// The paper's convolutional and residual experiments (`experiments/figS2.yaml`, `experiments/fig4.yaml`) run end to
/// end in miniature: the files as committed, with their channel counts, steps and data sizes shrunk by text
/// substitution (everything else — layers, optimizer, stages, report — as the real run has it).
final class ExperimentMiniatureTests: XCTestCase {
    /// `experiments/<name>.yaml` with each regex of `substitutions` replaced (each must match somewhere).
    func shrunk(_ name: String, _ substitutions: [(String, String)]) throws -> String {
        var text = try String(contentsOfFile: TestSupport.root + "/experiments/\(name).yaml", encoding: .utf8)
        for (pattern, with) in substitutions {
            let re = try NSRegularExpression(pattern: pattern)
            let count = re.numberOfMatches(in: text, range: NSRange(text.startIndex..., in: text))
            XCTAssertGreaterThan(count, 0, "\(name).yaml has no \(pattern)")
            let all = NSRange(text.startIndex..., in: text)
            text = re.stringByReplacingMatches(in: text, range: all, withTemplate: with)
        }
        return text
    }

    /// `experiments/<name>.yaml` with every `channels: n` → 4, `steps: n` → `steps`, and the data sizes given.
    func miniature(_ name: String, steps: Int, nTrain: Int, nTest: Int) throws -> String {
        try shrunk(name, [("channels: [0-9]+", "channels: 4"), ("steps: [0-9]+", "steps: \(steps)"),
                          ("n_train: [0-9a-z]+", "n_train: \(nTrain)"), ("n_test: [0-9a-z]+", "n_test: \(nTest)")])
    }

    /// Runs the miniature in a project laid out like the repository (experiments/ beside data/) and returns its
    /// metrics.json; checks the run succeeded and printed where the report is.
    func runMetrics(_ name: String, _ yaml: String, extra: [String] = []) throws -> JSONValue {
        let d = TestSupport.tempDir(name)
        defer { try? FileManager.default.removeItem(atPath: d) }
        try FileManager.default.createDirectory(atPath: d + "/experiments", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: d + "/data", withDestinationPath: TestSupport.root + "/data")
        try yaml.write(toFile: d + "/experiments/\(name).yaml", atomically: true, encoding: .utf8)
        let r = try TestSupport.ntk(["run", "--pipeline", "experiments/\(name).yaml"] + extra, in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        // the page's path as printed is where it is (outs are relative to the pipeline file, not the working dir)
        let page = Files.canonical(d + "/experiments/artifacts/\(name)/report.html")
        XCTAssertTrue(r.stderr.contains("report: " + page + "\n"), r.stderr)
        let html = String(decoding: try Files.read(d + "/experiments/artifacts/\(name)/report.html"), as: UTF8.self)
        XCTAssertFalse(html.contains("no data"))
        let text = String(decoding: try Files.read(d + "/experiments/artifacts/\(name)/metrics.json"), as: UTF8.self)
        return try JSONValue.parse(text)
    }

    /// The headline numbers of the miniature's report section titled `section`.
    func run(_ name: String, _ yaml: String, section: String) throws -> [String: JSONValue] {
        let metrics = try runMetrics(name, yaml)
        guard case .array(let sections)? = metrics["sections"],
              let found = sections.first(where: { if case .string(section)? = $0["title"] { true } else { false } }),
              case .object(let m)? = found["headline"] else {
            XCTFail("metrics.json has no section \(section): \(metrics.canonical.prefix(400))")
            return [:]
        }
        return m
    }

    /// Every headline of the section is a finite number; the network and its linearization stay close in a few
    /// steps from one θ₀ (RMSE well below the outputs' scale), and the accuracies are fractions.
    func check(_ m: [String: JSONValue], _ name: String) {
        let keys = ["rmse_network__linearized", "test_accuracy_network", "test_accuracy_linearized",
                    "test_loss_network", "test_loss_linearized", "max_gap_test_accuracy_network__linearized"]
        for key in keys {
            guard let v = m[key]?.number else { XCTFail("\(name): no \(key) in \(m.keys.sorted())"); continue }
            XCTAssertTrue(v.isFinite, "\(name): \(key) = \(v)")
        }
        XCTAssertLessThan(m["rmse_network__linearized"]?.number ?? .infinity, 0.5, name)
        for key in ["test_accuracy_network", "test_accuracy_linearized"] {
            XCTAssertTrue((0...1).contains(m[key]?.number ?? -1), "\(name): \(key)")
        }
    }

    /// Figure S5's four sweeps (FC by depth and by |D|, CNN by depth, WRN by N) with two tiny sizes each: every
    /// series of every section gets a finite log-log slope in metrics.json.
    func testFigureS5SweepsRunInMiniature() throws {
        let yaml = try shrunk("figS5", [(#"width: \[[0-9, ]+\]"#, "width: [4, 8]"),
                                        (#"channels: \[[0-9, ]+\]"#, "channels: [2, 4]"),
                                        (#"n_train: \[[0-9, ]+\]"#, "n_train: [8, 16]"),
                                        (#"depth: \[1, 2, 4, 8\]"#, "depth: [1, 2]"),
                                        ("steps: [0-9]+", "steps: 3"), ("n_train: [0-9]+", "n_train: 16"),
                                        ("n_test: [0-9]+", "n_test: 10")])
        let metrics = try runMetrics("figS5", yaml)
        guard case .array(let sections)? = metrics["sections"] else { return XCTFail("no sections") }
        let expected = ["eval_depth": 2, "eval_size": 2, "eval_cnn": 3, "eval_wrn": 2]
        XCTAssertEqual(sections.compactMap { $0["from"]?.text }, ["eval_depth", "eval_size", "eval_cnn", "eval_wrn"])
        for sec in sections {
            let from = sec["from"]?.text ?? "?"
            guard case .object(let fits)? = sec["fits"] else { XCTFail("\(from): no fits"); continue }
            XCTAssertEqual(fits.count, expected[from], "\(from): one slope per series: \(fits.keys.sorted())")
            for (k, v) in fits { XCTAssertTrue(v.number?.isFinite == true, "\(from): \(k) = \(v)") }
        }
    }

    func testFigureS2CNNRunsInMiniature() throws {
        let yaml = try miniature("figS2", steps: 6, nTrain: 16, nTest: 10)
        let section = "Figure S2 — 3 × conv 3×3 tanh, average pool, momentum 0.9, MSE"
        check(try run("figS2", yaml, section: section), "figS2")
    }

    func testFigure4WideResNetRunsInMiniature() throws {
        let yaml = try miniature("fig4", steps: 6, nTrain: 40, nTest: 20)
        let section = "Figure 4 — WRN (N = 1, constant channels, pre-activation), MSE, SGD with momentum 0.9, batch 8"
        check(try run("fig4", yaml, section: section), "fig4")
    }

    /// Figure S9 for CNNs in miniature (8 digits, 8 draws, channels 8, 32, 128): the mean empirical kernels of
    /// finite CNNs (flatten: spatial diagonal; pooled: full spatial covariance) approach the infinite-width CNN-GP /
    /// CNTK, one draw's error falling about as 1/√channels, and averaging draws lowers it.
    func testFigureS9CNNKernelsConvergeInMiniature() throws {
        let yaml = try shrunk("figS9-cnn", [(#"channels: \[[0-9, ]+\]"#, "channels: [8, 32, 128]"),
                                            ("inputs: 32", "inputs: 8"), ("draws: 32", "draws: 8"),
                                            ("n_train: 32", "n_train: 8"), ("M32", "M8"), ("M = 32", "M = 8")])
        let metrics = try runMetrics("figS9-cnn", yaml)
        guard case .array(let sections)? = metrics["sections"] else { return XCTFail("no sections") }
        XCTAssertEqual(sections.compactMap { $0["from"]?.text }, ["flatten", "pooled"])
        for sec in sections {
            let from = sec["from"]?.text ?? "?"
            guard case .object(let fits)? = sec["fits"], case .object(let runs)? = sec["artifacts"] else {
                XCTFail("\(from): no fits"); continue
            }
            for kernel in ["Θ̂ − Θ", "K̂ − K"] {
                let key = fits.keys.first { $0.contains(kernel) && $0.hasSuffix("/ M = 1") }
                let slope = key.flatMap { fits[$0]?.number } ?? .nan
                XCTAssertTrue((-0.8 ... -0.3).contains(slope), "\(from) ‖\(kernel)‖ slope at M = 1: \(slope) \(fits)")
            }
            for (stage, summary) in runs {
                let one = summary["ntk_error_M1"]?.number ?? .nan, eight = summary["ntk_error_M8"]?.number ?? .nan
                XCTAssertLessThan(eight, one, "\(stage): averaging 8 draws lowers the error")
            }
        }
    }

    /// The Myrtle-style kernel-regression experiment in miniature on the embedded MNIST digits (CI has no
    /// Fashion-MNIST): the closed-form predictions of both kernels reach the report with their t = ∞ accuracies, above
    /// chance.
    func testMyrtleKernelRegressionRunsInMiniature() throws {
        // 20 + 10 digits, and the CNN's input pooled to 14×14 first (its full covariance is 16× smaller)
        let pooled = "layers: [{avg_pool: {window: 2, strides: 2}}, {conv"
        let yaml = try shrunk("myrtle-fashion", [("/usr/share/datasets/fashion-mnist", "../data/mnist"),
                                                 ("n_train: [0-9]+", "n_train: 20"), ("n_test: [0-9]+", "n_test: 10"),
                                                 (#"layers: \[\{conv"#, pooled)])
        let metrics = try runMetrics("myrtle-fashion", yaml)
        guard case .array(let sections)? = metrics["sections"] else { return XCTFail("no sections") }
        XCTAssertEqual(sections.compactMap { $0["from"]?.text }, ["cnn_predict", "fc_predict"])
        for sec in sections {
            for key in ["nngp_infinite_test_accuracy", "ntkgp_infinite_test_accuracy"] {
                let v = sec["headline"]?[key]?.number ?? -1
                print("myrtle-fashion miniature, \(sec["from"]?.text ?? "?"): \(key) = \(v)")
                XCTAssertTrue((0.3...1).contains(v), "\(sec["from"]?.text ?? "?"): \(key) = \(v) (chance is 0.1)")
            }
        }
    }

    /// The distributed kernel regression (experiments/kernel-regression-distributed.yaml) on 2 processes, with 200
    /// training and 50 test digits: both GPs well above chance.
    func testDistributedKernelRegressionRunsInMiniature() throws {
        let yaml = try shrunk("kernel-regression-distributed", [("/usr/share/datasets/fashion-mnist", "../data/mnist"),
                                                                ("n_train: [0-9]+", "n_train: 200"),
                                                                ("n_test: [0-9a-z]+", "n_test: 50")])
        let metrics = try runMetrics("kernel-regression-distributed", yaml, extra: ["--ranks", "2"])
        guard case .array(let sections)? = metrics["sections"], let sec = sections.first else {
            return XCTFail("no sections")
        }
        for key in ["nngp_infinite_test_accuracy", "ntkgp_infinite_test_accuracy"] {
            let v = sec["headline"]?[key]?.number ?? -1
            print("kernel-regression-distributed miniature: \(key) = \(v)")
            XCTAssertTrue((0.6...1).contains(v), "\(key) = \(v) (chance is 0.1)")
        }
    }
}
