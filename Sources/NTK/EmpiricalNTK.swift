import Dispatch

/// The empirical NTK Θ̂(x, x') = J(x)·J(x')ᵀ of a finite network in precision T, without forming J:
/// for a Dense layer ∂f_i/∂W_l = s_w·a_l ⊗ δ_l^i, so each layer contributes a Hadamard product of two Gram
/// matrices (PAPER §1.7, neural-tangents' "structured derivatives"):
///
///     Θ̂_l[(a,i),(b,j)] = (c_w·a_l(x_a)·a_l(x'_b) + c_b) · δ_l^i(x_a)·δ_l^j(x'_b)
///
/// with c_w = σ_w²/fan_in, c_b = σ_b² (NTK parameterization) or c_w = c_b = 1 (standard; c_b = 0 without bias),
/// and δ_l^i = ∂f_i/∂z_{l+1} — the backprop signals of all k outputs, one GEMM per layer ([N·k, n_{l+1}]·W̃ᵀ).
/// The read-out's signals are the identity (δ^i = e_i), so its term is (c_w·G + c_b)·[i = j].
///
/// - traced: [N1, N2] = (1/k)·Σ_i Θ̂[(a,i),(b,i)] — per layer the Gram of Δ_l viewed as [N, k·n] — neural-tangents'
///   default `trace_axes=(-1,)`;
/// - full: [N1·k, N2·k] with row a·k + i (neural-tangents' [N1, N2, k, k] transposed to [N1, k, N2, k]);
/// - per layer: the W and b contributions of each Dense layer separately (neural-tangents gives only the sum).
///
/// How it runs: the features (forward pass and signals) of slices of the inputs, then the kernel in output tiles of
/// about 512 × 512 (each tile: every layer's two Gram blocks, GEMM — or SYRK on the diagonal when x2 = x1 — and the
/// fused Hadamard sum, written once, with its transpose when x2 = x1). Both are spread over our own threads with
/// OpenBLAS single-threaded inside (`OwnThreads`): independent medium GEMMs side by side, no full-size temporaries.
///
/// Cost (symmetric, traced): forward 2N·P, signals 2N·k·Σ n_l·n_{l+1} (all but the last hidden layer, whose signals
/// are a broadcast), Grams N²·Σ(n_l + k·n_{l+1}) — all GEMM/SYRK.
///
/// Conv layers (D output positions, F = kh·kw, P_l = F·C_in·C_out) take the Jacobian contraction: per-sample filter
/// gradients J_l = cols(h)ᵀ·Δ (N·k·D·P_l multiply-adds) and their Gram (N²·k·P_l, half with SYRK). The structured
/// alternative — Grams of the patches and of the signals over position pairs, N²·D²·(F·C_in + k·C_out) — is the
/// cheaper one only when D²·(F·C_in + k·C_out) < k·P_l·(1 + D/N): a handful of positions (D ≲ 10 for 3×3 convs of
/// 64–256 channels; the Myrtle CNN's layers have D = 784, 196, 49, where the contraction is 10²–10⁵× cheaper). Dense
/// layers are D = 1, where the structured Grams win by a factor k·fan_out; that is the rule applied per layer.
public struct EmpiricalNTK<T: NTKFloat> {
    public enum Output: Sendable { case traced, full }

    public struct Result {
        /// traced: [N1·N2]; full: [N1·k · N2·k], row-major.
        public var ntk: [T]
        public var rows: Int, cols: Int
        /// Per Dense layer l: (W contribution, b contribution or nil), same layout as `ntk` (when asked for).
        public var perLayer: [(w: [T], b: [T]?)]
        /// Useful floating-point operations performed (for throughput reports).
        public var flops: Double
    }

