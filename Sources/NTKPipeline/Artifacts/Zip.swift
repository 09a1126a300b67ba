/// The zip container of `.npz` files (PKWARE APPNOTE 6.3): local header + data per member, then the
/// central directory and the end record; zip64 records when a size or offset reaches 4 GiB.
///
/// Our writer is fully deterministic (fixed 1980-01-01 timestamps, fixed version fields), so every header
/// byte of an artifact we wrote is a function of the member names, methods, CRCs and sizes. `read(strict:)`
/// uses that: it regenerates every header and requires the file's bytes to equal them, so a flipped bit
/// anywhere — data (CRC-32), headers or directory — is detected.
enum Zip {
    enum Method: UInt16 { case stored = 0, deflated = 8 }

    struct Entry: Equatable {
        var name: String
        var method: Method
        var crc: UInt32
        var compressedSize: Int
        var size: Int
        var offset: Int
    }

    static let limit32 = 0xFFFF_FFFF
    static let dosDate: UInt16 = 0x21  // 1980-01-01
    static let eocdSize = 22

    // MARK: Writing

    /// Streams members to a `write` function: each member's payload follows its local header; `offset`
    /// counts the bytes written so far (the next member's offset).
    struct Writer {
        private(set) var entries: [Entry] = []
        private(set) var offset = 0

        /// Adds one member; `level` 0 stores it, 1…9 deflates it.
        /// Members over 1 MiB whose first MiB does not deflate to under 90 % are stored instead (kernel matrices
        /// of doubles barely compress, and deflating them would cost more than writing them).
        mutating func add(name: String, data: [UInt8], level: Int, to write: (UnsafeRawBufferPointer) throws -> Void) throws {
            let crc = data.withUnsafeBytes { Compression.crc32($0) }
            var level = level
            if level > 0 && data.count > 1 << 20 {
                let probe = try data.withUnsafeBytes { try Compression.deflateRaw(UnsafeRawBufferPointer(rebasing: $0[0..<1 << 20]), level: level) }
                if probe.count > (1 << 20) * 9 / 10 { level = 0 }
            }
            let payload = level == 0 ? data : try data.withUnsafeBytes { try Compression.deflateRaw($0, level: level) }
            let e = Entry(name: name, method: level == 0 ? .stored : .deflated, crc: crc,
                          compressedSize: payload.count, size: data.count, offset: offset)
            let header = Zip.localHeader(e)
            try header.withUnsafeBytes(write)
            try payload.withUnsafeBytes(write)
            offset += header.count + payload.count
            entries.append(e)
        }

        /// Writes the central directory and end records.
        func finish(to write: (UnsafeRawBufferPointer) throws -> Void) throws {
            try Zip.directory(entries, at: offset).withUnsafeBytes(write)
        }
    }

    static func needsZip64(_ e: Entry) -> Bool {
        e.size >= limit32 || e.compressedSize >= limit32 || e.offset >= limit32
    }

    static func localHeader(_ e: Entry) -> [UInt8] {
        var b = Bytes()
        let z64 = needsZip64(e)
        b.u32(0x0403_4b50)
        b.u16(z64 ? 45 : 20)  // version needed
        b.u16(0)  // flags
        b.u16(e.method.rawValue)
        b.u16(0)  // time
        b.u16(dosDate)
        b.u32(e.crc)
        b.u32(z64 ? UInt32(limit32) : UInt32(e.compressedSize))
        b.u32(z64 ? UInt32(limit32) : UInt32(e.size))
        b.u16(UInt16(e.name.utf8.count))
        b.u16(z64 ? 20 : 0)
        b.raw(Array(e.name.utf8))
        if z64 {
            b.u16(1); b.u16(16); b.u64(e.size); b.u64(e.compressedSize)
        }
        return b.bytes
    }

