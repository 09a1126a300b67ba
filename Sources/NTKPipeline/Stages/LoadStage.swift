import Foundation

/// `load`: read a data set (IDX, CIFAR-10 binary, or the user's arrays), select classes and a stratified,
/// seeded subset, preprocess, and write the `dataset` artifact (tensors listed on `DatasetArtifact`).
///
/// Params: `seed` and one mapping of data settings (see `DataConfig`): `data`, or — for a second load
/// stage — whichever single mapping the stage declares (e.g. `params: [seed, subset]`). Deps must include
/// that mapping's `path`.
public struct LoadStage: StageKind {
    public static let name = "load"
    public static let algorithmVersion = 2
    public static let summary = "read and preprocess a data set → dataset artifact"
    public static let outputs: [ArtifactKind] = [.dataset]

    public let config: DataConfig
    public let seed: Int

    public init(params: StageParams) throws {
        var r = try params.reader(try params.mappingKey(preferring: "data"))
        config = try DataConfig(&r)
        seed = try params.int("seed", default: 0)
    }

    public var requiredDeps: [String] { [config.path] }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        let dep = try ctx.dep(config.path)
        let started = Date()
        let task = ctx.reporter.begin("reading \(config.path)", total: 100, unit: "%")
        let progress: Compression.Progress = { done, total in task.update(total > 0 ? 100 * done / total : 0) }
        let raw: RawDataset
        switch config.format {
        case .idx: raw = try IDXReader.read(directory: dep.resolved, numClasses: config.numClasses, progress: progress)
        case .cifar10: raw = try CIFARReader.read(path: dep.resolved, progress: progress)
        case .arrays: raw = try ArrayDataReader.read(path: dep.resolved, numClasses: config.numClasses)
        }
        task.finish()
        ctx.reporter.log(String(format: "read %d train + %d test samples of shape %@ in %.2f s",
                                raw.train.count, raw.test.count, raw.train.sampleShape.description, Date().timeIntervalSince(started)))
        let ds = try Preprocess.run(raw, config: config, seed: seed)
        ctx.reporter.log("selected \(ds.nTrain) train / \(ds.nTest) test samples of classes \(ds.classes), \(ds.features) features, \(ds.outputs) outputs")
        var meta = ctx.metadata(kind: Self.name)
        meta["data"] = config.json
        // the files read, spelled from the dep as the pipeline declares it (not from where this process found it)
        meta["sources"] = .array(raw.sources.map {
            .string($0.hasPrefix(dep.resolved) ? dep.path + $0.dropFirst(dep.resolved.count) : $0)
        })
        return [ds.file(metadata: meta)]
    }
}
