/// A user's own data as numpy arrays: `x_train`, `y_train`, `x_test`, `y_test`, either in one `.npz`
/// or as four `.npy` files in a directory. `x_*`: [N, ...] of any float or integer dtype (uint8 counts as
/// pixels and can be scaled to [0, 1]); `y_*`: [N] integer labels, [N, k] one-hot rows (label = argmax), or
/// [N, 1] ±1 targets (label = 1 where positive). Optional `labels_train`/`labels_test` ([N] integers, as in
/// ntk's own dataset artifacts) give the labels directly, so an artifact with any `targets:` reads back.
/// NaN or Inf anywhere is an error naming the array and the first bad position.
public enum ArrayDataReader {
    public static let names = ["x_train", "y_train", "x_test", "y_test"]

    public static func read(path: String, numClasses: Int) throws -> RawDataset {
        var arrays: [String: Tensor] = [:]
        var sources: [String] = []
        if Files.isDirectory(path) {
            for n in names {
                let f = path + "/" + n + ".npy"
                guard Files.exists(f) else { throw NTKError("missing \(n).npy (a data directory needs \(names.map { $0 + ".npy" }.joined(separator: ", ")))", at: path) }
                arrays[n] = try UserArrays.read(f)[n]
                sources.append(f)
            }
        } else {
            arrays = try UserArrays.read(path)
            sources = [path]
            let missing = names.filter { arrays[$0] == nil }
            guard missing.isEmpty else {
                throw NTKError("missing array(s) \(missing.joined(separator: ", ")) (found: \(arrays.keys.sorted().joined(separator: ", ")))", at: path)
            }
        }
        func split(_ x: Tensor, _ y: Tensor, _ given: Tensor?) throws -> RawSplit {
            guard x.shape.count >= 2 else { throw NTKError("\(x.name) must have shape [N, features…], found \(x.shape)", at: path) }
            guard x.shape.dropFirst().allSatisfy({ $0 >= 1 }) else {
                throw NTKError("\(x.name) has shape \(x.shape): a sample needs at least one feature", at: path)
            }
            let n = x.shape[0]
            guard y.shape.first == n else { throw NTKError("\(y.name) has \(y.shape.first ?? 0) rows but \(x.name) has \(n)", at: path) }
            if let given, given.shape != [n] { throw NTKError("\(given.name) has shape \(given.shape) but \(x.name) has \(n) rows", at: path) }
            let labels = try labelsOf(given ?? y, numClasses: numClasses, path: path)
            let features: RawSplit.Features
            if x.dtype == .uint8 { features = .bytes(x.bytes) } else {
                let v = x.doubles()
                if let bad = v.firstIndex(where: { !$0.isFinite }) {
                    throw NTKError("\(x.name) contains \(v[bad].isNaN ? "NaN" : "Inf") at flat index \(bad) (sample \(bad / max(1, v.count / n)))", at: path)
                }
                features = .floats(v)
            }
            return RawSplit(features: features, sampleShape: Array(x.shape.dropFirst()), labels: labels)
        }
        let train = try split(arrays["x_train"]!, arrays["y_train"]!, arrays["labels_train"])
        let test = try split(arrays["x_test"]!, arrays["y_test"]!, arrays["labels_test"])
        guard train.sampleShape == test.sampleShape else {
            throw NTKError("x_train samples have shape \(train.sampleShape) but x_test samples \(test.sampleShape)", at: path)
        }
        return RawDataset(train: train, test: test, sources: sources)
    }

    static func labelsOf(_ y: Tensor, numClasses: Int, path: String) throws -> [Int32] {
        var labels: [Int32]
        if y.shape.count == 1, let ints = y.integers() {
            labels = ints.map { Int32(clamping: $0) }
        } else if y.shape.count == 2 {
            let v = y.doubles(), k = y.shape[1]
            guard k >= 1 else { throw NTKError("\(y.name) has shape \(y.shape): one-hot rows need at least one column", at: path) }
            if let bad = v.firstIndex(where: { !$0.isFinite }) { throw NTKError("\(y.name) contains NaN/Inf at flat index \(bad)", at: path) }
            labels = k == 1 ? v.map { $0 > 0 ? 1 : 0 }
                : (0..<y.shape[0]).map { r in Int32(v[r * k..<(r + 1) * k].indices.max { v[$0] < v[$1] }! - r * k) }
        } else {
            throw NTKError("\(y.name) must be integer labels [N] or one-hot rows [N, k]; found \(y.dtype.rawValue) \(y.shape)", at: path)
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= numClasses }) {
            throw NTKError("\(y.name): label \(labels[bad]) at index \(bad) is out of range 0…\(numClasses - 1)", at: path,
                           hint: "set data.num_classes if this data set has more classes")
        }
        return labels
    }
}
