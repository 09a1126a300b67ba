import Dispatch
internal import CNTK

/// Forward, backward and tangent (JVP) passes of a `Network` over a batch in precision T (float32 or float64). Every
/// buffer is allocated once, on first use, for `maxBatch` rows (nothing is allocated per step). GEMMs go to OpenBLAS
/// (biases as rank-1 products with a ones vector); the spatial layers' loops and element-wise work to the C core.
///
/// Per node, with s_w, s_b the layer's forward factors (`ParameterLayer.scale`) and δ = ∂L/∂(node output):
///
///     dense      z = s_w·h·W + s_b·1bᵀ          ∂W += s_w·hᵀδ,  ∂b += s_b·1ᵀδ,  δ_h = s_w·δ·Wᵀ
///     conv       z = s_w·cols(h)·W + s_b·1bᵀ    ∂W += s_w·cols(h)ᵀδ, ∂b += s_b·1ᵀδ, δ_h = col2im(s_w·δ·Wᵀ)
///     φ          a = φ(z)                        δ_z = δ ⊙ φ'(z)
///     avg_pool   y = P·h (window means)          δ_h = Pᵀδ
///     global     y = mean_p h_p                  δ_h,p = δ/positions
///     layer_norm y = (h − μ)/σ                   δ_h = (δ − mean δ − y·mean(δ ⊙ y))/σ
///     residual   fork keeps h; join y = h + branch(h); δ_h = δ_branch + δ
///
/// Conventions (llm.c): `backward` accumulates into `grad` (+=); the caller zeroes it. The tangent pass is the
/// same program with ż in place of z: linear layers apply to ż (plus the direction v's slices for dense and conv),
/// φ multiplies by φ'(z), layer norm applies its (symmetric) Jacobian.
public final class Passes<T: NTKFloat> {
    public let network: Network
    public let maxBatch: Int
    /// Whether a value depends on θ (its tangent is not zero and the backward pass needs its δ).
    let live: [Bool]
    /// Index of the first node with parameters (nodes before it need no backward pass).
    let firstParameterNode: Int
    let scales: [(w: T, b: T)]
    /// Whether 3×3, stride-1 convs may run on Winograd tiles (`PassesWinograd.swift`; `NTK_CONV=im2col` sets the
    /// default to false). Set it before the first pass.
    var allowsWinograd = fastConvsByEnvironment
    /// Whether convs with short patches may run on the short-k kernels (`PassesSmallK.swift`; `NTK_CONV=im2col` sets
    /// the default to false). Set it before the first pass.
    var allowsSmallK = fastConvsByEnvironment
    /// The Winograd output tile size, 2 or 4, when fixed (`NTK_CONV=winograd2` / `winograd4`); nil: chosen per conv
    /// by the GEMM multiplies (`winogradTile`). Set it before the first pass.
    var winogradTileSize: Int? = convByEnvironment == "winograd2" ? 2 : convByEnvironment == "winograd4" ? 4 : nil
    /// Seconds per node in the forward and backward passes, summed over calls while not nil (`ntk bench --cnn`
    /// prints it; nil by default: no clock is read).
    public var profile: (forward: [Double], backward: [Double])?

    /// Runs `body` and adds its wall time to node j's forward or backward entry of `profile` (when profiling).
    @inline(__always)
    private func timed(_ j: Int, backward: Bool, _ body: () -> Void) {
        guard profile != nil else { return body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        if backward { profile!.backward[j] += dt } else { profile!.forward[j] += dt }
    }

    public convenience init(spec: NetworkSpec, maxBatch: Int) { self.init(network: Network(spec), maxBatch: maxBatch) }

    public init(network: Network, maxBatch: Int) {
        self.network = network
        self.maxBatch = max(1, maxBatch)
        var live = [Bool](repeating: false, count: network.valueCounts.count)
        for node in network.nodes {
            switch node.op {
            case .dense, .conv: live[node.output] = true
            case .join(let skip): live[node.output] = live[node.input] || live[skip]
            default: live[node.output] = live[node.input]
            }
        }
        self.live = live
        firstParameterNode = network.parameters.first?.node ?? network.nodes.count
        scales = network.parameters.map { (T($0.scale.w), T($0.scale.b)) }
    }

    deinit { for p in owned { p.deallocate() } }

    // MARK: - Buffers

    private var owned: [UnsafeMutablePointer<T>] = []
    /// A buffer owned by the passes, left uninitialized (every pass writes a buffer before it reads it; T is a
    /// trivial type).
    func allocate(_ count: Int) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        owned.append(p)
        return p
    }