    /// Everything Θ̂ needs of a block of inputs (rows `rows` of some input matrix, B of them), per parameter layer l.
    public struct Features {
        public var rows: Range<Int>
        /// Dense layers: their input h_l [B, fan_in] (empty for conv layers).
        public var acts: [[T]]
        /// Dense layers: Δ_l [B·k, fan_out], row b·k + i = ∂f_i/∂z_l at x_b; empty for the read-out (the identity),
        /// for conv layers, and, for the traced kernel, for the compact layer below.
        public var signals: [[T]]
        /// F = φ'(z_c)·diag(√w) [B, n_c] with w_p = ‖W̃_R[p, :]‖² for the layer c of a tail dense(c) → φ → dense
        /// read-out R: Σ_i δ_c^i(a)·δ_c^i(b) = F_a·F_b, so that layer's traced Gram needs k times fewer flops. Empty
        /// when the network has no such tail.
        public var lastHidden: [T]
        /// Conv layers: the per-sample filter gradients J_l [B·k, kh·kw·C_in·C_out] and bias gradients [B·k, C_out]
        /// without the factors s_w, s_b (empty for dense layers, the bias ones also without a bias).
        public var jacobians: [[T]]
        public var biasJacobians: [[T]]
        /// Useful flops spent computing these features.
        public var flops: Double = 0

        public init(rows: Range<Int>, acts: [[T]], signals: [[T]], lastHidden: [T], jacobians: [[T]] = [], biasJacobians: [[T]] = []) {
            self.rows = rows; self.acts = acts; self.signals = signals; self.lastHidden = lastHidden
            let count = acts.count
            self.jacobians = jacobians.isEmpty ? Array(repeating: [], count: count) : jacobians
            self.biasJacobians = biasJacobians.isEmpty ? Array(repeating: [], count: count) : biasJacobians
        }
    }

    public let network: Network
    /// θ in float64 (the layout of `network`).
    public let parameters: [Double]
    /// Samples per output tile side (nil: about 512 rows of the output, at least two tiles per side). For tests.
    var tileSamples: Int?
    /// The inputs' features are computed in this many slices of consecutive samples, spread over the workers.
    static var featureSlices: Int { 4 }

    public init(_ net: MLP) { self.init(network: net.network, theta: net.theta) }
    public init(network: Network, theta: [Double]) {
        precondition(theta.count == network.parameterCount, "θ has \(theta.count) entries, the network needs \(network.parameterCount)")
        self.network = network
        parameters = theta
    }

    /// θ in precision T.
    private var theta: [T] {
        [T](unsafeUninitializedCapacity: parameters.count) { out, c in
            parameters.withUnsafeBufferPointer { if $0.count > 0 { T.convert(out.baseAddress!, from: $0.baseAddress!, $0.count) } }
            c = parameters.count
        }
    }

    /// The kernel's coefficients of parameter layer l: c_w = s_w², c_b = s_b² (0 without a bias).
    private func coefficients(_ l: Int) -> (cw: T, cb: T) {
        let p = network.parameters[l]
        return (T(p.scale.w * p.scale.w), p.b == nil ? 0 : T(p.scale.b * p.scale.b))
    }

    /// The read-out: the last parameter layer when it is a dense layer producing the output (its signals are the
    /// identity).
    var readout: Int? {
        guard let l = network.parameters.indices.last, network.parameters[l].kind == .dense,
              network.parameters[l].node == network.nodes.count - 1 else { return nil }
        return l
    }

    /// The compact layer c of a tail dense(c) → φ → dense read-out, with the activation's node.
    var compact: (layer: Int, activation: Int)? {
        guard let r = readout, r >= 1 else { return nil }
        let c = r - 1, p = network.parameters[c], nodes = network.nodes
        guard p.kind == .dense, p.node + 2 == network.parameters[r].node, case .activation = nodes[p.node + 1].op,
              nodes[p.node + 1].input == nodes[p.node].output else { return nil }
        return (c, p.node + 1)
    }

