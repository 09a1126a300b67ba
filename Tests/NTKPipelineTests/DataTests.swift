import Foundation
import XCTest

@testable import NTKPipeline

final class DataTests: XCTestCase {
    func testEmbeddedMNISTIsReadByTheIDXReader() throws {
        let raw = try IDXReader.read(directory: TestSupport.embeddedMNIST, numClasses: 10)
        XCTAssertEqual(raw.train.count, 4000)
        XCTAssertEqual(raw.test.count, 1000)
        XCTAssertEqual(raw.train.sampleShape, [28, 28, 1])
        for c in 0..<10 {
            XCTAssertEqual(raw.train.labels.filter { $0 == c }.count, 400)
            XCTAssertEqual(raw.test.labels.filter { $0 == c }.count, 100)
        }
        guard case .bytes(let px) = raw.train.features else { return XCTFail() }
        // Real digits: mostly background, some ink, mean intensity in MNIST's usual range (≈ 0.13·255).
        let mean = Double(px.reduce(0) { $0 + Int($1) }) / Double(px.count)
        XCTAssertEqual(mean / 255, 0.13, accuracy: 0.02)
    }

    func testPlainAndGzippedIDXGiveTheSameData() throws {
        let a = TestSupport.tempDir() + "/gz", b = TestSupport.tempDir() + "/plain"
        TestSupport.tinyIDX(at: a, gz: true)
        TestSupport.tinyIDX(at: b, gz: false)
        let ra = try IDXReader.read(directory: a, numClasses: 10), rb = try IDXReader.read(directory: b, numClasses: 10)
        XCTAssertEqual(ra.train.labels, rb.train.labels)
        guard case .bytes(let pa) = ra.train.features, case .bytes(let pb) = rb.train.features else { return XCTFail() }
        XCTAssertEqual(pa, pb)
    }

    /// Files are picked by their exact names: a stray `backup-train-labels…` (shuffled labels) beside the real file
    /// is not used; a prefixed name is used only when it is the one candidate; two candidates are an error.
    func testIDXFilesArePickedByExactNameNeverGuessed() throws {
        let dir = TestSupport.tempDir() + "/idx"
        TestSupport.tinyIDX(at: dir, gz: true)
        let real = try IDXReader.read(directory: dir, numClasses: 10)
        let labels = dir + "/train-labels-idx1-ubyte.gz"
        var bytes = try Compression.readMaybeGzip(labels)
        bytes[8...].reverse()
        XCTAssertNotEqual(Array(bytes[8...]).map(Int32.init), real.train.labels, "the stray file must differ")
        try Data(TestSupport.gzip(bytes)).write(to: URL(fileURLWithPath: dir + "/backup-train-labels-idx1-ubyte.gz"))
        XCTAssertEqual(try IDXReader.read(directory: dir, numClasses: 10).train.labels, real.train.labels)
        // only prefixed candidates: one is used, two are refused
        try FileManager.default.moveItem(atPath: labels, toPath: dir + "/kmnist-train-labels-idx1-ubyte.gz")
        assertError(try IDXReader.read(directory: dir, numClasses: 10),
                    contains: ["2 files could be the train-labels-idx1-ubyte file", "backup-", "kmnist-", "refusing to guess"])
        try FileManager.default.removeItem(atPath: dir + "/backup-train-labels-idx1-ubyte.gz")
        XCTAssertEqual(try IDXReader.read(directory: dir, numClasses: 10).train.labels, real.train.labels)
    }

    // MARK: bad input: each error names the file and says what is wrong

