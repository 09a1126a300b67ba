import CZlib
import Foundation

/// zlib in the three forms ntk needs: gzip files (data sets), raw deflate (zip members of artifacts),
/// and CRC-32 (zip checksums). Lengths beyond 4 GiB are fed to zlib in chunks.
public enum Compression {
    /// Called with (bytes done, bytes total) while long work runs.
    public typealias Progress = (Int, Int) -> Void

    /// The decompressed content of a file that may be gzipped (detected by its magic 1f 8b; a plain file is
    /// returned as is). Fails, naming the file, on a truncated stream, a bad CRC or corrupt data.
    public static func readMaybeGzip(_ path: String, progress: Progress? = nil) throws -> [UInt8] {
        let raw = try Files.read(path)
        guard raw.count >= 2, raw[0] == 0x1f, raw[1] == 0x8b else { return raw }
        do { return try gunzip(raw, progress: progress) } catch let e as NTKError { throw e.located(path) }
    }

    /// Inflates one or more concatenated gzip members.
    public static func gunzip(_ input: [UInt8], progress: Progress? = nil) throws -> [UInt8] {
        // The gzip trailer holds the uncompressed size mod 2^32: a good first guess for the buffer when it
        // is plausible (deflate cannot expand more than ~1032:1; a damaged trailer must not cost gigabytes).
        var capacity = max(1 << 16, input.count * 4)
        if input.count >= 18 {
            let n = input.count
            let isize = Int(input[n - 4]) | Int(input[n - 3]) << 8 | Int(input[n - 2]) << 16 | Int(input[n - 1]) << 24
            if isize > 0 && isize <= 1032 * n { capacity = isize + 1 }
        }
        // A malloc'ed buffer: pages are only touched as data arrives.
        var out = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        defer { out.deallocate() }
        var produced = 0
        var consumed = 0
        try input.withUnsafeBufferPointer { inBuf in
            while consumed < input.count {
                // Skip zero padding after the last member (some tools append it).
                if input[consumed...].allSatisfy({ $0 == 0 }) { break }
                // Another member must start with the gzip magic; anything else is junk after the stream.
                if consumed > 0, consumed + 1 >= input.count || input[consumed] != 0x1f || input[consumed + 1] != 0x8b {
                    throw NTKError("\(input.count - consumed) bytes of trailing data after the gzip stream "
                                   + "(they are not another gzip member)")
                }
                var s = z_stream()
                guard CZlib_inflateInitAuto(&s) == Z_OK else { throw NTKError("zlib inflateInit failed") }
                defer { inflateEnd(&s) }
                var status = Z_OK
                while status != Z_STREAM_END {
                    if produced == capacity {
                        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: 2 * capacity)
                        bigger.update(from: out, count: produced)
                        out.deallocate()
                        out = bigger
                        capacity *= 2
                    }
                    let inChunk = min(input.count - consumed, 1 << 30)
                    let outChunk = min(capacity - produced, 1 << 30)
                    s.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress! + consumed)
                    s.avail_in = uInt(inChunk)
                    s.next_out = out + produced
                    s.avail_out = uInt(outChunk)
                    status = inflate(&s, Z_NO_FLUSH)
                    consumed += inChunk - Int(s.avail_in)
                    produced += outChunk - Int(s.avail_out)
                    progress?(consumed, input.count)
                    switch status {
                    case Z_OK, Z_STREAM_END: continue
                    case Z_BUF_ERROR:
                        if consumed >= input.count {
                            throw NTKError("truncated gzip stream (the file ends after \(input.count) bytes, before the end of the compressed data)")
                        }
                    case Z_DATA_ERROR:
                        let msg = s.msg.map { String(cString: $0) } ?? "data error"
                        if msg == "incorrect data check" || msg == "incorrect length check" {
                            let what = msg.contains("data") ? "CRC-32 mismatch" : "length mismatch"
                            throw NTKError("corrupt gzip file: \(msg) (\(what): the data was damaged)")
                        }
                        throw NTKError("corrupt gzip data (\(msg))")
                    default:
                        throw NTKError("zlib error \(status) while decompressing")
                    }
                }
            }
        }
        return Array(UnsafeBufferPointer(start: out, count: produced))
    }

    /// Raw deflate (zip method 8) at `level` 1…9.
    public static func deflateRaw(_ input: UnsafeRawBufferPointer, level: Int) throws -> [UInt8] {
        var s = z_stream()
        guard CZlib_deflateInitRaw(&s, Int32(level)) == Z_OK else { throw NTKError("zlib deflateInit failed") }
        defer { deflateEnd(&s) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&s, uLong(min(input.count, 1 << 30)))) + 64)
        var produced = 0
        var consumed = 0
        var status = Z_OK
        while status != Z_STREAM_END {
            let inChunk = min(input.count - consumed, 1 << 30)
            let flush = consumed + inChunk == input.count ? Z_FINISH : Z_NO_FLUSH
            s.next_in = UnsafeMutablePointer(mutating: input.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + consumed })
            s.avail_in = uInt(inChunk)
            repeat {
                if out.count - produced < 1 << 16 { out.append(contentsOf: repeatElement(0, count: max(out.count / 2, 1 << 16))) }
                let outChunk = min(out.count - produced, 1 << 30)
                status = out.withUnsafeMutableBufferPointer { ob in
                    s.next_out = ob.baseAddress! + produced
                    s.avail_out = uInt(outChunk)
                    return deflate(&s, flush)
                }
                produced += outChunk - Int(s.avail_out)
                guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                    throw NTKError("zlib deflate error \(status)")
                }
            } while s.avail_in > 0 || (flush == Z_FINISH && status != Z_STREAM_END)
            consumed += inChunk
        }
        out.removeLast(out.count - produced)
        return out
    }

    /// Inflates raw deflate data whose uncompressed size is known (zip members). With `strict`, the stream
    /// must also use every input byte and end with zero padding bits (as zlib writes it), so that even a
    /// flipped padding bit — which a decoder ignores — is reported.
    public static func inflateRaw(_ input: UnsafeRawBufferPointer, size: Int, strict: Bool = false) throws -> [UInt8] {
        var s = z_stream()
        guard CZlib_inflateInitRaw(&s) == Z_OK else { throw NTKError("zlib inflateInit failed") }
        defer { inflateEnd(&s) }
        var out = [UInt8](repeating: 0, count: size)
        var produced = 0
        var consumed = 0
        var status = Z_OK
        var paddingChecked = !strict
        try out.withUnsafeMutableBufferPointer { ob in
            while status != Z_STREAM_END {
                let inChunk = min(input.count - consumed, 1 << 30)
                let outChunk = min(size - produced, 1 << 30)
                s.next_in = UnsafeMutablePointer(mutating: input.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + consumed })
                s.avail_in = uInt(inChunk)
                s.next_out = ob.baseAddress.map { $0 + produced }
                s.avail_out = uInt(outChunk)
                // Z_BLOCK stops at each block boundary; after the last block (data_type has 64 + 128) the low
                // three bits of data_type count the unused bits of the last byte read: they must be zero.
                status = inflate(&s, strict ? Z_BLOCK : Z_NO_FLUSH)
                consumed += inChunk - Int(s.avail_in)
                produced += outChunk - Int(s.avail_out)
                if strict, !paddingChecked, s.data_type & 192 == 192 {
                    paddingChecked = true
                    let unused = Int(s.data_type & 7)
                    let last = input.load(fromByteOffset: consumed - 1, as: UInt8.self)
                    if unused > 0, last >> (8 - unused) != 0 { throw NTKError("nonzero padding bits at the end of the compressed data") }
                }
                if status == Z_STREAM_END { break }
                if status == Z_BUF_ERROR && (consumed >= input.count || produced >= size) {
                    throw NTKError("compressed data ends early or is longer than its declared size")
                }
                if status != Z_OK && status != Z_BUF_ERROR {
                    throw NTKError("corrupt compressed data (\(s.msg.map { String(cString: $0) } ?? "zlib error \(status)"))")
                }
            }
        }
        guard produced == size else { throw NTKError("decompressed \(produced) bytes, expected \(size)") }
        if strict && consumed != input.count { throw NTKError("\(input.count - consumed) stray bytes after the compressed data") }
        return out
    }

    /// CRC-32 (the zip/gzip polynomial).
    public static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = CZlib.crc32(0, nil, 0)
        var done = 0
        while done < bytes.count {
            let n = min(bytes.count - done, 1 << 30)
            c = CZlib.crc32(c, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + done, uInt(n))
            done += n
        }
        return UInt32(c)
    }
}
