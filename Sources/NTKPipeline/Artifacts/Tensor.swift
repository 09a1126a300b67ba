import NTK

/// Element types an artifact tensor can hold, with their numpy `descr` (all little-endian).
public enum DType: String, CaseIterable, Sendable {
    case float32, float64, int32, int64, uint8

    public var npyDescr: String {
        switch self {
        case .float32: "<f4"
        case .float64: "<f8"
        case .int32: "<i4"
        case .int64: "<i8"
        case .uint8: "|u1"
        }
    }
    public var size: Int {
        switch self {
        case .float32, .int32: 4
        case .float64, .int64: 8
        case .uint8: 1
        }
    }
    public init?(npyDescr d: String) {
        guard let t = DType.allCases.first(where: { $0.npyDescr == d || ($0 == .uint8 && (d == "<u1" || d == "u1")) })
        else { return nil }
        self = t
    }
    public var isFloat: Bool { self == .float32 || self == .float64 }
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
            case .uint8: return raw.map(Double.init)
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
            case .uint8: return raw.map(Int.init)
            case .float32, .float64: return nil
            }
        }
    }
}
