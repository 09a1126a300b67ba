import Foundation
import XCTest

@testable import NTKPipeline

/// Every kind of bad input, through the real `ntk run` after a good run: the process exits non-zero with a
/// message naming the file or key and what is wrong, writes no artifact, and leaves the lock and every
/// earlier artifact byte-identical.
final class BadInputTests: XCTestCase {
    static let good = """
        schema: 1
        params:
          seed: 0
          data: {format: idx, num_classes: 3, path: data, n_train: 9, n_test: 6}
        stages:
          load:
            deps: ["${data.path}"]
            params: [seed, data]
            outs: [artifacts/dataset.npz]
        """

    struct Case {
        var name: String
        /// Breaks the project in directory d; returns extra `ntk run` arguments.
        var breakIt: (String) throws -> [String]
        /// Parts the error message must contain (`$D` = the project directory).
        var expect: [String]
    }

    static func replaceYAML(_ d: String, _ a: String, _ b: String) throws {
        let text = try String(contentsOfFile: d + "/pipeline.yaml", encoding: .utf8)
        XCTAssertTrue(text.contains(a))
        try text.replacingOccurrences(of: a, with: b).write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
    }

    static func cifarDir(_ d: String, testBytes: [UInt8]) throws -> [String] {
        for b in 1...5 { TestSupport.write("\(d)/cifar/data_batch_\(b).bin", [1] + [UInt8](repeating: 7, count: 3072)) }
        TestSupport.write("\(d)/cifar/test_batch.bin", testBytes)
        return ["--set", "data.format=cifar10", "--set", "data.path=cifar", "--set", "data.num_classes=10", "--set", "data.n_train=5", "--set", "data.n_test=1"]
    }

    let cases: [Case] = [
        Case(name: "truncated gz", breakIt: { d in
            let f = d + "/data/train-images-idx3-ubyte.gz"
            TestSupport.write(f, Array(TestSupport.read(f).dropLast(20)))
            return []
        }, expect: ["data/train-images-idx3-ubyte.gz", "truncated"]),
        Case(name: "bad CRC", breakIt: { d in
            let f = d + "/data/t10k-images-idx3-ubyte.gz"
            var b = TestSupport.read(f)
            b[b.count - 5] ^= 1
            TestSupport.write(f, b)
            return []
        }, expect: ["data/t10k-images-idx3-ubyte.gz", "CRC"]),
        Case(name: "wrong magic", breakIt: { d in
            TestSupport.write(d + "/data/train-labels-idx1-ubyte.gz", TestSupport.read(d + "/data/train-images-idx3-ubyte.gz"))
            return []
        }, expect: ["data/train-labels-idx1-ubyte.gz", "wrong IDX magic"]),
        Case(name: "count mismatch", breakIt: { d in
            TestSupport.write(d + "/data/t10k-labels-idx1-ubyte.gz", TestSupport.gzip(TestSupport.idx(magic: 0x801, dims: [3], data: [0, 1, 2])))
            return []
        }, expect: ["data/t10k-labels-idx1-ubyte.gz", "3 labels", "15 images"]),
        Case(name: "CIFAR size", breakIt: { d in try cifarDir(d, testBytes: [UInt8](repeating: 1, count: 3073 + 100)) },
             expect: ["cifar/test_batch.bin", "not a multiple", "3073"]),
        Case(name: "label out of range", breakIt: { d in
            TestSupport.write(d + "/data/train-labels-idx1-ubyte.gz", TestSupport.gzip(TestSupport.idx(magic: 0x801, dims: [15], data: [UInt8](repeating: 5, count: 15))))
            return []
        }, expect: ["data/train-labels-idx1-ubyte.gz", "label 5", "0…2"]),
        Case(name: "class without samples", breakIt: { _ in ["--set", "data.num_classes=10", "--set", "data.classes=[1, 7]"] },
             expect: ["class 7 has no samples", "training split of data"]),
        Case(name: "n_train too large", breakIt: { _ in ["--set", "data.n_train=16"] },
             expect: ["16 samples requested", "only 15"]),
        Case(name: "NaN in user npz", breakIt: { d in
            try FileManager.default.copyItem(atPath: TestSupport.fixtures + "/with_nan.npz", toPath: d + "/mine.npz")
            return ["--set", "data.format=arrays", "--set", "data.path=mine.npz", "--set", "data.n_train=null", "--set", "data.n_test=null"]
        }, expect: ["mine.npz", "x_train contains NaN", "sample 4"]),
        Case(name: "unknown key", breakIt: { d in try replaceYAML(d, "n_train: 9", "n_trian: 9"); return [] },
             expect: ["pipeline.yaml:4", "params.data.n_trian", "unknown key"]),
        Case(name: "unknown stage key", breakIt: { d in try replaceYAML(d, "    outs:", "    out:"); return [] },
             expect: ["stages.load.out", "unknown key"]),
        Case(name: "wrong type", breakIt: { d in try replaceYAML(d, "n_test: 6", "n_test: six"); return [] },
             expect: ["pipeline.yaml:4", "params.data.n_test", "expected an integer", "\"six\""]),
        Case(name: "wrong type from --set", breakIt: { _ in ["--set", "data.l2_normalize=maybe"] },
             expect: ["params.data.l2_normalize", "expected true or false"]),
        Case(name: "unknown choice", breakIt: { _ in ["--set", "data.standardize=zscore"] },
             expect: ["params.data.standardize", "unknown value \"zscore\"", "per_feature"]),
        Case(name: "missing dep", breakIt: { _ in ["--set", "data.path=nowhere"] },
             expect: ["stages.load.deps", "'nowhere' does not exist"]),
        Case(name: "param path not in deps", breakIt: { d in try replaceYAML(d, "deps: [\"${data.path}\"]", "deps: []"); return [] },
             expect: ["stages.load.deps", "does not list it in deps"]),
        Case(name: "undeclared param", breakIt: { d in try replaceYAML(d, "params: [seed, data]", "params: [data]"); return [] },
             expect: ["params.seed", "does not list it under params"]),
        Case(name: "unknown kind", breakIt: { d in try replaceYAML(d, "  load:\n", "  load:\n    kind: lod\n"); return [] },
             expect: ["stages.load.kind", "unknown stage kind 'lod'"]),
        Case(name: "bit-flipped user npz", breakIt: { d in
            var b = TestSupport.read(TestSupport.fixtures + "/numpy_stored.npz")
            b[200] ^= 0x08
            TestSupport.write(d + "/mine.npz", b)
            return ["--set", "data.format=arrays", "--set", "data.path=mine.npz", "--set", "data.n_train=null", "--set", "data.n_test=null"]
        }, expect: ["mine.npz", "CRC-32 mismatch"]),
        Case(name: "truncated user npz", breakIt: { d in
            TestSupport.write(d + "/mine.npz", Array(TestSupport.read(TestSupport.fixtures + "/numpy_compressed.npz").prefix(500)))
            return ["--set", "data.format=arrays", "--set", "data.path=mine.npz"]
        }, expect: ["mine.npz", "truncated"]),
    ]

