import Foundation
import XCTest

@testable import NTKPipeline

final class ArtifactTests: XCTestCase {
    func sample() -> ArtifactFile {
        ArtifactFile(kind: .dataset, metadata: ["stage": .string("test"), "seed": .int(3), "x": .double(0.1)], tensors: [
            Tensor(name: "a", shape: [3, 4], values: (0..<12).map { Double($0) * 0.5 - 2 }),
            Tensor(name: "b", shape: [5], values: (0..<5).map { Float($0) / 3 }),
            Tensor(name: "labels", shape: [4], int32: [1, -2, 3, 2_000_000_000]),
            Tensor(name: "bytes", shape: [2, 2, 2], uint8: [0, 1, 2, 3, 252, 253, 254, 255]),
            Tensor(name: "empty", shape: [0, 7], values: [Double]()),
            Tensor(name: "wide", dtype: .int64, shape: [2], bytes: [Int64(-1), Int64.max].withUnsafeBytes { Array($0) }),
        ])
    }

    func testRoundTripStoredAndDeflated() throws {
        let dir = TestSupport.tempDir()
        for level in [0, 1, 9] {
            let path = "\(dir)/a\(level).npz"
            try sample().write(to: path, level: level)
            let back = try ArtifactFile.read(path)
            XCTAssertEqual(back.kind, .dataset)
            XCTAssertEqual(back.tensors, sample().tensors)
            XCTAssertEqual(back.metadata["seed"], .int(3))
            XCTAssertEqual(back.metadata["x"], .double(0.1))
            XCTAssertEqual(back.metadata["producer"], .string("ntk 0.1.0"))
            XCTAssertFalse(Files.exists(path + Files.temporarySuffix))
        }
    }

    func testWritingIsDeterministic() throws {
        let dir = TestSupport.tempDir()
        try sample().write(to: "\(dir)/1.npz")
        try sample().write(to: "\(dir)/2.npz")
        XCTAssertEqual(TestSupport.read("\(dir)/1.npz"), TestSupport.read("\(dir)/2.npz"))
    }

    /// Every truncation of an artifact is rejected with a message naming the file.
    func testEveryTruncationIsRejected() throws {
        let dir = TestSupport.tempDir()
        let path = "\(dir)/a.npz"
        try sample().write(to: path)
        let full = TestSupport.read(path)
        for len in stride(from: 0, to: full.count, by: 7) {
            TestSupport.write("\(dir)/t.npz", Array(full.prefix(len)))
            XCTAssertThrowsError(try ArtifactFile.read("\(dir)/t.npz"), "length \(len)") { e in
                XCTAssertEqual((e as? NTKError)?.location, "\(dir)/t.npz")
            }
        }
    }

    /// A single flipped bit anywhere — data, headers, directory, metadata, even the padding bits at the end
    /// of a deflate stream — never yields wrong data: the read fails, or (rarely) the flip changed a deflate
    /// back-reference into another one pointing at identical bytes, so every decoded byte is still right.
    /// No checksum of the content can see that case; the pipeline's SHA-256 of the file does (it rebuilds).
    /// Several small artifacts, so that deflate streams with 1…7 padding bits occur.
    func testEveryBitFlipIsRejectedOrHarmless() throws {
        let dir = TestSupport.tempDir()
        var rejected = 0, harmless = 0, padding = 0
        for n in 1...6 {
            let path = "\(dir)/a\(n).npz"
            let small = ArtifactFile(kind: .params, metadata: ["n": .int(n)], tensors: [Tensor(name: "w", shape: [n], values: (0..<n).map { Double($0) * 1.5 })])
            try small.write(to: path, level: 1)
            let full = TestSupport.read(path)
            let original = try ArtifactFile.parse(full)
            for i in 0..<full.count {
                for bit in [i % 8, 7 - i % 8] {
                    var f = full
                    f[i] ^= UInt8(1 << bit)
                    do {
                        let back = try ArtifactFile.parse(f)
                        XCTAssertEqual(back.tensors, original.tensors, "artifact \(n): flip at byte \(i) bit \(bit) returned wrong data")
                        XCTAssertEqual(back.metadata, original.metadata, "artifact \(n): flip at byte \(i) bit \(bit) returned wrong metadata")
                        harmless += 1
                    } catch let e as NTKError {
                        rejected += 1
                        if e.problem.contains("padding") { padding += 1 }
                    }
                }
            }
        }
        XCTAssertGreaterThan(padding, 0, "some flips should hit deflate padding bits")
        XCTAssertLessThan(harmless * 200, rejected, "harmless flips must be rare (\(harmless) of \(harmless + rejected))")
    }

    func testCorruptDataMessageSaysCRC() throws {
        let dir = TestSupport.tempDir()
        let path = "\(dir)/a.npz"
        try sample().write(to: path, level: 0)
        var f = TestSupport.read(path)
        let i = f.count / 2  // inside a stored payload
        f[i] ^= 0x40
        TestSupport.write(path, f)
        XCTAssertThrowsError(try ArtifactFile.read(path)) { e in
            XCTAssertTrue("\(e)".contains(path), "\(e)")
        }
    }

    func testNPYHeaderIsNumpyCompatible() {
        let h = NPY.header(dtype: .float64, shape: [3])
        XCTAssertEqual(h.count % 64, 0)
        XCTAssertEqual(h.last, 0x0A)
        XCTAssertTrue(String(decoding: h, as: UTF8.self).contains("'shape': (3,)"))
        XCTAssertTrue(String(decoding: NPY.header(dtype: .float32, shape: []), as: UTF8.self).contains("'shape': ()"))
    }

