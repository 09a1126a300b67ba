import Foundation
import NTK
import XCTest

@testable import NTKPipeline

/// The analytic_kernels and predict stages through the real binary.
final class KernelStageTests: XCTestCase {
    static func yaml(nTrain: Int = 30, maxMemory: String = "1G") -> String {
        """
        schema: 1
        params:
          seed: 0
          data: {format: idx, num_classes: 3, path: data, n_train: \(nTrain), n_test: 9, classes: [0, 2], targets: pm1, standardize: global, l2_normalize: true}
          model: {depth: 2, activation: relu, w_std: 1.4, b_std: 0.1}
          kernel: {max_memory: \(maxMemory)}
          predict: {times: [1, 100, inf]}
        stages:
          load:
            deps: ["${data.path}"]
            params: [seed, data]
            outs: [artifacts/dataset.npz]
          kernels:
            kind: analytic_kernels
            deps: [artifacts/dataset.npz]
            params: [model, kernel]
            outs: [artifacts/kernels.npz]
          predict:
            deps: [artifacts/dataset.npz, artifacts/kernels.npz]
            params: [predict]
            outs: [artifacts/predictions.npz]
        """
    }

    func project(_ yaml: String = yaml(), perClass: Int = 20) -> String {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data", perClass: perClass)
        try! yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        return d
    }

    func testKernelsAndPredictionsEndToEnd() throws {
        let d = project()
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("NTK-GP t=∞: test accuracy"), r.stderr)
        // The stage's kernels equal the library's on the same dataset.
        let ds = try DatasetArtifact(file: try ArtifactFile.read(d + "/artifacts/dataset.npz"), path: "")
        let k = try ArtifactFile.read(d + "/artifacts/kernels.npz")
        let spec = NetworkSpec(inputDim: ds.features, widths: [1024, 1024], outputs: 1, activation: .relu, wStd: 1.4, bStd: 0.1)
        let expected = try AnalyticKernels.compute(x1: Matrix(rows: ds.nTrain, cols: ds.features, data: ds.xTrain), spec: spec)
        XCTAssertEqual(k.tensor("ntk_train_train")?.doubles(), expected.ntk.data)
        XCTAssertEqual(k.tensor("nngp_test_test")?.shape, [9, 9].map { _ in ds.nTest })
        let p = try ArtifactFile.read(d + "/artifacts/predictions.npz")
        XCTAssertEqual(p.kind, .predictions)
        XCTAssertEqual(p.tensor("ntk_mean_test")?.shape, [3, ds.nTest, 1])
        XCTAssertEqual(p.tensor("times")?.doubles().last, .infinity)
        guard case .object(let metrics)? = p.metadata["metrics"], case .array(let ntk)? = metrics["ntk"] else { return XCTFail("no metrics") }
        XCTAssertEqual(ntk.count, 3)
    }

    /// A predict stage given a dataset where it needs kernels: the kind check names both.
    func testWrongArtifactKindForAStage() throws {
        let d = project(Self.yaml().replacingOccurrences(of: "deps: [artifacts/dataset.npz, artifacts/kernels.npz]", with: "deps: [artifacts/dataset.npz, artifacts/other.npz]")
            + "\n  other:\n    kind: load\n    deps: [\"${data.path}\"]\n    params: [seed, data]\n    outs: [artifacts/other.npz]\n")
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("needs a 'kernels' artifact among its deps"), r.stderr)
        XCTAssertTrue(r.stderr.contains("artifacts/other.npz is a 'dataset' artifact"), r.stderr)
        XCTAssertFalse(Files.exists(d + "/artifacts/predictions.npz"))
    }

    /// kill -9 while the kernels are being computed in blocks; the next run resumes from the finished
    /// (checkpointed) blocks and ends with byte-identical kernels.
    func testKilledKernelStageResumesFromFinishedBlocks() throws {
        let yaml = Self.yaml(nTrain: 150, maxMemory: "16K")  // 6 rows per block → 25 train blocks
        let reference = project(yaml, perClass: 80)
        XCTAssertEqual(try TestSupport.ntk(["run", "kernels"], in: reference).status, 0)
        XCTAssertFalse(Files.exists(reference + "/.ntk/checkpoints/kernels"), "checkpoints are removed after success")

        let d = project(yaml, perClass: 80)
        XCTAssertEqual(try TestSupport.ntk(["run", "load"], in: d).status, 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.ntkBinary)
        p.arguments = ["run", "kernels"]
        p.currentDirectoryURL = URL(fileURLWithPath: d)
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        // Wait until a few blocks are checkpointed, then kill.
        var blocks = 0
        for _ in 0..<4000 where blocks < 4 {
            Thread.sleep(forTimeInterval: 0.005)
            let dirs = (try? FileManager.default.subpathsOfDirectory(atPath: d + "/.ntk/checkpoints")) ?? []
            blocks = dirs.filter { $0.hasSuffix(".npz") }.count
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertGreaterThanOrEqual(blocks, 4, "blocks should have been checkpointed before the kill")
        XCTAssertFalse(Files.exists(d + "/artifacts/kernels.npz"))
        let r = try TestSupport.ntk(["run", "kernels"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("train_train: resumed"), r.stderr)
        XCTAssertEqual(TestSupport.read(d + "/artifacts/kernels.npz"), TestSupport.read(reference + "/artifacts/kernels.npz"))
    }

    /// `ntk exec analytic_kernels` on a plain .npz with x1 and x2.
    func testExecOnPlainArrays() throws {
        let d = TestSupport.tempDir()
        var rng = SplitMix64(seed: 5)
        let x1 = (0..<12).map { _ in rng.normal() }, x2 = (0..<6).map { _ in rng.normal() }
        try ArtifactFile(kind: .dataset, metadata: [:], tensors: [Tensor(name: "x1", shape: [4, 3], values: x1), Tensor(name: "x2", shape: [2, 3], values: x2)])
            .write(to: d + "/x.npz")
        let r = try TestSupport.ntk(["exec", "analytic_kernels", "--in", "x.npz", "--out", "k.npz", "--set", "model.depth=2", "--set", "model.activation=erf"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        let k = try ArtifactFile.read(d + "/k.npz")
        let spec = NetworkSpec(inputDim: 3, widths: [1, 1], outputs: 1, activation: .erf, wStd: 1, bStd: 0)
        let expected = try AnalyticKernels.compute(x1: Matrix(rows: 4, cols: 3, data: x1), x2: Matrix(rows: 2, cols: 3, data: x2), spec: spec)
        XCTAssertEqual(k.tensor("ntk")?.shape, [4, 2])
        XCTAssertEqual(k.tensor("ntk")?.doubles(), expected.ntk.data)
    }

    /// numpy opens every artifact kind a pipeline writes.
    func testNumpyOpensEveryArtifactKind() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["NTK_SKIP_NUMPY"] != nil, "NTK_SKIP_NUMPY set")
        let d = project()
        XCTAssertEqual(try TestSupport.ntk(["run"], in: d).status, 0)
        let script = """
            import json, sys, numpy as np
            kinds = set()
            for f in sys.argv[1:]:
                z = np.load(f)
                m = json.loads(z['metadata.json'])
                for t in m['tensors']:
                    a = z[t['name']]
                    assert list(a.shape) == t['shape'] and str(a.dtype) == t['dtype'], (f, t, a.shape, a.dtype)
                kinds.add(m['kind'])
            print(' '.join(sorted(kinds)))
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script] + ["dataset", "kernels", "predictions"].map { "\(d)/artifacts/\($0).npz" }
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertEqual(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self), "dataset kernels predictions\n")
    }
}
