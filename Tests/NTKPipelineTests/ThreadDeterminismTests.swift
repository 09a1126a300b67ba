import Foundation
import XCTest

@testable import NTKPipeline

/// Results do not depend on `--threads`: the same pipeline run with 1, 2 and 3 threads writes byte-identical
/// artifacts. Sized so that the thread-dependent choices of the past are exercised: products of ≥ 8 MFLOP (cut into
/// tiles by `TiledBLAS`), Winograd and short-k convs (fixed sample groups), the empirical NTK's feature slices and
/// output tiles, the analytic kernels' row chunks, and LAPACK (Cholesky and the eigendecomposition of predict).
final class ThreadDeterminismTests: XCTestCase {
    static func yaml(model: String, fullyConnected: Bool, nTrain: Int) -> String {
        let kernels = fullyConnected ? """
              kernels:
                kind: analytic_kernels
                deps: [artifacts/dataset.npz]
                params: [model, kernel]
                outs: [artifacts/kernels.npz]
              predict:
                deps: [artifacts/dataset.npz, artifacts/kernels.npz]
                params: [predict]
                outs: [artifacts/predictions.npz]
            """ : ""
        return """
            schema: 1
            params:
              seed: 5
              data: {format: idx, num_classes: 10, path: data, n_train: \(nTrain), n_test: 64, standardize: global}
              model: \(model)
              train: {learning_rate: 0.5, steps: 4, momentum: 0.9, dtype: float32}
              empirical: {dtype: float32, output: \(fullyConnected ? "full" : "traced")}
              kernel: {}
              predict: {times: [1, 100, inf]}
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

            """ + kernels
    }

    /// Runs the pipeline with each thread count in its own directory; returns each run's artifacts (name → bytes).
    func runs(_ yaml: String, threads: [Int]) throws -> [[String: Data]] {
        try threads.map { t in
            let d = TestSupport.tempDir("threads\(t)")
            try FileManager.default.createSymbolicLink(
                atPath: d + "/data", withDestinationPath: TestSupport.embeddedMNIST)
            try yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
            let r = try TestSupport.ntk(["run", "--threads", "\(t)"], in: d)
            XCTAssertEqual(r.status, 0, r.stderr)
            var files: [String: Data] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: d + "/artifacts") {
                files[name] = try Data(contentsOf: URL(fileURLWithPath: d + "/artifacts/" + name))
            }
            return files
        }
    }

    func assertIdentical(_ results: [[String: Data]], _ threads: [Int], expect names: [String]) {
        XCTAssertEqual(Set(results[0].keys), Set(names))
        for (t, r) in zip(threads.dropFirst(), results.dropFirst()) {
            for name in names { XCTAssertTrue(r[name] == results[0][name], "\(name): --threads \(t) differs from 1") }
        }
    }

    func testFullyConnectedArtifactsDoNotDependOnThreads() throws {
        let threads = [1, 2, 3]
        let model = "{depth: 2, width: 512, w_std: 1.4, b_std: 0.1}"
        let results = try runs(Self.yaml(model: model, fullyConnected: true, nTrain: 256), threads: threads)
        assertIdentical(results, threads, expect: ["dataset.npz", "params.npz", "trained.npz", "empirical.npz",
                                                   "kernels.npz", "predictions.npz"])
    }

    func testConvolutionalArtifactsDoNotDependOnThreads() throws {
        // a short-patch first conv, a strided im2col conv, two Winograd convs (F(4×4) on 7×7, F(2×2) on 2×2 outputs)
        let layers = """
            [{conv: {channels: 16, filter: 3, padding: SAME}}, relu,
             {conv: {channels: 32, filter: 3, strides: 2, padding: SAME}}, relu, {avg_pool: {window: 2, strides: 2}},
             {conv: {channels: 32, filter: 3, padding: SAME}}, relu, {avg_pool: {window: 3, strides: 3}},
             {conv: {channels: 16, filter: 3, padding: SAME}}, relu, global_avg_pool, {dense: {out: 10}}]
            """.replacingOccurrences(of: "\n", with: " ")
        let threads = [1, 2, 3]
        let results = try runs(Self.yaml(model: "{layers: \(layers)}", fullyConnected: false, nTrain: 128),
                               threads: threads)
        assertIdentical(results, threads, expect: ["dataset.npz", "params.npz", "trained.npz", "empirical.npz"])
    }
}
