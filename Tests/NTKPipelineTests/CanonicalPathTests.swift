import Foundation
import XCTest

@testable import NTKPipeline

/// Deps and outs are compared, hashed, locked and recorded in one canonical spelling: relative to the pipeline's
/// directory, with ".", ".." and symlinked directories resolved.
final class CanonicalPathTests: XCTestCase {
    func project() -> String {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data")
        try! PipelineTests.threeStages.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        return d
    }

    func testCanonicalSpelling() throws {
        let d = Files.canonical(TestSupport.tempDir())
        try FileManager.default.createDirectory(atPath: d + "/real/sub", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: d + "/link", withDestinationPath: d + "/real")
        for spelling in [
            "real/sub/x.npz", "./real/sub/x.npz", "real/../real/sub/x.npz", d + "/real/sub/x.npz",
            "link/sub/x.npz", d + "/link/sub/./x.npz",
        ] {
            XCTAssertEqual(Files.canonical(spelling, relativeTo: d), "real/sub/x.npz", spelling)
        }
        XCTAssertEqual(Files.canonical("/elsewhere/y.npz", relativeTo: d), "/elsewhere/y.npz")
        XCTAssertEqual(Files.canonical("../y.npz", relativeTo: d), (d as NSString).deletingLastPathComponent + "/y.npz")
    }

    /// An out spelled differently from another stage's out is the same file: an error, not an overwrite.
    func testOutCollisionsSpelledDifferentlyAreErrors() throws {
        let d = project()
        try FileManager.default.createSymbolicLink(atPath: d + "/alias", withDestinationPath: d + "/artifacts")
        for spelling in [
            "./artifacts/dataset.npz", "artifacts/x/../dataset.npz", d + "/artifacts/dataset.npz",
            "alias/dataset.npz",
        ] {
            let yaml = PipelineTests.threeStages.replacingOccurrences(
                of: "outs: [artifacts/other.npz]",
                with: "outs: [\"\(spelling)\"]")
            try yaml.write(toFile: d + "/p2.yaml", atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try Runner(pipeline: d + "/p2.yaml"), spelling) { e in
                XCTAssertTrue("\(e)".contains("is written by both stage load and stage other"), "\(spelling): \(e)")
            }
        }
    }

    /// `--pipeline pipeline.yaml` and `--pipeline $PWD/pipeline.yaml` give byte-identical artifacts and locks.
    func testRelativeAndAbsolutePipelineGiveIdenticalArtifacts() throws {
        let d = project()
        let first = try TestSupport.ntk(["run", "--pipeline", "pipeline.yaml"], in: d)
        XCTAssertEqual(first.status, 0, first.stderr)
        let names = ["artifacts/dataset.npz", "artifacts/subset.npz", "artifacts/other.npz", "pipeline.lock"]
        let before = names.map { TestSupport.read(d + "/" + $0) }
        let second = try TestSupport.ntk(["run", "--pipeline", d + "/pipeline.yaml", "--force"], in: d)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stderr.contains("load: running"), second.stderr)
        for (name, old) in zip(names, before) { XCTAssertEqual(TestSupport.read(d + "/" + name), old, name) }
        XCTAssertFalse(
            String(decoding: TestSupport.read(d + "/artifacts/dataset.npz"), as: UTF8.self).contains(d),
            "an absolute path is recorded in the artifact")
    }
}
