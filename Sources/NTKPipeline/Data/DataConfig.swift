/// `params.data`: where the data comes from, which samples are kept, and how they are preprocessed.
/// Every field is recorded in the dataset artifact's metadata.
public struct DataConfig: Equatable, Sendable {
    public enum Format: String, CaseIterable, Sendable {
        /// MNIST-family IDX files in a directory (MNIST, Fashion-MNIST, KMNIST).
        case idx
        /// CIFAR-10 binary: a directory of `*.bin` batches or `cifar-10-binary.tar.gz`.
        case cifar10
        /// A user's `.npz` (or directory of `.npy`) with x_train, y_train, x_test, y_test.
        case arrays
    }
    public enum Standardize: String, CaseIterable, Sendable {
        case none
        /// x ← (x − mean)/std with one mean and std over all training features (neural-tangents' examples).
        case global
        /// x_d ← (x_d − mean_d)/std_d per feature d, from the training split; std_d = 0 features are only centred.
        case per_feature
    }
    public enum Targets: String, CaseIterable, Sendable {
        /// e_c ∈ {0,1}^k (neural-tangents' examples).
        case one_hot
        /// e_c − 1/k: zero-mean targets.
        case centered_one_hot
        /// Two classes only, k = 1: the first listed class → −1, the second → +1 (the paper's binary tasks).
        case pm1
    }
    public enum Precision: String, CaseIterable, Sendable { case float32, float64 }

    public var format: Format = .idx
    public var path: String = "data/mnist"
    public var numClasses: Int = 10
    /// Class subset (labels as in the files); nil keeps all classes. Class i of the subset is output i.
    public var classes: [Int]? = nil
    /// Samples per split (stratified: proportional to class frequency); nil keeps all.
    public var nTrain: Int? = nil
    public var nTest: Int? = nil
    /// Pixels (bytes) → [0, 1] by dividing by 255.
    public var scale: Bool = true
    public var standardize: Standardize = .none
    /// x ← x/‖x‖₂ per sample, after standardisation (the paper's theorems assume ‖x‖ ≤ 1).
    public var l2Normalize: Bool = false
    public var targets: Targets = .one_hot
    public var dtype: Precision = .float32
    /// Replaces the test set by x(α) = α·x⁽¹⁾ + (1 − α)·x⁽²⁾ for `points` values of α evenly from `from` to `to`, where
    /// x⁽¹⁾ is the first training sample and x⁽²⁾ the first of another class (PAPER Figure 2); y(α) likewise.
    public struct Interpolation: Equatable, Sendable { public var points: Int, from: Double, to: Double }
    public var interpolate: Interpolation? = nil

    public init() {}

    /// Reads `params.data`, rejecting unknown keys and wrong types.
    public init(_ r: inout ConfigReader) throws {
        format = try r.choice("format", default: format)
        path = try r.string("path", default: path)!
        // 2¹⁶ classes: three times ImageNet-21k's, and every one of them must have samples and an output.
        numClasses = try r.int("num_classes", default: numClasses, min: 1, max: 1 << 16)!
        classes = try r.intList("classes")
        nTrain = try r.int("n_train", min: 1)
        nTest = try r.int("n_test", min: 1)
        scale = try r.bool("scale", default: scale)
        standardize = try r.choice("standardize", default: standardize)
        l2Normalize = try r.bool("l2_normalize", default: l2Normalize)
        targets = try r.choice("targets", default: targets)
        dtype = try r.choice("dtype", default: dtype)
        if let v = r.raw("interpolate") {
            var i = try ConfigReader(v, path: r.path + ".interpolate", locate: r.locate)
            interpolate = Interpolation(points: try i.int("points", default: 41, min: 2, max: 1_000_000)!,
                                        from: try i.double("from", default: -2), to: try i.double("to", default: 3))
            try i.finish()
        }
        try r.finish()
        if let classes {
            if let bad = classes.first(where: { $0 < 0 || $0 >= numClasses }) {
                throw r.fail("classes", "class \(bad) is out of range 0…\(numClasses - 1)")
            }
            if Set(classes).count != classes.count { throw r.fail("classes", "lists a class twice: \(classes)") }
        }
        if targets == .pm1 && (classes?.count ?? numClasses) != 2 {
            throw r.fail("targets", "pm1 targets need exactly two classes (set data.classes, e.g. [0, 1])")
        }
    }

    public var json: JSONValue {
        .object([
            "format": .string(format.rawValue), "path": .string(path), "num_classes": .int(numClasses),
            "classes": classes.map { .array($0.map { .int($0) }) } ?? .null,
            "n_train": nTrain.map { .int($0) } ?? .null, "n_test": nTest.map { .int($0) } ?? .null,
            "scale": .bool(scale), "standardize": .string(standardize.rawValue), "l2_normalize": .bool(l2Normalize),
            "targets": .string(targets.rawValue), "dtype": .string(dtype.rawValue),
            "interpolate": interpolate.map { .object(["points": .int($0.points), "from": .double($0.from), "to": .double($0.to)]) } ?? .null,
        ])
    }
}
