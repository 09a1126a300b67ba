import Foundation
import XCTest

@testable import NTK
@testable import NTKPipeline

/// Inputs that used to be accepted and gave a wrong or non-finite result with exit status 0: each is now an error
/// naming the file and what is wrong, and no stage writes a non-finite kernel or prediction.
final class GarbageInputTests: XCTestCase {
    func assertError(
        _ body: @autoclosure () throws -> Any, contains parts: [String], file: StaticString = #filePath,
        line: UInt = #line
    ) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            for p in parts { XCTAssertTrue("\(e)".contains(p), "«\(e)» should contain «\(p)»", file: file, line: line) }
        }
    }

    /// A .npy member whose header's shape is (20, x, 784), (3,,4) or overflows.
    func testNPYShapesMustBeTuplesOfIntegers() throws {
        func npy(_ shape: String, dataBytes: Int) -> [UInt8] {
            var header = "{'descr': '<f8', 'fortran_order': False, 'shape': \(shape), }"
            while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
            header += "\n"
            let h = Array(header.utf8)
            return NPY.magic + [1, 0, UInt8(h.count & 0xff), UInt8(h.count >> 8)] + h
                + [UInt8](repeating: 0, count: dataBytes)
        }
        XCTAssertEqual(try NPY.parse(npy("(20, 784)", dataBytes: 20 * 784 * 8), name: "x").shape, [20, 784])
        XCTAssertEqual(try NPY.parse(npy("(3,)", dataBytes: 24), name: "x").shape, [3])
        XCTAssertEqual(try NPY.parse(npy("()", dataBytes: 8), name: "x").shape, [])
        assertError(
            try NPY.parse(npy("(20, x, 784)", dataBytes: 20 * 784 * 8), name: "x"),
            contains: ["(20, x, 784)", "integers"])
        assertError(try NPY.parse(npy("(3,,4)", dataBytes: 96), name: "x"), contains: ["(3,,4)"])
        assertError(try NPY.parse(npy("(-2, 4)", dataBytes: 0), name: "x"), contains: ["non-negative"])
        assertError(try NPY.parse(npy("(4294967296, 4294967296)", dataBytes: 0), name: "x"), contains: ["too large"])
    }

    /// numpy's other real dtypes are read as the values they hold; complex, strings and big-endian are named.
    func testNPYReadsEveryRealDTypeAndNamesTheOthers() throws {
        func npy(_ descr: String, _ data: [UInt8], count: Int) -> [UInt8] {
            var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(count),), }"
            while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
            header += "\n"
            let h = Array(header.utf8)
            return NPY.magic + [1, 0, UInt8(h.count & 0xff), UInt8(h.count >> 8)] + h + data
        }
        func bytes<T>(_ v: [T]) -> [UInt8] { v.withUnsafeBytes { Array($0) } }
        let cases: [(String, [UInt8], [Double])] = [
            ("|b1", [1, 0, 1], [1, 0, 1]),
            ("<f2", bytes([Float16(1.5), Float16(-2), Float16(0.25)]), [1.5, -2, 0.25]),
            ("|i1", bytes([Int8(-3), 4, 127]), [-3, 4, 127]),
            ("<i2", bytes([Int16(-300), 4, 32000]), [-300, 4, 32000]),
            ("<u2", bytes([UInt16(65535), 0, 7]), [65535, 0, 7]),
            ("<u4", bytes([UInt32(4_000_000_000), 1, 2]), [4e9, 1, 2]),
            ("<u8", bytes([UInt64(1) << 40, 5, 6]), [Double(UInt64(1) << 40), 5, 6]),
        ]
        for (descr, data, want) in cases {
            let t = try NPY.parse(npy(descr, data, count: 3), name: "a")
            XCTAssertEqual(t.doubles(), want, "\(descr) read as \(t.dtype)")
        }
        assertError(
            try NPY.parse(npy("<c16", [UInt8](repeating: 0, count: 48), count: 3), name: "z"),
            contains: ["complex dtype <c16 is not supported", "float16"])
        assertError(
            try NPY.parse(npy(">f8", [UInt8](repeating: 0, count: 24), count: 3), name: "z"), contains: ["big-endian"])
    }

    /// Sizes from a file or a param that used to trap (rc 132/134) are errors naming the file or key: an IDX header
    /// whose dims overflow, max_memory of inf/nan/1e30G, a layer of 10⁸ × 784 weights, 10⁸ quadrature nodes, a depth
    /// of 10⁸, 10⁹ interpolation points.
    func testOversizedSizesAreErrorsNotTraps() throws {
        let huge = TestSupport.idx(magic: 0x803, dims: [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], data: [])
        assertError(try IDXReader.header(huge, path: "x.idx", magic: 0x803, what: "images"),
                    contains: ["x.idx", "too large"])
        for bad in ["infG", "nanG", "1e30G", "-1G"] { XCTAssertNil(parseBytes(bad), bad) }
        XCTAssertEqual(parseBytes("1.5G"), 3 << 29)
        XCTAssertEqual(parseBytes("512M"), 512 << 20)
        assertError(try Network(layers: [.dense(out: 100_000_000, wStd: 1, bStd: 0)], input: .vector(784)),
                    contains: ["layers[0]", "out", "784 × 100000000 weights"])
        let conv = Layer.conv(channels: 1 << 20, filter: [3, 3], strides: [1, 1], padding: .same, wStd: 1, bStd: 0)
        assertError(try Network(layers: [conv], input: Shape(spatial: [64, 64], channels: 3)),
                    contains: ["layers[0]", "channels"])
        func reader(_ json: String, _ path: String) throws -> ConfigReader {
            try ConfigReader(try JSONValue.parse(json), path: path)
        }
        var k = try reader(#"{"quadrature_nodes": 100000000}"#, "params.kernel")
        assertError(try k.int("quadrature_nodes", default: 32, min: 2, max: GaussRule.maxNodes),
                    contains: ["params.kernel.quadrature_nodes", "≤ 512"])
        var m = try reader(#"{"depth": 100000000, "width": 8}"#, "params.model")
        assertError(try ModelConfig(&m), contains: ["params.model.depth", "≤ 10000"])
        var big = try reader(#"{"depth": 1, "width": 100000000}"#, "params.model")
        let wide = try ModelConfig(&big)
        assertError(try wide.network(input: .vector(784), outputs: 10), contains: ["params.model.width", "2³¹"])
    }

    /// JSON (locks, hash caches, artifact metadata) nested 200,000 deep overflowed the parser's stack; now it is an
    /// error, while 512 levels still parse.
    func testDeeplyNestedJSONIsAnErrorNotACrash() throws {
        let deep = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
        assertError(try JSONValue.parse(deep), contains: ["nested deeper than 512"])
        let objects = String(repeating: #"{"a":"#, count: 600) + "1" + String(repeating: "}", count: 600)
        assertError(try JSONValue.parse(objects), contains: ["nested deeper than 512"])
        let fine = String(repeating: "[", count: 512) + "1" + String(repeating: "]", count: 512)
        XCTAssertNoThrow(try JSONValue.parse(fine))
        XCTAssertNoThrow(try JSONValue.parse(#"[[1, "]]"], {"b": [[]]}, [[[2]]]]"#))
    }

    /// YAML nested 5,000 deep, and an alias bomb (each list holds its predecessor 10 times: 10⁹ values from a few
    /// hundred bytes), are errors naming the file, with bounded memory.
    func testDeepOrExplodingYAMLIsAnError() throws {
        let deep = String(repeating: "[", count: 5_000) + String(repeating: "]", count: 5_000)
        assertError(try YAMLDocument(text: "a: " + deep, file: "deep.yaml"), contains: ["deep.yaml", "nested deeper"])
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...9 {
            bomb += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n"
        }
        assertError(try YAMLDocument(text: bomb, file: "bomb.yaml"),
                    contains: ["bomb.yaml", "more than 1000000 values"])
    }

    /// Sizes and offsets in a zip's directory come from the file: zip64 fields of 2⁶⁴ − 1 or 2⁴⁰ trapped on Int
    /// conversion or arithmetic, and a 100-byte file declaring a 4 GiB deflated member allocated 4 GiB first.
    func testZipSizesFromTheFileAreBoundedBeforeUse() throws {
        let payload: [UInt8] = Array("tiny".utf8)
        let crc = payload.withUnsafeBytes { Compression.crc32($0) }
        /// One member "a.npy" whose directory entry claims `size`/`compressed`/`offset` (zip64 fields when ≥ 4 GiB).
        func zip(size: Int, compressed: Int, offset: Int = 0, method: Zip.Method = .deflated) -> [UInt8] {
            let real = Zip.Entry(name: "a.npy", method: .stored, crc: crc, compressedSize: 4, size: 4, offset: 0)
            let local = Zip.localHeader(real) + payload
            let claimed = Zip.Entry(name: "a.npy", method: method, crc: crc, compressedSize: compressed, size: size,
                                    offset: offset)
            return local + Zip.directory([claimed], at: local.count)
        }
        XCTAssertEqual(try Zip.entries(zip(size: 4, compressed: 4, method: .stored), strict: false).count, 1)
        assertError(try Zip.entries(zip(size: 1 << 32, compressed: 4), strict: false),
                    contains: ["'a.npy'", "4294967296 bytes from 4 deflated bytes", "more than deflate can expand to"])
        assertError(try Zip.entries(zip(size: 4, compressed: 1 << 40), strict: false),
                    contains: ["'a.npy'", "beyond the file's"])
        assertError(try Zip.entries(zip(size: 4, compressed: 4, offset: 1 << 40), strict: false),
                    contains: ["'a.npy'", "offset 1099511627776"])
        // every zip64 field 2⁶⁴ − 1: the marker values 0x7ede… are overwritten with all ones
        let marker = 0x7EDE_0000_0000_0000
        var f = zip(size: marker + 1, compressed: marker + 2, offset: marker + 3)
        for i in 0..<(f.count - 7) where f[i + 7] == 0x7E && f[i + 6] == 0xDE { for j in 0..<8 { f[i + j] = 0xFF } }
        assertError(try Zip.entries(f, strict: false), contains: ["'a.npy'", "corrupt"])
        // a zip64 end record whose offset is 2⁶⁴ − 1
        var z = [UInt8](repeating: 0, count: 20)  // the zip64 locator, then the end record that points to it
        z[0] = 0x50; z[1] = 0x4b; z[2] = 0x06; z[3] = 0x07
        for j in 8..<16 { z[j] = 0xFF }
        z += [0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 12) + [0, 0]
        assertError(try Zip.entries(z, strict: false), contains: ["zip64 end record missing"])
    }

    /// A gzip file with junk after its stream said "CRC mismatch"; now it says what is there. A damaged CRC still
    /// says CRC.
    func testGzipTrailingJunkAndBadCRCAreTold() throws {
        let data = Array("0123456789".utf8), gz = TestSupport.gzip(data)
        XCTAssertEqual(try Compression.gunzip(gz), data)
        XCTAssertEqual(try Compression.gunzip(gz + gz), data + data)
        XCTAssertEqual(try Compression.gunzip(gz + [0, 0, 0]), data)
        assertError(try Compression.gunzip(gz + Array("junk!".utf8)),
                    contains: ["5 bytes of trailing data after the gzip stream"])
        var bad = gz
        bad[bad.count - 8] ^= 1
        assertError(try Compression.gunzip(bad), contains: ["CRC-32 mismatch"])
    }

    /// Params that are NaN or ±∞ (YAML's .nan, .inf) are errors naming the key, not "training diverged" later.
    func testNonFiniteParamsAreErrors() throws {
        var m = try ConfigReader(.object(["w_std": .double(.nan), "width": .int(8)]), path: "params.model")
        assertError(try ModelConfig(&m), contains: ["params.model.w_std", "finite"])
        var b = try ConfigReader(.object(["b_std": .array([.double(0), .double(.infinity)]), "depth": .int(1)]),
                                 path: "params.model")
        assertError(try ModelConfig(&b), contains: ["params.model.b_std", "finite"])
        var t = try ConfigReader(.object(["learning_rate": .double(-.infinity)]), path: "params.train")
        assertError(try t.double("learning_rate", default: 1),
                    contains: ["params.train.learning_rate", "finite", "-inf"])
    }

    /// num_classes = 10⁸ took 76 s (a dictionary of 10⁸ classes) before its error; an absurd class count is refused
    /// at once, and samples without features say so instead of blaming standardize.
    func testClassCountAndFeaturelessSamplesAreCheckedFirst() throws {
        var r = try ConfigReader(.object(["num_classes": .int(100_000_000)]), path: "params.data")
        assertError(try DataConfig(&r), contains: ["params.data.num_classes", "≤ 65536"])
        let split = RawSplit(features: .floats([]), sampleShape: [0], labels: [0, 1, 0, 1])
        var config = DataConfig()
        config.numClasses = 2
        config.standardize = .global
        assertError(try Preprocess.run(RawDataset(train: split, test: split, sources: []), config: config, seed: 0),
                    contains: ["samples have no features", "[0]"])
    }

    /// Allocations sized by a user are checked against the machine's memory (here a 100 MB machine) and the error
    /// says both numbers: a network whose training state does not fit, kernels of too many samples.
    func testAllocationsAreCheckedAgainstTheMachinesMemory() throws {
        setenv("NTK_MEMORY_BYTES", "100000000", 1)
        defer { unsetenv("NTK_MEMORY_BYTES") }
        XCTAssertEqual(MemoryBudget.availableBytes, 100_000_000)
        let layers: [Layer] = [.dense(out: 4096, wStd: 1, bStd: 0), .dense(out: 4096, wStd: 1, bStd: 0),
                               .dense(out: 1, wStd: 1, bStd: 0)]
        assertError(try Network(layers: layers, input: .vector(784)),
                    contains: ["19992576 parameters", "needs 0.2 GB (3 × 19992576 × 4 bytes)", "0.1 GB of memory"])
        XCTAssertNotNil(MemoryBudget.excess([Int.max, 2]))
        XCTAssertNil(MemoryBudget.excess([1000, 1000, 8]))
        unsetenv("NTK_MEMORY_BYTES")
        XCTAssertNoThrow(try Network(layers: layers, input: .vector(784)))
    }

    /// A kernels artifact a stage reads (made by another tool, or damaged) must be finite: the error names its file.
    func testNonFiniteKernelInputsNameTheirFile() throws {
        let d = TestSupport.tempDir()
        let nan = Tensor(name: "ntk_train_train", shape: [2, 2], values: [1, .nan, 0, 1])
        try ArtifactFile(kind: .kernels, metadata: [:], tensors: [nan]).write(to: d + "/k.npz")
        let params = StageParams(stage: "predict", values: .object([:]), declared: [])
        let ctx = StageContext(stage: "predict", params: params,
                               deps: [("artifacts/k.npz", d + "/k.npz", "x")], reporter: SilentReporter())
        assertError(try ctx.artifact(.kernels),
                    contains: ["artifacts/k.npz", "ntk_train_train [2, 2] holds nan at flat index 1", "must be finite"])
    }

    /// A user's weights: a bias of the wrong shape, a bias where the layer has none, an extra W3 or a NaN were
    /// accepted; each names the file and the tensor.
    func testUserWeightsAreCheckedTensorByTensor() throws {
        let spec = NetworkSpec(inputDim: 4, widths: [8, 8], outputs: 2, activation: .relu, wStd: 1, bStd: 0.1)
        let net = Network(spec)
        var good = Dictionary(uniqueKeysWithValues: ParamsArtifact(spec: spec, theta: MLP.initialize(spec, seed: 3).theta)
            .tensors().map { ($0.name, $0) })
        XCTAssertEqual(try ParamsArtifact.theta(from: good, network: net, location: "w.npz").count, net.parameterCount)
        var t = good
        t["b1"] = Tensor(name: "b1", shape: [8, 8], values: [Double](repeating: 0, count: 64))
        assertError(try ParamsArtifact.theta(from: t, network: net, location: "w.npz"),
                    contains: ["w.npz", "b1 has shape [8, 8]", "needs [8]"])
        t = good
        t["W3"] = Tensor(name: "W3", shape: [2, 2], values: [0, 0, 0, 0])
        assertError(try ParamsArtifact.theta(from: t, network: net, location: "w.npz"),
                    contains: ["w.npz", "has W3", "3 parameter layers"])
        good["W0"] = Tensor(name: "W0", shape: [4, 8], values: [.nan] + [Double](repeating: 0, count: 31))
        assertError(try ParamsArtifact.theta(from: good, network: net, location: "w.npz"),
                    contains: ["w.npz", "parameter 0 is NaN or Inf"])
        let noBias = Network(NetworkSpec(inputDim: 4, widths: [8, 8], outputs: 2, activation: .relu, wStd: 1, bStd: 0))
        assertError(try ParamsArtifact.theta(from: t, network: noBias, location: "w.npz"),
                    contains: ["w.npz", "has b0", "no bias"])
        var ip = try ConfigReader(.object(["interpolate": .object(["points": .int(1_000_000_000)])]), path: "params.data")
        assertError(try DataConfig(&ip), contains: ["params.data.interpolate.points", "≤ 1000000"])
    }

    func testPipelineSchemaMustBeOne() throws {
        let dir = TestSupport.tempDir()
        let file = dir + "/p.yaml"
        try "schema: 2\nparams: {seed: 0}\nstages:\n  s: {kind: init, params: [seed], outs: [p.npz]}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        assertError(try PipelineSpec.load(file), contains: ["p.yaml:1", "schema 2"])
    }

    /// User arrays with no features or no one-hot columns; a dataset artifact with no features or a NaN.
    func testDatasetsWithoutFeaturesOrWithNaNAreRefused() throws {
        let d = TestSupport.tempDir()
        func arrays(x: [Int], y: [Int]) throws -> String {
            let path = d + "/a\(x)\(y).npz"
            let nx = x.reduce(1, *)
            let ny = y.reduce(1, *)
            try ArtifactFile(
                kind: .dataset, metadata: [:],
                tensors: [
                    Tensor(name: "x_train", shape: x, values: [Double](repeating: 1, count: nx)),
                    Tensor(name: "y_train", shape: y, values: [Double](repeating: 1, count: ny)),
                    Tensor(name: "x_test", shape: x, values: [Double](repeating: 1, count: nx)),
                    Tensor(name: "y_test", shape: y, values: [Double](repeating: 1, count: ny)),
                ]
            ).write(to: path)
            return path
        }
        let noFeatures = try arrays(x: [3, 0], y: [3, 2])
        assertError(
            try ArrayDataReader.read(path: noFeatures, numClasses: 2),
            contains: [noFeatures, "x_train", "at least one feature"])
        let noColumns = try arrays(x: [3, 2], y: [3, 0])
        assertError(
            try ArrayDataReader.read(path: noColumns, numClasses: 2),
            contains: [noColumns, "y_train", "at least one column"])

        func read(_ path: String) throws -> DatasetArtifact {
            try DatasetArtifact(file: try ArtifactFile.read(path), path: path)
        }
        let x = [1, Double.nan, 3, 4]
        let a = DatasetArtifact(
            xTrain: x, yTrain: [1, 1], labelsTrain: [0, 0], xTest: x, yTest: [1, 1], labelsTest: [0, 0],
            features: 2, outputs: 1, classes: [0], sampleShape: [2], dtype: .float64, extraTensors: [], notes: [:])
        let withNaN = d + "/nan.npz"
        try a.file(metadata: [:]).write(to: withNaN)
        assertError(try read(withNaN), contains: [withNaN, "x_train", "nan", "flat index 1"])
        let empty = d + "/empty.npz"
        var f = a.file(metadata: [:])
        f.tensors = f.tensors.map { t in
            t.name.hasPrefix("x_") ? Tensor(name: t.name, shape: [2, 0], values: [Double]()) : t
        }
        try f.write(to: empty)
        assertError(try read(empty), contains: [empty, "0 features"])
    }

    /// Kernels and predictions with a NaN or ±Inf are never written.
    func testNonFiniteKernelsAndPredictionsAreErrors() {
        let bad = Tensor(name: "ntk_train_train", shape: [2, 2], values: [1.0, .infinity, 0, 1])
        for kind in [ArtifactKind.kernels, .predictions] {
            let e = ArtifactFile(kind: kind, metadata: [:], tensors: [bad]).nonFiniteError(stage: "s", out: "k.npz")
            XCTAssertEqual(e?.location, "k.npz")
            XCTAssertTrue(
                e?.problem.contains("ntk_train_train [2, 2] holds inf at flat index 1") == true,
                "\(String(describing: e))")
        }
        XCTAssertNil(
            ArtifactFile(kind: .kernels, metadata: [:], tensors: [Tensor(name: "k", shape: [1], values: [1.0])])
                .nonFiniteError(stage: "s", out: "k.npz"))
    }

    /// One error boundary: the maths library's errors reach the user as NTKErrors naming the stage, with a hint.
    func testEveryLibraryErrorBecomesAnNTKErrorNamingTheStage() {
        let la = NTKError(wrapping: LinearAlgebraError.notPositiveDefinite("Θ(train, train)"), stage: "fig3_predict")
        XCTAssertEqual(la.problem, "stage fig3_predict: Θ(train, train) is not positive definite")
        XCTAssertTrue(la.hint?.contains("diag_reg") == true)
        let d = NTKError(
            wrapping: TrainingDiverged(step: 7, loss: .infinity, learningRate: 9, suggestion: ""), stage: "t")
        XCTAssertTrue(d.problem.hasPrefix("stage t: training diverged at step 7"), d.problem)
        XCTAssertTrue(d.hint?.contains("learning rate") == true)
        let l = NTKError(wrapping: LayerError("layers[2]", key: "window", "larger than its input"), stage: "init")
        XCTAssertEqual(l.key, "layers[2].window")
        XCTAssertEqual(l.problem, "stage init: larger than its input")
        struct Odd: Error {}
        XCTAssertTrue(NTKError(wrapping: Odd()).problem.contains("unexpected error"))
        let n = NTKError(wrapping: NTKError("bad", at: "f.npz"), stage: "s")
        XCTAssertEqual(n.description, "f.npz: stage s: bad")
    }
}