    func testEveryBadInputFailsCleanlyAndLosesNothing() throws {
        for c in cases {
            let d = TestSupport.tempDir("bad")
            TestSupport.tinyIDX(at: d + "/data")
            try Self.good.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
            let ok = try TestSupport.ntk(["run"], in: d)
            XCTAssertEqual(ok.status, 0, "\(c.name): \(ok.stderr)")
            let lock = TestSupport.read(d + "/pipeline.lock"), artifact = TestSupport.read(d + "/artifacts/dataset.npz")
            let before = try FileManager.default.contentsOfDirectory(atPath: d + "/artifacts")

            let args = try c.breakIt(d)
            let r = try TestSupport.ntk(["run", "--force"] + args, in: d)
            XCTAssertEqual(r.status, 1, "\(c.name): should fail\n\(r.stderr)")
            XCTAssertTrue(r.stderr.contains("error: "), c.name)
            for part in c.expect {
                XCTAssertTrue(r.stderr.contains(part), "\(c.name): «\(r.stderr)» should contain «\(part)»")
            }
            XCTAssertEqual(TestSupport.read(d + "/pipeline.lock"), lock, "\(c.name): lock changed")
            XCTAssertEqual(TestSupport.read(d + "/artifacts/dataset.npz"), artifact, "\(c.name): earlier artifact changed")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: d + "/artifacts"), before, "\(c.name): new files written")
        }
    }

    /// A stage that needs an artifact of one kind refuses another kind, naming both.
    func testArtifactOfTheWrongKind() throws {
        let d = TestSupport.tempDir()
        try ArtifactFile(kind: .params, metadata: [:], tensors: [Tensor(name: "W0", shape: [1], values: [1.0])]).write(to: d + "/p.npz")
        let ctx = StageContext(stage: "init", params: StageParams(stage: "init", values: .object([:]), declared: []),
                               deps: [("artifacts/p.npz", d + "/p.npz", "x")], reporter: SilentReporter())
        XCTAssertThrowsError(try ctx.artifact(.dataset)) { e in
            XCTAssertTrue("\(e)".contains("needs a 'dataset' artifact among its deps (artifacts/p.npz is a 'params' artifact)"), "\(e)")
        }
        XCTAssertThrowsError(try DatasetArtifact(file: try ArtifactFile.read(d + "/p.npz"), path: "p.npz")) { e in
            XCTAssertTrue("\(e)".contains("p.npz: is a 'params' artifact, but a 'dataset' artifact is needed"), "\(e)")
        }
    }

    func testExecAndDumpRejectDamagedArtifacts() throws {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data")
        XCTAssertEqual(try TestSupport.ntk(["exec", "load", "--set", "data.path=data", "--set", "data.num_classes=3", "--out", "a.npz"], in: d).status, 0)
        let good = TestSupport.read(d + "/a.npz")
        TestSupport.write(d + "/t.npz", Array(good.prefix(good.count - 30)))
        var flipped = good
        flipped[good.count / 2] ^= 0x80
        TestSupport.write(d + "/f.npz", flipped)
        for f in ["t.npz", "f.npz"] {
            let r = try TestSupport.ntk(["dump", f], in: d)
            XCTAssertEqual(r.status, 1)
            XCTAssertTrue(r.stderr.contains(f) && (r.stderr.contains("corrupt") || r.stderr.contains("truncated")), r.stderr)
        }
    }
}