    /// Arrays written by numpy itself (np.savez_compressed, and np.savez uncompressed); see Tests/Fixtures/README.md.
    func testReadsNumpyWrittenFiles() throws {
        for f in ["numpy_compressed.npz", "numpy_stored.npz"] {
            let a = try UserArrays.read(TestSupport.fixtures + "/" + f)
            XCTAssertEqual(a["x_train"]?.shape, [6, 4], f)
            XCTAssertEqual(a["x_train"]?.dtype, .float64, f)
            XCTAssertEqual(a["x_train"]?.doubles(), (0..<24).map { Double($0) / 8 }, f)
            XCTAssertEqual(a["y_train"]?.integers(), [0, 1, 2, 0, 1, 2], f)
            XCTAssertEqual(a["x_test"]?.dtype, .float32, f)
            XCTAssertEqual(a["y_test"]?.dtype, .int64, f)
        }
    }

    /// numpy opens every artifact kind we write: tensors, dtypes and the JSON metadata member.
    func testNumpyLoadsArtifacts() throws {
        let dir = TestSupport.tempDir()
        try sample().write(to: "\(dir)/sample.npz")
        let script = """
            import json, sys, numpy as np
            z = np.load(sys.argv[1])
            m = json.loads(z['metadata.json'])
            assert m['kind'] == 'dataset' and m['seed'] == 3, m
            assert z['a'].shape == (3, 4) and z['a'].dtype == np.float64 and z['a'][2, 3] == 3.5
            assert z['b'].dtype == np.float32 and z['labels'].tolist() == [1, -2, 3, 2000000000]
            assert z['bytes'].dtype == np.uint8 and z['bytes'][1, 1, 1] == 255
            assert z['empty'].shape == (0, 7) and z['wide'].tolist() == [-1, 2**63 - 1]
            print('ok')
            """
        try XCTSkipIf(ProcessInfo.processInfo.environment["NTK_SKIP_NUMPY"] != nil, "NTK_SKIP_NUMPY set")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, "\(dir)/sample.npz"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "python3 with numpy must be installed (CI installs it); set NTK_SKIP_NUMPY=1 to skip")
        XCTAssertEqual(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self), "ok\n")
    }

    /// Fortran-ordered .npy (distributed kernels' tiles are written so, straight from ScaLAPACK's column-major
    /// arrays): numpy reads ours, and ours reads numpy's (2-D and 3-D), as C-ordered values.
    func testFortranOrderedNPY() throws {
        let dir = TestSupport.tempDir()
        let columnMajor: [Double] = [1, 4, 2, 5, 3, 6]  // [[1, 2, 3], [4, 5, 6]]
        let header = NPY.header(dtype: .float64, shape: [2, 3], fortranOrder: true)
        try Files.writeAtomically(dir + "/ours.npy", bytes: header + columnMajor.withUnsafeBytes { Array($0) })
        XCTAssertEqual(try NPY.parse(try Files.read(dir + "/ours.npy"), name: "ours").doubles(), [1, 2, 3, 4, 5, 6])
        let script = """
            import sys, numpy as np
            a = np.load(sys.argv[1] + '/ours.npy')
            assert a.tolist() == [[1, 2, 3], [4, 5, 6]], a
            np.save(sys.argv[1] + '/theirs.npy', np.asfortranarray(np.arange(24, dtype=np.int32).reshape(2, 3, 4)))
            print('ok')
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, dir]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self), "ok\n")
        let theirs = try NPY.parse(try Files.read(dir + "/theirs.npy"), name: "theirs")
        XCTAssertEqual(theirs.shape, [2, 3, 4])
        XCTAssertEqual(theirs.integers(), Array(0..<24))
    }

    func testJSONRoundTrip() throws {
        let v: JSONValue = .object(["a": .int(-3), "b": .double(0.1), "c": .array([.bool(true), .null, .string("x\"\n\\é")]),
                                    "d": .object(["e": .double(1e-300), "f": .double(2.0)])])
        XCTAssertEqual(try JSONValue.parse(v.canonical), v)
        XCTAssertEqual(try JSONValue.parse(v.pretty), v)
        XCTAssertEqual(v.canonical, #"{"a":-3,"b":0.1,"c":[true,null,"x\"\n\\é"],"d":{"e":1e-300,"f":2.0}}"#)
    }

    func testSHA256KnownVectors() {
        XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Fed in uneven pieces: the same digest as one update.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var s = SHA256()
        var i = 0
        for piece in [1, 63, 64, 65, 200, 607] { s.update(Array(data[i..<i + piece])); i += piece }
        XCTAssertEqual(s.finalize(), SHA256.hex(data))
    }
}

extension ArtifactTests {
    /// `ntk dump` shows a plain numpy file as its arrays, and still reports a damaged artifact as damaged even
    /// when the flipped bit is in the name of its metadata member.
    func testDumpPlainNumpyAndDamagedNames() throws {
        let d = TestSupport.tempDir()
        let r = try TestSupport.ntk(["dump", TestSupport.fixtures + "/numpy_stored.npz"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("plain numpy file") && r.stdout.contains("x_train"), r.stdout)
        try sample().write(to: d + "/a.npz", level: 0)
        var f = TestSupport.read(d + "/a.npz")
        // flip a bit in the central directory's copy of "metadata.json"
        let name = Array("metadata.json".utf8)
        let at = (30..<f.count - name.count).last { Array(f[$0..<$0 + name.count]) == name }!
        f[at + 2] ^= 0x01
        TestSupport.write(d + "/b.npz", f)
        let bad = try TestSupport.ntk(["dump", "b.npz"], in: d)
        XCTAssertEqual(bad.status, 1, bad.stdout)
        XCTAssertTrue(bad.stderr.contains("b.npz"), bad.stderr)
    }
}
