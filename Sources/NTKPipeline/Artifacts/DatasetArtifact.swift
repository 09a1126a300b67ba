import NTK

/// The load stage's output (kind `dataset`). Tensors:
///
/// | name | shape | dtype | meaning |
/// |---|---|---|---|
/// | `x_train`, `x_test` | [N, …sample shape] | float32/64 | preprocessed inputs: IDX [N, 28, 28, 1], CIFAR [N, 32, 32, 3] (NHWC), arrays as given |
/// | `y_train`, `y_test` | [N, k] | same | targets (one-hot, centred one-hot, or ±1 with k = 1) |
/// | `labels_train`, `labels_test` | [N] | int32 | original class labels |
/// | `feature_mean`, `feature_inv_std` | [D] | float64 | only with per-feature standardisation |
///
/// Metadata adds `classes`, `sample_shape`, `features` (D, the product of the sample shape), `outputs` (k) and the
/// preprocessing notes. In memory x is [N, D], row-major: flattening is a layer, and a no-op on the values.
public struct DatasetArtifact {
    public var xTrain: [Double], yTrain: [Double], labelsTrain: [Int32]
    public var xTest: [Double], yTest: [Double], labelsTest: [Int32]
    public var features: Int, outputs: Int
    public var classes: [Int]
    public var sampleShape: [Int]
    public var dtype: DataConfig.Precision
    public var extraTensors: [Tensor] = []
    public var notes: [String: JSONValue] = [:]

    public var nTrain: Int { labelsTrain.count }
    public var nTest: Int { labelsTest.count }

    /// A network's input: a vector [D], an image [H, W] (one channel) or [H, W, C].
    public var inputShape: Shape { Self.shape(of: sampleShape, features: features) }

    /// A network's samples must be these (or, for a network on vectors, have their D features), its outputs k.
    public func check(_ net: Network, at path: String) throws {
        guard net.accepts(inputShape), net.outputs == outputs else {
            throw NTKError("the network takes samples \(net.inputShape) with \(net.outputs) outputs, the dataset has samples "
                           + "\(inputShape) with \(outputs) outputs", at: path)
        }
    }

    static func shape(of sample: [Int], features: Int) -> Shape {
        switch sample.count {
        case 0, 1: return .vector(features)
        case 2: return Shape(spatial: sample, channels: 1)
        default: return Shape(spatial: Array(sample.dropLast()), channels: sample.last!)
        }
    }

    public func file(metadata: [String: JSONValue]) -> ArtifactFile {
        func x(_ name: String, _ v: [Double], _ shape: [Int]) -> Tensor {
            switch dtype {
            case .float64: return Tensor(name: name, shape: shape, values: v)
            case .float32:
                let f = [Float](unsafeUninitializedCapacity: v.count) { buf, n in
                    v.withUnsafeBufferPointer { Float.convert(buf.baseAddress!, from: $0.baseAddress!, v.count) }
                    n = v.count
                }
                return Tensor(name: name, shape: shape, values: f)
            }
        }
        var m = metadata
        m["classes"] = .array(classes.map { .int($0) })
        m["sample_shape"] = .array(sampleShape.map { .int($0) })
        m["features"] = .int(features)
        m["outputs"] = .int(outputs)
        m["dtype"] = .string(dtype.rawValue)
        m["preprocessing"] = .object(notes)
        return ArtifactFile(kind: .dataset, metadata: m, tensors: [
            x("x_train", xTrain, [nTrain] + sampleShape), x("y_train", yTrain, [nTrain, outputs]),
            Tensor(name: "labels_train", shape: [nTrain], int32: labelsTrain),
            x("x_test", xTest, [nTest] + sampleShape), x("y_test", yTest, [nTest, outputs]),
            Tensor(name: "labels_test", shape: [nTest], int32: labelsTest),
        ] + extraTensors)
    }

    /// Reads a dataset artifact, checking its kind and that every tensor is present with consistent shapes.
    public init(file f: ArtifactFile, path: String) throws {
        guard f.kind == .dataset else {
            throw NTKError("is a '\(f.kind.rawValue)' artifact, but a 'dataset' artifact is needed here", at: path)
        }
        func get(_ name: String) throws -> Tensor {
            guard let t = f.tensor(name) else { throw NTKError("dataset artifact has no tensor '\(name)'", at: path) }
            return t
        }
        let xt = try get("x_train"), yt = try get("y_train"), lt = try get("labels_train")
        let xs = try get("x_test"), ys = try get("y_test"), ls = try get("labels_test")
        guard xt.shape.count >= 2, xs.shape.count >= 2, yt.shape.count == 2, ys.shape.count == 2,
            xt.shape.dropFirst() == xs.shape.dropFirst(), yt.shape[1] == ys.shape[1],
            yt.shape[0] == xt.shape[0], lt.shape == [xt.shape[0]], ys.shape[0] == xs.shape[0], ls.shape == [xs.shape[0]]
        else {
            throw NTKError("inconsistent dataset shapes: x_train \(xt.shape), y_train \(yt.shape), labels_train \(lt.shape), x_test \(xs.shape), y_test \(ys.shape), labels_test \(ls.shape)", at: path)
        }
        xTrain = xt.doubles(); yTrain = yt.doubles(); labelsTrain = (lt.integers() ?? []).map { Int32($0) }
        xTest = xs.doubles(); yTest = ys.doubles(); labelsTest = (ls.integers() ?? []).map { Int32($0) }
        features = xt.shape.dropFirst().reduce(1, *)
        guard features >= 1, yt.shape[1] >= 1, xt.shape[0] >= 1 else {
            throw NTKError("dataset artifact has \(xt.shape[0]) training samples of \(features) features and \(yt.shape[1]) "
                           + "outputs; every one must be at least 1", at: path)
        }
        for (name, v) in [("x_train", xTrain), ("y_train", yTrain), ("x_test", xTest), ("y_test", yTest)] {
            if let bad = v.firstIndex(where: { !$0.isFinite }) {
                throw NTKError("\(name) holds \(v[bad]) at flat index \(bad): a dataset must be finite", at: path)
            }
        }
        outputs = yt.shape[1]
        if case .array(let c)? = f.metadata["classes"] { classes = c.compactMap { if case .int(let i) = $0 { i } else { nil } } } else { classes = [] }
        // The sample shape is the tensor's (artifacts before images stayed images stored [N, D] and said it in metadata).
        sampleShape = Array(xt.shape.dropFirst())
        if sampleShape.count == 1, case .array(let s)? = f.metadata["sample_shape"] {
            let meta = s.compactMap { if case .int(let i) = $0 { i } else { nil } }
            if meta.reduce(1, *) == features { sampleShape = meta.count == 2 ? meta + [1] : meta }
        }
        dtype = xt.dtype == .float64 ? .float64 : .float32
    }

    init(xTrain: [Double], yTrain: [Double], labelsTrain: [Int32], xTest: [Double], yTest: [Double], labelsTest: [Int32],
         features: Int, outputs: Int, classes: [Int], sampleShape: [Int], dtype: DataConfig.Precision,
         extraTensors: [Tensor], notes: [String: JSONValue]) {
        self.xTrain = xTrain; self.yTrain = yTrain; self.labelsTrain = labelsTrain
        self.xTest = xTest; self.yTest = yTest; self.labelsTest = labelsTest
        self.features = features; self.outputs = outputs; self.classes = classes; self.sampleShape = sampleShape
        self.dtype = dtype; self.extraTensors = extraTensors; self.notes = notes
    }
}