    /// The forward values (row 0 of each; nil for value 0, the caller's x) and the per-node caches (φ' of an
    /// activation, 1/σ of a layer norm).
    struct Storage {
        var values: [UnsafeMutablePointer<T>?]
        var caches: [UnsafeMutablePointer<T>?]
    }

    private lazy var storage: Storage = makeStorage(override: [:])

    /// Buffers for every value and cache, except the values in `override` (callers' arrays).
    private func makeStorage(override: [Int: UnsafeMutablePointer<T>]) -> Storage {
        var values = [UnsafeMutablePointer<T>?](repeating: nil, count: network.valueCounts.count)
        var caches = [UnsafeMutablePointer<T>?](repeating: nil, count: network.nodes.count)
        for (j, node) in network.nodes.enumerated() {
            if node.output != 0 && values[node.output] == nil {
                values[node.output] = override[node.output] ?? allocate(maxBatch * network.valueCounts[node.output])
            }
            switch node.op {
            case .activation: caches[j] = allocate(maxBatch * node.outShape.count)
            case .layerNorm: caches[j] = allocate(maxBatch * max(1, node.outShape.positions))
            default: break
            }
        }
        return Storage(values: values, caches: caches)
    }

    /// Per-sample scratch of the largest im2col conv (its rows), and a ones vector for bias products.
    private lazy var colsCapacity: Int = {
        var most = 0
        for node in network.nodes {
            guard case .conv(_, let g) = node.op else { continue }
            most = max(most, g.oh * g.ow * g.patch)
        }
        return most
    }()
    /// Samples per conv chunk: the im2col buffer stays near 16 M elements (at least one sample).
    lazy var chunk: Int = colsCapacity == 0 ? maxBatch : max(1, min(maxBatch, (16 << 20) / colsCapacity))
    lazy var cols: UnsafeMutablePointer<T> = allocate(chunk * colsCapacity)
    lazy var cols2: UnsafeMutablePointer<T> = allocate(chunk * colsCapacity)
    lazy var ones: UnsafeMutablePointer<T> = {
        var most = maxBatch
        for node in network.nodes { most = max(most, chunk * node.outShape.positions, node.inShape.positions) }
        most = max(most, winogradExtent.positions)
        let p = allocate(most)
        p.initialize(repeating: 1, count: most)
        return p
    }()

    /// Winograd scratch (`PassesWinograd.swift`): a conv's transformed filters U [planes, C_in·C_out]; per group of
    /// samples, the planes of one chunk (V or dV, M or dM) and a partial gradient (dU [planes, C_in·C_out], then Σ δ
    /// [C_out]); zeros for padded tile inputs.
    lazy var winogradFilters: UnsafeMutablePointer<T> = allocate(winogradExtent.filters)
    lazy var winogradFilterGradients: UnsafeMutablePointer<T> =
        allocate(Self.winogradGroups * (winogradExtent.filters + winogradExtent.channels))
    lazy var winogradScratch: [(UnsafeMutablePointer<T>, UnsafeMutablePointer<T>)] =
        (0..<Self.winogradGroups).map { _ in (allocate(winogradExtent.planes), allocate(winogradExtent.planes)) }
    /// Short-k scratch (`PassesSmallK.swift`), `smallKStride` elements per group of samples.
    lazy var smallKScratch: UnsafeMutablePointer<T> = allocate(Self.winogradGroups * smallKStride)
    lazy var winogradZeros: UnsafeMutablePointer<T> = {
        let p = allocate(winogradExtent.channels)
        p.initialize(repeating: 0, count: winogradExtent.channels)
        return p
    }()
    private var winogradExtent: (filters: Int, channels: Int, planes: Int, positions: Int) {
        var most = (filters: 0, channels: 0, planes: 0, positions: 0)
        for node in network.nodes {
            guard case .conv(let l, let g) = node.op, usesWinograd(g) else { continue }
            let cout = network.parameters[l].fanOut, chunk = winogradChunk(g, cout)
            most = (max(most.filters, planes(g) * g.c * cout), max(most.channels, g.c, cout),
                    max(most.planes, chunk * winogradPlanes(g, cout)), max(most.positions, chunk * g.oh * g.ow))
        }
        return most
    }

