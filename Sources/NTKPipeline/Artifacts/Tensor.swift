import NTK

/// Element types an artifact tensor can hold, with their numpy `descr` (all little-endian). ntk writes float32,
/// float64, int32, int64 and uint8; it reads numpy's other real types too (bool, float16, int8/16, uint16/32/64) —
/// a user's arrays, `ntk dump` of any .npy — as the values they hold.
public enum DType: String, CaseIterable, Sendable {
    case float32, float64, int32, int64, uint8
    case bool, float16, int8, int16, uint16, uint32, uint64

    public var npyDescr: String {
        switch self {
        case .float32: "<f4"
        case .float64: "<f8"
        case .int32: "<i4"
        case .int64: "<i8"
        case .uint8: "|u1"
        case .bool: "|b1"
        case .float16: "<f2"
        case .int8: "|i1"
        case .int16: "<i2"
        case .uint16: "<u2"
        case .uint32: "<u4"
        case .uint64: "<u8"
        }
    }
    public var size: Int {
        switch self {
        case .float32, .int32, .uint32: 4
        case .float64, .int64, .uint64: 8
        case .uint8, .bool, .int8: 1
        case .float16, .int16, .uint16: 2
        }
    }
    /// numpy's descr, also the spellings without a byte-order mark for one-byte types ("u1", "<b1", …).
    public init?(npyDescr d: String) {
        let oneByte = ["u1": DType.uint8, "b1": .bool, "i1": .int8]
        if let t = DType.allCases.first(where: { $0.npyDescr == d }) { self = t; return }
        if d.count == 3, "<|=".contains(d.first!), let t = oneByte[String(d.dropFirst())] { self = t; return }
        if d.hasPrefix("="), let t = DType.allCases.first(where: { $0.npyDescr == "<" + d.dropFirst() }) { self = t; return }
        return nil
    }
    public var isFloat: Bool { self == .float32 || self == .float64 || self == .float16 }
}

/// One named n-d array: raw little-endian bytes in row-major (C) order, its dtype and shape.
/// This is the untyped currency of artifacts; typed artifacts convert to and from it.
public struct Tensor: Equatable, Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var bytes: [UInt8]

    public var count: Int { shape.reduce(1, *) }

    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        precondition(bytes.count == shape.reduce(1, *) * dtype.size, "tensor \(name): byte count does not match shape")
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    public init<T: NTKFloat>(name: String, shape: [Int], values: [T]) {
        precondition(values.count == shape.reduce(1, *), "tensor \(name): \(values.count) values for shape \(shape)")
        let dtype: DType = T.self == Float.self ? .float32 : .float64
        self.init(name: name, dtype: dtype, shape: shape, bytes: values.withUnsafeBytes { Array($0) })
    }

    public init(name: String, shape: [Int], int32 values: [Int32]) {
        self.init(name: name, dtype: .int32, shape: shape, bytes: values.withUnsafeBytes { Array($0) })
    }

    public init(name: String, shape: [Int], uint8 values: [UInt8]) {
        self.init(name: name, dtype: .uint8, shape: shape, bytes: values)
    }

    /// Values converted to float64 (any dtype).
    public func doubles() -> [Double] {
        bytes.withUnsafeBytes { raw -> [Double] in
            switch dtype {
            case .float64: return Array(raw.bindMemory(to: Double.self))
            case .float32: return raw.bindMemory(to: Float.self).map(Double.init)
            case .int32: return raw.bindMemory(to: Int32.self).map(Double.init)
            case .int64: return raw.bindMemory(to: Int64.self).map(Double.init)
            case .uint8, .bool: return raw.map(Double.init)
            case .float16: return raw.bindMemory(to: UInt16.self).map { Double(Float16(bitPattern: $0)) }
            case .int8: return raw.bindMemory(to: Int8.self).map(Double.init)
            case .int16: return raw.bindMemory(to: Int16.self).map(Double.init)
            case .uint16: return raw.bindMemory(to: UInt16.self).map(Double.init)
            case .uint32: return raw.bindMemory(to: UInt32.self).map { Double($0) }
            case .uint64: return raw.bindMemory(to: UInt64.self).map { Double($0) }   // not init(bitPattern:)
            }
        }
    }

    /// The first NaN or ±Inf of a float tensor (flat index and value), read in place; nil if none (or not float).
    public func firstNonFinite() -> (index: Int, value: Double)? {
        bytes.withUnsafeBytes { raw -> (index: Int, value: Double)? in
            switch dtype {
            case .float64: raw.bindMemory(to: Double.self).firstIndex { !$0.isFinite }.map { ($0, raw.bindMemory(to: Double.self)[$0]) }
            case .float32:
                raw.bindMemory(to: Float.self).firstIndex { !$0.isFinite }.map { ($0, Double(raw.bindMemory(to: Float.self)[$0])) }
            default: nil
            }
        }
    }

    /// Values as float32 (exact for float32 tensors, rounded from float64).
    public func floats() -> [Float] {
        if dtype == .float32 { return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
        return doubles().map(Float.init)
    }

    /// Values as integers (integer dtypes only).
    public func integers() -> [Int]? {
        bytes.withUnsafeBytes { raw -> [Int]? in
            switch dtype {
            case .int32: return raw.bindMemory(to: Int32.self).map(Int.init)
            case .int64: return raw.bindMemory(to: Int64.self).map(Int.init)
            case .uint8, .bool: return raw.map(Int.init)
            case .int8: return raw.bindMemory(to: Int8.self).map(Int.init)
            case .int16: return raw.bindMemory(to: Int16.self).map(Int.init)
            case .uint16: return raw.bindMemory(to: UInt16.self).map(Int.init)
            case .uint32: return raw.bindMemory(to: UInt32.self).map(Int.init)
            case .uint64: return raw.bindMemory(to: UInt64.self).map { Int(clamping: $0) }
            case .float32, .float64, .float16: return nil
            }
        }
    }
}
