/// The numpy `.npy` format, version 1.0 (and 2.0/3.0 when reading):
/// magic "\x93NUMPY", major, minor, header length (u16 LE; u32 in v2+), then a Python-literal dict
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }` padded with spaces to a multiple of 64
/// bytes and ended by "\n", then the raw data in C order (or in Fortran order, when the header says so).
public enum NPY {
    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    /// The header bytes for a tensor (what precedes its raw data in a `.npy` member). `fortranOrder`: the data that
    /// follows is column-major (numpy reads it as such; a column-major local matrix is written without a copy).
    public static func header(dtype: DType, shape: [Int], fortranOrder: Bool = false) -> [UInt8] {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        let order = fortranOrder ? "True" : "False"
        var dict = "{'descr': '\(dtype.npyDescr)', 'fortran_order': \(order), 'shape': (\(dims)), }"
        let total = magic.count + 2 + 2 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        let n = dict.utf8.count
        precondition(n < 65536)
        return magic + [1, 0, UInt8(n & 0xff), UInt8(n >> 8)] + Array(dict.utf8)
    }

    /// A parsed header: dtype, shape, whether the data is column-major, where the data starts, and its size.
    public struct Header {
        public var dtype: DType, shape: [Int], fortranOrder: Bool, dataStart: Int, dataBytes: Int
    }

    /// Parses the header at the start of `b` (which may hold only the header, or the whole file). Checks the magic,
    /// the dtype (little-endian numeric only) and the shape.
    public static func parseHeader(_ b: [UInt8], name: String) throws -> Header {
        guard b.count >= 10, Array(b[0..<6]) == magic else { throw NTKError("not a .npy array (bad magic)", key: name) }
        let major = b[6]
        let (hlen, start): (Int, Int) =
            major == 1 ? (Int(b[8]) | Int(b[9]) << 8, 10)
            : (b.count >= 12 ? (Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24, 12) : (-1, 0))
        guard hlen >= 0, start + hlen <= b.count else { throw NTKError(".npy header is truncated", key: name) }
        let dict = String(decoding: b[start..<start + hlen], as: UTF8.self)
        guard let descr = field(dict, "descr"), let dtype = DType(npyDescr: descr) else {
            let descr = field(dict, "descr") ?? "?"
            let what = descr.contains("c") ? "complex" : descr.hasPrefix(">") ? "big-endian" : descr.contains("U") || descr.contains("S")
                ? "string" : descr.contains("O") ? "object" : "unsupported"
            throw NTKError("\(what) dtype \(descr) is not supported (supported, little-endian: "
                           + DType.allCases.map(\.rawValue).joined(separator: ", ") + ")", key: name)
        }
        guard let shapeText = field(dict, "shape") else { throw NTKError(".npy header has no shape", key: name) }
        var shape: [Int] = [], expected = dtype.size
        var parts = shapeText.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.last == "" { parts.removeLast() }   // () is a scalar, (n,) a 1-tuple
        for text in parts {
            guard let d = Int(text), d >= 0 else {
                throw NTKError(".npy header's shape (\(shapeText)) is not a tuple of non-negative integers", key: name)
            }
            let (product, overflow) = expected.multipliedReportingOverflow(by: d)
            guard !overflow else { throw NTKError(".npy header's shape (\(shapeText)) is too large", key: name) }
            shape.append(d)
            expected = product
        }
        return Header(dtype: dtype, shape: shape, fortranOrder: field(dict, "fortran_order") == "True",
                      dataStart: start + hlen, dataBytes: expected)
    }

    /// Parses a `.npy` file's bytes into a tensor (in C order: a Fortran-ordered array is transposed into it),
    /// checking that the data length equals the product of the shape times the element size.
    public static func parse(_ b: [UInt8], name: String) throws -> Tensor {
        let h = try parseHeader(b, name: name)
        guard b.count - h.dataStart == h.dataBytes else {
            throw NTKError("data is \(b.count - h.dataStart) bytes but shape \(h.shape) of \(h.dtype.rawValue) needs "
                           + "\(h.dataBytes)", key: name)
        }
        let data = Array(b[h.dataStart...])
        guard h.fortranOrder, h.shape.count > 1 else {
            return Tensor(name: name, dtype: h.dtype, shape: h.shape, bytes: data)
        }
        // column-major → row-major: element at C index (i₀ … i_{d−1}) sits at Σ i_k·Π_{j<k} n_j
        let size = h.dtype.size, count = h.dataBytes / max(size, 1), dims = h.shape
        var out = [UInt8](repeating: 0, count: data.count)
        var index = [Int](repeating: 0, count: dims.count)
        var strides = [Int](repeating: 1, count: dims.count)
        for k in 1..<dims.count { strides[k] = strides[k - 1] * dims[k - 1] }
        for c in 0..<count {
            let f = zip(index, strides).reduce(0) { $0 + $1.0 * $1.1 }
            for b in 0..<size { out[c * size + b] = data[f * size + b] }
            var k = dims.count - 1
            while k >= 0 {
                index[k] += 1
                if index[k] < dims[k] { break }
                index[k] = 0
                k -= 1
            }
        }
        return Tensor(name: name, dtype: h.dtype, shape: h.shape, bytes: out)
    }

    /// Extracts the value of `'key': value` from the header dict (string, bool or tuple).
    private static func field(_ dict: String, _ key: String) -> String? {
        guard let r = dict.range(of: "'\(key)':") else { return nil }
        let rest = dict[r.upperBound...].drop(while: { $0 == " " })
        if rest.first == "'" {
            return String(rest.dropFirst().prefix(while: { $0 != "'" }))
        }
        if rest.first == "(" {
            return String(rest.dropFirst().prefix(while: { $0 != ")" }))
        }
        return String(rest.prefix(while: { $0 != "," && $0 != "}" })).trimmingCharacters(in: .whitespaces)
    }
}

import Foundation