    /// The features of rows `rows` of x [n, input count]: dense inputs only (`output` nil), or also the signals,
    /// compact form and conv Jacobians the traced or full kernel needs. The rows are split in slices computed side by
    /// side: a forward pass (dense inputs written straight into the features), then one backward pass of the k·B
    /// cotangents e_i (row b·k + i, the forward caches read at sample b) — Δ_l of dense layers written in place,
    /// each conv layer's per-sample gradients J = cols(h)ᵀ·Δ taken as its Δ goes by.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func features(_ x: Matrix, rows: Range<Int>, output: Output?) -> Features {
        let net = network, k = net.outputs, n = rows.count, params = net.parameters, d = net.inputShape.count
        let theta = self.theta
        func uninitialized(_ count: Int) -> [T] { uninitializedArray(count, hugePages: false) }
        var xT = uninitialized(n * d)
        xT.withUnsafeMutableBufferPointer { a in
            x.data.withUnsafeBufferPointer { T.convert(a.baseAddress!, from: $0.baseAddress! + rows.lowerBound * x.cols, n * x.cols) }
        }
        let compact = output == .traced ? self.compact : nil
        let readout = self.readout
        var acts: [[T]] = params.map { p in
            guard p.kind == .dense else { return [] }
            return net.nodes[p.node].input == 0 ? xT : uninitialized(n * p.fanIn)
        }
        // Δ of dense layers except the read-out and the compact one; conv Jacobians
        var signals: [[T]] = params.indices.map { l in
            output == nil || params[l].kind != .dense || l == readout || l == compact?.layer ? [] : uninitialized(n * k * params[l].fanOut)
        }
        var jacobians: [[T]] = params.map { output != nil && $0.kind == .conv ? uninitialized(n * k * $0.wCount) : [] }
        var biasJacobians: [[T]] = params.map { output != nil && $0.kind == .conv && $0.b != nil ? uninitialized(n * k * $0.fanOut) : [] }
        var lastHidden = compact.map { uninitialized(n * params[$0.layer].fanOut) } ?? []
        // the compact form's √w_p = ‖s_w·W_R[p, :]‖
        var root: [T] = []
        if compact != nil, let r = readout {
            let p = params[r], s = p.scale.w
            root = (0..<p.fanIn).map { q in T((0..<k).reduce(0.0) { acc, i in let w = s * parameters[p.w + q * k + i]; return acc + w * w }.squareRoot()) }
        }
        let needsBackward = output != nil && (signals.contains { !$0.isEmpty } || jacobians.contains { !$0.isEmpty })
        // a fixed number of slices (not the worker count): each slice's products have the same shapes, and so the
        // same rounding, whatever --threads is
        let slices = max(1, min(Self.featureSlices, n))
        let bounds = (0...slices).map { $0 * n / slices }
        // Each slice writes its rows of the shared arrays through these (taken once, before the threads start; nil
        // for arrays not kept: an empty array's base address is a shared global that must never be written).
        func pointers(_ a: inout [[T]]) -> [UnsafeMutablePointer<T>?] {
            (0..<a.count).map { l in a[l].isEmpty ? nil : a[l].withUnsafeMutableBufferPointer { $0.baseAddress } }
        }
        let xP = xT.withUnsafeMutableBufferPointer { $0.baseAddress! }
        let actP = (0..<acts.count).map { l in
            acts[l].isEmpty || net.nodes[params[l].node].input == 0 ? nil : acts[l].withUnsafeMutableBufferPointer { $0.baseAddress }
        }
        let sigP = pointers(&signals), jacP = pointers(&jacobians), jbP = pointers(&biasJacobians)
        let lastP = lastHidden.isEmpty ? nil : lastHidden.withUnsafeMutableBufferPointer { $0.baseAddress }
        OwnThreads.forEach(slices) { _, s in
            let r0 = bounds[s], m = bounds[s + 1] - r0
            if m == 0 { return }
            let passes = Passes<T>(network: net, maxBatch: m)
            var override = [Int: UnsafeMutablePointer<T>]()
            for (l, p) in params.enumerated() where p.kind == .dense && net.nodes[p.node].input != 0 {
                override[net.nodes[p.node].input] = actP[l]! + r0 * p.fanIn
            }
            theta.withUnsafeBufferPointer { th in
                let x0 = UnsafePointer(xP + r0 * d)
                let store = passes.forward(theta: th.baseAddress!, x: x0, n: m, override: override)
                if let c = compact {
                    let width = params[c.layer].fanOut, dphi = store.caches[c.activation]!
                    root.withUnsafeBufferPointer { for a in 0..<m { T.hadamard(lastP! + (r0 + a) * width, dphi + a * width, $0.baseAddress!, width) } }
                }
                guard needsBackward else { return }
                // the cotangents e_i of the k outputs, row b·k + i
                var eye = [T](repeating: 0, count: m * k * k)
                for b in 0..<m { for i in 0..<k { eye[(b * k + i) * k + i] = 1 } }
                var pinned = [Int: UnsafeMutablePointer<T>]()
                for (l, p) in params.enumerated() where sigP[l] != nil { pinned[net.nodes[p.node].output] = sigP[l]! + r0 * k * p.fanOut }
                let registers = passes.signalRegisters(rows: m * k, pinned: Set(pinned.keys))
                eye.withUnsafeBufferPointer { e in
                    passes.backpropagate(theta: th.baseAddress!, x: x0, rows: m * k, rep: k, storage: store, dOutput: e.baseAddress!,
                                         delta: { pinned[$0] ?? registers($0) }, grad: nil) { l, dy in
                        guard let jw = jacP[l] else { return }
                        let input = net.nodes[params[l].node].input
                        let h = input == 0 ? x0 : UnsafePointer(store.values[input]!)
                        passes.convJacobian(l, input: h, delta: dy, rows: m * k, rep: k, jw: jw + r0 * k * params[l].wCount,
                                            jb: jbP[l].map { $0 + r0 * k * params[l].fanOut })
                    }
                }
            }
        }
        var f = Features(rows: rows, acts: acts, signals: signals, lastHidden: lastHidden, jacobians: jacobians, biasJacobians: biasJacobians)
        f.flops = featureFlops(n, output: output, backward: needsBackward)
        return f
    }

    /// Useful flops of `features` for n inputs: the forward pass (2·n per multiply-add of each dense and conv layer)
    /// and, when the backward pass of the n·k cotangents runs, each layer's input δ (where one is computed: not for a
    /// layer reading x) and the conv Jacobians.
    func featureFlops(_ n: Int, output: Output?, backward: Bool) -> Double {
        let k = Double(network.outputs)
        var flops = 0.0
        for p in network.parameters {
            let node = network.nodes[p.node], macs = Double(p.wCount) * Double(node.outShape.positions)
            flops += 2 * Double(n) * macs
            guard output != nil, backward else { continue }
            if node.input != 0 { flops += 2 * Double(n) * k * macs }
            if p.kind == .conv { flops += 2 * Double(n) * k * macs }
        }
        return flops
    }

    /// The empirical NNGP kernel of the read-out features x̄(x) = [s_w·h_R(x), s_b] (PAPER §2.5), h_R the input of the
    /// dense read-out: K̂(x, x') = c_w·h_R(x)·h_R(x') + c_b, [N1, N2] (c_w = σ_w²/n_R, c_b = σ_b² in NTK
    /// parameterization; the read-out's own σ's in standard). Needs a network that ends with a dense layer.
    public func nngp(x1: Matrix, x2: Matrix? = nil) -> [T] {
        guard let r = readout else { preconditionFailure("the empirical NNGP needs a network that ends with a dense layer") }
        let layer = network.parameters[r]
        let a1 = features(x1, rows: 0..<x1.rows, output: nil).acts[r]
        let a2 = x2.map { features($0, rows: 0..<$0.rows, output: nil).acts[r] } ?? a1
        let n2 = x2?.rows ?? x1.rows
        let cw = layer.wStd * layer.wStd / Double(layer.fanIn), cb = layer.bStd * layer.bStd
        var k = [T](repeating: T(cb), count: x1.rows * n2)
        a1.withUnsafeBufferPointer { a in
            a2.withUnsafeBufferPointer { b in
                k.withUnsafeMutableBufferPointer { c in
                    T.gemm(transA: false, transB: true, m: x1.rows, n: n2, k: layer.fanIn, alpha: T(cw), a: a.baseAddress!, lda: layer.fanIn,
                           b: b.baseAddress!, ldb: layer.fanIn, beta: 1, c: c.baseAddress!, ldc: n2)
                }
            }
        }
        return k
    }

    /// Θ̂ between the rows of x1 [N1, d] and x2 [N2, d] (x2 nil: x1 with itself, using SYRK and symmetry).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func compute(x1: Matrix, x2: Matrix? = nil, output: Output = .traced, perLayer: Bool = false) -> Result {
        let k = network.outputs, r = output == .full ? k : 1
        let f1 = features(x1, rows: 0..<x1.rows, output: output)
        let f2 = x2.map { features($0, rows: 0..<$0.rows, output: output) } ?? f1
        let rows = x1.rows * r, cols = f2.rows.count * r
        var sink = Sink(count: rows * cols, ld: cols, parts: perLayer ? network.parameters.indices.map { coefficients($0).cb != 0 } : [])
        let flops = sink.withPointers { accumulate(f1, f2, same: x2 == nil, mirror: x2 == nil, output: output, into: $0) }
        return Result(ntk: sink.ntk, rows: rows, cols: cols, perLayer: sink.perLayer, flops: f1.flops + (x2 == nil ? 0 : f2.flops) + flops)
    }
}