    /// Central directory + (zip64 end record + locator if needed) + end record.
    static func directory(_ entries: [Entry], at cdOffset: Int) -> [UInt8] {
        var b = Bytes()
        for e in entries {
            let z64 = needsZip64(e)
            b.u32(0x0201_4b50)
            b.u16(z64 ? 45 : 20)  // version made by
            b.u16(z64 ? 45 : 20)  // version needed
            b.u16(0)
            b.u16(e.method.rawValue)
            b.u16(0)
            b.u16(dosDate)
            b.u32(e.crc)
            b.u32(z64 ? UInt32(limit32) : UInt32(e.compressedSize))
            b.u32(z64 ? UInt32(limit32) : UInt32(e.size))
            b.u16(UInt16(e.name.utf8.count))
            b.u16(z64 ? 28 : 0)
            b.u16(0)  // comment
            b.u16(0)  // disk
            b.u16(0)  // internal attributes
            b.u32(0)  // external attributes
            b.u32(z64 ? UInt32(limit32) : UInt32(e.offset))
            b.raw(Array(e.name.utf8))
            if z64 {
                b.u16(1); b.u16(24); b.u64(e.size); b.u64(e.compressedSize); b.u64(e.offset)
            }
        }
        let cdSize = b.bytes.count
        let z64 = entries.count >= 0xFFFF || cdOffset >= limit32 || cdSize >= limit32
        if z64 {
            let recordOffset = cdOffset + cdSize
            b.u32(0x0606_4b50); b.u64(44); b.u16(45); b.u16(45); b.u32(0); b.u32(0)
            b.u64(entries.count); b.u64(entries.count); b.u64(cdSize); b.u64(cdOffset)
            b.u32(0x0706_4b50); b.u32(0); b.u64(recordOffset); b.u32(1)
        }
        b.u32(0x0605_4b50)
        b.u16(0); b.u16(0)
        b.u16(z64 ? 0xFFFF : UInt16(entries.count))
        b.u16(z64 ? 0xFFFF : UInt16(entries.count))
        b.u32(z64 ? UInt32(limit32) : UInt32(cdSize))
        b.u32(z64 ? UInt32(limit32) : UInt32(cdOffset))
        b.u16(0)
        return b.bytes
    }

    // MARK: Reading

    /// Lists the members of a zip file held in memory. With `strict`, also requires every header byte to
    /// be what our writer produces for these members (see the type's comment).
    static func entries(_ f: [UInt8], strict: Bool) throws -> [Entry] {
        guard f.count >= eocdSize else { throw NTKError("not a zip/npz file (only \(f.count) bytes; truncated?)") }
        // The end record is in the last 64 KiB + 22 bytes (comment ≤ 65535).
        var eocd = -1
        var i = f.count - eocdSize
        let lowest = max(0, f.count - eocdSize - 65535)
        while i >= lowest {
            if f[i] == 0x50, f[i + 1] == 0x4b, f[i + 2] == 0x05, f[i + 3] == 0x06 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw NTKError("not a zip/npz file, or truncated (no end-of-central-directory record)") }
        var count = Int(le16(f, eocd + 10))
        var cdSize = Int(le32(f, eocd + 12))
        var cdOffset = Int(le32(f, eocd + 16))
        if count == 0xFFFF || cdSize == limit32 || cdOffset == limit32 {
            let loc = eocd - 20
            guard loc >= 0, le32(f, loc) == 0x0706_4b50 else { throw NTKError("zip64 locator missing (corrupt file)") }
            let rec = int64(f, loc + 8)
            guard rec <= f.count - 56, le32(f, rec) == 0x0606_4b50 else {
                throw NTKError("zip64 end record missing (corrupt file)")
            }
            count = int64(f, rec + 32)
            cdSize = int64(f, rec + 40)
            cdOffset = int64(f, rec + 48)
        }
        guard cdOffset <= eocd, cdSize <= eocd - cdOffset else {
            throw NTKError("central directory lies outside the file (truncated or corrupt)")
        }
        var out: [Entry] = []
        var p = cdOffset
        for _ in 0..<count {
            guard p + 46 <= cdOffset + cdSize, le32(f, p) == 0x0201_4b50 else { throw NTKError("corrupt central directory") }
            guard let method = Method(rawValue: le16(f, p + 10)) else {
                throw NTKError("member uses unsupported compression method \(le16(f, p + 10)) (only stored and deflate)")
            }
            let nameLen = Int(le16(f, p + 28)), extraLen = Int(le16(f, p + 30)), commentLen = Int(le16(f, p + 32))
            guard p + 46 + nameLen + extraLen + commentLen <= cdOffset + cdSize else { throw NTKError("corrupt central directory") }
            let name = String(decoding: f[p + 46..<p + 46 + nameLen], as: UTF8.self)
            var e = Entry(name: name, method: method, crc: le32(f, p + 16), compressedSize: Int(le32(f, p + 20)),
                          size: Int(le32(f, p + 24)), offset: Int(le32(f, p + 42)))
            // zip64 extra field: the 64-bit values of whichever fields are 0xFFFFFFFF, in this order.
            var x = p + 46 + nameLen
            let xEnd = x + extraLen
            while x + 4 <= xEnd {
                let id = le16(f, x), len = Int(le16(f, x + 2))
                if id == 1 {
                    var q = x + 4
                    if e.size == limit32, q + 8 <= xEnd { e.size = int64(f, q); q += 8 }
                    if e.compressedSize == limit32, q + 8 <= xEnd { e.compressedSize = int64(f, q); q += 8 }
                    if e.offset == limit32, q + 8 <= xEnd { e.offset = int64(f, q) }
                }
                x += 4 + len
            }
            // Sizes and offsets come from the file: bound them before any arithmetic or allocation. Deflate
            // expands at most 1032:1, so a member claiming more is corrupt (a 100-byte file cannot ask for 4 GiB).
            guard e.offset <= f.count, e.compressedSize <= f.count - e.offset else {
                throw NTKError("member '\(name)' claims \(e.compressedSize) bytes at offset \(e.offset), "
                               + "beyond the file's \(f.count) bytes (truncated or corrupt)")
            }
            guard e.method == .stored ? e.size == e.compressedSize : e.size <= e.compressedSize * 1032 + 64 else {
                throw NTKError("member '\(name)' claims \(e.size) bytes from \(e.compressedSize) "
                               + (e.method == .stored ? "stored bytes"
                                  : "deflated bytes, more than deflate can expand to")
                               + " (corrupt)")
            }
            out.append(e)
            p += 46 + nameLen + extraLen + commentLen
        }
        if strict {
            for e in out {
                let h = localHeader(e)
                guard e.offset + h.count <= f.count, Array(f[e.offset..<e.offset + h.count]) == h else {
                    throw NTKError("local header of member '\(e.name)' is damaged")
                }
            }
            let expectedCD = directory(out, at: cdOffset)
            guard cdOffset + expectedCD.count == f.count, Array(f[cdOffset...]) == expectedCD else {
                throw NTKError("central directory is damaged or the file has extra bytes")
            }
            var end = 0
            for e in out {
                guard e.offset == end else { throw NTKError("member '\(e.name)' is not where the directory says") }
                end = e.offset + localHeader(e).count + e.compressedSize
            }
            guard end == cdOffset else { throw NTKError("members and directory do not line up (damaged file)") }
        }
        return out
    }

