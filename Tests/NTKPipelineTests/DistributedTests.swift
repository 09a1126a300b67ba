import Foundation
import NTK
import XCTest

@testable import NTKPipeline

/// Distributed runs (`ntk run --ranks P`: Open MPI + ScaLAPACK, which scripts/setup installs): the kernels, put
/// back together from the processes' tiles, and the predictions equal a single-process run's.
final class DistributedTests: XCTestCase {
    static let cnn =
        "{layers: [{avg_pool: {window: 4, strides: 4}}, {conv: {channels: 1, filter: 3, padding: SAME}},"
        + " relu, {avg_pool: {window: 2, strides: 2}}, {conv: {channels: 1, filter: 2}}, erf, global_avg_pool,"
        + " {dense: {out: 10}}], w_std: 1.3, b_std: 0.2}"

    static func yaml(model: String, n: Int, m: Int, times: String = "[inf]") -> String {
        """
        schema: 1
        params:
          seed: 0
          data: {format: idx, path: \(TestSupport.embeddedMNIST), n_train: \(n), n_test: \(m), scale: true,
                 standardize: global, targets: one_hot}
          model: \(model)
          kernel: {test_test: true}
          predict: {times: \(times), diag_reg: 1e-4}
        stages:
        \(TestSupport.stages(["load", "kernels", "predict"]))
        """
    }

    func project(_ yaml: String, _ name: String = #function) -> String {
        let d = TestSupport.tempDir(name)
        try! yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        return d
    }

    /// The global matrices of a distributed kernels artifact, from its tiles (numpy's K[np.ix_(rows, cols)] = tile).
    func assemble(_ manifest: String) throws -> [String: Matrix] {
        let f = try ArtifactFile.read(manifest)
        guard case .object(let d)? = f.metadata["distributed"], case .object(let shapes)? = d["shapes"],
            case .array(let tiles)? = d["tiles"]
        else { throw NTKError("no distributed record", at: manifest) }
        var out: [String: Matrix] = [:]
        for (name, s) in shapes {
            guard case .array(let dims) = s else { continue }
            out[name] = Matrix(rows: Int(dims[0].number!), cols: Int(dims[1].number!))
        }
        func npy(_ path: String) throws -> Tensor { try NPY.parse(try Files.read(path), name: path) }
        for t in tiles {
            let dir = (manifest as NSString).deletingLastPathComponent + "/" + t["dir"]!.text!
            for name in out.keys {
                let v = try npy(dir + "/" + name + ".npy").doubles()
                let rows = try npy(dir + (name.hasSuffix("test_test") ? "/rows_test.npy" : "/rows.npy")).integers()!
                let cols = try npy(dir + (name.hasSuffix("train_train") ? "/cols.npy" : "/cols_test.npy")).integers()!
                for (i, r) in rows.enumerated() {
                    for (j, c) in cols.enumerated() { out[name]![r, c] = v[i * cols.count + j] }
                }
            }
        }
        return out
    }

    /// max |a − b| / max |b| over the entries where `keep(i, j)`.
    func relativeError(_ a: Matrix, _ b: Matrix, _ keep: (Int, Int) -> Bool = { _, _ in true }) -> Double {
        var err = 0.0
        var scale = 0.0
        for i in 0..<b.rows {
            for j in 0..<b.cols where keep(i, j) {
                err = max(err, abs(a[i, j] - b[i, j]))
                scale = max(scale, abs(b[i, j]))
            }
        }
        return err / scale
    }

