internal import CNTK
import Foundation

/// The predictions of `EnsemblePredictor` (PAPER Eqs. 13–16) with the kernels spread over a process grid, by
/// ScaLAPACK; only the test outputs [m, k] and variances [m] — small — are summed onto every process. `infinite`:
/// t = ∞ by Cholesky factorizations and solves (pdpotrf/pdpotrs) and products (pdgemm/pdsymm); `atTimes`: any
/// times through the eigendecompositions (pdsyevd). With X the training and T the test set, at t = ∞:
///
///     NNGP posterior:  mean = K_XTᵀ·K_XX⁻¹·Y        var_j = K_TT(j, j) − Σ_i K_XT(i, j)·(K_XX⁻¹·K_XT)(i, j)
///     NTK-GP (t = ∞):  mean = Θ_XTᵀ·Θ_XX⁻¹·Y        var_j = K_TT(j, j) + (Wᵀ·K_XX·W)_jj − 2·(Wᵀ·K_XT)_jj,
///                                                  W = Θ_XX⁻¹·Θ_XT
///
/// Inputs: K_XX, Θ_XX [n, n] (lower triangle read), K_XT, Θ_XT [n, m], all in one block-cyclic layout; Y [n, k]
/// and K_TT's diagonal [m] on every process. `diagReg` as neural-tangents' (relative to the mean diagonal). The
/// kernel matrices are overwritten (factored or solved in place): per process the memory of `infinite` is the four
/// kernels plus two [n, m] work arrays. A kernel that is not positive definite is an error (the single-process path
/// escalates a regulariser instead; here that would need a second copy of the kernel): raise diag_reg.
public enum DistributedPredict {
    public struct Result {
        /// [m, k] and [m] for the NTK-GP and the NNGP.
        public var ntkMean: Matrix, ntkVariance: [Double], nngpMean: Matrix, nngpVariance: [Double]
    }

    public static func infinite(
        grid: ProcessGrid, kXX: inout BlockCyclicMatrix, thetaXX: inout BlockCyclicMatrix,
        kXT: BlockCyclicMatrix, thetaXT: inout BlockCyclicMatrix, y: Matrix, kTTDiagonal: [Double],
        diagReg: Double
    ) throws -> Result {
        let (n, m, nb) = (kXX.globalRows, kXT.globalCols, kXX.block)
        precondition(y.rows == n && kTTDiagonal.count == m && kXT.globalRows == n && thetaXT.globalCols == m)
        let yd = BlockCyclicMatrix(grid: grid, distributing: y, block: nb)

        // NTK-GP first: it needs K_XX unfactored (Wᵀ·K_XX·W).
        regularize(&thetaXX, grid, diagReg)
        try factor(&thetaXX, "ntk_train_train")
        let ntkMean = try solveAndProject(grid, factor: thetaXX, rhs: yd, cross: thetaXT)
        try solve(thetaXX, &thetaXT, "ntk_train_train")  // W = Θ_XX⁻¹·Θ_XT, in place
        let w = thetaXT
        var kw = BlockCyclicMatrix(grid: grid, rows: n, cols: m, block: nb)
        product(symmetric: kXX, w, into: &kw)  // K_XX as it is (without the regulariser)
        let quad = columnDots(w, kw, grid), cross = columnDots(w, kXT, grid)
        let ntkVariance = (0..<m).map { kTTDiagonal[$0] + quad[$0] - 2 * cross[$0] }

        // NNGP: K_XX factored in place.
        regularize(&kXX, grid, diagReg)
        try factor(&kXX, "nngp_train_train")
        let nngpMean = try solveAndProject(grid, factor: kXX, rhs: yd, cross: kXT)
        var z = kXT
        try solve(kXX, &z, "nngp_train_train")
        let reduce = columnDots(kXT, z, grid)
        let nngpVariance = (0..<m).map { kTTDiagonal[$0] - reduce[$0] }
        return Result(ntkMean: ntkMean, ntkVariance: ntkVariance, nngpMean: nngpMean, nngpVariance: nngpVariance)
    }