    /// The uncompressed, CRC-checked bytes of one member (`strict`: see `Compression.inflateRaw`).
    static func extract(_ f: [UInt8], _ e: Entry, strict: Bool = false) throws -> [UInt8] {
        guard e.offset + 30 <= f.count, le32(f, e.offset) == 0x0403_4b50 else {
            throw NTKError("member '\(e.name)': local header missing (truncated or corrupt)")
        }
        let start = e.offset + 30 + Int(le16(f, e.offset + 26)) + Int(le16(f, e.offset + 28))
        guard start + e.compressedSize <= f.count else { throw NTKError("member '\(e.name)' is truncated") }
        let data: [UInt8]
        do {
            data = try f.withUnsafeBytes { raw -> [UInt8] in
                let slice = UnsafeRawBufferPointer(rebasing: raw[start..<start + e.compressedSize])
                switch e.method {
                case .stored:
                    guard e.compressedSize == e.size else { throw NTKError("stored sizes disagree") }
                    return Array(slice)
                case .deflated: return try Compression.inflateRaw(slice, size: e.size, strict: strict)
                }
            }
        } catch let err as NTKError {
            throw NTKError("member '\(e.name)': \(err.problem)")
        }
        let crc = data.withUnsafeBytes { Compression.crc32($0) }
        guard crc == e.crc else {
            throw NTKError("member '\(e.name)': CRC-32 mismatch (stored \(hex(e.crc)), computed \(hex(crc))): the file is corrupt")
        }
        return data
    }

    private static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
    static func le16(_ f: [UInt8], _ i: Int) -> UInt16 { UInt16(f[i]) | UInt16(f[i + 1]) << 8 }
    static func le32(_ f: [UInt8], _ i: Int) -> UInt32 { UInt32(le16(f, i)) | UInt32(le16(f, i + 2)) << 16 }
    static func le64(_ f: [UInt8], _ i: Int) -> UInt64 { UInt64(le32(f, i)) | UInt64(le32(f, i + 4)) << 32 }
    /// A 64-bit size or offset from the file as an Int, values past Int.max clamped (callers bound them by the
    /// file's size).
    static func int64(_ f: [UInt8], _ i: Int) -> Int { Int(clamping: le64(f, i)) }
}

/// A little-endian byte builder.
struct Bytes {
    var bytes: [UInt8] = []
    mutating func u16(_ v: UInt16) { bytes += [UInt8(v & 0xff), UInt8(v >> 8)] }
    mutating func u32(_ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func u64(_ v: Int) { for s in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: UInt64(v) >> UInt64(s))) } }
    mutating func raw(_ v: [UInt8]) { bytes += v }
}