    /// f(x) of the last `forward` [n, k] (row-major).
    public var outputPointer: UnsafePointer<T> { UnsafePointer(storage.values[network.outputValue]!) }

    /// Register files for the backward and tangent passes: ids → buffers of `rows` rows, reused once an id is dead.
    private struct Registers {
        var slot: [Int: Int]
        var buffers: [UnsafeMutablePointer<T>]
    }

    /// Assigns buffers to ids over a sequence of steps (each reads some ids and writes some): an id holds its buffer
    /// from its first write to its last read; an id written in a step never shares a buffer with one read in it
    /// unless it is the same id (in place). `pinned` ids live in callers' arrays.
    private func registers(_ steps: [(reads: [Int], writes: [Int])], rows: Int, pinned: Set<Int>) -> Registers {
        var last = [Int: Int]()
        for (s, step) in steps.enumerated() { for id in step.reads + step.writes { last[id] = s } }
        var slot = [Int: Int](), free: [Int] = [], sizes: [Int] = []
        // a δ id past the values is a join's copy of its output δ
        func size(_ id: Int) -> Int { id < network.valueCounts.count ? network.valueCounts[id] : network.nodes[id - network.valueCounts.count].outShape.count }
        for (s, step) in steps.enumerated() {
            for id in step.writes where slot[id] == nil && !pinned.contains(id) {
                if let r = free.popLast() { slot[id] = r } else { slot[id] = sizes.count; sizes.append(0) }
                sizes[slot[id]!] = max(sizes[slot[id]!], size(id))
            }
            for id in Set(step.reads + step.writes) where last[id] == s { if let r = slot[id] { free.append(r) } }
        }
        return Registers(slot: slot, buffers: sizes.map { allocate(rows * $0) })
    }

    /// Runs `body(start, count)` over [0, total) in one contiguous block per worker, on our own threads. Block edges
    /// fall on multiples of `align` (64 elements: every block splits into SIMD steps and a tail exactly as the whole
    /// range does, so the result does not depend on the thread count); totals below `minimum` run inline.
    func split(_ total: Int, align: Int = 64, minimum: Int = 2, _ body: (Int, Int) -> Void) {
        let workers = OwnThreads.workers
        guard workers > 1, total >= minimum else { return body(0, total) }
        let per = ((total + workers - 1) / workers + align - 1) / align * align
        OwnThreads.forEach((total + per - 1) / per) { _, i in body(i * per, min(total, (i + 1) * per) - i * per) }
    }

    // MARK: - Forward

    /// Computes f(x) for n rows of x [n, input count] into the passes' own buffers (`outputPointer`).
    public func forward(theta: UnsafePointer<T>, x: UnsafePointer<T>, n: Int) {
        forward(theta: theta, x: x, n: n, storage: storage)
    }

    /// The forward pass with the values in `override` written into callers' arrays (row 0 pointers).
    func forward(theta: UnsafePointer<T>, x: UnsafePointer<T>, n: Int, override: [Int: UnsafeMutablePointer<T>]) -> Storage {
        let s = makeStorage(override: override)
        forward(theta: theta, x: x, n: n, storage: s)
        return s
    }

    private func forward(theta: UnsafePointer<T>, x: UnsafePointer<T>, n: Int, storage s: Storage) {
        precondition(n <= maxBatch)
        func value(_ v: Int) -> UnsafePointer<T> { v == 0 ? x : UnsafePointer(s.values[v]!) }
        for (j, node) in network.nodes.enumerated() {
            timed(j, backward: false) { forwardNode(j, node, theta: theta, n: n, storage: s, value: value) }
        }
    }

