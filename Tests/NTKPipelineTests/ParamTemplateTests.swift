import Foundation
import XCTest

@testable import NTKPipeline

/// `${key}` inside param values: a sweep reaching into a layer list (channels), a choice of list by a swept key
/// (depth), typed substitution, and the errors (undefined key, a cycle, a template in a stage's locked params).
final class ParamTemplateTests: XCTestCase {
    static let yaml = """
        schema: 1
        params:
          seed: 0
          cnn:
            channels: 8
            depth: 1
            d1: [{conv: {channels: "${cnn.channels}", filter: 3}}, relu, flatten, {dense: {out: 1}}]
            d2: [{conv: {channels: "${cnn.channels}", filter: 3}}, relu,
                 {conv: {channels: "${cnn.channels}", filter: 3}}, relu, flatten, {dense: {out: 1}}]
            model: {layers: "${cnn.d${cnn.depth}}", w_std: 1.5}
            tag: "c${cnn.channels}-d${cnn.depth}"
        stages:
          init:
            matrix: {cnn.depth: [1, 2], cnn.channels: [4, 16]}
            deps: [data.npz]
            params: [seed, cnn.model, cnn.tag]
            outs: ["out/${cnn.tag}.npz"]
          single:
            kind: init
            deps: [data.npz]
            params: [seed, cnn.model]
            outs: [one.npz]
        """

    func spec(_ text: String, overrides: [String] = []) throws -> PipelineSpec {
        let d = TestSupport.tempDir()
        try text.write(toFile: d + "/p.yaml", atomically: true, encoding: .utf8)
        return try PipelineSpec.load(d + "/p.yaml", overrides: overrides)
    }

    func testTemplatesResolveTypedPerExpansion() throws {
        let s = try spec(Self.yaml)
        XCTAssertEqual(s.stages.map(\.name), ["init@depth=1,channels=4", "init@depth=1,channels=16",
                                              "init@depth=2,channels=4", "init@depth=2,channels=16", "single"])
        let e = try XCTUnwrap(s.stage("init@depth=2,channels=16"))
        guard case .array(let layers)? = e.values.at(path: "cnn.model.layers") else { return XCTFail("no layer list") }
        XCTAssertEqual(layers.count, 6, "depth 2: two conv layers")
        XCTAssertEqual(layers[0].at(path: "conv.channels"), .int(16), "a whole-string template keeps the type")
        XCTAssertEqual(layers[2].at(path: "conv.channels"), .int(16))
        XCTAssertEqual(e.values.at(path: "cnn.tag"), .string("c16-d2"))
        XCTAssertEqual(e.outs.last, "out/c16-d2.npz", "paths see resolved values")
        XCTAssertTrue(e.templateReads.isSuperset(of: ["cnn.channels", "cnn.depth", "cnn.d2"]), "\(e.templateReads)")
        // the lock records what the stage computes from: the resolved layer list
        let locked = StageParams(stage: e.name, values: e.values, declared: e.params).locked
        XCTAssertEqual(locked["cnn.model"]?["layers"]?.canonical.contains("${"), false)
        let single = try XCTUnwrap(s.stage("single"))
        let depth1 = try spec(Self.yaml, overrides: ["cnn.depth=1"]).stage("single")
        XCTAssertEqual(single.values.at(path: "cnn.model.layers")?.canonical,
                       depth1?.values.at(path: "cnn.model.layers")?.canonical)
    }

    func testSetReachesKeysReadThroughTemplates() throws {
        // single reads cnn.channels and cnn.depth only through its cnn.model's templates: --set may change them
        let s = try spec(Self.yaml, overrides: ["cnn.channels=32", "cnn.depth=2"])
        let layers = s.stage("single")?.values.at(path: "cnn.model.layers")
        guard case .array(let l)? = layers else { return XCTFail("no layers") }
        XCTAssertEqual(l.count, 6)
        XCTAssertEqual(l[0].at(path: "conv.channels"), .int(32))
    }

    func testTemplateErrorsNameTheParam() throws {
        let undefined = Self.yaml.replacingOccurrences(of: "\"${cnn.d${cnn.depth}}\"", with: "\"${cnn.d${cnn.dpth}}\"")
        XCTAssertThrowsError(try spec(undefined)) { e in
            XCTAssertTrue("\(e)".contains("${cnn.dpth} refers to a param that is not defined"), "\(e)")
            XCTAssertTrue("\(e)".contains("params.cnn.model.layers"), "\(e)")
        }
        let cycle = Self.yaml.replacingOccurrences(of: "channels: 8", with: "channels: \"${cnn.tag}\"")
        XCTAssertThrowsError(try spec(cycle)) { e in XCTAssertTrue("\(e)".contains("nest deeper than 16"), "\(e)") }
        let unclosed = Self.yaml.replacingOccurrences(of: "\"c${cnn.channels}-d${cnn.depth}\"",
                                                      with: "\"c${cnn.channels\"")
        XCTAssertThrowsError(try spec(unclosed)) { e in XCTAssertTrue("\(e)".contains("unclosed ${"), "\(e)") }
    }
}