    /// 2, 4 (a 2×2 grid: rows split too) and 3 processes (1×3: with 8 test samples, two of them hold no test column)
    /// against one; finite times through the eigendecompositions (pdsyevd), t = ∞ alone through Cholesky solves.
    func testProcessesGiveTheSingleProcessKernelsAndPredictions() throws {
        let fc = "{depth: 2, width: 64, activation: relu, w_std: 1.4, b_std: 0.3}"
        for (label, model, n, m, times, counts) in [
            ("fully-connected", fc, 150, 8, "[1, 100, inf]", [2, 4, 3]),
            ("CNN with pooling", Self.cnn, 24, 8, "[inf]", [2]),
        ] {
            let yaml = Self.yaml(model: model, n: n, m: m, times: times)
            let single = project(yaml)
            let r = try TestSupport.ntk(["run"], in: single)
            XCTAssertEqual(r.status, 0, r.stderr)
            let k = try ArtifactFile.read(single + "/artifacts/kernels.npz")
            func whole(_ name: String) -> Matrix {
                let t = k.tensor(name)!
                return Matrix(rows: t.shape[0], cols: t.shape[1], data: t.doubles())
            }
            let a = try ArtifactFile.read(single + "/artifacts/predictions.npz")
            for p in counts {
                let what = "\(label), \(p) processes"
                let dist = project(yaml)
                let r = try TestSupport.ntk(["run", "--ranks", String(p)], in: dist)
                XCTAssertEqual(r.status, 0, r.stderr)
                let (rows, cols) = ProcessGrid.shape(p)
                XCTAssertTrue(r.stderr.contains("distributed run: \(p) processes on a \(rows)×\(cols) grid"), r.stderr)
                XCTAssertTrue(r.stderr.contains("kernels: running (never run) on \(p) processes"), r.stderr)

                // kernels: tiles on and below the block diagonal, K(train, test) = K(test, train)ᵀ
                let tiles = try assemble(dist + "/artifacts/kernels.npz")
                XCTAssertEqual(
                    Set(tiles.keys),
                    [
                        "nngp_train_train", "ntk_train_train", "nngp_train_test",
                        "ntk_train_test", "nngp_test_test",
                    ])
                let block = try XCTUnwrap(
                    ArtifactFile.read(dist + "/artifacts/kernels.npz").metadata["distributed"]?["block"]?.number)
                let lower = { (i: Int, j: Int) in j / Int(block) <= i / Int(block) }
                for name in ["nngp_train_train", "ntk_train_train", "nngp_test_test"] {
                    XCTAssertLessThan(relativeError(tiles[name]!, whole(name), lower), 1e-12, "\(what) \(name)")
                }
                for name in ["nngp", "ntk"] {
                    XCTAssertLessThan(
                        relativeError(tiles[name + "_train_test"]!, whole(name + "_test_train").transposed), 1e-12,
                        "\(what) \(name)_train_test")
                }
                // predictions: means and variances of the NTK-GP and the NNGP at each time (diag_reg 1e-4)
                let b = try ArtifactFile.read(dist + "/artifacts/predictions.npz")
                for name in ["ntk_mean_test", "nngp_mean_test", "ntk_var_test", "nngp_var_test"] {
                    let x = try XCTUnwrap(a.tensor(name)).doubles()
                    let y = try XCTUnwrap(b.tensor(name)).doubles()
                    XCTAssertEqual(x.count, y.count, name)
                    let err = zip(x, y).map { abs($0 - $1) }.max()! / x.map(abs).max()!
                    print("\(what): \(name) relative difference from one process: \(err)")
                    XCTAssertLessThan(err, 1e-10, "\(what) \(name)")
                }
                XCTAssertEqual(b.metadata["processes"], .int(p))
                if times != "[inf]" {  // the same largest stable learning rate, from pdsyevd and dsyevd
                    let lr = try XCTUnwrap(a.metadata["max_learning_rate"]?.number, what)
                    let dlr = try XCTUnwrap(b.metadata["max_learning_rate"]?.number, what)
                    XCTAssertEqual(dlr, lr, accuracy: 1e-10 * lr, what)
                }
            }
        }
    }

