/// CIFAR-10, binary version: records of 3073 bytes — one label byte (0…9), then 3072 pixel bytes as
/// three 32×32 planes (red, green, blue). Training data is `data_batch_1.bin` … `data_batch_5.bin`, test
/// data `test_batch.bin`, in a directory or inside the official `cifar-10-binary.tar.gz`.
/// Samples are stored as images in NHWC order (shape [32, 32, 3], neural-tangents' layout): the planes are
/// interleaved on reading.
public enum CIFARReader {
    public static let recordSize = 3073
    public static let sampleShape = [32, 32, 3]

    /// From a directory of `.bin` files or from the `.tar.gz` (or `.tar`) archive.
    public static func read(path: String, progress: Compression.Progress? = nil) throws -> RawDataset {
        var members: [(name: String, bytes: [UInt8])] = []
        if Files.isDirectory(path) {
            for f in try Files.listFiles(under: path) where f.hasSuffix(".bin") {
                members.append((f, try Compression.readMaybeGzip(path + "/" + f, progress: progress)))
            }
        } else {
            let tar = try Compression.readMaybeGzip(path, progress: progress)
            do { members = try Tar.members(tar).filter { $0.name.hasSuffix(".bin") } } catch let e as NTKError { throw e.located(path) }
        }
        func base(_ n: String) -> String { String(n.split(separator: "/").last ?? "") }
        let trainNames = (1...5).map { "data_batch_\($0).bin" }
        let train = members.filter { trainNames.contains(base($0.name)) }.sorted { base($0.name) < base($1.name) }
        let test = members.filter { base($0.name) == "test_batch.bin" }
        guard !train.isEmpty, !test.isEmpty else {
            throw NTKError("no CIFAR-10 batches found (need data_batch_*.bin and test_batch.bin; found: \(members.map(\.name).joined(separator: ", ")))", at: path)
        }
        func split(_ parts: [(name: String, bytes: [UInt8])]) throws -> RawSplit {
            var pixels: [UInt8] = []
            var labels: [Int32] = []
            for p in parts {
                let where_ = Files.isDirectory(path) ? path + "/" + p.name : "\(path)(\(p.name))"
                guard p.bytes.count % recordSize == 0 else {
                    throw NTKError("size \(p.bytes.count) is not a multiple of the CIFAR-10 record size \(recordSize) (truncated or not CIFAR-10 binary)", at: where_)
                }
                let n = p.bytes.count / recordSize
                pixels.reserveCapacity(pixels.count + n * (recordSize - 1))
                for r in 0..<n {
                    let o = r * recordSize
                    let label = p.bytes[o]
                    guard label < 10 else { throw NTKError("label \(label) of record \(r) is out of range 0…9", at: where_) }
                    labels.append(Int32(label))
                    // planes [c][y][x] → pixels [y][x][c]
                    for yx in 0..<1024 { for c in 0..<3 { pixels.append(p.bytes[o + 1 + c * 1024 + yx]) } }
                }
            }
            return RawSplit(features: .bytes(pixels), sampleShape: sampleShape, labels: labels)
        }
        return RawDataset(train: try split(train), test: try split(test),
                          sources: (train + test).map { Files.isDirectory(path) ? path + "/" + $0.name : "\(path)(\($0.name))" })
    }
}

/// A minimal reader of POSIX (ustar) tar archives: regular files only, names with their ustar prefix.
public enum Tar {
    public static func members(_ b: [UInt8]) throws -> [(name: String, bytes: [UInt8])] {
        var out: [(String, [UInt8])] = []
        var p = 0
        while p + 512 <= b.count {
            let block = b[p..<p + 512]
            if block.allSatisfy({ $0 == 0 }) { break }
            func text(_ o: Int, _ n: Int) -> String {
                String(decoding: b[p + o..<p + o + n].prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            let sizeText = text(124, 12).trimmingCharacters(in: .whitespaces)
            guard let size = Int(sizeText, radix: 8) else { throw NTKError("corrupt tar header at byte \(p)") }
            let prefix = text(345, 155)
            let name = prefix.isEmpty ? text(0, 100) : prefix + "/" + text(0, 100)
            let type = b[p + 156]
            let start = p + 512
            guard start + size <= b.count else { throw NTKError("tar member \(name) is truncated") }
            if type == UInt8(ascii: "0") || type == 0 { out.append((name, Array(b[start..<start + size]))) }
            p = start + (size + 511) / 512 * 512
        }
        return out
    }
}

import Foundation
