internal import CNTK

/// A point-wise activation φ (neural-tangents' stax names). `relu`, `leakyRelu`, `abs`, `erf` and
/// `identity` have closed-form infinite-width kernels; the others are integrated by Gauss–Hermite quadrature.
public enum Activation: Equatable, Sendable, CustomStringConvertible {
    case identity, relu, leakyRelu(Double), abs, erf, tanh, gelu, softplus

    public init?(name: String, alpha: Double = 0.01) {
        switch name {
        case "identity": self = .identity
        case "relu": self = .relu
        case "leaky_relu": self = .leakyRelu(alpha)
        case "abs": self = .abs
        case "erf": self = .erf
        case "tanh": self = .tanh
        case "gelu": self = .gelu
        case "softplus": self = .softplus
        default: return nil
        }
    }

    public static let names = ["identity", "relu", "leaky_relu", "abs", "erf", "tanh", "gelu", "softplus"]

    /// The name in the layer grammar (`leaky_relu` without its slope).
    public var name: String {
        if case .leakyRelu = self { return "leaky_relu" }
        return description
    }

    public var description: String {
        switch self {
        case .identity: "identity"
        case .relu: "relu"
        case .leakyRelu(let a): "leaky_relu(\(a))"
        case .abs: "abs"
        case .erf: "erf"
        case .tanh: "tanh"
        case .gelu: "gelu"
        case .softplus: "softplus"
        }
    }

    var c: (ntk_activation, Double) {
        switch self {
        case .identity: (NTK_ACT_IDENTITY, 0)
        case .relu: (NTK_ACT_RELU, 0)
        case .leakyRelu(let a): (NTK_ACT_LEAKY_RELU, a)
        case .abs: (NTK_ACT_ABS, 0)
        case .erf: (NTK_ACT_ERF, 0)
        case .tanh: (NTK_ACT_TANH, 0)
        case .gelu: (NTK_ACT_GELU, 0)
        case .softplus: (NTK_ACT_SOFTPLUS, 0)
        }
    }

    /// (a, b) of φ(x) = a·min(x,0) + b·max(x,0) for the arc-cosine family; nil otherwise.
    var arcCosine: (a: Double, b: Double)? {
        switch self {
        case .relu: (0, 1)
        case .leakyRelu(let alpha): (alpha, 1)
        case .abs: (-1, 1)
        case .identity: (1, 1)
        default: nil
        }
    }

    /// Whether the infinite-width kernels have a closed form (else they are integrated by quadrature).
    public var hasClosedFormKernel: Bool { arcCosine != nil || self == .erf || self == .gelu }

    /// φ(x) and φ'(x) (the C reference definitions).
    public func evaluate(_ x: Double) -> (value: Double, derivative: Double) {
        var f = 0.0, d = 0.0
        ntk_activation_scalar(c.0, c.1, x, &f, &d)
        return (f, d)
    }
}

/// How weights enter a Dense layer (neural-tangents' `stax.Dense`):
/// - `ntk`: z = (W_std/√fan_in)·x·W + b_std·b with W, b ~ N(0, 1);
/// - `standard`: z = x·W + b with W ~ N(0, W_std²/fan_in), b ~ N(0, b_std²).
public enum Parameterization: String, CaseIterable, Sendable { case ntk, standard }

/// A fully-connected network: input dimension, hidden widths n₁…n_L, `outputs` k, one activation after each
/// hidden layer, none on the read-out; W_std and b_std per Dense layer (L+1 values, read-out last;
/// b_std = 0 means no bias).
public struct NetworkSpec: Equatable, Sendable {
    public var inputDim: Int
    public var widths: [Int]
    public var outputs: Int
    public var activation: Activation
    public var wStd: [Double]
    public var bStd: [Double]
    public var parameterization: Parameterization

    public init(inputDim: Int, widths: [Int], outputs: Int, activation: Activation, wStd: [Double], bStd: [Double],
                parameterization: Parameterization = .ntk) {
        precondition(wStd.count == widths.count + 1 && bStd.count == widths.count + 1, "one W_std and b_std per Dense layer")
        self.inputDim = inputDim
        self.widths = widths
        self.outputs = outputs
        self.activation = activation
        self.wStd = wStd
        self.bStd = bStd
        self.parameterization = parameterization
    }

    /// The same W_std and b_std for every layer.
    public init(inputDim: Int, widths: [Int], outputs: Int, activation: Activation, wStd: Double, bStd: Double,
                parameterization: Parameterization = .ntk) {
        self.init(inputDim: inputDim, widths: widths, outputs: outputs, activation: activation,
                  wStd: Array(repeating: wStd, count: widths.count + 1), bStd: Array(repeating: bStd, count: widths.count + 1),
                  parameterization: parameterization)
    }

    /// L, the number of hidden layers.
    public var depth: Int { widths.count }
    /// Fan-in of Dense layer l (0-based): the input dimension, then the hidden widths.
    public func fanIn(_ l: Int) -> Int { l == 0 ? inputDim : widths[l - 1] }
}