    private func forwardNode(_ j: Int, _ node: Network.Node, theta: UnsafePointer<T>, n: Int, storage s: Storage,
                             value: (Int) -> UnsafePointer<T>) {
        let inCount = node.inShape.count, outCount = node.outShape.count
        switch node.op {
        case .dense(let l):
            dense(l, params: theta, input: value(node.input), rows: n, into: s.values[node.output]!, accumulate: false)
        case .conv(let l, let g):
            conv(l, g, params: theta, input: value(node.input), samples: n, into: s.values[node.output]!, accumulate: false)
        case .activation(let a):
            let out = s.values[node.output]!
            if node.output != node.input { out.update(from: value(node.input), count: n * outCount) }
            let cache = s.caches[j]!
            split(n * outCount, minimum: 1 << 16) { i, c in T.activate(out + i, cache + i, c, a) }
        case .avgPool, .globalAvgPool:
            pool(node, value(node.input), s.values[node.output]!, rows: n)
        case .flatten, .fork:
            break
        case .layerNorm(let eps):
            let input = value(node.input), out = s.values[node.output]!, p = max(1, node.inShape.positions)
            for r in 0..<n {
                T.layerNormForward(out + r * outCount, s.caches[j]! + r * p, input + r * inCount, p, node.inShape.channels, eps)
            }
        case .join(let skip):
            let out = s.values[node.output]!
            if node.output != node.input { out.update(from: value(node.input), count: n * outCount) }
            T.axpy(out, 1, value(skip), n * outCount)
        }
    }

    /// Dense layer l with W and b taken from `params` (θ, or a direction v): z [rows, out] (+)= s_b·1·bᵀ + s_w·h·W.
    private func dense(_ l: Int, params: UnsafePointer<T>, input: UnsafePointer<T>, rows: Int, into z: UnsafeMutablePointer<T>,
                       accumulate: Bool) {
        let p = network.parameters[l], (sw, sb) = scales[l]
        var beta: T = accumulate ? 1 : 0
        if let b = p.b {
            addBias(z, params + b, sb, rows: rows, cols: p.fanOut, accumulate: accumulate)
            beta = 1
        }
        T.gemm(transA: false, transB: false, m: rows, n: p.fanOut, k: p.fanIn, alpha: sw, a: input, lda: p.fanIn,
               b: params + p.w, ldb: p.fanOut, beta: beta, c: z, ldc: p.fanOut)
    }

    /// z [rows, cols] = s_b·1·bᵀ, or += with `accumulate`. Written: the first row, then copies of the rows done so far
    /// (memcpy speed — a k = 1 GEMM would run at a few GFLOP/s); accumulated: a rank-1 GEMM.
    func addBias(_ z: UnsafeMutablePointer<T>, _ b: UnsafePointer<T>, _ sb: T, rows: Int, cols: Int, accumulate: Bool) {
        if accumulate {
            T.gemm(transA: false, transB: false, m: rows, n: cols, k: 1, alpha: sb, a: ones, lda: 1, b: b, ldb: cols, beta: 1, c: z, ldc: cols)
            return
        }
        guard rows > 0 else { return }
        z.update(from: b, count: cols)
        T.scale(z, sb, cols)
        var done = 1
        while done < rows {
            let c = min(done, rows - done)
            (z + done * cols).update(from: z, count: c * cols)
            done += c
        }
    }

    /// The patches of samples [r0, r0 + m) of an image batch in `buffer` ([m·positions_out, kh·kw·C_in]); a 1×1,
    /// stride-1 conv reads its input as it is.
    private func patches(_ g: Window, _ input: UnsafePointer<T>, _ r0: Int, _ m: Int, _ buffer: UnsafeMutablePointer<T>) -> UnsafePointer<T> {
        let inCount = g.h * g.w * g.c
        if g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 { return input + r0 * inCount }
                let per = g.oh * g.ow * g.kh * g.kw * g.c
        for s in 0..<m { T.im2col(input + (r0 + s) * inCount, buffer + s * per, g) }
        return UnsafePointer(buffer)
    }

