import CNTK
import Foundation
import XCTest

/// The SHA-NI compression against the scalar reference (every block count 0…9 and 1000 blocks of seeded bytes), and
/// the dispatched one on FIPS 180-4's million-'a' message.
final class SHA256Tests: XCTestCase {
    let initial: [UInt32] = [
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
    ]

    func testSHANIEqualsTheScalarReference() throws {
        guard ntk_cpu_has_sha() != 0 else { throw XCTSkip("this CPU has no SHA extensions") }
        var x: UInt64 = 0x9e37_79b9_7f4a_7c15
        let bytes = (0..<64_000).map { _ -> UInt8 in
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(x >> 56)
        }
        for blocks in Array(0...9) + [1000] {
            var a = initial
            var b = initial
            ntk_sha256_blocks_scalar(&a, bytes, blocks)
            ntk_sha256_blocks_shani(&b, bytes, blocks)
            XCTAssertEqual(a, b, "\(blocks) blocks")
        }
    }

    func testMillionAs() {
        // 1,000,000 × 'a' = 15,625 blocks, then the padding block: 0x80, zeros, the bit length 8,000,000
        var h = initial
        ntk_sha256_blocks(&h, [UInt8](repeating: 0x61, count: 1_000_000), 15_625)
        var pad = [UInt8](repeating: 0, count: 64)
        pad[0] = 0x80
        for i in 0..<8 { pad[63 - i] = UInt8(truncatingIfNeeded: UInt64(8_000_000) >> (8 * UInt64(i))) }
        ntk_sha256_blocks(&h, pad, 1)
        XCTAssertEqual(
            h.map { String(format: "%08x", $0) }.joined(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
