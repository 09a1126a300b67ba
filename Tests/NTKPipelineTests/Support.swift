import CZlib
import Foundation
import XCTest
import NTK

@testable import NTKPipeline

/// Paths and helpers shared by the pipeline tests.
enum TestSupport {
    /// The repository root (three levels above this file).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let embeddedMNIST = root + "/data/mnist"
    static let fixtures = root + "/Tests/Fixtures"

    /// The `ntk` binary built beside the test bundle.
    static var ntkBinary: String {
        var dir = Bundle.main.bundleURL
        for _ in 0..<3 {
            if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("ntk").path) { return dir.appendingPathComponent("ntk").path }
            dir = dir.deletingLastPathComponent()
        }
        return Bundle.main.bundleURL.appendingPathComponent("ntk").path
    }

    static func tempDir(_ name: String = #function) -> String {
        let clean = name.filter { $0.isLetter || $0.isNumber }
        let d = NSTemporaryDirectory() + "ntk-tests-\(clean)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The usual stages of a test pipeline over artifacts/, as YAML lines under `stages:` (two-space indent): load
    /// (from `${data.path}`), init, train, kernels (analytic_kernels), predict, eval (evaluate of trained + kernels).
    static func stages(_ names: [String]) -> String {
        let all: [String: String] = [
            "load": "deps: [\"${data.path}\"]\n    params: [seed, data]\n    outs: [artifacts/dataset.npz]",
            "init": "deps: [artifacts/dataset.npz]\n    params: [seed, model]\n    outs: [artifacts/params.npz]",
            "train": "deps: [artifacts/dataset.npz, artifacts/params.npz]\n    params: [seed, train]\n"
                + "    outs: [artifacts/trained.npz]",
            "kernels": "kind: analytic_kernels\n    deps: [artifacts/dataset.npz]\n    params: [model, kernel]\n"
                + "    outs: [artifacts/kernels.npz]",
            "predict": "deps: [artifacts/dataset.npz, artifacts/kernels.npz]\n    params: [predict]\n"
                + "    outs: [artifacts/predictions.npz]",
            "eval": "kind: evaluate\n    deps: [artifacts/dataset.npz, artifacts/trained.npz, artifacts/kernels.npz]\n"
                + "    outs: [artifacts/evaluation.npz]",
        ]
        return names.map { "  \($0):\n    " + all[$0]! }.joined(separator: "\n")
    }

    /// Runs `ntk` with arguments in a directory and waits.
    @discardableResult
    static func ntk(_ args: [String], in dir: String, env: [String: String] = [:]) throws -> Result {
        try run(ntkBinary, args, in: dir, env: env)
    }

    /// Runs a program (ntk, or a script that starts it) with arguments in a directory and waits.
    static func run(_ program: String, _ args: [String], in dir: String, env: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        // The binary uses the same OpenBLAS kernels as this process (it would otherwise switch to AVX-512 ones where
        // it can, and GEMM rounding would differ from the in-process results the tests compare with).
        var base = ProcessInfo.processInfo.environment
        if base["OPENBLAS_CORETYPE"] == nil { base["OPENBLAS_CORETYPE"] = Platform.blasCore }
        p.environment = base.merging(env) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// Starts `ntk args` in `dir`, waits until at least `count` checkpoint files whose path contains `matching` exist
    /// under .ntk/checkpoints (polling, up to ~30 s), then kills it — and every process it started (the ranks of a
    /// distributed run, under mpirun) — with SIGKILL; returns how many it saw.
    static func killAfterCheckpoints(_ args: [String], in dir: String, count: Int, matching: String = ".npz") throws
        -> Int {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ntkBinary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        var seen = 0
        for _ in 0..<10000 where seen < count {
            Thread.sleep(forTimeInterval: 0.003)
            let files = (try? FileManager.default.subpathsOfDirectory(atPath: dir + "/.ntk/checkpoints")) ?? []
            seen = files.filter { $0.contains(matching) }.count
        }
        for child in descendants(of: p.processIdentifier) { kill(child, SIGKILL) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        return seen
    }

    /// Every process below `pid` (from /proc's parent links).
    static func descendants(of pid: Int32) -> [Int32] {
        var parents: [Int32: Int32] = [:]
        for e in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let id = Int32(e), let stat = try? String(contentsOfFile: "/proc/\(e)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let ppid = Int32(fields[1]) { parents[id] = ppid }
        }
        var out: [Int32] = [], frontier = [pid]
        while let next = frontier.popLast() {
            for (c, pp) in parents where pp == next { out.append(c); frontier.append(c) }
        }
        return out
    }

    /// The peak memory `ntk run` reports on its last line ("…; peak memory 60.1 MB"), in bytes.
    static func peakMemory(_ stderr: String) -> Int? {
        guard let r = stderr.range(of: "; peak memory ", options: .backwards) else { return nil }
        let parts = stderr[r.upperBound...].split(whereSeparator: \.isWhitespace)
        guard parts.count >= 2, let v = Double(parts[0]) else { return nil }
        let unit: [Substring: Double] = ["B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9]
        return unit[parts[1]].map { Int(v * $0) }
    }

    /// A gzip file (RFC 1952) of `data`: header, raw deflate, CRC-32, size.
    static func gzip(_ data: [UInt8]) -> [UInt8] {
        let body = try! data.withUnsafeBytes { try Compression.deflateRaw($0, level: 6) }
        let crc = data.withUnsafeBytes { Compression.crc32($0) }
        var b = Bytes()
        b.raw([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])
        b.raw(body)
        b.u32(crc)
        b.u32(UInt32(truncatingIfNeeded: data.count))
        return b.bytes
    }

    /// An IDX file: big-endian magic and dims, then data.
    static func idx(magic: UInt32, dims: [Int], data: [UInt8]) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: v >> $0) } }
        return be(magic) + dims.flatMap { be(UInt32($0)) } + data
    }

    /// A ustar archive of regular files.
    static func tar(_ files: [(String, [UInt8])]) -> [UInt8] {
        var out: [UInt8] = []
        for (name, data) in files {
            var h = [UInt8](repeating: 0, count: 512)
            func put(_ s: String, _ at: Int) { for (i, c) in s.utf8.enumerated() { h[at + i] = c } }
            put(name, 0)
            put("0000644", 100); put("0000000", 108); put("0000000", 116)
            put(String(format: "%011o", data.count), 124)
            put("00000000000", 136)
            h[156] = UInt8(ascii: "0")
            put("ustar", 257); put("00", 263)
            for i in 148..<156 { h[i] = 0x20 }
            put(String(format: "%06o", h.reduce(0) { $0 + Int($1) }) + "\0 ", 148)
            out += h + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
        }
        return out + [UInt8](repeating: 0, count: 1024)
    }

    static func write(_ path: String, _ bytes: [UInt8]) {
        try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    static func read(_ path: String) -> [UInt8] { (try? Files.read(path)) ?? [] }

    /// A small MNIST-like IDX data set: `perClass` samples of each of `classes` classes per split, 4×4 pixels.
    static func tinyIDX(at dir: String, perClass: Int = 5, classes: Int = 3, gz: Bool = true) {
        for (stem, n) in [("train", perClass), ("t10k", perClass)] {
            var labels: [UInt8] = [], pixels: [UInt8] = []
            for i in 0..<(n * classes) {
                let c = i % classes
                labels.append(UInt8(c))
                pixels += (0..<16).map { UInt8(truncatingIfNeeded: 17 * c + 3 * $0 + i) }
            }
            let img = idx(magic: 0x803, dims: [labels.count, 4, 4], data: pixels)
            let lab = idx(magic: 0x801, dims: [labels.count], data: labels)
            write("\(dir)/\(stem)-images-idx3-ubyte" + (gz ? ".gz" : ""), gz ? gzip(img) : img)
            write("\(dir)/\(stem)-labels-idx1-ubyte" + (gz ? ".gz" : ""), gz ? gzip(lab) : lab)
        }
    }

    /// A pipeline.yaml with one load stage over `dataPath`, plus extra params/stages text.
    static func pipeline(dataPath: String, data: String = "", extraStages: String = "") -> String {
        """
        schema: 1
        params:
          seed: 0
          data:
            path: \(dataPath)
            num_classes: 10
        \(data.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        stages:
          load:
            deps: ["${data.path}"]
            params: [seed, data]
            outs: [artifacts/dataset.npz]
        \(extraStages)
        """
    }
}