    /// Conv layer l: z (+)= s_w·cols(h)·W (+ s_b·1·bᵀ if `bias`) — on Winograd tiles, the short-k kernels, or im2col
    /// + GEMM in chunks of samples.
    private func conv(_ l: Int, _ g: Window, params: UnsafePointer<T>, input: UnsafePointer<T>, samples n: Int,
                      into z: UnsafeMutablePointer<T>, accumulate: Bool, bias: Bool = true) {
        if usesWinograd(g) {
            return winogradConv(l, g, params: params, input: input, samples: n, into: z, accumulate: accumulate,
                                bias: bias)
        }
        if usesSmallK(g) {
            return smallKConv(l, g, params: params, input: input, samples: n, into: z, accumulate: accumulate,
                              bias: bias)
        }
        let p = network.parameters[l], (sw, sb) = scales[l], d = g.oh * g.ow
        var r0 = 0
        while r0 < n {
            let m = min(chunk, n - r0), out = z + r0 * d * p.fanOut
            let a = patches(g, input, r0, m, cols)
            var beta: T = accumulate ? 1 : 0
            if bias, let b = p.b {
                addBias(out, params + b, sb, rows: m * d, cols: p.fanOut, accumulate: accumulate)
                beta = 1
            }
            T.gemm(transA: false, transB: false, m: m * d, n: p.fanOut, k: p.fanIn, alpha: sw, a: a, lda: p.fanIn,
                   b: params + p.w, ldb: p.fanOut, beta: beta, c: out, ldc: p.fanOut)
            r0 += m
        }
    }

    /// The pooling layers, linear maps applied row by row (to values in the forward pass, to ż in the tangent pass):
    /// avg_pool's window means (C), global_avg_pool's mean over positions (1ᵀ·h/positions, a GEMM per row).
    private func pool(_ node: Network.Node, _ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>, rows n: Int) {
        let inCount = node.inShape.count, outCount = node.outShape.count
        switch node.op {
        case .avgPool(let g, let normalize):
            split(n, align: 1) { r0, m in
                for r in r0..<r0 + m { T.avgPoolForward(src + r * inCount, dst + r * outCount, g, normalize) }
            }
        case .globalAvgPool:
            let d = node.inShape.positions
            for r in 0..<n {
                T.gemm(transA: false, transB: false, m: 1, n: outCount, k: d, alpha: T(1 / Double(d)), a: ones, lda: d,
                       b: src + r * inCount, ldb: outCount, beta: 0, c: dst + r * outCount, ldc: outCount)
            }
        default: preconditionFailure("not a pooling node")
        }
    }

    // MARK: - Tangent (JVP)

    private lazy var tangentRegisters: Registers = {
        var steps: [(reads: [Int], writes: [Int])] = []
        for node in network.nodes where live[node.output] {
            var reads = live[node.input] ? [node.input] : []
            if case .join(let skip) = node.op, live[skip] { reads.append(skip) }
            steps.append((reads, [node.output]))
        }
        return registers(steps, rows: maxBatch, pinned: [])
    }()

    /// J(x)·v at the θ of the last `forward` (whose values and caches it reuses), [n, k] into `out`. This is how the
    /// linearized network f_lin(θ) = f(θ₀) + J(θ₀)·(θ − θ₀) is evaluated without forming J (PAPER Eq. 5).
    public func jvp(theta: UnsafePointer<T>, x: UnsafePointer<T>, n: Int, direction v: UnsafePointer<T>,
                    out: UnsafeMutablePointer<T>) {
        let s = storage, regs = tangentRegisters
        func value(_ id: Int) -> UnsafePointer<T> { id == 0 ? x : UnsafePointer(s.values[id]!) }
        func tangent(_ id: Int) -> UnsafeMutablePointer<T> { regs.buffers[regs.slot[id]!] }
        for (j, node) in network.nodes.enumerated() where live[node.output] {
            let inCount = node.inShape.count, outCount = node.outShape.count, liveIn = live[node.input]
            let dst = tangent(node.output)
            switch node.op {
            case .dense(let l):
                let p = network.parameters[l]
                dense(l, params: v, input: value(node.input), rows: n, into: dst, accumulate: false)
                if liveIn {
                    T.gemm(transA: false, transB: false, m: n, n: p.fanOut, k: p.fanIn, alpha: scales[l].w, a: tangent(node.input),
                           lda: p.fanIn, b: theta + p.w, ldb: p.fanOut, beta: 1, c: dst, ldc: p.fanOut)
                }
            case .conv(let l, let g):
                conv(l, g, params: v, input: value(node.input), samples: n, into: dst, accumulate: false)
                if liveIn {
                    conv(l, g, params: theta, input: tangent(node.input), samples: n, into: dst, accumulate: true,
                         bias: false)
                }
            case .activation:
                let src = tangent(node.input), cache = s.caches[j]!
                split(n * outCount, minimum: 1 << 16) { i, c in T.hadamard(dst + i, src + i, cache + i, c) }
            case .avgPool, .globalAvgPool:
                pool(node, tangent(node.input), dst, rows: n)
            case .flatten, .fork:
                break
            case .layerNorm:
                let src = tangent(node.input), y = UnsafePointer(s.values[node.output]!), p = max(1, node.inShape.positions)
                for r in 0..<n {
                    T.layerNormBackward(dst + r * outCount, src + r * inCount, y + r * outCount, s.caches[j]! + r * p, p, node.inShape.channels)
                }
            case .join(let skip):
                if liveIn {
                    if node.output != node.input { dst.update(from: tangent(node.input), count: n * outCount) }
                    if live[skip] { T.axpy(dst, 1, tangent(skip), n * outCount) }
                } else {
                    dst.update(from: tangent(skip), count: n * outCount)
                }
            }
        }
        out.update(from: tangent(network.outputValue), count: n * network.outputs)
    }

