import Foundation
import NTK

/// `analytic_kernels`: the infinite-width NNGP and NTK of `params.model` on a dataset artifact (kind `kernels`):
///
/// | tensor | shape | |
/// |---|---|---|
/// | `nngp_train_train`, `ntk_train_train` | [n, n] | per logit (full kernels are K ⊗ I_k) |
/// | `nngp_test_train`, `ntk_test_train` | [m, n] | |
/// | `nngp_test_test` | [m, m] | with `kernel.test_test: true` (needed for predictive covariances) |
///
/// On explicit files (`ntk exec analytic_kernels --in x.npz --out k.npz`) the input is a plain `.npz` with `x1`
/// [N1, d] and optionally `x2` [N2, d], and the outputs are `nngp`, `ntk` [N1, N2] (x2 absent: x1 with itself).
///
/// Params `model` (see `ModelConfig`: any layer list — `KernelProgram` — and the fully-connected shorthand) and
/// `kernel`: `quadrature_nodes` (32; activations without a closed form), `max_memory` (workspace cap, e.g. "2G":
/// the kernels are computed in row blocks that fit, each checkpointed, so a killed run resumes from the finished
/// blocks; it also caps the pairs' covariance tiles, 1 GiB without it), `checkpoint_rows` (rows per checkpointed
/// block; default: about a second of work each, 2³⁰ covariance entries), `test_test` (true), `dtype` (float64 |
/// float32: the recursion's state and the stored kernels in float32; each activation's expectations are still
/// evaluated in float64 per entry). Metadata `spatial`:
/// the form the covariances were carried in (`vector`, `diagonal`, `full`); `flops`: the recursion's floating-point
/// operations (`KernelProgram.flopsPerPair`), for throughput.
public struct AnalyticKernelsStage: StageKind {
    public static let name = "analytic_kernels"
    public static let algorithmVersion = 1
    public static let summary = "infinite-width NNGP and NTK → kernels artifact"
    public static let outputs: [ArtifactKind] = [.kernels]
    public static let distributed = true

    public let model: ModelConfig
    public let options: AnalyticKernels.Options
    public let testTest: Bool
    public let dtype: DataConfig.Precision

    public init(params: StageParams) throws {
        var m = try params.reader("model")
        model = try ModelConfig(&m)
        var k = try params.reader("kernel")
        var o = AnalyticKernels.Options()
        o.quadratureNodes = try k.int("quadrature_nodes", default: 32, min: 2, max: GaussRule.maxNodes)!
        if let cap = try k.string("max_memory") {
            guard let bytes = parseBytes(cap), bytes > 0 else { throw k.fail("max_memory", "expected a size like 512M or 4G, found \"\(cap)\"") }
            o.maxWorkspaceBytes = bytes
        }
        o.blockRows = try k.int("checkpoint_rows", min: 1)
        testTest = try k.bool("test_test", default: true)
        dtype = try k.choice("dtype", default: .float64)
        o.float32 = dtype == .float32
        try k.finish()
        options = o
    }

