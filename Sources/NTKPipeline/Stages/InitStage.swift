import NTK

/// `init`: θ₀ of `params.model` for a dataset's sample shape and outputs — seeded (`seed`), bit-identical for
/// the same seed and network on any machine and thread count — or, when a plain `.npz` with `W0, b0, …` is among
/// the deps, those weights (shapes checked): how results are compared with neural-tangents on identical weights.
/// Output: a `params` artifact (see `ParamsArtifact`) recording the network's layers and their shapes.
public struct InitStage: StageKind {
    public static let name = "init"
    public static let algorithmVersion = 2
    public static let summary = "seeded θ₀ of the network (or a user's W0, b0, … .npz) → params artifact"
    public static let outputs: [ArtifactKind] = [.params]

    public let model: ModelConfig
    public let seed: Int

    public init(params: StageParams) throws {
        var m = try params.reader("model")
        model = try ModelConfig(&m)
        seed = try params.int("seed", default: 0)
    }

    public var requiredDeps: [String] { [] }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        let (dpath, dfile) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: dfile, path: dpath)
        let network = try model.network(input: ds.inputShape, outputs: ds.outputs)
        var meta = ctx.metadata(kind: Self.name)
        var theta: [Double]? = nil
        for d in ctx.deps where d.resolved.hasSuffix(".npz") && d.resolved != dpath {
            let arrays = try UserArrays.read(d.resolved)
            if arrays["W0"] != nil {
                theta = try ParamsArtifact.theta(from: arrays, network: network, location: d.path)
                meta["from"] = .string(d.path)
            }
        }
        let p = ParamsArtifact(network: network, theta: theta ?? network.initialize(seed: UInt64(bitPattern: Int64(seed))))
        ctx.reporter.log("network \(network.summary), \(p.theta.count) parameters\(theta == nil ? "" : " (from \(meta["from"]!.canonical))")")
        return [p.file(metadata: meta)]
    }
}