    func assertError(_ body: @autoclosure () throws -> Any, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            let text = "\(e)"
            for p in parts { XCTAssertTrue(text.contains(p), "«\(text)» should contain «\(p)»", file: file, line: line) }
        }
    }

    func testTruncatedGzip() {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d)
        let f = d + "/train-images-idx3-ubyte.gz"
        let full = TestSupport.read(f)
        TestSupport.write(f, Array(full.prefix(full.count - 12)))
        assertError(try IDXReader.read(directory: d, numClasses: 10), contains: [f, "truncated"])
    }

    func testGzipWithBadCRC() {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d)
        let f = d + "/train-labels-idx1-ubyte.gz"
        var b = TestSupport.read(f)
        b[b.count - 6] ^= 0xff  // inside the CRC-32 trailer
        TestSupport.write(f, b)
        assertError(try IDXReader.read(directory: d, numClasses: 10), contains: [f, "CRC"])
    }

    func testWrongIDXMagic() {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d)
        // Swap roles: a labels file where the images file should be.
        let img = d + "/t10k-images-idx3-ubyte.gz"
        TestSupport.write(img, TestSupport.read(d + "/t10k-labels-idx1-ubyte.gz"))
        assertError(try IDXReader.read(directory: d, numClasses: 10), contains: [img, "magic", "0x00000801", "0x00000803"])
    }

    func testImageCountDiffersFromLabelCount() {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d)
        let lab = d + "/train-labels-idx1-ubyte.gz"
        TestSupport.write(lab, TestSupport.gzip(TestSupport.idx(magic: 0x801, dims: [14], data: [UInt8](repeating: 1, count: 14))))
        assertError(try IDXReader.read(directory: d, numClasses: 10), contains: [lab, "14 labels", "15 images"])
    }

    func testIDXDataShorterThanHeaderSays() {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d)
        let img = d + "/train-images-idx3-ubyte.gz"
        TestSupport.write(img, TestSupport.gzip(TestSupport.idx(magic: 0x803, dims: [15, 4, 4], data: [UInt8](repeating: 1, count: 200))))
        assertError(try IDXReader.read(directory: d, numClasses: 10), contains: [img, "240"])
    }

    func testLabelOutOfRange() {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d)
        let lab = d + "/t10k-labels-idx1-ubyte.gz"
        var labels = [UInt8](repeating: 0, count: 15)
        labels[9] = 12
        TestSupport.write(lab, TestSupport.gzip(TestSupport.idx(magic: 0x801, dims: [15], data: labels)))
        assertError(try IDXReader.read(directory: d, numClasses: 10), contains: [lab, "label 12", "index 9", "0…9"])
    }

    // MARK: CIFAR-10

    func cifarRecords(_ labels: [UInt8]) -> [UInt8] {
        // pixel p of plane c (byte j = 1024·c + p) has the value 50·c + p mod 50 + record index
        labels.enumerated().flatMap { (i: Int, l: UInt8) -> [UInt8] in
            [l] + (0..<3072).map { (j: Int) -> UInt8 in UInt8(truncatingIfNeeded: (j / 1024) * 50 + j % 1024 % 50 + i) }
        }
    }

    func testCIFARFromDirectoryAndFromTarGz() throws {
        let d = TestSupport.tempDir()
        var files: [(String, [UInt8])] = []
        for b in 1...5 { files.append(("cifar-10-batches-bin/data_batch_\(b).bin", cifarRecords([UInt8(b), 9, 0]))) }
        files.append(("cifar-10-batches-bin/test_batch.bin", cifarRecords([3, 4])))
        files.append(("cifar-10-batches-bin/batches.meta.txt", Array("airplane\n".utf8)))
        for (n, b) in files { TestSupport.write(d + "/dir/" + (n as NSString).lastPathComponent, b) }
        TestSupport.write(d + "/cifar-10-binary.tar.gz", TestSupport.gzip(TestSupport.tar(files)))
        for path in [d + "/dir", d + "/cifar-10-binary.tar.gz"] {
            let raw = try CIFARReader.read(path: path)
            XCTAssertEqual(raw.train.labels, [1, 9, 0, 2, 9, 0, 3, 9, 0, 4, 9, 0, 5, 9, 0], path)
            XCTAssertEqual(raw.test.labels, [3, 4], path)
            XCTAssertEqual(raw.train.sampleShape, [32, 32, 3])
            guard case .bytes(let px) = raw.test.features else { return XCTFail() }
            XCTAssertEqual(px.count, 2 * 3072)
            XCTAssertEqual(Array(px[3072..<3078]), [1, 51, 101, 2, 52, 102])  // record 1, pixels 0 and 1 as (r, g, b): NHWC
        }
    }

    func testCIFARSizeNotMultipleOfRecord() {
        let d = TestSupport.tempDir()
        for b in 1...5 { TestSupport.write("\(d)/data_batch_\(b).bin", cifarRecords([1])) }
        TestSupport.write("\(d)/test_batch.bin", Array(cifarRecords([1, 2]).dropLast(5)))
        assertError(try CIFARReader.read(path: d), contains: ["\(d)/test_batch.bin", "3073"])
    }

    func testCIFARLabelOutOfRange() {
        let d = TestSupport.tempDir()
        for b in 1...5 { TestSupport.write("\(d)/data_batch_\(b).bin", cifarRecords([1])) }
        TestSupport.write("\(d)/test_batch.bin", cifarRecords([1, 10]))
        assertError(try CIFARReader.read(path: d), contains: ["\(d)/test_batch.bin", "label 10", "0…9"])
    }

    // MARK: user arrays

    func testUserArraysWithNaN() {
        let f = TestSupport.fixtures + "/with_nan.npz"
        assertError(try ArrayDataReader.read(path: f, numClasses: 3), contains: [f, "x_train", "NaN", "sample 4"])
    }

    func testUserArraysMissingArray() throws {
        let d = TestSupport.tempDir()
        try ArtifactFile(kind: .dataset, metadata: [:], tensors: [Tensor(name: "x_train", shape: [1, 2], values: [1.0, 2])]).write(to: d + "/a.npz")
        assertError(try ArrayDataReader.read(path: d + "/a.npz", numClasses: 3), contains: [d + "/a.npz", "y_train"])
    }

    func testUserArraysLabelsFromPlusMinusOneTargetsOrGivenLabels() throws {
        let d = TestSupport.tempDir()
        func write(_ extra: [Tensor]) throws {
            try ArtifactFile(kind: .dataset, metadata: [:], tensors: [
                Tensor(name: "x_train", shape: [3, 2], values: [1.0, 2, 3, 4, 5, 6]), Tensor(name: "y_train", shape: [3, 1], values: [-1.0, 1, 1]),
                Tensor(name: "x_test", shape: [2, 2], values: [1.0, 2, 3, 4]), Tensor(name: "y_test", shape: [2, 1], values: [1.0, -1]),
            ] + extra).write(to: d + "/a.npz")
        }
        try write([])
        var r = try ArrayDataReader.read(path: d + "/a.npz", numClasses: 2)
        XCTAssertEqual(r.train.labels, [0, 1, 1])
        XCTAssertEqual(r.test.labels, [1, 0])
        try write([Tensor(name: "labels_train", shape: [3], int32: [2, 0, 1]), Tensor(name: "labels_test", shape: [2], int32: [1, 2])])
        r = try ArrayDataReader.read(path: d + "/a.npz", numClasses: 3)
        XCTAssertEqual(r.train.labels, [2, 0, 1])
        XCTAssertEqual(r.test.labels, [1, 2])
        try write([Tensor(name: "labels_train", shape: [2], int32: [2, 0]), Tensor(name: "labels_test", shape: [2], int32: [1, 2])])
        assertError(try ArrayDataReader.read(path: d + "/a.npz", numClasses: 3), contains: [d + "/a.npz", "labels_train has shape [2]"])
    }

    // MARK: selection and preprocessing

    func config(_ edit: (inout DataConfig) -> Void) -> DataConfig {
        var c = DataConfig()
        edit(&c)
        return c
    }

    func testStratifiedSeededSelection() throws {
        let raw = try IDXReader.read(directory: TestSupport.embeddedMNIST, numClasses: 10)
        let c = config { $0.classes = [3, 8]; $0.nTrain = 101; $0.nTest = 40; $0.targets = .pm1 }
        let a = try Preprocess.run(raw, config: c, seed: 5), b = try Preprocess.run(raw, config: c, seed: 5)
        let other = try Preprocess.run(raw, config: c, seed: 6)
        XCTAssertEqual(a.labelsTrain, b.labelsTrain)
        XCTAssertEqual(a.xTrain, b.xTrain)
        XCTAssertNotEqual(a.labelsTrain, other.labelsTrain)
        XCTAssertEqual(a.nTrain, 101)
        XCTAssertEqual(Set(a.labelsTrain), [3, 8])
        XCTAssertEqual(a.labelsTrain.filter { $0 == 3 }.count, 51)  // equal classes: 50.5 each, tie to the first listed
        XCTAssertEqual(a.labelsTest.filter { $0 == 8 }.count, 20)
        XCTAssertEqual(a.outputs, 1)
        for (y, l) in zip(a.yTrain, a.labelsTrain) { XCTAssertEqual(y, l == 8 ? 1 : -1) }
        XCTAssertNotEqual(Array(a.labelsTrain.prefix(20)), a.labelsTrain.prefix(20).sorted(), "classes are interleaved")
    }

    func testGlobalStandardisationAndL2() throws {
        let raw = try IDXReader.read(directory: TestSupport.embeddedMNIST, numClasses: 10)
        let s = try Preprocess.run(raw, config: config { $0.nTrain = 200; $0.nTest = 50; $0.standardize = .global }, seed: 0)
        let n = Double(s.xTrain.count)
        let mean = s.xTrain.reduce(0, +) / n
        // 156,800 values summed naively here: rounding error up to ~n·ε ≈ 2e-11.
        XCTAssertEqual(mean, 0, accuracy: 1e-10)
        XCTAssertEqual((s.xTrain.reduce(0) { $0 + $1 * $1 } / n - mean * mean).squareRoot(), 1, accuracy: 1e-10)
        let l = try Preprocess.run(raw, config: config { $0.nTrain = 200; $0.nTest = 50; $0.standardize = .global; $0.l2Normalize = true }, seed: 0)
        for r in 0..<l.nTest {
            let row = l.xTest[r * 784..<(r + 1) * 784]
            XCTAssertEqual(row.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-12)
        }
    }

    func testPerFeatureStandardisation() throws {
        let raw = try IDXReader.read(directory: TestSupport.embeddedMNIST, numClasses: 10)
        let s = try Preprocess.run(raw, config: config { $0.nTrain = 300; $0.nTest = 10; $0.standardize = .per_feature; $0.targets = .centered_one_hot }, seed: 1)
        let d = 784, n = s.nTrain
        var constant = 0
        for j in stride(from: 0, to: d, by: 37) {
            let col = (0..<n).map { s.xTrain[$0 * d + j] }
            let m = col.reduce(0, +) / Double(n), v = col.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(n)
            XCTAssertEqual(m, 0, accuracy: 1e-12)
            if v == 0 { constant += 1 } else { XCTAssertEqual(v, 1, accuracy: 1e-9) }
        }
        XCTAssertGreaterThan(constant, 0, "MNIST's corner pixels are constant")
        for r in 0..<n { XCTAssertEqual(s.yTrain[r * 10..<(r + 1) * 10].reduce(0, +), 0, accuracy: 1e-12) }
    }

    func testClassWithNoSamples() throws {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d, classes: 3)
        let raw = try IDXReader.read(directory: d, numClasses: 10)
        assertError(try Preprocess.run(raw, config: config { $0.path = d; $0.classes = [1, 7] }, seed: 0),
                    contains: ["class 7 has no samples", "training split of \(d)"])
    }

    func testMoreSamplesThanAvailable() throws {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d, perClass: 5, classes: 3)
        let raw = try IDXReader.read(directory: d, numClasses: 10)
        assertError(try Preprocess.run(raw, config: config { $0.path = d; $0.classes = [0, 1, 2]; $0.nTrain = 16 }, seed: 0),
                    contains: ["16 samples requested", "only 15"])
    }
}

/// The full Fashion-MNIST from Debian's `dataset-fashion-mnist` (installed by .ci/run when the archive is
/// reachable; skipped otherwise): the IDX reader on real full-size files.
final class FashionMNISTTests: XCTestCase {
    static let path = "/usr/share/datasets/fashion-mnist"

    func testReadsTheFullDataSet() throws {
        try XCTSkipUnless(Files.isDirectory(Self.path), "dataset-fashion-mnist is not installed")
        let raw = try IDXReader.read(directory: Self.path, numClasses: 10)
        XCTAssertEqual(raw.train.count, 60000)
        XCTAssertEqual(raw.test.count, 10000)
        XCTAssertEqual(raw.train.sampleShape, [28, 28, 1])
        for c in 0..<10 { XCTAssertEqual(raw.train.labels.filter { $0 == c }.count, 6000) }
        let ds = try Preprocess.run(raw, config: { var c = DataConfig(); c.classes = [0, 9]; c.nTrain = 500; c.nTest = 100; c.targets = .pm1; return c }(), seed: 0)
        XCTAssertEqual(ds.nTrain, 500)
        XCTAssertEqual(Set(ds.labelsTrain), [0, 9])
    }
}
