import NTK

/// Turns a raw data set into the model-ready dataset artifact: select (classes, stratified n per split),
/// flatten, scale, standardise (statistics from the training split, applied to both), L2-normalise, and
/// encode targets. All arithmetic in float64 through the SIMD primitives; stored in `config.dtype`.
public enum Preprocess {
    public static func run(_ raw: RawDataset, config: DataConfig, seed: Int) throws -> DatasetArtifact {
        let classes = config.classes ?? Array(0..<config.numClasses)
        let base = UInt64(bitPattern: Int64(seed))
        let trainIdx = try Selection.stratified(labels: raw.train.labels, classes: classes, n: config.nTrain, seed: base &+ 0x7472_6169,
                                                what: "training split of \(config.path)")
        let testIdx = try Selection.stratified(labels: raw.test.labels, classes: classes, n: config.nTest, seed: base &+ 0x7465_7374,
                                               what: "test split of \(config.path)")
        let d = raw.train.featureCount
        guard d >= 1 else {
            throw NTKError("samples have no features (shape \(raw.train.sampleShape))", at: config.path)
        }
        let k = config.targets == .pm1 ? 1 : classes.count
        if let excess = MemoryBudget.excess([2, (trainIdx.count + testIdx.count) * (d + k), 8]) {
            throw NTKError("the dataset of \(trainIdx.count) + \(testIdx.count) samples, \(d) features and \(k) "
                           + "outputs "
                           + excess, hint: "use fewer samples (the data's n_train, n_test)")
        }
        let isBytes: Bool
        if case .bytes = raw.train.features { isBytes = true } else { isBytes = false }
        let byteScale = isBytes && config.scale ? 1.0 / 255.0 : 1.0
        var xTrain = raw.train.rows(trainIdx, byteScale: byteScale)
        var xTest = raw.test.rows(testIdx, byteScale: byteScale)
        var notes: [String: JSONValue] = ["scale_applied": .bool(isBytes && config.scale)]
        var extra: [Tensor] = []

        switch config.standardize {
        case .none: break
        case .global:
            // Two passes (centre, then the mean square of the centred values): no cancellation.
            let n = Double(xTrain.count)
            let mean = xTrain.withUnsafeBufferPointer { Double.sum($0.baseAddress!, $0.count) } / n
            xTrain.withUnsafeMutableBufferPointer { Double.affine($0.baseAddress!, 1, -mean, $0.count) }
            let std = (xTrain.withUnsafeBufferPointer { Double.sumsq($0.baseAddress!, $0.count) } / n).squareRoot()
            guard std > 0 else { throw NTKError("cannot standardise: every training feature value is \(mean)", key: "params.data.standardize") }
            xTrain.withUnsafeMutableBufferPointer { Double.scale($0.baseAddress!, 1 / std, $0.count) }
            xTest.withUnsafeMutableBufferPointer { Double.affine($0.baseAddress!, 1 / std, -mean / std, $0.count) }
            notes["standardize_mean"] = .double(mean)
            notes["standardize_std"] = .double(std)
        case .per_feature:
            let (mean, invStd, constant) = featureStats(xTrain, d: d)
            applyFeatureStats(&xTrain, d: d, mean: mean, invStd: invStd)
            applyFeatureStats(&xTest, d: d, mean: mean, invStd: invStd)
            extra.append(Tensor(name: "feature_mean", shape: [d], values: mean))
            extra.append(Tensor(name: "feature_inv_std", shape: [d], values: invStd))
            notes["constant_features"] = .int(constant)
        }
        if config.l2Normalize {
            l2Normalize(&xTrain, d: d)
            l2Normalize(&xTest, d: d)
        }
        func targets(_ labels: [Int32], _ idx: [Int]) -> [Double] {
            var y = [Double](repeating: config.targets == .centered_one_hot ? -1 / Double(k) : 0, count: idx.count * k)
            let pos = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($0.element, $0.offset) })
            for (r, i) in idx.enumerated() {
                let c = pos[Int(labels[i])]!
                switch config.targets {
                case .pm1: y[r] = c == 1 ? 1 : -1
                case .one_hot, .centered_one_hot: y[r * k + c] += 1
                }
            }
            return y
        }
        var ds = DatasetArtifact(
            xTrain: xTrain, yTrain: targets(raw.train.labels, trainIdx), labelsTrain: trainIdx.map { raw.train.labels[$0] },
            xTest: xTest, yTest: targets(raw.test.labels, testIdx), labelsTest: testIdx.map { raw.test.labels[$0] },
            features: d, outputs: k, classes: classes, sampleShape: raw.train.sampleShape, dtype: config.dtype,
            extraTensors: extra, notes: notes)
        if let ip = config.interpolate { try interpolate(&ds, ip) }
        return ds
    }

    /// The test set becomes x(α) = α·x_a + (1 − α)·x_b (and y likewise) for α evenly spaced, where a is training
    /// sample 0 and b the first training sample of another class; adds tensor `alpha` [P] and notes `interpolation`.
    static func interpolate(_ ds: inout DatasetArtifact, _ ip: DataConfig.Interpolation) throws {
        let d = ds.features, k = ds.outputs
        guard ds.nTrain > 0, let b = ds.labelsTrain.firstIndex(where: { $0 != ds.labelsTrain[0] }) else {
            throw NTKError("interpolate needs training samples of two classes", key: "params.data.interpolate")
        }
        let alphas = (0..<ip.points).map { ip.from + (ip.to - ip.from) * Double($0) / Double(ip.points - 1) }
        ds.xTest = alphas.flatMap { a in (0..<d).map { a * ds.xTrain[$0] + (1 - a) * ds.xTrain[b * d + $0] } }
        ds.yTest = alphas.flatMap { a in (0..<k).map { a * ds.yTrain[$0] + (1 - a) * ds.yTrain[b * k + $0] } }
        ds.labelsTest = alphas.map { $0 >= 0.5 ? ds.labelsTrain[0] : ds.labelsTrain[b] }
        ds.extraTensors.append(Tensor(name: "alpha", shape: [ip.points], values: alphas))
        ds.notes["interpolation"] = .object(["x1_train_index": .int(0), "x2_train_index": .int(b)])
    }

    /// Per-feature mean and 1/std over the rows of x ([n, d]); zero-variance features get 1/std = 1.
    static func featureStats(_ x: [Double], d: Int) -> (mean: [Double], invStd: [Double], constant: Int) {
        let n = x.count / max(d, 1)
        var mean = [Double](repeating: 0, count: d), m2 = mean, centred = mean
        x.withUnsafeBufferPointer { xp in
            mean.withUnsafeMutableBufferPointer { mp in
                for r in 0..<n { Double.axpy(mp.baseAddress!, 1, xp.baseAddress! + r * d, d) }
                Double.scale(mp.baseAddress!, 1 / Double(max(n, 1)), d)
                centred.withUnsafeMutableBufferPointer { cp in
                    m2.withUnsafeMutableBufferPointer { vp in
                        for r in 0..<n {
                            cp.baseAddress!.update(from: xp.baseAddress! + r * d, count: d)
                            Double.axpy(cp.baseAddress!, -1, mp.baseAddress!, d)
                            Double.hadamardAcc(vp.baseAddress!, cp.baseAddress!, cp.baseAddress!, d)
                        }
                    }
                }
            }
        }
        var constant = 0
        let invStd = m2.map { v -> Double in
            let s = (v / Double(max(n, 1))).squareRoot()
            if s > 0 { return 1 / s }
            constant += 1
            return 1
        }
        return (mean, invStd, constant)
    }

    static func applyFeatureStats(_ x: inout [Double], d: Int, mean: [Double], invStd: [Double]) {
        let n = x.count / max(d, 1)
        var row = [Double](repeating: 0, count: d)
        x.withUnsafeMutableBufferPointer { xp in
            for r in 0..<n {
                let p = xp.baseAddress! + r * d
                Double.axpy(p, -1, mean, d)  // x − mean
                row.withUnsafeMutableBufferPointer { rp in
                    rp.update(repeating: 0)
                    Double.hadamardAcc(rp.baseAddress!, p, invStd, d)  // (x − mean) ⊙ 1/std
                    p.update(from: rp.baseAddress!, count: d)
                }
            }
        }
    }

    /// x_r ← x_r / ‖x_r‖₂ for each row; an all-zero row stays zero.
    static func l2Normalize(_ x: inout [Double], d: Int) {
        let n = x.count / max(d, 1)
        x.withUnsafeMutableBufferPointer { xp in
            for r in 0..<n {
                let p = xp.baseAddress! + r * d
                let norm = Double.sumsq(p, d).squareRoot()
                if norm > 0 { Double.scale(p, 1 / norm, d) }
            }
        }
    }
}