extension EmpiricalNTK {
    /// Where output tiles go: the kernel and, when asked for, each layer's W and b parts, all [rows, ld] row-major
    /// and written tile by tile exactly once (so they start uninitialized).
    struct Sink {
        var ntk: [T]
        var w: [[T]], b: [[T]?]
        let ld: Int
        var perLayer: [(w: [T], b: [T]?)] { zip(w, b).map { ($0, $1) } }

        /// `parts[l]`: layer l has a bias part; empty: no per-layer parts.
        init(count: Int, ld: Int, parts: [Bool]) {
            func uninitialized() -> [T] { uninitializedArray(count, hugePages: false) }
            ntk = uninitialized()
            w = parts.map { _ in uninitialized() }
            b = parts.map { $0 ? uninitialized() : nil }
            self.ld = ld
        }

        struct Pointers {
            let ntk: UnsafeMutablePointer<T>, w: [UnsafeMutablePointer<T>], b: [UnsafeMutablePointer<T>?], ld: Int
            /// Row offset and column offset of the block being computed (x1's and x2's first rows, in output rows).
            var rowOffset = 0, colOffset = 0
        }

        mutating func withPointers<R>(_ body: (Pointers) -> R) -> R {
            let wp = (0..<w.count).map { l in w[l].withUnsafeMutableBufferPointer { $0.baseAddress! } }
            let bp = (0..<b.count).map { l in b[l]?.withUnsafeMutableBufferPointer { $0.baseAddress! } }
            let ldc = ld
            return ntk.withUnsafeMutableBufferPointer { body(Pointers(ntk: $0.baseAddress!, w: wp, b: bp, ld: ldc)) }
        }
    }

