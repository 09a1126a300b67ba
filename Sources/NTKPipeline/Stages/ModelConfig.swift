import NTK

/// `params.model`: the fully-connected network every model stage shares (finite networks, their kernels).
///
/// ```yaml
/// model: {depth: 3, width: 2048, activation: relu, w_std: 1.414, b_std: 0.05, parameterization: ntk}
/// ```
/// `widths: [512, 256]` may replace depth/width; `w_std`/`b_std` may be lists with one value per Dense layer
/// (L + 1, read-out last); `leaky_alpha` sets the leaky-relu slope. The number of outputs k comes from the data.
public struct ModelConfig: Equatable, Sendable {
    public var widths: [Int]
    public var activation: Activation
    public var wStd: [Double]
    public var bStd: [Double]
    public var parameterization: Parameterization

    public init(_ r: inout ConfigReader) throws {
        let depth = try r.int("depth", min: 0)
        let width = try r.int("width", min: 1)
        let list = try r.intList("widths")
        switch (list, depth, width) {
        case (let l?, nil, nil): widths = l
        case (nil, let d, let w): widths = Array(repeating: w ?? 1024, count: d ?? 1)
        default: throw r.fail("widths", "give either widths or depth/width, not both")
        }
        if let bad = widths.first(where: { $0 < 1 }) { throw r.fail("widths", "widths must be ≥ 1, found \(bad)") }
        let alpha = try r.double("leaky_alpha", default: 0.01)
        let name = try r.string("activation", default: "relu")!
        guard let act = Activation(name: name, alpha: alpha) else {
            throw r.fail("activation", "unknown activation \"\(name)\" (one of: \(Activation.names.joined(separator: ", ")))")
        }
        activation = act
        parameterization = try r.choice("parameterization", default: .ntk)
        let layers = widths.count + 1
        func perLayer(_ key: String, _ d: Double) throws -> [Double] {
            switch r.raw(key) {
            case nil: return Array(repeating: d, count: layers)
            case .int(let i)?: return Array(repeating: Double(i), count: layers)
            case .double(let x)?: return Array(repeating: x, count: layers)
            case .array(let a)?:
                let v = try a.map { e -> Double in
                    switch e {
                    case .int(let i): return Double(i)
                    case .double(let x): return x
                    default: throw r.fail(key, "expected numbers, found \(e.canonical)")
                    }
                }
                guard v.count == layers else {
                    throw r.fail(key, "needs one value per Dense layer (\(layers) = depth + 1, read-out last), found \(v.count)")
                }
                return v
            case let v?: throw r.fail(key, "expected a number or a list of numbers, found \(v.typeName)")
            }
        }
        wStd = try perLayer("w_std", 1.0)
        bStd = try perLayer("b_std", 0.0)
        if wStd.contains(where: { $0 < 0 }) || bStd.contains(where: { $0 < 0 }) { throw r.fail("w_std", "standard deviations must be ≥ 0") }
        try r.finish()
    }

    /// The network for inputs of dimension `inputDim` and `outputs` logits.
    public func spec(inputDim: Int, outputs: Int) -> NetworkSpec {
        NetworkSpec(inputDim: inputDim, widths: widths, outputs: outputs, activation: activation, wStd: wStd, bStd: bStd,
                    parameterization: parameterization)
    }
}

/// Parses "512M", "4G", "1.5GB" or a plain number of bytes.
func parseBytes(_ s: String) -> Int? {
    let t = s.trimmingCharacters(in: .whitespaces).uppercased().replacingOccurrences(of: "B", with: "")
    let units: [Character: Double] = ["K": 0x1p10, "M": 0x1p20, "G": 0x1p30, "T": 0x1p40]
    if let u = t.last, let m = units[u], let v = Double(t.dropLast()) { return Int(v * m) }
    return Int(t)
}

import Foundation