    // MARK: - Backward

    /// The δ ids of the backward pass: value ids, and for each join one more (the copy of δ its fork adds).
    private func skipDelta(_ join: Int) -> Int { network.valueCounts.count + join }

    /// The backward program: per node (in reverse), the δ ids it reads and writes (computed once).
    private lazy var backwardSteps: [(node: Int, reads: [Int], writes: [Int])] = makeBackwardSteps()
    private func makeBackwardSteps() -> [(node: Int, reads: [Int], writes: [Int])] {
        var steps: [(node: Int, reads: [Int], writes: [Int])] = [(-1, [], [network.outputValue])]  // δ_f = dOutput
        for j in stride(from: network.nodes.count - 1, through: firstParameterNode, by: -1) {
            let node = network.nodes[j], wantsInput = live[node.input]
            switch node.op {
            case .fork: steps.append((j, [node.output, skipDelta(joinOf(fork: j))], [node.input]))
            case .join: steps.append((j, [node.output], [node.input, skipDelta(j)]))
            default: steps.append((j, [node.output], wantsInput ? [node.input] : []))
            }
        }
        return steps
    }

    private lazy var joins: [Int: Int] = {
        var open: [Int] = [], out = [Int: Int]()
        for (j, node) in network.nodes.enumerated() {
            if case .fork = node.op { open.append(j) }
            if case .join = node.op { out[open.removeLast()] = j }
        }
        return out
    }()
    private func joinOf(fork j: Int) -> Int { joins[j]! }

    private lazy var trainingRegisters: Registers = registers(backwardSteps.map { ($0.reads, $0.writes) }, rows: maxBatch, pinned: [])

    /// grad += ∂L/∂θ given dL/df [n, k] for the batch last passed to `forward`.
    public func backward(theta: UnsafePointer<T>, x: UnsafePointer<T>, n: Int, dOutput: UnsafePointer<T>, grad: UnsafeMutablePointer<T>) {
        let regs = trainingRegisters
        backpropagate(theta: theta, x: x, rows: n, rep: 1, storage: storage, dOutput: dOutput,
                      delta: { regs.buffers[regs.slot[$0]!] }, grad: grad, onParameter: nil)
    }

    /// Backpropagates `rows` = n·rep cotangents of the outputs: row r is a cotangent at sample r / rep (the forward
    /// pass's caches are read at that sample). `delta(id)` gives each δ's buffer (row 0); `grad` (rep = 1 only)
    /// receives ∂θ; `onParameter(l, δ)` sees each parameter layer's output δ before the layer's own backward step.
    func backpropagate(theta: UnsafePointer<T>, x: UnsafePointer<T>, rows: Int, rep: Int, storage s: Storage, dOutput: UnsafePointer<T>,
                       delta: (Int) -> UnsafeMutablePointer<T>, grad: UnsafeMutablePointer<T>?,
                       onParameter: ((Int, UnsafePointer<T>) -> Void)?) {
        if firstParameterNode >= network.nodes.count { return }
        delta(network.outputValue).update(from: dOutput, count: rows * network.outputs)
        for step in backwardSteps where step.node >= 0 {
            timed(step.node, backward: true) {
                backwardNode(step.node, theta: theta, x: x, rows: rows, rep: rep, storage: s, delta: delta, grad: grad,
                             onParameter: onParameter)
            }
        }
    }