    /// Means and variances at continuous times t = η·steps (nil: ∞) through the eigendecompositions (pdsyevd) of the
    /// regularised train kernels, Θ = V·diag(λ)·Vᵀ and K = U·diag(μ)·Uᵀ, as `EnsemblePredictor` does in one process,
    /// with f(λ) = (1 − e^{−λct})/λ (1/λ at ∞; 0 for λ < 0), c = η/(n·k):
    ///
    ///     NTK-GP:  mean = Rᵀ·diag(f)·VᵀY,  var_j = K_TT(j, j) + (fR)ᵀ_j·B·(fR)_j − 2·(fR)ᵀ_j·S_j
    ///              R = Vᵀ·Θ_XT, S = Vᵀ·K_XT, B = Vᵀ·K_XX·V (K_XX without the regulariser)
    ///     NNGP:    mean = Qᵀ·diag(f_K)·UᵀY, var_j = K_TT(j, j) − Σ_i f_K,2t(μ_i)·Q(i, j)²,  Q = Uᵀ·K_XT
    ///
    /// Per process: about five [n, n] and four [n, m] blocks at the peak. Also returns λ_max(Θ) of Θ as given,
    /// without the regulariser (for the largest stable learning rate, 2·n·k/λ_max: neural-tangents'
    /// `max_learning_rate`).
    public static func atTimes(
        _ times: [Double?], learningRate: Double, grid: ProcessGrid,
        kXX: inout BlockCyclicMatrix, thetaXX: inout BlockCyclicMatrix, kXT: BlockCyclicMatrix,
        thetaXT: BlockCyclicMatrix, y: Matrix, kTTDiagonal: [Double], diagReg: Double
    ) throws
        -> (ntk: [(mean: Matrix, variance: [Double])], nngp: [(mean: Matrix, variance: [Double])], lambdaMax: Double,
            repairs: [String])
    {
        let (n, m, k, nb) = (kXX.globalRows, kXT.globalCols, y.cols, kXX.block)
        let yd = BlockCyclicMatrix(grid: grid, distributing: y, block: nb)
        let c = learningRate / Double(n * k)
        func f(_ lambda: Double, _ t: Double?, _ factor: Double = 1) -> Double {
            EnsemblePredictor.flow(lambda, t.map { c * $0 * factor })
        }
        // Θ = V·diag(λ)·Vᵀ: R = Vᵀ·Θ_XT, S = Vᵀ·K_XT, VᵀY, and B = Vᵀ·K_XX·V while K_XX is still whole
        let thetaReg = regularize(&thetaXX, grid, diagReg)
        var b = BlockCyclicMatrix(grid: grid, rows: 0, cols: 0, block: nb)
        let (lambda, fromTheta) = try eigenBasis(&thetaXX, grid, "ntk_train_train", projecting: [thetaXT, kXT, yd]) {
            v in
            var kv = BlockCyclicMatrix(grid: grid, rows: n, cols: n, block: nb)
            product(symmetric: kXX, v, into: &kv)
            b = BlockCyclicMatrix(grid: grid, rows: n, cols: n, block: nb)
            product(v, transposed: true, kv, into: &b)
        }
        let (r, sv, yv) = (fromTheta[0], fromTheta[1], fromTheta[2])
        // K = U·diag(μ)·Uᵀ: Q = Uᵀ·K_XT, UᵀY
        regularize(&kXX, grid, diagReg)
        let (mu, fromK) = try eigenBasis(&kXX, grid, "nngp_train_train", projecting: [kXT, yd])
        let (q, yu) = (fromK[0], fromK[1])
        var q2 = q  // Q ⊙ Q, for every time's NNGP variance
        for i in q2.local.indices { q2.local[i] *= q2.local[i] }
        // negative eigenvalues are clipped to 0 (as neural-tangents and `PreparedKernel` do), and said so
        let repairs = [PreparedKernel.negativeEigenvalues("ntk_train_train", lambda),
                       PreparedKernel.negativeEigenvalues("nngp_train_train", mu)].compactMap { $0 }

        var ntk: [(Matrix, [Double])] = [], nngp: [(Matrix, [Double])] = []
        for t in times {
            // NTK-GP
            var fr = r, fy = yv
            scaleRows(&fr) { f(lambda[$0], t) }
            scaleRows(&fy) { f(lambda[$0], t) }
            var mean = BlockCyclicMatrix(grid: grid, rows: m, cols: k, block: nb)
            product(r, transposed: true, fy, into: &mean)
            var bfr = BlockCyclicMatrix(grid: grid, rows: n, cols: m, block: nb)
            product(b, fr, into: &bfr)
            let quad = columnDots(fr, bfr, grid), cross = columnDots(fr, sv, grid)
            ntk.append((mean.gathered(grid), (0..<m).map { kTTDiagonal[$0] + quad[$0] - 2 * cross[$0] }))
            // NNGP
            var gy = yu
            scaleRows(&gy) { f(mu[$0], t) }
            var gmean = BlockCyclicMatrix(grid: grid, rows: m, cols: k, block: nb)
            product(q, transposed: true, gy, into: &gmean)
            var fq = q2
            scaleRows(&fq) { f(mu[$0], t, 2) }
            let reduce = columnDots(fq, nil, grid)
            nngp.append((gmean.gathered(grid), (0..<m).map { kTTDiagonal[$0] - reduce[$0] }))
        }
        return (ntk, nngp, (lambda.last ?? 0) - thetaReg, repairs)  // λ_max of Θ as given, without ε
    }

