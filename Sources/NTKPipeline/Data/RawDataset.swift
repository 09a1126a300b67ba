/// A data set as read from disk, before selection and preprocessing: a train and a test split of
/// samples with integer labels. Pixels from image files stay bytes until the selected samples are
/// converted, so reading the full 60,000-image MNIST costs one decompression and no float work.
public struct RawSplit: Sendable {
    public enum Features: Sendable {
        case bytes([UInt8])  // pixels 0…255 (IDX, CIFAR, or a user's uint8 arrays)
        case floats([Double])  // a user's float arrays
    }
    public var features: Features
    /// Shape of one sample, e.g. [28, 28] or [3, 32, 32].
    public var sampleShape: [Int]
    public var labels: [Int32]

    public var count: Int { labels.count }
    public var featureCount: Int { sampleShape.reduce(1, *) }

    /// Feature rows of the given samples as float64, scaled by `byteScale` if the features are bytes.
    public func rows(_ indices: [Int], byteScale: Double) -> [Double] {
        let d = featureCount
        var out = [Double](repeating: 0, count: indices.count * d)
        switch features {
        case .bytes(let b):
            b.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for (r, i) in indices.enumerated() {
                        convertBytes(dst.baseAddress! + r * d, src.baseAddress! + i * d, count: d, scale: byteScale)
                    }
                }
            }
        case .floats(let f):
            for (r, i) in indices.enumerated() { out.replaceSubrange(r * d..<(r + 1) * d, with: f[i * d..<(i + 1) * d]) }
        }
        return out
    }
}

public struct RawDataset: Sendable {
    public var train: RawSplit
    public var test: RawSplit
    /// Which files the splits came from (for metadata and messages).
    public var sources: [String]
}

import NTK
