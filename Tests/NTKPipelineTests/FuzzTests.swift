import Foundation
import XCTest

@testable import NTK
@testable import NTKPipeline

/// A seeded mutation fuzzer over every reader of outside bytes: IDX (plain and gzipped), `.npy`, `.npz` (ntk's strict
/// artifacts and a user's arrays), JSON (locks, hash caches, metadata) and the YAML front end (a whole pipeline.yaml).
/// Each target starts from real inputs and applies random edits (bit flips, "interesting" bytes and integers — 0,
/// 0xFF…, 2³¹, 2⁶³ — over size fields, inserted and deleted runs, truncation, duplicated chunks, YAML/JSON tokens);
/// inputs that still parse join the corpus, so edits compound. A reader may throw; it must not trap (a trap kills
/// the test process: the input being run is in `$TMPDIR/ntk-fuzz-current-<target>` to reproduce it).
///
/// Budget: `NTK_FUZZ_EXECS` executions per target (default 5,000: seconds in CI); by hand, e.g.
/// `NTK_FUZZ_EXECS=200000 NTK_FUZZ_SEED=7 swift test --filter FuzzTests`. Prints executions, rejects, the slowest
/// input and the peak RSS per target; fails if the process's peak RSS passes 2 GB (every input here is < 64 KB, so
/// a reader that allocates what a header claims is caught).
final class FuzzTests: XCTestCase {
    static var execs: Int { Int(ProcessInfo.processInfo.environment["NTK_FUZZ_EXECS"] ?? "") ?? 5_000 }
    static var seed: UInt64 { UInt64(ProcessInfo.processInfo.environment["NTK_FUZZ_SEED"] ?? "") ?? 1 }

