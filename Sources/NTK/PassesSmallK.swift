/// Convs with short patches — kh·kw·C_in ≤ 32, the first conv of an image network (3×3×1 = 9 on MNIST) — on the
/// short-k kernels (`ntk_small_k_*`, CNTK.h) instead of im2col + GEMM: the GEMM does 9 multiply-adds per output after
/// a bias fill, three passes over a large z (51 MB for 256 MNIST images and 64 channels), memory-bound; these write z
/// once, bias included, and the backward pass reads δ once for ∂W and ∂b together. Per sample, with P the patches
/// [positions, kh·kw·C_in] (im2col into a per-group buffer, or the input itself for a 1×1, stride-1 conv):
///
///     forward   z = s_w·P·W (+ s_b·1·bᵀ)          backward  ∂W += s_w·Σ_samples Pᵀ·δ      ∂b += s_b·Σ_samples 1ᵀ·δ
///
/// The samples are cut into the Winograd convs' fixed groups (`winogradGroups`); each group sums its samples'
/// gradients in order into its own partial, and the partials are summed in group order — whatever the worker count.
/// The input gradient (a conv after another layer) stays on the GEMM path.
extension Passes {
    /// Whether conv window g runs on the short-k kernels: patches of at most 32 elements, not on Winograd tiles.
    func usesSmallK(_ g: Window) -> Bool { allowsSmallK && !usesWinograd(g) && g.patch <= 32 }

    /// Elements per group of the short-k scratch: one sample's patches, then a partial ∂W [patch, C_out] and ∂b.
    var smallKStride: Int {
        var most = 0
        for node in network.nodes {
            guard case .conv(let l, let g) = node.op, usesSmallK(g) else { continue }
            let cout = network.parameters[l].fanOut
            most = max(most, g.oh * g.ow * g.patch + g.patch * cout + cout)
        }
        return most
    }

    /// One sample's patches of conv g in `buffer`, or the sample itself (1×1, stride 1).
    private func samplePatches(_ g: Window, _ sample: UnsafePointer<T>, _ buffer: UnsafeMutablePointer<T>)
        -> UnsafePointer<T> {
        if g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 { return sample }
        T.im2col(sample, buffer, g)
        return UnsafePointer(buffer)
    }

    /// z (+)= s_w·P·W (+ s_b·1·bᵀ if `bias`) of conv layer l for n samples, with W and b from `params`.
    func smallKConv(
        _ l: Int, _ g: Window, params: UnsafePointer<T>, input: UnsafePointer<T>, samples n: Int,
        into z: UnsafeMutablePointer<T>, accumulate: Bool, bias: Bool
    ) {
        let p = network.parameters[l], (sw, sb) = scales[l], d = g.oh * g.ow, inCount = g.h * g.w * g.c
        let scratch = smallKScratch, stride = smallKStride  // the lazy buffer is taken before the threads start
        let b = bias ? p.b.map { params + $0 } : nil
        let groups = min(Self.winogradGroups, n)
        OwnThreads.forEach(groups) { _, i in
            let buffer = scratch + i * stride
            for s in Self.groupRange(i, of: groups, n) {
                let a = samplePatches(g, input + s * inCount, buffer)
                T.smallKForward(a, m: d, k: g.patch, params + p.w, n: p.fanOut, alpha: sw, bias: b, beta: sb,
                                z + s * d * p.fanOut, accumulate: accumulate)
            }
        }
    }

    /// grad += ∂W, ∂b of conv layer l for the cotangents δ [n, oh, ow, C_out] of n samples of `input`.
    func smallKGradients(
        _ l: Int, _ g: Window, input: UnsafePointer<T>, samples n: Int, dy: UnsafePointer<T>,
        grad: UnsafeMutablePointer<T>
    ) {
        guard n > 0 else { return }
        let p = network.parameters[l], (sw, sb) = scales[l], d = g.oh * g.ow, inCount = g.h * g.w * g.c
        let scratch = smallKScratch, stride = smallKStride, k = g.patch, cout = p.fanOut, wCount = k * cout
        let groups = min(Self.winogradGroups, n)
        OwnThreads.forEach(groups) { _, i in
            let buffer = scratch + i * stride, dw = buffer + d * k, db = dw + wCount
            dw.update(repeating: 0, count: wCount + cout)
            for s in Self.groupRange(i, of: groups, n) {
                let a = samplePatches(g, input + s * inCount, buffer)
                T.smallKBackward(a, m: d, k: k, dy + s * d * cout, n: cout, dw, p.b == nil ? nil : db)
            }
        }
        for i in 0..<groups {
            let dw = scratch + i * stride + d * k
            T.axpy(grad + p.w, sw, dw, wCount)
            if let b = p.b { T.axpy(grad + b, sb, dw + wCount, cout) }
        }
    }
}
