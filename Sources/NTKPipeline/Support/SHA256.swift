import Foundation
internal import CNTK

/// SHA-256 (FIPS 180-4), the content hash of the lock file and of artifact inputs: buffering and padding here, the
/// compression of whole blocks in the C core (`ntk_sha256_blocks`: SHA-NI, or the scalar reference).
public struct SHA256 {
    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var buffer = [UInt8](repeating: 0, count: 64)
    private var buffered = 0
    private var length: UInt64 = 0

    public init() {}

    public mutating func update(_ data: UnsafeRawBufferPointer) {
        guard var p = data.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        var n = data.count
        length &+= UInt64(n)
        if buffered > 0 {
            let take = min(64 - buffered, n)
            for j in 0..<take { buffer[buffered + j] = p[j] }
            buffered += take; p += take; n -= take
            if buffered == 64 {
                buffer.withUnsafeBufferPointer { b in h.withUnsafeMutableBufferPointer { ntk_sha256_blocks($0.baseAddress!, b.baseAddress!, 1) } }
                buffered = 0
            }
        }
        if n >= 64 {
            // whole blocks straight from the caller's memory (the C core: SHA-NI or the scalar reference)
            let blocks = n / 64
            h.withUnsafeMutableBufferPointer { ntk_sha256_blocks($0.baseAddress!, p, blocks) }
            p += 64 * blocks; n -= 64 * blocks
        }
        for j in 0..<n { buffer[j] = p[j] }
        buffered = n
    }

    public mutating func update<C: ContiguousBytes>(_ bytes: C) {
        bytes.withUnsafeBytes { update($0) }
    }

    public mutating func finalize() -> String {
        let bits = length &* 8
        var pad: [UInt8] = [0x80] + [UInt8](repeating: 0, count: (119 - buffered) % 64)
        for s in stride(from: 56, through: 0, by: -8) { pad.append(UInt8(truncatingIfNeeded: bits >> UInt64(s))) }
        let saved = length
        pad.withUnsafeBytes { update($0) }
        length = saved
        return h.map { w in
            let s = String(w, radix: 16)
            return String(repeating: "0", count: 8 - s.count) + s
        }.joined()
    }

    public static func hex<C: ContiguousBytes>(_ bytes: C) -> String {
        var s = SHA256()
        s.update(bytes)
        return s.finalize()
    }
}
