/// The layers a network is built from — the grammar of neural-tangents' stax as the reference harness takes it
/// (`layers` in pipeline.yaml and in `peers/reference.py`), applied in order to one sample at a time:
///
///     dense(out)          z = s_w·h·W + s_b·b over the last axis: a vector [d], W [d, out], b [out]; on an image,
///                         the channels at every position (a 1×1 conv, W stored [1, 1, C, out])
///     conv(channels, …)   z[i,j,o] = s_w·Σ_{a,b,c} h_pad[i·sh + a, j·sw + b, c]·W[a,b,c,o] + s_b·b[o]  (HWIO W)
///     avg_pool(window, …) window means (padding as for conv; divisor ph·pw, or the real pixels with normalize_edges)
///     global_avg_pool     mean over all positions: [H, W, C] → [C]
///     flatten             [H, W, C] → [H·W·C], row-major (feature (i·W + j)·C + c)
///     layer_norm          at each position over the channels: (h − μ)/√(eps + σ²), no gain or bias
///     activation φ        element-wise (relu, leaky_relu, abs, identity, erf, tanh, gelu, softplus)
///     residual(branch)    y = h + branch(h) (the branch keeps the shape)
///
/// with s_w = W_std/√fan_in, s_b = b_std (NTK parameterization; fan_in = C_in·kh·kw for conv) or s_w = s_b = 1
/// (standard, where W_std and b_std are in the initialisation). A dense or conv layer with b_std = 0 has no bias.
public indirect enum Layer: Equatable, Sendable {
    case dense(out: Int, wStd: Double, bStd: Double)
    case conv(channels: Int, filter: [Int], strides: [Int], padding: Padding, wStd: Double, bStd: Double)
    case avgPool(window: [Int], strides: [Int], padding: Padding, normalizeEdges: Bool)
    case globalAvgPool
    case flatten
    case layerNorm(eps: Double)
    case activation(Activation)
    case residual([Layer])

    /// The name in the grammar.
    public var kind: String {
        switch self {
        case .dense: "dense"
        case .conv: "conv"
        case .avgPool: "avg_pool"
        case .globalAvgPool: "global_avg_pool"
        case .flatten: "flatten"
        case .layerNorm: "layer_norm"
        case .activation(let a): a.name
        case .residual: "residual"
        }
    }

    /// Whether the layer has parameters (W and possibly b).
    public var hasParameters: Bool {
        switch self {
        case .dense, .conv: true
        default: false
        }
    }
}

/// How a window treats the border (XLA's rules): `VALID` no padding, output ⌊(n − k)/s⌋ + 1; `SAME` output ⌈n/s⌉
/// with P = max((⌈n/s⌉ − 1)·s + k − n, 0) zeros, ⌊P/2⌋ before; `CIRCULAR` the sizes of SAME, wrapped around.
public enum Padding: String, CaseIterable, Sendable { case valid = "VALID", same = "SAME", circular = "CIRCULAR" }

/// A window over an image [h, w, c] → [oh, ow, ·] (conv filter or pooling window): size kh × kw, strides sh, sw,
/// padH, padW zeros (or wrapped pixels when `circular`) before the first row and column.
public struct Window: Equatable, Sendable {
    public var h, w, c, kh, kw, sh, sw, padH, padW, oh, ow: Int
    public var circular: Bool
    public var positions: Int { oh * ow }
    /// Whether the window is the identity map on positions (1×1, stride 1): conv then reads its input as it is.
    public var isPointwise: Bool { kh == 1 && kw == 1 && sh == 1 && sw == 1 }
    /// kh·kw·c: one row of im2col.
    public var patch: Int { kh * kw * c }
}

/// The shape of one sample: positions (`spatial`, empty for a vector) and channels, NHWC without the N.
public struct Shape: Equatable, Sendable, CustomStringConvertible {
    public var spatial: [Int]
    public var channels: Int
    public init(spatial: [Int] = [], channels: Int) { self.spatial = spatial; self.channels = channels }
    /// A vector [d].
    public static func vector(_ d: Int) -> Shape { Shape(channels: d) }
    public var isImage: Bool { !spatial.isEmpty }
    public var positions: Int { spatial.reduce(1, *) }
    /// Elements per sample.
    public var count: Int { positions * channels }
    /// [H, W, C] or [d].
    public var dims: [Int] { spatial + [channels] }
    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }
}

extension NetworkSpec {
    /// The fully-connected network as a list of layers: [dense(n₁), φ, …, dense(n_L), φ, dense(k)].
    public var layers: [Layer] {
        var out: [Layer] = []
        for (l, width) in widths.enumerated() {
            out += [.dense(out: width, wStd: wStd[l], bStd: bStd[l]), .activation(activation)]
        }
        return out + [.dense(out: outputs, wStd: wStd[widths.count], bStd: bStd[widths.count])]
    }

    /// The fully-connected network a layer list describes, if it is one: [flatten?, dense, φ, …, dense] with one
    /// activation φ throughout (a leading flatten of an image changes nothing for a dense network on D inputs).
    public init?(layers: [Layer], inputDim: Int, parameterization: Parameterization = .ntk) {
        var list = layers[...]
        if list.first == .flatten { list = list.dropFirst() }
        var widths: [Int] = [], wStd: [Double] = [], bStd: [Double] = [], phi: Activation? = nil
        while let first = list.first {
            guard case .dense(let out, let w, let b) = first else { return nil }
            wStd.append(w)
            bStd.append(b)
            list = list.dropFirst()
            guard let next = list.first else {
                self.init(inputDim: inputDim, widths: widths, outputs: out, activation: phi ?? .relu, wStd: wStd, bStd: bStd,
                          parameterization: parameterization)
                return
            }
            guard case .activation(let a) = next, phi == nil || phi == a else { return nil }
            phi = a
            widths.append(out)
            list = list.dropFirst()
        }
        return nil
    }
}