    /// Distributed kernels in a single-process predict, ScaLAPACK missing: each an error that says what to do;
    /// nothing is written. A single-process `ntk run` after a distributed one recomputes
    /// the distributed stages (their lock entries record the process count).
    func testMisuseIsNamed() throws {
        let d = project(Self.yaml(model: "{depth: 1, width: 8}", n: 40, m: 10))
        XCTAssertEqual(try TestSupport.ntk(["run", "--ranks", "2", "kernels"], in: d).status, 0)
        var r = try TestSupport.ntk(
            [
                "exec", "predict", "--in", "artifacts/dataset.npz", "--in", "artifacts/kernels.npz",
                "--out", "p.npz",
            ], in: d)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(
            r.stderr.contains("distributed over 2 processes") && r.stderr.contains("ntk run --ranks 2"), r.stderr)
        XCTAssertFalse(Files.exists(d + "/p.npz"))
        r = try TestSupport.ntk(["status"], in: d)
        XCTAssertTrue(r.stdout.contains("kernels: stale — param mpi_ranks removed"), r.stdout)
        try FileManager.default.removeItem(atPath: d + "/artifacts/kernels.tiles/tile-0-1/ntk_train_train.npy")
        r = try TestSupport.ntk(["status"], in: d)
        XCTAssertTrue(
            r.stdout.contains("out artifacts/kernels.npz: tile kernels.tiles/tile-0-1/ntk_train_train.npy missing"),
            r.stdout)
        r = try TestSupport.ntk(["run", "predict"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNil(DistributedKernelsArtifact.processes(try ArtifactFile.read(d + "/artifacts/kernels.npz")))
        XCTAssertFalse(Files.exists(d + "/artifacts/kernels.tiles"), "a whole kernel leaves no stale tiles beside it")

        let g = project(Self.yaml(model: "{depth: 1, width: 8}", n: 40, m: 10))
        r = try TestSupport.ntk(
            ["run", "--ranks", "1"], in: g, env: ["NTK_SCALAPACK_LIB": "/nonexistent/libscalapack.so"])
        XCTAssertNotEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("libscalapack-openmpi2.2"), r.stderr)
        XCTAssertFalse(Files.exists(g + "/artifacts/kernels.npz"))
    }

    /// Across a network: two hosts made on this machine (`scripts/two_hosts`: network namespaces joined by a veth
    /// pair, one process on each, Open MPI over TCP only, the second host's daemon started through `ip netns exec`
    /// as ssh would on a cluster) give the same kernels and predictions as one process. Needs root (CI runs as root).
    func testTwoHostsOverTCP() throws {
        guard getuid() == 0 else { throw XCTSkip("network namespaces need root") }
        let yaml = Self.yaml(
            model: "{depth: 2, width: 64, activation: erf, w_std: 1.4, b_std: 0.3}", n: 60, m: 12,
            times: "[10, inf]")
        let single = project(yaml)
        let hosts = project(yaml)
        XCTAssertEqual(try TestSupport.ntk(["run"], in: single).status, 0)
        let r = try TestSupport.run(TestSupport.root + "/scripts/two_hosts", [TestSupport.ntkBinary, "run"], in: hosts)
        let stderr = r.stderr
        XCTAssertEqual(r.status, 0, stderr)
        XCTAssertTrue(stderr.contains("distributed run: 2 processes on a 1×2 grid"), stderr)
        XCTAssertTrue(stderr.contains("daemons started through ip netns exec on: 10.77.0.2"), stderr)
        // the kernels' blocks and the solves' messages crossed the veth (more than Open MPI's own start-up)
        let sent = stderr.components(separatedBy: "10.77.0.1 sent ").last?.split(separator: " ").first.flatMap {
            Int($0)
        }
        XCTAssertGreaterThan(sent ?? 0, 10_000, stderr)
        let a = try ArtifactFile.read(single + "/artifacts/predictions.npz")
        let b = try ArtifactFile.read(hosts + "/artifacts/predictions.npz")
        for name in ["ntk_mean_test", "nngp_mean_test", "ntk_var_test", "nngp_var_test"] {
            let x = try XCTUnwrap(a.tensor(name)).doubles()
            let y = try XCTUnwrap(b.tensor(name)).doubles()
            let err = zip(x, y).map { abs($0 - $1) }.max()! / x.map(abs).max()!
            print("two hosts: \(name) relative difference from one process: \(err)")
            XCTAssertLessThan(err, 1e-10, name)
        }
    }

    /// A kernels stage that a single-process stage reads (here `evaluate`) keeps its kernels whole on a grid, so the
    /// default pipeline and the paper's figures run under `--ranks` as they are; `predict` beside it still works.
    func testKernelsReadByASingleProcessStageStayWhole() throws {
        let yaml = Self.yaml(model: "{depth: 1, width: 16}", n: 30, m: 10, times: "[1, inf]")
            .replacingOccurrences(of: "  kernel: {test_test: true}", with: """
                  kernel: {test_test: true}
                  train: {learning_rate: 0.5, steps: 5, dtype: float64}
                """)
            + "\n" + TestSupport.stages(["init", "train", "eval"])
        let d = project(yaml)
        let r = try TestSupport.ntk(["run", "--ranks", "2"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("kernels: running (never run)\n"), r.stderr)
        XCTAssertTrue(r.stderr.contains("predict: running (never run) on 2 processes"), r.stderr)
        XCTAssertNil(DistributedKernelsArtifact.processes(try ArtifactFile.read(d + "/artifacts/kernels.npz")))
        XCTAssertTrue(Files.exists(d + "/artifacts/evaluation.npz"))
        XCTAssertNotNil(try ArtifactFile.read(d + "/artifacts/predictions.npz").tensor("ntk_mean_test"))
    }

    /// A killed distributed run resumes from each process's finished bands; the result is the uninterrupted one.
    func testKilledRunResumesFromBands() throws {
        // one band (8 rows) per checkpoint
        let yaml = Self.yaml(model: Self.cnn, n: 32, m: 4).replacingOccurrences(
            of: "test_test: true", with: "test_test: false, checkpoint_rows: 8")
        let d = project(yaml)
        let reference = project(yaml)
        XCTAssertEqual(try TestSupport.ntk(["run", "--ranks", "2", "kernels"], in: reference).status, 0)
        XCTAssertEqual(try TestSupport.ntk(["run", "load"], in: d).status, 0)
        let seen = try TestSupport.killAfterCheckpoints(
            ["run", "--ranks", "2", "kernels"], in: d, count: 4,
            matching: "band")
        XCTAssertGreaterThanOrEqual(seen, 4, "bands should have been checkpointed before the kill")
        XCTAssertFalse(Files.exists(d + "/artifacts/kernels.npz"))
        let r = try TestSupport.ntk(["run", "--ranks", "2", "kernels"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("resumed"), r.stderr)
        for tile in ["tile-0-0", "tile-0-1"] {
            let dir = "/artifacts/kernels.tiles/" + tile
            let files = try FileManager.default.contentsOfDirectory(atPath: reference + dir).sorted()
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: d + dir).sorted(), files, tile)
            for f in files {
                XCTAssertEqual(TestSupport.read(d + dir + "/" + f), TestSupport.read(reference + dir + "/" + f), f)
            }
        }
    }
}
