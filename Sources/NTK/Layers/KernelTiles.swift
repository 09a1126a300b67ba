import Dispatch
internal import CNTK
internal import COpenBLAS

/// One tile of the kernel recursion: a group of r rows (samples a of the first set) against nb columns c0..<c1
/// (samples b of the second), every pair's covariance held as the state [r][entries][nb] — the entries of the
/// program's form, so that every step is either an element-wise pass over runs of b (activations, layer norm, the
/// affine part of dense and conv: the fused C row kernels of the fully-connected recursion) or a sparse linear
/// map along one spatial axis with whole runs of b as its inner dimension (`ntk_cov_axis_map`).
struct KernelTile {
    /// Samples, row-major [N, D] (NHWC per sample), and the variances of their set at every slot:
    /// `v[offsets[s] + p·n + a]` = V_a(p) at slot s.
    struct Side {
        let x: UnsafePointer<Double>
        let v: UnsafeMutablePointer<Double>
        let offsets: [Int]
        let n: Int
    }

    /// A worker's scratch: K, Θ, a scratch array and two per residual level, `capacity` doubles each.
    struct Buffers {
        var k, t, tmp: UnsafeMutablePointer<Double>
        let stack: [UnsafeMutablePointer<Double>]
        let capacity: Int
        static func count(_ p: KernelProgram) -> Int { 3 + 2 * p.maxDepth }
        init(_ base: UnsafeMutablePointer<Double>, capacity: Int, depth: Int) {
            k = base; t = base + capacity; tmp = base + 2 * capacity
            stack = (0..<(2 * depth)).map { base + (3 + $0) * capacity }
            self.capacity = capacity
        }
    }

    let program: KernelProgram
    let rows: Side, cols: Side
    let computeNTK: Bool
    let quad: QuadratureRule?

    /// Runs every step for rows r0..<r0 + r against columns c0..<c1; row i needs only the columns from
    /// c0 + skip[i] (the symmetric case; the others are left unspecified). `square`: the first r columns are the
    /// rows themselves (symmetric), whose Gram block is an upper-triangular SYRK. `record`: the self chain — the
    /// tile is samples r0..<r0 + r of one set against themselves (rows = cols, square; r = 1 for the full form),
    /// and each slot's variances are written from the state's diagonal before the step reads them.
    /// Returns K and Θ, [r][nb].
    func run(r0: Int, r: Int, c0: Int, c1: Int, skip: [Int], square: Bool, record: Bool,
             _ b: inout Buffers)
        -> (k: UnsafeMutablePointer<Double>, t: UnsafeMutablePointer<Double>, gramNanoseconds: UInt64) {
        let nb = c1 - c0
        let image = program.input.isImage
        var h = image ? program.input.spatial[0] : 1, w = image ? program.input.spatial[1] : 1
        let started = DispatchTime.now().uptimeNanoseconds
        gram(r0: r0, r: r, c0: c0, nb: nb, square: square, &b)
        let gramNanoseconds = DispatchTime.now().uptimeNanoseconds - started
        var depth = 0
        for step in program.steps {
            let n = r * program.entries(h, w) * nb
            switch step {
            case .linear(let maps, let c, let out):
                var sizes = program.form == .full ? [h * h, w * w] : program.form == .diagonal ? [h, w] : []
                for (axis, map) in maps.enumerated() {
                    guard let map else { continue }
                    let outer = r * sizes[..<axis].reduce(1, *), inner = sizes[(axis + 1)...].reduce(1, *) * nb
                    apply(map, &b.k, &b.tmp, outer, inner)
                    if computeNTK { apply(map, &b.t, &b.tmp, outer, inner) }
                    sizes[axis] = map.nOut
                }
                (h, w) = out
                let m = r * program.entries(h, w) * nb
                if computeNTK {
                    if c.w_var != 1 || c.ntk_shift != 0 { Double.affine(b.t, c.w_var, c.ntk_shift, m) }
                    if c.ntk_t_scale != 0 { Double.axpy(b.t, c.ntk_t_scale, b.k, m) }
                }
                if c.w_var != 1 || c.b_var != 0 { Double.affine(b.k, c.w_var, c.b_var, m) }
            case .activation(let act, var c, let slot):
                if record { recordVariances(slot, h, w) }
                let rule = act.hasClosedFormKernel ? nil : quad
                runs(r: r, r0: r0, c0: c0, nb: nb, skip: skip, slot: slot, h, w, b) { k, t, d2, d1, len in
                    Self.activationRow(act, rule, k, t, d2, d1, len, &c)
                }
            case .layerNorm(let eps, let slot):
                if record { recordVariances(slot, h, w) }
                runs(r: r, r0: r0, c0: c0, nb: nb, skip: skip, slot: slot, h, w, b) { k, t, d2, d1, len in
                    for x in 0..<len {
                        let s = 1 / ((eps + d1) * (eps + d2[x])).squareRoot()
                        k[x] *= s
                        if let t { t[x] *= s }
                    }
                }
            case .fork:
                b.stack[2 * depth].update(from: b.k, count: n)
                if computeNTK { b.stack[2 * depth + 1].update(from: b.t, count: n) }
                depth += 1
            case .join:
                depth -= 1
                Double.axpy(b.k, 1, b.stack[2 * depth], n)
                if computeNTK { Double.axpy(b.t, 1, b.stack[2 * depth + 1], n) }
            }
        }
        return (b.k, b.t, gramNanoseconds)

        func recordVariances(_ slot: Int, _ h: Int, _ w: Int) {
            let v = rows.v + rows.offsets[slot], positions = h * w
            for p in 0..<positions {
                let (i, j) = (p / w, p % w)
                if program.form == .full {
                    v[p * rows.n + r0] = b.k[((i * h + i) * w + j) * w + j]
                } else {
                    for row in 0..<r { v[p * rows.n + r0 + row] = b.k[(row * positions + p) * nb + row] }
                }
            }
        }
    }