    /// Per-worker scratch of one output tile.
    private final class Scratch {
        var acc: [T], d: [T], g: [T], gexp: [T], part: [T]
        init(tileRows: Int, tileSamples: Int, perLayer: Bool) {
            acc = [T](repeating: 0, count: tileRows * tileRows)
            d = acc
            g = [T](repeating: 0, count: tileSamples * tileSamples)
            gexp = [T](repeating: 0, count: tileRows)
            part = perLayer ? acc : []
        }
    }

    /// Adds nothing, overwrites: writes the kernel between feature blocks a and b into `sink` at rows a.rows and
    /// columns b.rows (in output rows: ×k when full, offset by `sink.rowOffset`/`colOffset`). `same`: a and b are one
    /// block (only tiles on and above the diagonal are computed, diagonal tiles with SYRK); `mirror`: also write each
    /// tile's transpose at the mirrored position (x2 = x1). Returns the useful flops of the Gram products.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func accumulate(_ a: Features, _ b: Features, same: Bool, mirror: Bool, output: Output, into sink: Sink.Pointers) -> Double {
        let r = output == .full ? network.outputs : 1
        let na = a.rows.count, nb = b.rows.count
        let workers = OwnThreads.workers
        var ts = tileSamples ?? max(1, 1024 / r)
        // at least two tiles per side whatever the worker count (which tiles are SYRKs decides the rounding)
        if tileSamples == nil { ts = min(ts, max(1, (max(na, nb) + 1) / 2)) }
        let ta = (na + ts - 1) / ts, tb = (nb + ts - 1) / ts
        // tiles (i, j), costliest first: off-diagonal (GEMM) before diagonal (SYRK, half the flops)
        var tiles = (0..<ta).flatMap { i in (0..<tb).compactMap { j in same && j < i ? nil : (i, j) } }
        tiles.sort { ($0.0 == $0.1 && same ? 1 : 0, $0.0, $0.1) < ($1.0 == $1.1 && same ? 1 : 0, $1.0, $1.1) }
        let perLayer = !sink.w.isEmpty
        let scratch = (0..<workers).map { _ in Scratch(tileRows: ts * r, tileSamples: ts, perLayer: perLayer) }
        var flops = [Double](repeating: 0, count: workers)
        let aBase = a.rows.lowerBound * r + sink.rowOffset, bBase = b.rows.lowerBound * r + sink.colOffset
        flops.withUnsafeMutableBufferPointer { fl in
            OwnThreads.forEach(tiles.count, workers: workers) { w, t in
                let (i, j) = tiles[t]
                let s = scratch[w]
                let ia = i * ts..<min(na, (i + 1) * ts), ib = j * ts..<min(nb, (j + 1) * ts)
                let diagonal = same && i == j
                fl[w] += tile(a, ia, b, ib, diagonal: diagonal, output: output, scratch: s, sinks: (sink.ntk, sink.w, sink.b)) { src, ldSrc, dst in
                    let tr = ia.count * r, tc = ib.count * r, r0 = aBase + ia.lowerBound * r, c0 = bBase + ib.lowerBound * r
                    for row in 0..<tr { (dst + (r0 + row) * sink.ld + c0).update(from: src + row * ldSrc, count: tc) }
                    if mirror && !diagonal { T.transpose(dst + c0 * sink.ld + r0, sink.ld, src, ldSrc, rows: tr, cols: tc) }
                }
            }
        }
        return flops.reduce(0, +)
    }

    /// One output tile: rows ia of block a against rows ib of block b, summed over the layers into `scratch.acc`
    /// (and each layer's parts into `scratch.part`), each finished buffer handed to `write(src, ldSrc, dst)`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    private func tile(_ a: Features, _ ia: Range<Int>, _ b: Features, _ ib: Range<Int>, diagonal: Bool, output: Output, scratch s: Scratch,
                      sinks: (ntk: UnsafeMutablePointer<T>, w: [UnsafeMutablePointer<T>], b: [UnsafeMutablePointer<T>?]),
                      write: (UnsafePointer<T>, Int, UnsafeMutablePointer<T>) -> Void) -> Double {
        let k = network.outputs, full = output == .full, r = full ? k : 1, layers = network.parameters
        let readout = self.readout, compact = full ? nil : self.compact?.layer
        let ma = ia.count, mb = ib.count, tr = ma * r, tc = mb * r
        let perLayer = !sinks.w.isEmpty
        var flops = 0.0
        /// C [m, n] (ld n) = α·X[x0..<x0+m]·Y[y0..<y0+n]ᵀ over rows of length `inner`; SYRK (upper) on the diagonal.
        func gram(_ x: [T], _ y: [T], _ x0: Int, _ y0: Int, m: Int, n: Int, inner: Int, alpha: T, into c: UnsafeMutablePointer<T>) {
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeBufferPointer { yp in
                    if diagonal {
                        T.syrk(n: m, k: inner, alpha: alpha, a: xp.baseAddress! + x0 * inner, lda: inner, c: c, ldc: n)
                    } else {
                        T.gemm(transA: false, transB: true, m: m, n: n, k: inner, alpha: alpha, a: xp.baseAddress! + x0 * inner, lda: inner,
                               b: yp.baseAddress! + y0 * inner, ldb: inner, beta: 0, c: c, ldc: n)
                    }
                }
            }
            flops += (diagonal ? 1 : 2) * Double(m) * Double(n) * Double(inner)
        }
        s.acc.withUnsafeMutableBufferPointer { accB in
            s.d.withUnsafeMutableBufferPointer { dB in
                s.g.withUnsafeMutableBufferPointer { gB in
                    s.gexp.withUnsafeMutableBufferPointer { eB in
                        s.part.withUnsafeMutableBufferPointer { pB in
                            let acc = accB.baseAddress!, d = dB.baseAddress!, g = gB.baseAddress!, gexp = eB.baseAddress!
                            let part = pB.isEmpty ? nil : pB.baseAddress
                            acc.update(repeating: 0, count: tr * tc)
                            /// Rows [start(row), tc) of each tile row: the upper triangle on the diagonal.
                            func start(_ row: Int) -> Int { diagonal ? row : 0 }
                            /// Completes a diagonal tile's lower triangle and writes the buffer out.
                            func finish(_ buf: UnsafeMutablePointer<T>, _ dst: UnsafeMutablePointer<T>) {
                                if diagonal { T.mirrorUpper(buf, tr, 0, tr) }
                                write(buf, tc, dst)
                            }
                            for (l, layer) in layers.enumerated() {
                                let (cw, cb) = coefficients(l)
                                if layer.kind == .conv {
                                    // Jacobian contraction: c_w·⟨J_a, J_b⟩ + c_b·⟨Jb_a, Jb_b⟩ (÷k traced)
                                    let scale: T = full ? 1 : T(1 / Double(k)), x0 = ia.lowerBound * r, y0 = ib.lowerBound * r
                                    let parts: [([T], [T], Int, T, UnsafeMutablePointer<T>?)] = [
                                        (a.jacobians[l], b.jacobians[l], layer.wCount, cw, perLayer ? sinks.w[l] : nil),
                                        (a.biasJacobians[l], b.biasJacobians[l], layer.fanOut, cb, perLayer ? sinks.b[l] : nil),
                                    ]
                                    for (ja, jb, width, c, sink) in parts where c != 0 {
                                        let inner = full ? width : k * width, m = full ? tr : ma, n = full ? tc : mb
                                        gram(ja, jb, full ? x0 : ia.lowerBound, full ? y0 : ib.lowerBound, m: m, n: n, inner: inner,
                                             alpha: c * scale, into: d)
                                        for row in 0..<tr { let c0 = start(row); T.axpy(acc + row * tc + c0, 1, d + row * tc + c0, tc - c0) }
                                        if let sink { finish(d, sink) }
                                    }
                                    continue
                                }
                                gram(a.acts[l], b.acts[l], ia.lowerBound, ib.lowerBound, m: ma, n: mb, inner: layer.fanIn, alpha: cw, into: g)
                                if l == readout {
                                    // read-out: D = 1 (traced) or [i = j] (full)
                                    for row in 0..<tr {
                                        let sa = row / r, i = row % r
                                        var c = full ? (diagonal ? sa * k + i : i) : start(row)
                                        while c < tc { acc[row * tc + c] += g[sa * mb + c / r] + cb; c += r }
                                    }
                                    if perLayer {
                                        for (dst, value) in [(sinks.w[l], { (gv: T) in gv }), (sinks.b[l], { (_: T) in cb })] {
                                            guard let dst, let part else { continue }
                                            part.update(repeating: 0, count: tr * tc)
                                            for row in 0..<tr {
                                                let sa = row / r, i = row % r
                                                var c = full ? (diagonal ? sa * k + i : i) : start(row)
                                                while c < tc { part[row * tc + c] = value(g[sa * mb + c / r]); c += r }
                                            }
                                            finish(part, dst)
                                        }
                                    }
                                    continue
                                }
                                // D: the signal Gram of this layer over the tile's output rows
                                if full {
                                    gram(a.signals[l], b.signals[l], ia.lowerBound * k, ib.lowerBound * k, m: tr, n: tc, inner: layer.fanOut, alpha: 1, into: d)
                                } else if l == compact {
                                    gram(a.lastHidden, b.lastHidden, ia.lowerBound, ib.lowerBound, m: ma, n: mb, inner: layer.fanOut, alpha: T(1 / Double(k)), into: d)
                                } else {
                                    gram(a.signals[l], b.signals[l], ia.lowerBound, ib.lowerBound, m: ma, n: mb, inner: k * layer.fanOut, alpha: T(1 / Double(k)), into: d)
                                }
                                // acc += (G + c_b) ⊙ D, G's row of each sample expanded once to the output columns
                                // (each entry repeated k times when full) and used for its r output rows
                                for sa in 0..<ma {
                                    let grow = g + sa * mb, e0 = diagonal ? sa : 0
                                    for sb in e0..<mb { let v = grow[sb]; for j in 0..<r { gexp[sb * r + j] = v } }
                                    if perLayer, let part {
                                        for row in sa * r..<(sa + 1) * r {
                                            let c0 = start(row)
                                            T.hadamard(part + row * tc + c0, gexp + c0, d + row * tc + c0, tc - c0)
                                        }
                                    }
                                    if cb != 0 { T.affine(gexp + e0 * r, 1, cb, tc - e0 * r) }
                                    for row in sa * r..<(sa + 1) * r {
                                        let c0 = start(row)
                                        T.hadamardAcc(acc + row * tc + c0, gexp + c0, d + row * tc + c0, tc - c0)
                                    }
                                }
                                if perLayer, let part {
                                    finish(part, sinks.w[l])
                                    if let dst = sinks.b[l] {
                                        for row in 0..<tr {
                                            let c0 = start(row)
                                            (part + row * tc + c0).update(from: d + row * tc + c0, count: tc - c0)
                                            T.scale(part + row * tc + c0, cb, tc - c0)
                                        }
                                        finish(part, dst)
                                    }
                                }
                            }
                            finish(acc, sinks.ntk)
                        }
                    }
                }
            }
        }
        return flops
    }
}

