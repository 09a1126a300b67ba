import Foundation
import XCTest

@testable import NTKPipeline

/// The pipeline through the real `ntk` binary: caching, status reasons, resume after kill -9.
final class PipelineTests: XCTestCase {
    /// load (IDX) → subset (load of the first stage's arrays, two classes) ; other (independent load).
    static let threeStages = """
        schema: 1
        params:
          seed: 0
          data: {format: idx, num_classes: 3, path: data, n_train: 12, n_test: 9, standardize: global}
          subset: {format: arrays, num_classes: 3, path: artifacts/dataset.npz, classes: [0, 2], n_train: 6, n_test: 4, targets: pm1, dtype: float64}
          other: {format: idx, num_classes: 3, path: data, classes: [1], n_train: 3, n_test: 3}
        stages:
          load:
            deps: ["${data.path}"]
            params: [seed, data]
            outs: [artifacts/dataset.npz]
          subset:
            kind: load
            deps: ["${subset.path}"]
            params: [seed, subset]
            outs: [artifacts/subset.npz]
          other:
            kind: load
            deps: ["${other.path}"]
            params: [seed, other]
            outs: [artifacts/other.npz]
        """

    func project() -> String {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data")
        try! Self.threeStages.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        return d
    }

    func ran(_ r: TestSupport.Result) -> [String] {
        r.stderr.split(separator: "\n").compactMap { line in
            line.contains(": running") ? String(line.split(separator: ":")[0]) : nil
        }
    }

    func testRerunDoesNothingAndSaysSo() throws {
        let d = project()
        let first = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(ran(first), ["load", "subset", "other"])
        let lock = TestSupport.read(d + "/pipeline.lock")
        let second = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(second.status, 0)
        XCTAssertEqual(ran(second), [])
        XCTAssertTrue(second.stderr.contains("everything is up to date; nothing to do"), second.stderr)
        XCTAssertEqual(TestSupport.read(d + "/pipeline.lock"), lock)
        let status = try TestSupport.ntk(["status"], in: d)
        XCTAssertEqual(status.stdout, "load: up to date\nsubset: up to date\nother: up to date\n")
    }