    /// The eigenvalues (ascending) of a symmetric matrix (lower triangle read; its storage is released: it was
    /// pdsyevd's scratch) and Vᵀ·M for each M of `ms`, V its eigenvectors; `also` sees V before it goes.
    static func eigenBasis(
        _ a: inout BlockCyclicMatrix, _ grid: ProcessGrid, _ name: String, projecting ms: [BlockCyclicMatrix],
        also: (BlockCyclicMatrix) -> Void = { _ in }
    ) throws -> ([Double], [BlockCyclicMatrix]) {
        let (values, v) = try eigh(&a, grid, name)
        a = BlockCyclicMatrix(grid: grid, rows: 0, cols: 0, block: a.block)
        also(v)
        let projected = ms.map { m in
            var out = BlockCyclicMatrix(grid: grid, rows: m.globalRows, cols: m.globalCols, block: m.block)
            product(v, transposed: true, m, into: &out)
            return out
        }
        return (values, projected)
    }

    /// Eigenvalues (ascending, on every process) and eigenvectors of a symmetric matrix (lower triangle read;
    /// overwritten).
    static func eigh(_ a: inout BlockCyclicMatrix, _ grid: ProcessGrid, _ name: String) throws
        -> ([Double], BlockCyclicMatrix)
    {
        let n = a.globalRows
        var z = BlockCyclicMatrix(grid: grid, rows: n, cols: n, block: a.block)
        var w = [Double](repeating: 0, count: n)
        var lwork: Int32 = 0
        var liwork: Int32 = 0
        let da = a.descriptor
        let dz = z.descriptor
        a.local.withUnsafeMutableBufferPointer { ap in
            z.local.withUnsafeMutableBufferPointer { zp in
                ntk_pdsyevd_workspace(&lwork, &liwork, &w, ap.baseAddress, da, zp.baseAddress, dz, Int32(n))
            }
        }
        guard lwork > 0 else {
            throw DistributedError.scalapack(
                "pdsyevd on \(name): its workspace exceeds 32-bit sizes; use more processes", -1)
        }
        var work = [Double](repeating: 0, count: Int(max(lwork, 1)))
        var iwork = [Int32](repeating: 0, count: Int(max(liwork, 1)))
        let info = withThreads {
            a.local.withUnsafeMutableBufferPointer { ap in
                z.local.withUnsafeMutableBufferPointer { zp in
                    ntk_pdsyevd(&w, zp.baseAddress, dz, ap.baseAddress, da, Int32(n), &work, lwork, &iwork, liwork)
                }
            }
        }
        if info != 0 { throw DistributedError.scalapack("pdsyevd on \(name)", Int(info)) }
        return (w, z)
    }

    /// c ← a·b, or aᵀ·b (pdgemm; every matrix in the same blocking).
    static func product(
        _ a: BlockCyclicMatrix, transposed: Bool = false, _ b: BlockCyclicMatrix,
        into c: inout BlockCyclicMatrix
    ) {
        let (m, n, k) = (c.globalRows, c.globalCols, transposed ? a.globalRows : a.globalCols)
        let dc = c.descriptor
        withThreads {
            a.local.withUnsafeBufferPointer { ap in
                b.local.withUnsafeBufferPointer { bp in
                    c.local.withUnsafeMutableBufferPointer { cp in
                        ntk_pdgemm(
                            CChar(UInt8(ascii: transposed ? "T" : "N")), CChar(UInt8(ascii: "N")), Int32(m),
                            Int32(n), Int32(k), 1, ap.baseAddress, a.descriptor, bp.baseAddress, b.descriptor,
                            0, cp.baseAddress, dc)
                    }
                }
            }
        }
    }

