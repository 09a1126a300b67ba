import Foundation
import XCTest

@testable import NTKPipeline

/// No value given on the command line is silently ignored: every `--set` key resolves to a param a stage reads (or is
/// an error naming the closest keys), stage typos get "did you mean", `ntk exec` refuses keys its kind does not read
/// and records only what it read, and the examples of the README and of `--help` run as written.
final class OverrideTests: XCTestCase {
    let pipeline = TestSupport.root + "/pipeline.yaml"

    func error(_ overrides: [String], file: StaticString = #filePath, line: UInt = #line) -> NTKError? {
        do {
            _ = try Runner(pipeline: pipeline, overrides: overrides)
            XCTFail("\(overrides) was accepted", file: file, line: line)
        } catch let e as NTKError { return e } catch { XCTFail("\(error)", file: file, line: line) }
        return nil
    }

    func testEverySetKeyResolvesToAParamAStageReads() throws {
        // accepted: a written param, and a new key in a mapping a stage reads (the stage's reader then checks it)
        XCTAssertNoThrow(
            try Runner(pipeline: pipeline, overrides: ["fig3.train.steps=400", "fig3.train.momentum=0.9"]))
        // a typo in a middle segment: suggestions by edit distance
        let typo = try XCTUnwrap(error(["fig3.trian.steps=400"]))
        XCTAssertEqual(typo.key, "--set fig3.trian.steps")
        XCTAssertTrue(typo.problem.contains("no param fig3.trian.steps"), typo.description)
        XCTAssertTrue(typo.hint?.contains("fig3.train.steps") == true, typo.description)
        // a key without its experiment's prefix: the scoped keys it may mean
        let scoped = try XCTUnwrap(error(["data.n_train=500"]))
        XCTAssertTrue(
            scoped.hint?.contains("fig3.data.n_train") == true && scoped.hint?.contains("fig1.data.n_train") == true,
            scoped.description)
        // a key nothing reads, and a value every reading stage's matrix replaces
        XCTAssertTrue(try XCTUnwrap(error(["foo=1"])).problem.contains("no param foo"))
        XCTAssertTrue(try XCTUnwrap(error(["fig1.model.width=128"])).problem.contains("swept by stages.fig1_"))
        // a new key inside a mapping is checked by the stage that reads it
        let unknown = try XCTUnwrap(error(["fig3.train.stepz=4"]))
        XCTAssertEqual(unknown.key, "params.fig3.train.stepz")
        XCTAssertEqual(unknown.hint, "did you mean steps?")
        // a written param that no stage lists
        let dir = TestSupport.tempDir()
        let file = dir + "/p.yaml"
        try """
        params: {seed: 0, unused: {a: 1}, data: {path: \(TestSupport.embeddedMNIST), n_train: 20, n_test: 10}}
        stages:
          load: {deps: [\(TestSupport.embeddedMNIST)], params: [seed, data], outs: [d.npz]}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        do {
            _ = try Runner(pipeline: file, overrides: ["unused.a=2"])
            XCTFail("an override no stage reads was accepted")
        } catch let e as NTKError {
            XCTAssertTrue(e.problem.contains("no stage of p.yaml reads params.unused.a"), e.description)
        }
    }

    func testStageTyposGetDidYouMean() throws {
        let runner = try Runner(pipeline: pipeline)
        XCTAssertThrowsError(try runner.order(targets: ["fig3_trian"])) { e in
            let e = e as! NTKError
            XCTAssertEqual(e.hint, "did you mean fig3_train?")
            XCTAssertFalse(e.description.contains("fig1_ntk0"), "the error lists every stage: \(e)")
        }
    }

    func testParamsListsWhatAStageReadsWithDefaults() throws {
        let runner = try Runner(pipeline: pipeline, overrides: ["fig3.train.steps=50"])
        let (stage, trace) = try XCTUnwrap(try runner.effectiveParams("fig3_train").first)
        XCTAssertEqual(stage, "fig3_train")
        XCTAssertEqual(trace.values["params.fig3.train.steps"]?.value, .int(50))
        XCTAssertEqual(trace.values["params.fig3.train.steps"]?.isDefault, false)
        XCTAssertEqual(trace.values["params.fig3.train.momentum"]?.isDefault, true)
        XCTAssertEqual(try runner.effectiveParams("fig1_train").count, 6, "one per expansion of the width sweep")
        let kind = try Runner.defaultParams(kind: "train")
        XCTAssertEqual(kind.values["params.train.steps"]?.isDefault, true)
    }

    func testExecRefusesKeysItsKindDoesNotReadAndRecordsOnlyWhatItRead() throws {
        let dir = TestSupport.tempDir()
        XCTAssertThrowsError(
            try Runner.exec(
                kind: "train", paramsFile: nil, overrides: ["depth=7"], inputs: [],
                outs: [dir + "/t.npz"])
        ) { e in
            XCTAssertTrue((e as! NTKError).problem.contains("does not read params.depth"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/t.npz"))
        let file = dir + "/p.yaml"
        try """
        params: {seed: 3, unrelated: {x: 1}, data: {path: \(TestSupport.embeddedMNIST), n_train: 20, n_test: 10}}
        stages:
          load: {deps: [\(TestSupport.embeddedMNIST)], params: [seed, data], outs: [d.npz]}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        try Runner.exec(
            kind: "load", paramsFile: file, overrides: ["data.n_test=12"], inputs: [], outs: [dir + "/d.npz"])
        guard case .object(let params)? = try ArtifactFile.read(dir + "/d.npz").metadata["params"] else {
            return XCTFail("no params in the metadata")
        }
        XCTAssertEqual(Set(params.keys), ["seed", "data"], "recorded params: \(params.keys)")
        XCTAssertEqual(params["data"]?.at(path: "n_test"), .int(12))
    }