    /// Runs `parse` on `execs` mutants of `seeds`; returns (accepted, rejected).
    @discardableResult
    func fuzz(_ target: String, seeds: [[UInt8]], text: Bool = false, _ parse: ([UInt8]) throws -> Void)
        -> (accepted: Int, rejected: Int)
    {
        precondition(!seeds.isEmpty)
        for s in seeds { XCTAssertNoThrow(try parse(s), "\(target): a seed must parse") }
        // one stream per target and seed (the target's name hashed by FNV-1a: stable across runs, unlike hashValue)
        let name = target.utf8.reduce(0xCBF2_9CE4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
        var rng = SplitMix64(seed: Self.seed &* 0x9E37_79B9_7F4A_7C15 ^ name)
        var corpus = seeds
        let current = NSTemporaryDirectory() + "ntk-fuzz-current-\(target)"
        let fd = open(current, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0, current)
        var accepted = 0, rejected = 0, slowest = 0.0
        for _ in 0..<Self.execs {
            var input = corpus[Int(rng.next() % UInt64(corpus.count))]
            let edits = 1 + Int(rng.next() % 4)
            for _ in 0..<edits { Self.mutate(&input, text: text, rng: &rng, other: corpus) }
            if input.count > 1 << 16 { input.removeLast(input.count - (1 << 16)) }
            ftruncate(fd, 0)
            _ = input.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            let t0 = DispatchTime.now().uptimeNanoseconds
            do {
                try parse(input)
                accepted += 1
                if corpus.count < 256 { corpus.append(input) }
            } catch {
                rejected += 1
            }
            slowest = max(slowest, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        close(fd)
        unlink(current)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let rss = usage.ru_maxrss / 1024  // KB on Linux
        print(String(format: "fuzz %@: %d executions (seed %llu), %d parsed, %d rejected, 0 crashes; slowest %.1f ms; "
                     + "peak RSS %d MB", target, Self.execs, Self.seed, accepted, rejected, slowest, rss))
        XCTAssertLessThan(rss, 2048, "\(target): peak RSS \(rss) MB")
        return (accepted, rejected)
    }

    static let interesting: [UInt64] = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
                                        1 << 32, 1 << 40, 0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF]
    static let tokens = ["[", "]", "{", "}", ": ", "- ", "\n", "\n  ", ", ", "'", "\"", "#", "&a ", "*a", "<<: *a",
                         "1e999", "-1", "99999999999999999999", ".nan", "-.inf", "null", "~", "${", "${seed}",
                         "\\u0000",
                         "matrix: {n: [1, 2]}", "stages:", "params:", "\t", "---", "|", ">", "!!str "]

    /// One random edit of `b`.
    static func mutate(_ b: inout [UInt8], text: Bool, rng: inout SplitMix64, other: [[UInt8]]) {
        func pick(_ n: Int) -> Int { n <= 0 ? 0 : Int(rng.next() % UInt64(n)) }
        let at = pick(b.count + 1)
        switch pick(text ? 9 : 8) {
        case 0 where !b.isEmpty: b[pick(b.count)] ^= UInt8(1 << pick(8))  // bit flip
        case 1 where !b.isEmpty: b[pick(b.count)] = UInt8(truncatingIfNeeded: interesting[pick(interesting.count)])
        case 2:  // an interesting integer over 1, 2, 4 or 8 bytes, little or big endian
            let v = interesting[pick(interesting.count)], width = [1, 2, 4, 8][pick(4)], big = pick(2) == 1
            for i in 0..<width where at + i < b.count {
                b[at + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * (big ? width - 1 - i : i)))
            }
        case 3: b.insert(contentsOf: (0..<(1 + pick(16))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
        case 4 where !b.isEmpty: b.removeSubrange(at..<min(b.count, at + 1 + pick(32)))  // delete a run
        case 5: b.removeLast(b.count - at)  // truncate
        case 6 where !b.isEmpty:  // duplicate a chunk
            let from = pick(b.count), n = min(b.count - from, 1 + pick(64))
            b.insert(contentsOf: b[from..<from + n], at: at)
        case 7:  // splice in part of another corpus input
            let o = other[pick(other.count)]
            if !o.isEmpty { let from = pick(o.count); b.insert(contentsOf: o[from..<min(o.count, from + 64)], at: at) }
        case 8: b.insert(contentsOf: Array(tokens[pick(tokens.count)].utf8), at: at)
        default: break
        }
    }

    /// The checkout this file is in (Tests/NTKPipelineTests/FuzzTests.swift → ../..).
    static var repository: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    func testIDXAndGzipReaders() {
        let pixels = (0..<48).map { UInt8($0 * 5) }
        let images = TestSupport.idx(magic: 0x803, dims: [3, 4, 4], data: pixels)
        let labels = TestSupport.idx(magic: 0x801, dims: [3], data: [0, 1, 2])
        fuzz("idx", seeds: [images, labels, TestSupport.gzip(images), TestSupport.gzip(labels)]) { b in
            let raw = b.starts(with: [0x1f, 0x8b]) ? try Compression.gunzip(b) : b
            let magic: UInt32 = raw.count >= 4 && raw[3] == 1 ? 0x801 : 0x803
            _ = try IDXReader.header(raw, path: "x.idx", magic: magic, what: "image")
        }
    }

    func testNPYReader() {
        let t = Tensor(name: "a", shape: [3, 2], values: [1, 2, 3, 4, 5, 6])
        let f32 = Tensor(name: "b", dtype: .float32, shape: [4], bytes: [UInt8](repeating: 0, count: 16))
        fuzz("npy", seeds: [NPY.header(dtype: t.dtype, shape: t.shape) + t.bytes,
                            NPY.header(dtype: f32.dtype, shape: f32.shape) + f32.bytes]) { b in
            _ = try NPY.parse(b, name: "a").doubles()
        }
    }

    func testArtifactAndUserArrayReaders() throws {
        let d = TestSupport.tempDir()
        let artifact = ArtifactFile(kind: .kernels, metadata: ["stage": .string("k")], tensors: [
            Tensor(name: "ntk_train_train", shape: [3, 3], values: (0..<9).map(Double.init)),
            Tensor(name: "labels", dtype: .int32, shape: [3], bytes: [UInt8](repeating: 1, count: 12)),
        ])
        try artifact.write(to: d + "/stored.npz", level: 0)
        try artifact.write(to: d + "/deflated.npz", level: 6)
        let ours = [TestSupport.read(d + "/stored.npz"), TestSupport.read(d + "/deflated.npz")]
        fuzz("npz-artifact", seeds: ours) { b in _ = try ArtifactFile.parse(b) }
        let numpy = ["numpy_compressed.npz", "numpy_stored.npz"]
            .map { TestSupport.read(Self.repository + "/Tests/Fixtures/" + $0) }
        XCTAssertFalse(numpy.contains(where: \.isEmpty), "the numpy fixtures are in Tests/Fixtures")
        fuzz("npz-user", seeds: numpy + ours) { b in
            for t in try UserArrays.parse(b, path: "u.npz").values { _ = t.doubles() }
        }
    }

    func testJSONReaders() throws {
        var lock = Lock()
        lock.stages["load"] = Lock.StageEntry(kind: "load", algorithmVersion: 1, params: .object(["n": .int(3)]),
                                              deps: [Lock.FileEntry(path: "data", sha256: "ab", size: 4)], outs: [])
        let text = Array(lock.json.pretty.utf8)
        let metadata = Array(#"{"kind": "kernels", "tensors": [{"name": "x", "shape": [1, 2e3, -0.5]}], "s": "\u00e9"}"#
            .utf8)
        fuzz("json", seeds: [text, metadata], text: true) { b in
            _ = try JSONValue.parse(String(decoding: b, as: UTF8.self))
            _ = try? Lock.parse(b, path: "pipeline.lock")
        }
    }

    func testYAMLPipelineFrontEnd() throws {
        let files = ["pipeline.yaml", "experiments/figS2.yaml", "experiments/fig4.yaml"]
            .map { TestSupport.read(Self.repository + "/" + $0) }
        XCTAssertFalse(files.contains(where: \.isEmpty), "the pipelines are in the repository")
        let small = Array(PipelineTests.threeStages.utf8)
        fuzz("yaml", seeds: [small] + files, text: true) { b in
            _ = try PipelineSpec.parse(b, file: "p.yaml", overrides: [])
        }
    }
}