    private func backwardNode(_ j: Int, theta: UnsafePointer<T>, x: UnsafePointer<T>, rows: Int, rep: Int, storage s: Storage,
                              delta: (Int) -> UnsafeMutablePointer<T>, grad: UnsafeMutablePointer<T>?,
                              onParameter: ((Int, UnsafePointer<T>) -> Void)?) {
        let n = rows / rep
        func value(_ id: Int) -> UnsafePointer<T> { id == 0 ? x : UnsafePointer(s.values[id]!) }
        let node = network.nodes[j]
        let inCount = node.inShape.count, outCount = node.outShape.count, wantsInput = live[node.input]
        let dy = UnsafePointer(delta(node.output))
        switch node.op {
        case .dense(let l):
            onParameter?(l, dy)
            let p = network.parameters[l], (sw, sb) = scales[l]
            if let grad {
                T.gemm(transA: true, transB: false, m: p.fanIn, n: p.fanOut, k: n, alpha: sw, a: value(node.input), lda: p.fanIn,
                       b: dy, ldb: p.fanOut, beta: 1, c: grad + p.w, ldc: p.fanOut)
                if let b = p.b {
                    T.gemm(transA: false, transB: false, m: 1, n: p.fanOut, k: n, alpha: sb, a: ones, lda: n,
                           b: dy, ldb: p.fanOut, beta: 1, c: grad + b, ldc: p.fanOut)
                }
            }
            if wantsInput {
                T.gemm(transA: false, transB: true, m: rows, n: p.fanIn, k: p.fanOut, alpha: sw, a: dy, lda: p.fanOut,
                       b: theta + p.w, ldb: p.fanOut, beta: 0, c: delta(node.input), ldc: p.fanIn)
            }
        case .conv(let l, let g) where usesWinograd(g):
            onParameter?(l, dy)
            winogradBackward(l, g, theta: theta, input: value(node.input), rows: rows, dy: dy, grad: grad,
                             dx: wantsInput ? delta(node.input) : nil)
        case .conv(let l, let g):
            onParameter?(l, dy)
            let p = network.parameters[l], (sw, sb) = scales[l], d = g.oh * g.ow
            if let grad, usesSmallK(g) {
                smallKGradients(l, g, input: value(node.input), samples: n, dy: dy, grad: grad)
            } else if let grad {
                var r0 = 0
                while r0 < n {
                    let m = min(chunk, n - r0), dyc = dy + r0 * d * p.fanOut
                    let a = patches(g, value(node.input), r0, m, cols)
                    T.gemm(transA: true, transB: false, m: p.fanIn, n: p.fanOut, k: m * d, alpha: sw, a: a, lda: p.fanIn,
                           b: dyc, ldb: p.fanOut, beta: 1, c: grad + p.w, ldc: p.fanOut)
                    if let b = p.b {
                        T.gemm(transA: false, transB: false, m: 1, n: p.fanOut, k: m * d, alpha: sb, a: ones, lda: m * d,
                               b: dyc, ldb: p.fanOut, beta: 1, c: grad + b, ldc: p.fanOut)
                    }
                    r0 += m
                }
            }
            if wantsInput {
                let dx = delta(node.input), direct = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1
                var r0 = 0
                while r0 < rows {
                    let m = min(chunk, rows - r0)
                    let target = direct ? dx + r0 * inCount : cols2
                    T.gemm(transA: false, transB: true, m: m * d, n: p.fanIn, k: p.fanOut, alpha: sw, a: dy + r0 * d * p.fanOut,
                           lda: p.fanOut, b: theta + p.w, ldb: p.fanOut, beta: 0, c: target, ldc: p.fanIn)
                    if !direct {
                        for r in 0..<m { T.col2im(cols2 + r * d * p.fanIn, dx + (r0 + r) * inCount, g) }
                    }
                    r0 += m
                }
            }
        case .activation:
            let dx = delta(node.input), dphi = UnsafePointer(s.caches[j]!)
            if rep == 1 {
                split(rows * outCount, minimum: 1 << 16) { i, c in T.hadamard(dx + i, dy + i, dphi + i, c) }
            } else {
                for r in 0..<rows { T.hadamard(dx + r * outCount, dy + r * outCount, dphi + (r / rep) * outCount, outCount) }
            }
        case .avgPool(let g, let normalize):
            let dx = delta(node.input)
            split(rows, align: 1) { r0, m in
                for r in r0..<r0 + m { T.avgPoolBackward(dy + r * outCount, dx + r * inCount, g, normalize) }
            }
        case .globalAvgPool:
            let dx = delta(node.input), d = node.inShape.positions
            for r in 0..<rows {
                T.gemm(transA: false, transB: false, m: d, n: outCount, k: 1, alpha: T(1 / Double(d)), a: ones, lda: 1,
                       b: dy + r * outCount, ldb: outCount, beta: 0, c: dx + r * inCount, ldc: outCount)
            }
        case .flatten:
            break
        case .layerNorm:
            let dx = delta(node.input), y = value(node.output), p = max(1, node.inShape.positions), inv = UnsafePointer(s.caches[j]!)
            for r in 0..<rows {
                T.layerNormBackward(dx + r * inCount, dy + r * outCount, y + (r / rep) * outCount, inv + (r / rep) * p, p,
                                    node.inShape.channels)
            }
        case .fork:
            T.axpy(delta(node.input), 1, delta(skipDelta(joinOf(fork: j))), rows * outCount)
        case .join:
            delta(skipDelta(j)).update(from: dy, count: rows * outCount)
            if node.input != node.output { delta(node.input).update(from: dy, count: rows * outCount) }
        }
    }