    public var requiredDeps: [String] { [] }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        var meta = ctx.metadata(kind: Self.name)
        meta["source"] = .string("analytic")
        meta["dtype"] = .string(dtype.rawValue)
        if let plain = try Self.plainInputs(ctx) {
            if let grid = ctx.grid, grid.rank != 0 { return [] }  // explicit files: one process computes them whole
            let (net, program) = try model.kernelNetwork(input: DatasetArtifact.shape(of: plain.sample,
                                                                                       features: plain.x1.cols))
            var flops = 0.0
            let k = try compute("x1_x2", plain.x1, plain.x2, net, ctx, flops: &flops)
            meta["spatial"] = .string(program.form.rawValue)
            meta["flops"] = .double(flops)
            let n2 = plain.x2?.rows ?? plain.x1.rows
            return [ArtifactFile(kind: .kernels, metadata: meta, tensors: [
                tensor("nngp", [plain.x1.rows, n2], k.nngp.data), tensor("ntk", [plain.x1.rows, n2], k.ntk.data),
            ])]
        }
        let (path, file) = try ctx.artifact(.dataset)
        let ds = try DatasetArtifact(file: file, path: path)
        let (net, program) = try model.kernelNetwork(input: ds.inputShape)
        meta["spatial"] = .string(program.form.rawValue)
        meta["model"] = model.json
        if let grid = ctx.grid { return try runDistributed(ctx, grid, ds, net, program, meta) }
        let (n, m) = (ds.nTrain, ds.nTest)
        // NNGP and NTK of train×train and test×train (and test×test), float64, each held as a matrix and a tensor.
        if let excess = MemoryBudget.excess([2, 2 * n * (n + m) + (testTest ? m * m : 0), 8]) {
            throw NTKError("the kernels of \(n) training and \(m) test samples \(excess)",
                           hint: "use fewer samples (the data's n_train, n_test)")
        }
        let xtr = Matrix(rows: ds.nTrain, cols: ds.features, data: ds.xTrain), xte = Matrix(rows: ds.nTest, cols: ds.features, data: ds.xTest)
        var flops = 0.0
        let tt = try compute("train_train", xtr, nil, net, ctx, flops: &flops)
        let st = try compute("test_train", xte, xtr, net, ctx, flops: &flops)
        var tensors = [
            tensor("nngp_train_train", [ds.nTrain, ds.nTrain], tt.nngp.data),
            tensor("ntk_train_train", [ds.nTrain, ds.nTrain], tt.ntk.data),
            tensor("nngp_test_train", [ds.nTest, ds.nTrain], st.nngp.data),
            tensor("ntk_test_train", [ds.nTest, ds.nTrain], st.ntk.data),
        ]
        if testTest {
            var o = options
            o.computeNTK = false
            let ss = try compute("test_test", xte, nil, net, ctx, options: o, flops: &flops)
            tensors.append(tensor("nngp_test_test", [ds.nTest, ds.nTest], ss.nngp.data))
        }
        if let e = tt.quadratureError { meta["quadrature_error"] = .double(e) }
        meta["flops"] = .double(flops)
        return [ArtifactFile(kind: .kernels, metadata: meta, tensors: tensors)]
    }

    /// The kernels over the processes of a distributed run: K(train, train) and, with `test_test`, K(test, test)
    /// (blocks on and below the diagonal), and K(train, test), [n, n], [m, m] and [n, m], block-cyclic; each
    /// process computes only its own blocks, band by band (each band checkpointed: a killed run resumes from the
    /// finished bands) and writes its tile; process 0 writes the manifest (`DistributedKernelsArtifact`) with
    /// K(x, x) of the test samples. Memory per process: (2·n·(n + m) + m²)·8/P bytes of kernels, plus one band and
    /// the engine's workspace (`max_memory`); tiles are written straight from the local arrays.
    func runDistributed(_ ctx: StageContext, _ grid: ProcessGrid, _ ds: DatasetArtifact, _ net: Network,
                        _ program: KernelProgram,
                        _ metadata: [String: JSONValue]) throws -> [ArtifactFile] {
        guard dtype == .float64 else {
            throw NTKError("a distributed run keeps its kernels in float64 (ScaLAPACK's solves are float64)",
                           key: "params.kernel.dtype", hint: "remove kernel.dtype, or run without mpirun")
        }
        let (n, m) = (ds.nTrain, ds.nTest)
        let perProcess = (2 * n * (n + m) + (testTest ? m * m : 0) + grid.size - 1) / grid.size
        if let excess = MemoryBudget.excess([perProcess, 8]) {
            throw NTKError("this process's share of the kernels of \(n) training and \(m) test samples \(excess)",
                           hint: "use more processes (mpirun -np), or fewer samples")
        }
        let xtr = Matrix(rows: n, cols: ds.features, data: ds.xTrain)
        let xte = Matrix(rows: m, cols: ds.features, data: ds.xTest)
        let block = Self.block(n, grid)
        var o = options
        o.threads = grid.threadsPerProcess
        var mats: [String: BlockCyclicMatrix] = [:]
        var flops = [0.0]  // this process's pairs, then summed over all
        var pairs: [(String, Matrix, Matrix?)] = [("train_train", xtr, nil), ("train_test", xtr, xte)]
        if testTest { pairs.append(("test_test", xte, nil)) }
        for (name, x1, x2) in pairs {
            var k = BlockCyclicMatrix(grid: grid, rows: x1.rows, cols: (x2 ?? x1).rows, block: block), t = k
            o.computeNTK = name != "test_test"
            let plan = AnalyticKernels.DistributedPlan(x1: x1, x2: x2, network: net, options: o, layout: k)
            flops[0] += Double(plan.pairs) * program.flopsPerPair(ntk: o.computeNTK, quadratureNodes: o.quadratureNodes)
            let task = ctx.reporter.begin("\(Self.name) \(name) (\(k.globalRows)×\(k.globalCols)), process 0's "
                                          + "\(plan.bands.count) bands of \(grid.size) processes"
, total: plan.bands.count,
                                          unit: "bands")
            var resumed = 0, done = 0
            for group in plan.checkpointGroups {
                // one checkpoint per group of bands: their row-major values one after the other
                let key = "\(name)-process\(grid.rank)-bands\(group.first!)-\(group.last!)"
                let (v, was) = try Self.resumable(key, ctx.checkpoints) {
                    var a: [Double] = [], b: [Double] = []
                    for (i, band) in group.enumerated() {
                        let v = try Self.namingMaxMemory(o) { try plan.band(band) }
                        a += v.nngp
                        b += v.ntk
                        task.update(done + i + 1)
                    }
                    return (a, b)
                }
                guard v.nngp.allSatisfy(\.isFinite), v.ntk.allSatisfy(\.isFinite) else {
                    throw NTKError("\(name) bands \(group.first!)…\(group.last!) contain NaN or Inf",
                                   hint: "check the inputs and the model's σ's")
                }
                var (ka, kb) = (0, 0)
                for band in group {
                    let r = k.rows(ofBlock: band).count
                    let (na, nb) = (r * k.localCols, o.computeNTK ? r * k.localCols : 0)
                    k.setRows(k.localRow(ofBlock: band), Array(v.nngp[ka..<ka + na]))
                    if o.computeNTK { t.setRows(t.localRow(ofBlock: band), Array(v.ntk[kb..<kb + nb])) }
                    (ka, kb) = (ka + na, kb + nb)
                }
                if was { resumed += group.count }
                done += group.count
                task.update(done)
            }
            task.finish()
            var all: [Int32] = [Int32(resumed)]
            grid.sum(&all)
            if all[0] > 0 { ctx.reporter.log("\(name): resumed \(all[0]) bands from checkpoints") }
            mats["nngp_" + name] = k
            if o.computeNTK { mats["ntk_" + name] = t }
        }
        let shapes = mats.mapValues { [$0.globalRows, $0.globalCols] }
        let tiles = try DistributedKernelsArtifact.writeTiles(&mats, out: ctx.outs[0], grid: grid)
        grid.sum(&flops)
        guard grid.rank == 0 else { return [] }
        DistributedKernelsArtifact.removeUnlisted(out: ctx.outs[0], entries: tiles)
        var meta = metadata
        meta["flops"] = .double(flops[0])
        if program.needsQuadrature, let e = try Self.quadratureError(xtr, xtr, net, options) {
            meta["quadrature_error"] = .double(e)
        }
        meta["distributed"] = DistributedKernelsArtifact.record(grid: grid, block: block, shapes: shapes, tiles: tiles)
        var d = options
        d.computeNTK = false
        let diagonal = try AnalyticKernels.Plan(x1: xte, x2: nil, network: net, options: d).diagonal.nngp
        return [ArtifactFile(kind: .kernels, metadata: meta, tensors: [
            Tensor(name: "nngp_test_test_diagonal", shape: [m], values: diagonal),
        ])]
    }

    /// The block size of a distributed run: 64 (ScaLAPACK's usual), smaller for small sets (n/(2·max(rows, cols)),
    /// at least 1) so that the blocks of the training set go round the grid's rows and columns at least twice.
    static func block(_ n: Int, _ grid: ProcessGrid) -> Int {
        max(1, min(64, (n + 2 * max(grid.rows, grid.cols) - 1) / (2 * max(grid.rows, grid.cols))))
    }

    /// A kernel as stored: in `kernel.dtype`.
    func tensor(_ name: String, _ shape: [Int], _ values: [Double]) -> Tensor {
        dtype == .float32 ? Tensor(name: name, shape: shape, values: values.map { Float($0) })
            : Tensor(name: name, shape: shape, values: values)
    }

    /// x1 (and x2) from a plain .npz dep, if the stage runs on explicit files.
    /// Rows are samples, [N, D] or [N, …sample shape] (read row-major, NHWC), `sample` the shape of one.
    static func plainInputs(_ ctx: StageContext) throws -> (x1: Matrix, x2: Matrix?, sample: [Int])? {
        for d in ctx.deps where d.resolved.hasSuffix(".npz") {
            let arrays = try UserArrays.read(d.resolved)
            guard let x1 = arrays["x1"] else { continue }
            func matrix(_ t: Tensor) throws -> Matrix {
                guard t.shape.count >= 2 else { throw NTKError("\(t.name) must be [N, D] or [N, H, W, C], found \(t.shape)", at: d.path) }
                let v = t.doubles()
                if let bad = v.firstIndex(where: { !$0.isFinite }) { throw NTKError("\(t.name) contains NaN/Inf at flat index \(bad)", at: d.path) }
                return Matrix(rows: t.shape[0], cols: t.shape.dropFirst().reduce(1, *), data: v)
            }
            let a = try matrix(x1), b = try arrays["x2"].map(matrix)
            if let x2 = arrays["x2"], x2.shape.dropFirst() != x1.shape.dropFirst() {
                throw NTKError("x1 has samples of shape \(Array(x1.shape.dropFirst())) but x2 \(Array(x2.shape.dropFirst()))", at: d.path)
            }
            return (a, b, Array(x1.shape.dropFirst()))
        }
        return nil
    }

    /// One kernel pair, block by block, resuming finished blocks from checkpoints.
    func compute(_ name: String, _ x1: Matrix, _ x2: Matrix?, _ net: Network, _ ctx: StageContext,
                 options o: AnalyticKernels.Options? = nil, flops: inout Double) throws -> AnalyticKernels.Result {
        let opts = o ?? options
        let plan = try Self.namingMaxMemory(opts) {
            try AnalyticKernels.Plan(x1: x1, x2: x2, network: net, options: opts)
        }
        flops += plan.flops
        let store = plan.blocks.count > 1 ? ctx.checkpoints : nil
        let task = ctx.reporter.begin("\(Self.name) \(name) (\(x1.rows)×\(x2?.rows ?? x1.rows))", total: x1.rows, unit: "rows")
        var blocks: [AnalyticKernels.Plan.Block] = []
        var resumed = 0
        for rows in plan.blocks {
            let (v, was) = try Self.resumable("\(name)-\(rows.lowerBound)-\(rows.upperBound)", store) {
                let b = plan.compute(rows)
                return (b.nngp, b.ntk)
            }
            blocks.append(.init(rows: rows, nngp: v.nngp, ntk: v.ntk))
            if was { resumed += 1 }
            task.update(rows.upperBound)
        }
        task.finish()
        if resumed > 0 { ctx.reporter.log("\(name): resumed \(resumed) of \(plan.blocks.count) blocks from checkpoints") }
        var r = plan.assemble(&blocks)
        if plan.program.needsQuadrature {
            r.quadratureError = try Self.quadratureError(x1, x2 ?? x1, net, opts)
            ctx.reporter.log(String(format: "%@: quadrature with %d nodes, estimated relative error %.2g", name, opts.quadratureNodes, r.quadratureError ?? 0))
        }
        return r
    }

    /// Rows of the kernels from the checkpoint `key` a killed run left, or computed by `body` and checkpointed
    /// (nil store: not checkpointed); whether they were resumed.
    static func resumable(_ key: String, _ store: Checkpoints?, _ body: () throws -> (nngp: [Double], ntk: [Double]))
        throws -> (values: (nngp: [Double], ntk: [Double]), resumed: Bool) {
        if let f = store?.load(key), let k = f.tensor("nngp"), let t = f.tensor("ntk") {
            return ((k.doubles(), t.doubles()), true)
        }
        let v = try body()
        try store?.save(key, [Tensor(name: "nngp", shape: [v.nngp.count], values: v.nngp),
                              Tensor(name: "ntk", shape: [v.ntk.count], values: v.ntk)])
        return (v, false)
    }

    /// The engine's "workspace too small" as an error naming `kernel.max_memory` and the size it needs.
    static func namingMaxMemory<R>(_ o: AnalyticKernels.Options, _ body: () throws -> R) throws -> R {
        do { return try body() } catch let e as AnalyticKernels.Plan.WorkspaceTooSmall {
            throw NTKError(e.description, key: "params.kernel.max_memory",
                           hint: "raise kernel.max_memory to at least \(MemoryBudget.size(e.needed))"
                               + (o.maxWorkspaceBytes == nil ? " (the default is 1 GiB)" : ""))
        }
    }

    /// The quadrature's estimated relative error on the first few pairs of x1 and x2 (m vs 1.5·m nodes).
    static func quadratureError(_ x1: Matrix, _ x2: Matrix, _ net: Network, _ o: AnalyticKernels.Options) throws
        -> Double? {
        try AnalyticKernels.compute(x1: x1.rows(0..<min(6, x1.rows)), x2: x2.rows(0..<min(6, x2.rows)), network: net,
                                    options: o).quadratureError
    }
}
