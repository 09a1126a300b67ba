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
        \(TestSupport.stages(["load", "kernels", "predict"]))
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
        // Wait until a few blocks are checkpointed, then kill.
        let blocks = try TestSupport.killAfterCheckpoints(["run", "kernels"], in: d, count: 4)
        XCTAssertGreaterThanOrEqual(blocks, 4, "blocks should have been checkpointed before the kill")
        XCTAssertFalse(Files.exists(d + "/artifacts/kernels.npz"))
        let r = try TestSupport.ntk(["run", "kernels"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("train_train: resumed"), r.stderr)
        XCTAssertEqual(TestSupport.read(d + "/artifacts/kernels.npz"), TestSupport.read(reference + "/artifacts/kernels.npz"))
    }

    /// A CNN whose kernels carry the full spatial covariance (28×28 digits: 614,656 entries per pair and array at the
    /// input): under `kernel.max_memory` the peak RSS (as `ntk run` reports it) stays within the same stage's on a
    /// tiny network plus the kernels plus the cap (and a larger cap is what lets the tiles grow); the rows run in
    /// checkpointed blocks, so a run killed mid-way resumes and ends byte-identical; a cap below one pair's state is
    /// refused, naming the key.
    func testCNNKernelsStayWithinMaxMemoryAndResumeAfterKill() throws {
        func yaml(_ model: String, _ cap: String, nTrain: Int = 8) -> String {
            Self.yaml(nTrain: nTrain, maxMemory: cap)
                .replacingOccurrences(of: "path: data, n_train", with: "path: \(TestSupport.embeddedMNIST), n_train")
                .replacingOccurrences(of: "num_classes: 3, ", with: "")
                .replacingOccurrences(of: "l2_normalize: true", with: "l2_normalize: false")
                .replacingOccurrences(of: "{depth: 2, activation: relu, w_std: 1.4, b_std: 0.1}", with: model)
        }
        // the input covariance is 28×28 full (the largest state); the convs run on the input pooled to 14×14
        let cnn = "{layers: [{avg_pool: {window: 2, strides: 2}}, {conv: {channels: 1, filter: 3, padding: SAME}}, "
            + "relu, {conv: {channels: 1, filter: 3, padding: SAME}}, relu, {avg_pool: {window: 2, strides: 2}}, "
            + "global_avg_pool, {dense: {out: 1}}], w_std: 1.4, b_std: 0.1}"
        func peak(_ model: String, _ cap: String) throws -> (Int, String) {
            let d = project(yaml(model, cap))
            XCTAssertEqual(try TestSupport.ntk(["run", "load"], in: d).status, 0)
            let r = try TestSupport.ntk(["run", "kernels"], in: d)
            XCTAssertEqual(r.status, 0, r.stderr)
            return (try XCTUnwrap(TestSupport.peakMemory(r.stderr), r.stderr), d)
        }
        let (base, _) = try peak("{depth: 1, width: 8}", "40M")
        let (capped, d) = try peak(cnn, "40M")
        let (wide, _) = try peak(cnn, "400M")
        let kernels = try ArtifactFile.read(d + "/artifacts/kernels.npz").tensors
            .reduce(0) { $0 + 8 * $1.shape.reduce(1, *) }
        let state = 3 * 28 * 28 * 28 * 28 * 8  // one pair's tile: K, Θ and a scratch array
        print("peak RSS: tiny network \(base >> 20) MB, CNN with max_memory 40M \(capped >> 20) MB, "
              + "with 400M \(wide >> 20) MB")
        XCTAssertLessThanOrEqual(capped, base + (40 << 20) + kernels, "RSS \(capped), baseline \(base)")
        // 400M: 4 columns per tile (half of a row of 8) on each of 2 workers
        XCTAssertGreaterThan(wide, capped + 4 * state, "a 400M cap lets the tiles grow (RSS \(wide), 40M: \(capped))")

        // killed after a few checkpointed blocks, resumed, byte-identical to the uninterrupted run
        let blocks4 = yaml(cnn, "40M", nTrain: 24)
            .replacingOccurrences(of: "max_memory: 40M", with: "max_memory: 40M, checkpoint_rows: 4")
        let k = project(blocks4), reference = project(blocks4)
        XCTAssertEqual(try TestSupport.ntk(["run", "kernels"], in: reference).status, 0)
        XCTAssertEqual(try TestSupport.ntk(["run", "load"], in: k).status, 0)
        let blocks = try TestSupport.killAfterCheckpoints(["run", "kernels"], in: k, count: 2)
        XCTAssertGreaterThanOrEqual(blocks, 2, "blocks should have been checkpointed before the kill")
        XCTAssertFalse(Files.exists(k + "/artifacts/kernels.npz"))
        let r = try TestSupport.ntk(["run", "kernels"], in: k)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("train_train: resumed"), r.stderr)
        XCTAssertEqual(TestSupport.read(k + "/artifacts/kernels.npz"),
                       TestSupport.read(reference + "/artifacts/kernels.npz"))

        // a cap below one pair's state: refused before any work, naming the key and the size it needs
        let small = project(yaml(cnn, "8M"))
        XCTAssertEqual(try TestSupport.ntk(["run", "load"], in: small).status, 0)
        let e = try TestSupport.ntk(["run", "kernels"], in: small)
        XCTAssertEqual(e.status, 1, e.stderr)
        XCTAssertTrue(e.stderr.contains("params.kernel.max_memory") && e.stderr.contains("raise kernel.max_memory"),
                      e.stderr)
        XCTAssertFalse(Files.exists(small + "/artifacts/kernels.npz"))
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