    /// Every `ntk run|status|params|exec … --set` of the README and the examples of `--help` run as written
    /// (pipeline commands are validated, exec examples run for real into a temporary directory).
    func testTheReadmesAndHelpsExamplesRunAsWritten() throws {
        let readme = try String(contentsOfFile: TestSupport.root + "/README.md", encoding: .utf8)
        var commands: [String] = []
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            // code lines and inline code spans that start with ntk
            let spans = line.split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            for c in spans + [String(line)] where c.hasPrefix("ntk ") && c.contains("--set") {
                commands.append(String(c.split(separator: "#")[0]).trimmingCharacters(in: .whitespaces))
            }
            // a bare `--set …` span names overrides of the default pipeline
            for c in spans where c.hasPrefix("--set ") { commands.append("ntk run " + c) }
        }
        // (help text is wrapped to the terminal: join the lines)
        let runHelp = try TestSupport.ntk(["run", "--help"], in: TestSupport.root).stdout
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        let execHelp = try TestSupport.ntk(["exec", "--help"], in: TestSupport.root).stdout
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        let setExample = try XCTUnwrap(runHelp.range(of: #"e\.g\. [^ )]+"#, options: .regularExpression))
        commands.append("ntk run --set " + runHelp[setExample].dropFirst(5))
        let execExample = try XCTUnwrap(
            execHelp.range(of: #"Example: ntk exec .*? --out [^ ]+"#, options: .regularExpression))
        commands.append(String(execHelp[execExample].dropFirst(9)))
        XCTAssertGreaterThanOrEqual(commands.count, 6, "examples found: \(commands)")
        let dir = TestSupport.tempDir()
        for command in commands {
            var words = command.replacingOccurrences(of: "$F", with: "/usr/share/datasets/fashion-mnist")
                .split(separator: " ").map(String.init)
            var overrides: [String] = []
            var file = pipeline
            var i = 2
            while i < words.count {
                if words[i] == "--set" {
                    overrides.append(words[i + 1])
                    i += 2
                } else if words[i] == "--pipeline" {
                    file = TestSupport.root + "/" + words[i + 1]
                    i += 2
                } else if words[i] == "--out" {
                    words[i + 1] = dir + "/" + (words[i + 1] as NSString).lastPathComponent
                    i += 2
                } else {
                    i += 1
                }
            }
            if words[1] == "exec" {
                let r = try TestSupport.ntk(Array(words.dropFirst()), in: TestSupport.root)
                XCTAssertEqual(r.status, 0, "\(command): \(r.stderr)")
            } else {
                XCTAssertNoThrow(try Runner(pipeline: file, overrides: overrides), command)
            }
        }
    }
}