    /// Temporary files a killed run left (an out's `.ntk-tmp`, a checkpoint's, the lock's) are removed by the next run.
    func testStalePartialFilesAreRemovedByTheNextRun() throws {
        let d = project()
        try FileManager.default.createDirectory(atPath: d + "/artifacts", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: d + "/.ntk/checkpoints/load/abc", withIntermediateDirectories: true)
        let left = ["/artifacts/subset.npz.ntk-tmp", "/.ntk/checkpoints/load/abc/piece.npz.ntk-tmp",
                    "/pipeline.lock.ntk-tmp"]
        for p in left {
            FileManager.default.createFile(atPath: d + p, contents: Data(repeating: 7, count: 1000))
        }
        let r = try TestSupport.ntk(["run", "other"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("removed 3 temporary file(s) left by an interrupted run"), r.stderr)
        let remaining = (FileManager.default.subpaths(atPath: d) ?? []).filter { $0.hasSuffix(Files.temporarySuffix) }
        XCTAssertEqual(remaining, [])
    }

    /// A byte flipped in place, with size, mtime and inode kept, is invisible to the stat-keyed hash cache:
    /// `status --verify` rehashes and sees it; a run whose stage reads the damaged out says so and rebuilds it.
    func testDamageInPlaceIsSeenByVerifyAndRebuilt() throws {
        let d = project()
        XCTAssertEqual(try TestSupport.ntk(["run"], in: d).status, 0)
        let path = d + "/artifacts/dataset.npz", good = TestSupport.read(path)
        /// Flips one bit of the out in place and puts its times back.
        func damage() {
            var st = stat()
            XCTAssertEqual(stat(path, &st), 0)
            let fd = open(path, O_WRONLY)
            var byte: UInt8 = good[good.count / 2] ^ 0x10
            XCTAssertEqual(pwrite(fd, &byte, 1, off_t(good.count / 2)), 1)
            close(fd)
            var times = [st.st_atim, st.st_mtim]
            XCTAssertEqual(utimensat(AT_FDCWD, path, &times, 0), 0)
        }
        damage()
        XCTAssertEqual(try TestSupport.ntk(["status", "load"], in: d).stdout, "load: up to date\n")
        let r = try TestSupport.ntk(["run", "--force", "subset"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("subset: dep artifacts/dataset.npz is damaged"), r.stderr)
        XCTAssertTrue(r.stderr.contains("rebuilding it with stage load"), r.stderr)
        XCTAssertEqual(TestSupport.read(path), good, "the rebuilt out is the original")

        damage()
        XCTAssertEqual(try TestSupport.ntk(["status", "load"], in: d).stdout, "load: up to date\n")
        let verified = try TestSupport.ntk(["status", "--verify", "load"], in: d)
        XCTAssertEqual(verified.stdout, "load: stale — out artifacts/dataset.npz changed\n", verified.stderr)
        let again = try TestSupport.ntk(["run"], in: d)
        XCTAssertTrue(again.stderr.contains("load: running (out artifacts/dataset.npz changed)"), again.stderr)
        XCTAssertEqual(TestSupport.read(path), good)
        XCTAssertEqual(try TestSupport.ntk(["status", "--verify"], in: d).stdout,
                       "load: up to date\nsubset: up to date\nother: up to date\n")
    }

    /// A sweep: `matrix` expands a stage per value, each cached on its own.
    static func sweep(_ sizes: String, matrixKey: String = "subset.n_train") -> String {
        threeStages.replacingOccurrences(of: """
              subset:
                kind: load
                deps: ["${subset.path}"]
                params: [seed, subset]
                outs: [artifacts/subset.npz]
            """, with: """
              subset:
                kind: load
                matrix:
                  \(matrixKey): \(sizes)
                deps: ["${subset.path}"]
                params: [seed, subset]
                outs: ["artifacts/subset-${subset.n_train}.npz"]
            """)
    }

    func testMatrixExpandsAStagePerValueAndAddingOneRunsOnlyIt() throws {
        let d = project()
        XCTAssertNotEqual(Self.sweep("[4, 6]"), Self.threeStages)
        try Self.sweep("[4, 6]").write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        var r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(ran(r), ["load", "subset@n_train=4", "subset@n_train=6", "other"])
        for n in [4, 6] {  // each expansion saw its own value
            let a = try ArtifactFile.read(d + "/artifacts/subset-\(n).npz")
            XCTAssertEqual(a.tensors.first { $0.name == "x_train" }?.shape.first, n)
        }
        let four = TestSupport.read(d + "/artifacts/subset-4.npz")

        try Self.sweep("[4, 6, 2]").write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        r = try TestSupport.ntk(["status"], in: d)
        XCTAssertEqual(r.stdout, "load: up to date\nsubset@n_train=4: up to date\nsubset@n_train=6: up to date\n"
                       + "subset@n_train=2: stale — never run\nother: up to date\n")
        r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(ran(r), ["subset@n_train=2"])
        XCTAssertEqual(TestSupport.read(d + "/artifacts/subset-4.npz"), four)

        // The stage's key targets all its expansions (and what they need, which is up to date).
        r = try TestSupport.ntk(["run", "--force", "subset"], in: d)
        XCTAssertEqual(ran(r), ["subset@n_train=4", "subset@n_train=6", "subset@n_train=2"])
    }

    func testMatrixStagesChainThroughTheirDeps() throws {
        // `again` re-reads each subset: its matrix key is the path it reads, so each expansion depends on one
        // `subset` expansion; targeting one expansion runs only what it needs.
        let d = project()
        let yaml = Self.sweep("[4, 6]").replacingOccurrences(of: "  other: {format: idx", with: """
              again: {format: arrays, num_classes: 3, classes: [0, 2], path: x, n_train: 2, n_test: 2, dtype: float64}
              other: {format: idx
            """) + """

              again:
                kind: load
                matrix:
                  again.path: [artifacts/subset-4.npz, artifacts/subset-6.npz]
                deps: ["${again.path}"]
                params: [seed, again]
                outs: ["${again.path}.again.npz"]
            """
        try yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        var r = try TestSupport.ntk(["run", "again@path=artifacts/subset-6.npz"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(ran(r), ["load", "subset@n_train=6", "again@path=artifacts/subset-6.npz"])
        r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(ran(r), ["subset@n_train=4", "other", "again@path=artifacts/subset-4.npz"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/artifacts/subset-4.npz.again.npz"))
    }

    func testMatrixErrorsNameTheKey() throws {
        let d = project()
        for (yaml, message) in [(Self.sweep("[4, 6]", matrixKey: "other.n_train"), "matrix key 'other.n_train' is neither among the stage's params nor used in its deps"),
                                (Self.sweep("[4, 6]", matrixKey: "subset.width"), "matrix key 'subset.width' is not defined under params"),
                                (Self.sweep("4"), "matrix.subset.n_train must be a non-empty list"),
                                (Self.sweep("[4, 4]"), "matrix.subset.n_train lists 4 twice"),
                                (Self.sweep("[4, 6]").replacingOccurrences(of: "subset-${subset.n_train}", with: "subset"),
                                 "out 'artifacts/subset.npz' is written by both stage subset@n_train=4 and stage subset@n_train=6")] {
            try yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
            let r = try TestSupport.ntk(["run"], in: d)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
            XCTAssertTrue(r.stderr.contains("pipeline.yaml:"), r.stderr)  // located in the file
            XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/artifacts"))
        }
    }

    func testParamChangeRerunsOnlyTheStagesThatReadItAndTheirDependents() throws {
        let d = project()
        let setup = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(setup.status, 0, setup.stderr)
        let other = TestSupport.read(d + "/artifacts/other.npz")

        // A param only `subset` reads.
        var r = try TestSupport.ntk(["status", "--set", "subset.n_train=4"], in: d)
        XCTAssertEqual(r.stdout, "load: up to date\nsubset: stale — param subset.n_train changed (6 → 4)\nother: up to date\n")
        r = try TestSupport.ntk(["run", "--set", "subset.n_train=4"], in: d)
        XCTAssertEqual(ran(r), ["subset"])

        // A param `load` reads: load reruns, and subset because its dep changed; other does not.
        try Self.threeStages.replacingOccurrences(of: "n_train: 12", with: "n_train: 9")
            .write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        r = try TestSupport.ntk(["status"], in: d)
        XCTAssertTrue(r.stdout.contains("load: stale — param data.n_train changed (12 → 9)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("subset: stale — param subset.n_train changed (4 → 6); upstream stage load will rerun"), r.stdout)
        r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(ran(r), ["load", "subset"])
        XCTAssertTrue(r.stderr.contains("subset: running (param subset.n_train changed (4 → 6); dep artifacts/dataset.npz changed)"), r.stderr)
        XCTAssertEqual(TestSupport.read(d + "/artifacts/other.npz"), other)
    }

    func testDeletedOutRerunsOnlyItsStage() throws {
        let d = project()
        let setup = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(setup.status, 0, setup.stderr)
        let subset = TestSupport.read(d + "/artifacts/subset.npz")
        try FileManager.default.removeItem(atPath: d + "/artifacts/subset.npz")
        XCTAssertEqual(try TestSupport.ntk(["status"], in: d).stdout,
                       "load: up to date\nsubset: stale — out artifacts/subset.npz missing\nother: up to date\n")
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(ran(r), ["subset"])
        XCTAssertEqual(TestSupport.read(d + "/artifacts/subset.npz"), subset, "same inputs, byte-identical artifact")
    }

    func testDamagedOutIsDetectedAndRebuilt() throws {
        let d = project()
        let setup = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(setup.status, 0, setup.stderr)
        let good = TestSupport.read(d + "/artifacts/dataset.npz")
        var bad = good
        bad[bad.count / 3] ^= 0x10
        TestSupport.write(d + "/artifacts/dataset.npz", bad)
        let s = try TestSupport.ntk(["status"], in: d)
        XCTAssertTrue(s.stdout.contains("load: stale — out artifacts/dataset.npz changed"), s.stdout)
        let dump = try TestSupport.ntk(["dump", "artifacts/dataset.npz"], in: d)
        XCTAssertEqual(dump.status, 1)
        XCTAssertTrue(dump.stderr.contains("artifacts/dataset.npz"), dump.stderr)
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(ran(r), ["load"], "subset's dep is byte-identical again after the rebuild")
        XCTAssertEqual(TestSupport.read(d + "/artifacts/dataset.npz"), good)
    }

    func testForceAndTargets() throws {
        let d = project()
        var r = try TestSupport.ntk(["run", "subset"], in: d)
        XCTAssertEqual(ran(r), ["load", "subset"], "a target runs the stale stages it needs")
        r = try TestSupport.ntk(["run", "--force", "subset"], in: d)
        XCTAssertEqual(ran(r), ["subset"])
        XCTAssertTrue(r.stderr.contains("subset: running (forced)"), r.stderr)
        r = try TestSupport.ntk(["run", "nosuch"], in: d)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no stage named 'nosuch'"), r.stderr)
    }

    /// kill -9 at many moments during a run; after each kill the lock never describes an out that is not on
    /// disk with that hash, and the resumed run ends with artifacts byte-identical to an uninterrupted run.
    func testKilledRunResumesToIdenticalArtifacts() throws {
        // A data set big enough that the stages take a while in a debug build.
        let yaml = Self.threeStages.replacingOccurrences(of: "num_classes: 3, path: data, n_train: 12, n_test: 9", with: "num_classes: 10, path: \(TestSupport.embeddedMNIST), n_train: 4000, n_test: 1000")
            .replacingOccurrences(of: "num_classes: 3, path: data, classes: [1], n_train: 3, n_test: 3", with: "num_classes: 10, path: \(TestSupport.embeddedMNIST), classes: [1], n_train: 300, n_test: 100")
            .replacingOccurrences(of: "num_classes: 3, path: artifacts/dataset.npz, classes: [0, 2], n_train: 6, n_test: 4", with: "num_classes: 10, path: artifacts/dataset.npz, classes: [0, 2], n_train: 600, n_test: 100")
        let reference = TestSupport.tempDir("reference")
        try yaml.write(toFile: reference + "/pipeline.yaml", atomically: true, encoding: .utf8)
        XCTAssertEqual(try TestSupport.ntk(["run"], in: reference).status, 0)

        let d = TestSupport.tempDir("killed")
        try yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        var killsMidStage = 0
        for delay in [0.05, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.7] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: TestSupport.ntkBinary)
            p.arguments = ["run", "--force"]
            p.currentDirectoryURL = URL(fileURLWithPath: d)
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            Thread.sleep(forTimeInterval: delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            if p.terminationReason == .uncaughtSignal && log.contains(": running") { killsMidStage += 1 }
            // Invariant: every out the lock lists is on disk with the locked hash, or its stage shows stale.
            let lock = try Lock.read(d + "/pipeline.lock")
            let status = try Runner(pipeline: d + "/pipeline.yaml").status()
            for (name, entry) in lock.stages {
                let fresh = status.first { $0.stage == name }!.upToDate
                for o in entry.outs where fresh {
                    XCTAssertEqual(try ContentHasher.hashFile(d + "/" + o.path), o.sha256, "after kill at \(delay)s, stage \(name)")
                    XCTAssertNoThrow(try ArtifactFile.read(d + "/" + o.path))
                }
            }
        }
        XCTAssertGreaterThan(killsMidStage, 2, "the kills should land while stages run")
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        for a in ["dataset", "subset", "other"] {
            let x = try ArtifactFile.read("\(d)/artifacts/\(a).npz"), y = try ArtifactFile.read("\(reference)/artifacts/\(a).npz")
            XCTAssertEqual(x.tensors, y.tensors, a)
            XCTAssertEqual(TestSupport.read("\(d)/artifacts/\(a).npz"), TestSupport.read("\(reference)/artifacts/\(a).npz"), a)
        }
        XCTAssertTrue(try TestSupport.ntk(["run"], in: d).stderr.contains("nothing to do"))
    }

    func testExecOnExplicitFiles() throws {
        let d = project()
        var r = try TestSupport.ntk(["exec", "load", "--set", "data.path=data", "--set", "data.num_classes=3", "--set", "data.n_train=6", "--out", "x.npz"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try DatasetArtifact(file: try ArtifactFile.read(d + "/x.npz"), path: "x.npz")
        XCTAssertEqual(a.nTrain, 6)
        XCTAssertFalse(Files.exists(d + "/pipeline.lock"), "exec keeps no lock")
        // A dataset artifact read back as the user's arrays.
        r = try TestSupport.ntk(["exec", "load", "--set", "data.format=arrays", "--set", "data.num_classes=3", "--set", "data.path=x.npz", "--set", "data.classes=[0,1]", "--out", "y.npz"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try ArtifactFile.read(d + "/y.npz").tensor("labels_train")?.integers().map(Set.init), [0, 1])
    }

    func testDumpAndInfo() throws {
        let d = project()
        XCTAssertEqual(try TestSupport.ntk(["run", "load"], in: d).status, 0)
        var r = try TestSupport.ntk(["dump", "artifacts/dataset.npz"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        for part in ["dataset artifact", "x_train", "float32", "[12, 4, 4, 1]", "labels_test", "int32", "first values:"] {
            XCTAssertTrue(r.stdout.contains(part), "dump lacks \(part):\n\(r.stdout)")
        }
        r = try TestSupport.ntk(["dump", "artifacts/dataset.npz", "--json", "--tensor", "labels_train"], in: d)
        let j = try JSONValue.parse(r.stdout)
        XCTAssertEqual(j["metadata"]?["kind"], .string("dataset"))
        guard case .array(let ts)? = j["tensors"], ts.count == 1, case .array(let values)? = ts[0]["values"] else { return XCTFail(r.stdout) }
        XCTAssertEqual(values.count, 12)
        XCTAssertEqual(ts[0]["nan"], .int(0))
        // --tensor: that tensor only, without the metadata
        r = try TestSupport.ntk(["dump", "artifacts/dataset.npz", "--tensor", "labels_train"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("labels_train") && r.stdout.contains("values:"), r.stdout)
        XCTAssertFalse(r.stdout.contains("metadata:") || r.stdout.contains("x_train"), r.stdout)
        XCTAssertLessThan(r.stdout.split(separator: "\n").count, 8, r.stdout)
        r = try TestSupport.ntk(["dump", "artifacts/dataset.npz", "--tensor", "nope"], in: d)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no tensor 'nope'"), r.stderr)
        r = try TestSupport.ntk(["info"], in: d)
        XCTAssertTrue(["simd path: avx2+fma", "simd path: avx2+fma+avx512", "simd path: scalar"].contains { r.stdout.contains($0) }, r.stdout)
        XCTAssertTrue(r.stdout.contains("OpenBLAS"), r.stdout)
        r = try TestSupport.ntk(["info"], in: d, env: ["NTK_SIMD": "scalar"])
        XCTAssertTrue(r.stdout.contains("simd path: scalar (forced by NTK_SIMD=scalar)"), r.stdout)
    }
}