    /// φ's C row kernel (see `ntk_layer_coef`): by the quadrature `rule` when given, else by φ's closed form.
    static func activationRow(_ act: Activation, _ rule: QuadratureRule?, _ k: UnsafeMutablePointer<Double>,
                              _ t: UnsafeMutablePointer<Double>?, _ d2: UnsafePointer<Double>, _ d1: Double, _ n: Int,
                              _ c: inout ntk_layer_coef) {
        if let rule {
            let (a, alpha) = act.c
            rule.withRule { ntk_kernel_quadrature_row(k, t, d2, d1, n, &c, a, alpha, $0) }
        } else if act == .gelu {
            ntk_kernel_gelu_row(k, t, d2, d1, n, &c)
        } else if act == .erf {
            ntk_kernel_erf_row(k, t, d2, d1, n, &c)
        } else {
            ntk_kernel_abrelu_row(k, t, d2, d1, n, &c)
        }
    }

    /// in → out along one axis, then swaps the two (the result is in `a`).
    private func apply(_ m: KernelProgram.AxisMap, _ a: inout UnsafeMutablePointer<Double>,
                       _ scratch: inout UnsafeMutablePointer<Double>, _ outer: Int, _ inner: Int) {
        m.offsets.withUnsafeBufferPointer { o in
            m.src.withUnsafeBufferPointer { s in
                m.weights.withUnsafeBufferPointer { wt in
                    ntk_cov_axis_map(scratch, a, outer, m.nIn, m.nOut, inner, o.baseAddress, s.baseAddress,
                                     wt.baseAddress)
                }
            }
        }
        swap(&a, &scratch)
    }

    /// Calls `body(k, t, d2, d1, count)` on every run of entries that share the row position p (so one variance
    /// d1 = V_a(p)) and whose column variances d2 = V_b(q) are contiguous: a run over b for each (i, k, j, l) of the
    /// full form, for each p of the diagonal and vector forms.
    private func runs(r: Int, r0: Int, c0: Int, nb: Int, skip: [Int], slot: Int, _ h: Int, _ w: Int, _ b: Buffers,
                      _ body: (UnsafeMutablePointer<Double>, UnsafeMutablePointer<Double>?, UnsafePointer<Double>,
                               Double, Int) -> Void) {
        let vr = rows.v + rows.offsets[slot], vc = cols.v + cols.offsets[slot], positions = h * w
        let t: UnsafeMutablePointer<Double>? = computeNTK ? b.t : nil
        if program.form == .full {
            for i in 0..<h {
                for k in 0..<h {
                    for j in 0..<w {
                        let d1 = vr[(i * w + j) * rows.n + r0]
                        for l in 0..<w {
                            let off = (((i * h + k) * w + j) * w + l) * nb
                            body(b.k + off, t.map { $0 + off }, vc + (k * w + l) * cols.n + c0, d1, nb)
                        }
                    }
                }
            }
            return
        }
        for row in 0..<r {
            let s = skip[row]
            for p in 0..<positions {
                let off = (row * positions + p) * nb + s
                body(b.k + off, t.map { $0 + off }, vc + p * cols.n + c0 + s, vr[p * rows.n + r0 + row], nb - s)
            }
        }
    }

    /// The input covariance Σ_c x[a, p, c]·x[b, q, c] / C into b.k in the form's layout, Θ = 0.
    private func gram(r0: Int, r: Int, c0: Int, nb: Int, square: Bool, _ b: inout Buffers) {
        let d = program.input.count, c = program.input.channels, positions = program.input.positions
        let xa = rows.x + r0 * d, xb = cols.x + c0 * d
        let entries = program.entries(program.input.isImage ? program.input.spatial[0] : 1,
                                      program.input.isImage ? program.input.spatial[1] : 1)
        if computeNTK { b.t.update(repeating: 0, count: r * entries * nb) }
        switch program.form {
        case .vector:
            let alpha = 1 / Double(max(d, 1))
            if d == 0 {
                b.k.update(repeating: 0, count: r * nb)
            } else if square {
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(r), Int32(d), alpha, xa, Int32(d), 0, b.k,
                            Int32(nb))
                if nb > r { cblasGemmNT(r, nb - r, d, alpha, xa, xb + r * d, b.k + r, nb) }
            } else {
                cblasGemmNT(r, nb, d, alpha, xa, xb, b.k, nb)
            }
        case .diagonal:
            for row in 0..<r {
                for p in 0..<positions {
                    for col in 0..<nb {
                        let dot = Double.dot(xa + row * d + p * c, xb + col * d + p * c, c)
                        b.k[(row * positions + p) * nb + col] = dot / Double(c)
                    }
                }
            }
        case .full:
            // tmp[p][b·P + q] = x_a[p]·x_b[q] / C, then K[(i·H + k)·W² + j·W + l][b]
            cblasGemmNT(positions, nb * positions, c, 1 / Double(c), xa, xb, b.tmp, nb * positions)
            let (h, w) = (program.input.spatial[0], program.input.spatial[1])
            for i in 0..<h {
                for k in 0..<h {
                    for j in 0..<w {
                        for l in 0..<w {
                            let dst = b.k + (((i * h + k) * w + j) * w + l) * nb
                            let src = b.tmp + (i * w + j) * nb * positions + k * w + l
                            for col in 0..<nb { dst[col] = src[col * positions] }
                        }
                    }
                }
            }
        }
    }
}