    /// c ← a·b with a symmetric (its lower triangle read; pdsymm).
    static func product(symmetric a: BlockCyclicMatrix, _ b: BlockCyclicMatrix, into c: inout BlockCyclicMatrix) {
        let dc = c.descriptor
        withThreads {
            a.local.withUnsafeBufferPointer { ap in
                b.local.withUnsafeBufferPointer { bp in
                    c.local.withUnsafeMutableBufferPointer { cp in
                        ntk_pdsymm_lower(
                            Int32(c.globalRows), Int32(c.globalCols), 1, ap.baseAddress, a.descriptor,
                            bp.baseAddress, b.descriptor, 0, cp.baseAddress, dc)
                    }
                }
            }
        }
    }

    /// Row i of a (global index) times s(i).
    static func scaleRows(_ a: inout BlockCyclicMatrix, _ s: (Int) -> Double) {
        let scale = (0..<a.localRows).map { s(a.globalRow($0)) }
        for j in 0..<a.localCols { for i in 0..<a.localRows { a.local[j * a.localRows + i] *= scale[i] } }
    }

    /// A ← A + ε·I with ε = diagReg·trace(A)/n (neural-tangents' relative `diag_reg`).
    @discardableResult
    static func regularize(_ a: inout BlockCyclicMatrix, _ grid: ProcessGrid, _ diagReg: Double) -> Double {
        guard diagReg != 0 else { return 0 }
        var diagonal: [(Int, Double)] = []  // local flat index, value
        for j in 0..<a.localCols {
            let gj = a.globalCol(j)
            for i in 0..<a.localRows where a.globalRow(i) == gj {
                diagonal.append((j * a.localRows + i, a.local[j * a.localRows + i]))
            }
        }
        var trace = [diagonal.reduce(0) { $0 + $1.1 }]
        grid.sum(&trace)
        let eps = diagReg * trace[0] / Double(max(a.globalRows, 1))
        for (p, _) in diagonal { a.local[p] += eps }
        return eps
    }

    static func factor(_ a: inout BlockCyclicMatrix, _ name: String) throws {
        let n = Int32(a.globalRows)
        let desc = a.descriptor
        let info = withThreads { a.local.withUnsafeMutableBufferPointer { ntk_pdpotrf($0.baseAddress, desc, n) } }
        if info > 0 { throw LinearAlgebraError.notPositiveDefinite(name + " (pdpotrf: leading minor \(info))") }
        if info < 0 { throw DistributedError.scalapack("pdpotrf", Int(info)) }
    }

    /// B ← A⁻¹·B given A's Cholesky factor.
    static func solve(_ factor: BlockCyclicMatrix, _ b: inout BlockCyclicMatrix, _ name: String) throws {
        let n = Int32(factor.globalRows)
        let r = Int32(b.globalCols)
        let db = b.descriptor
        let da = factor.descriptor
        let info = withThreads {
            factor.local.withUnsafeBufferPointer { a in
                b.local.withUnsafeMutableBufferPointer { ntk_pdpotrs($0.baseAddress, db, a.baseAddress, da, n, r) }
            }
        }
        if info != 0 { throw DistributedError.scalapack("pdpotrs on \(name)", Int(info)) }
    }

    /// crossᵀ·(A⁻¹·rhs) [m, k], on every process.
    static func solveAndProject(
        _ grid: ProcessGrid, factor: BlockCyclicMatrix, rhs: BlockCyclicMatrix, cross: BlockCyclicMatrix
    ) throws -> Matrix {
        var alpha = rhs
        try solve(factor, &alpha, "train kernel")
        var out = BlockCyclicMatrix(grid: grid, rows: cross.globalCols, cols: rhs.globalCols, block: factor.block)
        product(cross, transposed: true, alpha, into: &out)
        return out.gathered(grid)
    }

    /// Σ_i a(i, j)·b(i, j) for every global column j (a and b in the same layout; b = nil: Σ_i a(i, j)), on every
    /// process.
    static func columnDots(_ a: BlockCyclicMatrix, _ b: BlockCyclicMatrix?, _ grid: ProcessGrid) -> [Double] {
        var out = [Double](repeating: 0, count: a.globalCols)
        for j in 0..<a.localCols {
            var s = 0.0
            let base = j * a.localRows
            if let b {
                for i in 0..<a.localRows { s += a.local[base + i] * b.local[base + i] }
            } else {
                for i in 0..<a.localRows { s += a.local[base + i] }
            }
            out[a.globalCol(j)] += s
        }
        grid.sum(&out)
        return out
    }

    /// ScaLAPACK's local BLAS on this process's share of the machine's cores.
    static func withThreads<R>(_ body: () throws -> R) rethrows -> R {
        let n = OwnThreads.workers
        Platform.setBLASThreads(n)
        defer { Platform.setBLASThreads(1) }
        return try body()
    }
}