    // MARK: - Per-sample parameter gradients (the empirical NTK of conv layers)

    /// For conv layer l (node `j`): per cotangent row r (sample r / rep), the filter gradient
    /// J_r = cols(h_{r/rep})ᵀ·δ_r [kh·kw·C_in, C_out] into `jw` + r·P and the bias gradient 1ᵀδ_r [C_out] into `jb`,
    /// without the forward factors s_w, s_b (the kernel's coefficients carry them).
    func convJacobian(_ l: Int, input: UnsafePointer<T>, delta dy: UnsafePointer<T>, rows: Int, rep: Int,
                      jw: UnsafeMutablePointer<T>, jb: UnsafeMutablePointer<T>?) {
        guard case .conv(_, let g) = network.nodes[network.parameters[l].node].op else { return }
        let p = network.parameters[l], d = g.oh * g.ow, n = rows / rep
        var s0 = 0
        while s0 < n {
            let m = min(chunk, n - s0)
            let a = patches(g, input, s0, m, cols)
            for s in 0..<m {
                for i in 0..<rep {
                    let r = (s0 + s) * rep + i
                    T.gemm(transA: true, transB: false, m: p.fanIn, n: p.fanOut, k: d, alpha: 1, a: a + s * d * p.fanIn, lda: p.fanIn,
                           b: dy + r * d * p.fanOut, ldb: p.fanOut, beta: 0, c: jw + r * p.wCount, ldc: p.fanOut)
                    if let jb {
                        T.gemm(transA: false, transB: false, m: 1, n: p.fanOut, k: d, alpha: 1, a: ones, lda: d,
                               b: dy + r * d * p.fanOut, ldb: p.fanOut, beta: 0, c: jb + r * p.fanOut, ldc: p.fanOut)
                    }
                }
            }
            s0 += m
        }
    }

    /// Registers for a signals pass of `rows` rows with the ids in `pinned` in callers' arrays.
    func signalRegisters(rows: Int, pinned: Set<Int>) -> (Int) -> UnsafeMutablePointer<T> {
        let regs = registers(backwardSteps.map { ($0.reads, $0.writes) }, rows: rows, pinned: pinned)
        return { regs.buffers[regs.slot[$0]!] }
    }
}
