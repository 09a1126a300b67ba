import Dispatch
import Foundation
internal import CNTK
internal import COpenBLAS

/// Element types the C core implements: `Float` (float32) and `Double` (float64).
///
/// Each requirement forwards to one dispatched C primitive (`ntk_vec_*_f32` / `_f64`), which runs the
/// AVX2+FMA kernel when the CPU has it and the scalar reference otherwise (or when `NTK_SIMD=scalar`).
/// Reductions accumulate in double whatever the element type.
public protocol NTKFloat: BinaryFloatingPoint, Sendable {
    /// Name used in artifacts and numpy (`float32`, `float64`).
    static var dtypeName: String { get }
    static func dot(_ x: UnsafePointer<Self>, _ y: UnsafePointer<Self>, _ n: Int) -> Double
    static func sum(_ x: UnsafePointer<Self>, _ n: Int) -> Double
    static func sumsq(_ x: UnsafePointer<Self>, _ n: Int) -> Double
    /// y ← y + a·x
    static func axpy(_ y: UnsafeMutablePointer<Self>, _ a: Self, _ x: UnsafePointer<Self>, _ n: Int)
    /// y ← a·y
    static func scale(_ y: UnsafeMutablePointer<Self>, _ a: Self, _ n: Int)
    /// y ← a·y + b
    static func affine(_ y: UnsafeMutablePointer<Self>, _ a: Self, _ b: Self, _ n: Int)
    /// y ← y + a ⊙ b
    static func hadamardAcc(_ y: UnsafeMutablePointer<Self>, _ a: UnsafePointer<Self>, _ b: UnsafePointer<Self>, _ n: Int)
    /// y ← a ⊙ b; y may alias a or b.
    static func hadamard(_ y: UnsafeMutablePointer<Self>, _ a: UnsafePointer<Self>, _ b: UnsafePointer<Self>, _ n: Int)
    /// y ← φ(x); y may alias x.
    static func map(_ y: UnsafeMutablePointer<Self>, _ x: UnsafePointer<Self>, _ n: Int, _ op: ElementMap)
    /// Converts from float64 (rounding to nearest for float32).
    static func convert(_ y: UnsafeMutablePointer<Self>, from x: UnsafePointer<Double>, _ n: Int)
    /// One OpenBLAS call (cblas_sgemm / cblas_dgemm), on the calling thread: C[m, n] = α·op(A)·op(B) + β·C, row-major.
    /// Callers use `gemm` (TiledBLAS.swift), which tiles large products over our threads.
    static func blasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     b: UnsafePointer<Self>, ldb: Int, beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// One OpenBLAS call (cblas_ssyrk / cblas_dsyrk): the upper triangle of C[n, n] = α·A·Aᵀ (A [n, k], row-major);
    /// C's lower part is not touched. Callers use `syrk` (TiledBLAS.swift).
    static func blasSyrk(n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// a[j, i] = a[i, j] for j > i, rows [i0, i1) of a row-major [n, n] matrix.
    static func mirrorUpper(_ a: UnsafeMutablePointer<Self>, _ n: Int, _ i0: Int, _ i1: Int)
    /// dst[j, i] = src[i, j] for i < rows, j < cols (row-major with leading dimensions ldd, lds).
    static func transpose(_ dst: UnsafeMutablePointer<Self>, _ ldd: Int, _ src: UnsafePointer<Self>, _ lds: Int, rows: Int, cols: Int)
    /// z ← φ(z), dz ← φ'(z) (`ntk_act_forward_*`).
    static func activate(_ z: UnsafeMutablePointer<Self>, _ dz: UnsafeMutablePointer<Self>?, _ n: Int, _ act: Activation)
    /// The spatial layers of one sample (`ntk_im2col_*`, `ntk_col2im_*`, `ntk_avg_pool_*`, `ntk_layer_norm_*`).
    static func im2col(_ x: UnsafePointer<Self>, _ cols: UnsafeMutablePointer<Self>, _ g: Window)
    static func col2im(_ cols: UnsafePointer<Self>, _ dx: UnsafeMutablePointer<Self>, _ g: Window)
    static func avgPoolForward(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, _ g: Window, _ normalize: Bool)
    static func avgPoolBackward(_ dy: UnsafePointer<Self>, _ dx: UnsafeMutablePointer<Self>, _ g: Window, _ normalize: Bool)
    static func layerNormForward(_ y: UnsafeMutablePointer<Self>, _ invStd: UnsafeMutablePointer<Self>, _ x: UnsafePointer<Self>,
                                 _ positions: Int, _ c: Int, _ eps: Double)
    static func layerNormBackward(_ dx: UnsafeMutablePointer<Self>, _ dy: UnsafePointer<Self>, _ y: UnsafePointer<Self>,
                                  _ invStd: UnsafePointer<Self>, _ positions: Int, _ c: Int)
    /// Short-k products for convs with short patches (`ntk_small_k_*`): z (+)= alpha·a·w + beta·1·bᵀ; dw += aᵀ·dz,
    /// db += 1ᵀ·dz (a [m, k], w and dw [k, n], z and dz [m, n]).
    static func smallKForward(_ a: UnsafePointer<Self>, m: Int, k: Int, _ w: UnsafePointer<Self>, n: Int, alpha: Self,
                              bias: UnsafePointer<Self>?, beta: Self, _ z: UnsafeMutablePointer<Self>, accumulate: Bool)
    static func smallKBackward(_ a: UnsafePointer<Self>, m: Int, k: Int, _ dz: UnsafePointer<Self>, n: Int,
                               _ dw: UnsafeMutablePointer<Self>, _ db: UnsafeMutablePointer<Self>?)
    /// Winograd F(tile×tile, 3×3), tile 2 or 4, of one sample (`ntk_wino_*`): planes `ld` apart, see CNTK.h.
    static func winoInput(tile: Int, _ x: UnsafePointer<Self>, _ v: UnsafeMutablePointer<Self>, _ ld: Int, _ zeros: UnsafePointer<Self>,
                          _ g: Window)
    static func winoOutput(tile: Int, _ m: UnsafePointer<Self>, _ ld: Int, _ z: UnsafeMutablePointer<Self>, _ cout: Int, _ g: Window,
                           accumulate: Bool)
    static func winoOutputAdjoint(tile: Int, _ dy: UnsafePointer<Self>, _ dm: UnsafeMutablePointer<Self>, _ ld: Int, _ cout: Int,
                                  _ zeros: UnsafePointer<Self>, _ g: Window)
    static func winoInputAdjoint(tile: Int, _ dv: UnsafePointer<Self>, _ ld: Int, _ dx: UnsafeMutablePointer<Self>, _ g: Window)
    static func winoFilter(tile: Int, _ w: UnsafePointer<Self>, _ u: UnsafeMutablePointer<Self>, _ n: Int)
    static func winoFilterAdjoint(tile: Int, _ du: UnsafePointer<Self>, _ dw: UnsafeMutablePointer<Self>, _ n: Int, _ alpha: Self)
}

/// The element-wise maps of `ntk_vec_map_*`.
public enum ElementMap: CaseIterable, Sendable {
    case relu, step, abs, square
    var c: ntk_map_op {
        switch self {
        case .relu: NTK_MAP_RELU
        case .step: NTK_MAP_STEP
        case .abs: NTK_MAP_ABS
        case .square: NTK_MAP_SQUARE
        }
    }
}

extension Double: NTKFloat {
    public static var dtypeName: String { "float64" }
    public static func dot(_ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>, _ n: Int) -> Double { ntk_vec_dot_f64(x, y, n) }
    public static func sum(_ x: UnsafePointer<Double>, _ n: Int) -> Double { ntk_vec_sum_f64(x, n) }
    public static func sumsq(_ x: UnsafePointer<Double>, _ n: Int) -> Double { ntk_vec_sumsq_f64(x, n) }
    public static func axpy(_ y: UnsafeMutablePointer<Double>, _ a: Double, _ x: UnsafePointer<Double>, _ n: Int) { ntk_vec_axpy_f64(y, a, x, n) }
    public static func scale(_ y: UnsafeMutablePointer<Double>, _ a: Double, _ n: Int) { ntk_vec_scale_f64(y, a, n) }
    public static func affine(_ y: UnsafeMutablePointer<Double>, _ a: Double, _ b: Double, _ n: Int) { ntk_vec_affine_f64(y, a, b, n) }
    public static func hadamardAcc(_ y: UnsafeMutablePointer<Double>, _ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int) { ntk_vec_hadamard_acc_f64(y, a, b, n) }
    public static func hadamard(_ y: UnsafeMutablePointer<Double>, _ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int) { ntk_vec_hadamard_f64(y, a, b, n) }
    public static func map(_ y: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Double>, _ n: Int, _ op: ElementMap) { ntk_vec_map_f64(y, x, n, op.c) }
    public static func convert(_ y: UnsafeMutablePointer<Double>, from x: UnsafePointer<Double>, _ n: Int) { y.update(from: x, count: n) }
    public static func blasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
                            b: UnsafePointer<Double>, ldb: Int, beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    public static func blasSyrk(n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(n), Int32(k), alpha, a, Int32(lda), 0, c, Int32(ldc))
    }
    public static func mirrorUpper(_ a: UnsafeMutablePointer<Double>, _ n: Int, _ i0: Int, _ i1: Int) { ntk_mirror_upper(a, n, i0, i1) }
    public static func transpose(_ dst: UnsafeMutablePointer<Double>, _ ldd: Int, _ src: UnsafePointer<Double>, _ lds: Int, rows: Int, cols: Int) {
        ntk_transpose(dst, ldd, src, lds, rows, cols)
    }
    public static func activate(_ z: UnsafeMutablePointer<Double>, _ dz: UnsafeMutablePointer<Double>?, _ n: Int, _ act: Activation) {
        ntk_act_forward_f64(z, dz, n, act.c.0, act.c.1)
    }
    public static func smallKForward(_ a: UnsafePointer<Double>, m: Int, k: Int, _ w: UnsafePointer<Double>, n: Int,
                                     alpha: Double, bias: UnsafePointer<Double>?, beta: Double, _ z: UnsafeMutablePointer<Double>,
                                     accumulate: Bool) {
        ntk_small_k_forward_f64(a, m, k, w, n, alpha, bias, beta, z, accumulate ? 1 : 0)
    }
    public static func smallKBackward(_ a: UnsafePointer<Double>, m: Int, k: Int, _ dz: UnsafePointer<Double>, n: Int,
                                      _ dw: UnsafeMutablePointer<Double>, _ db: UnsafeMutablePointer<Double>?) {
        ntk_small_k_backward_f64(a, m, k, dz, n, dw, db)
    }
    public static func winoInput(tile: Int, _ x: UnsafePointer<Double>, _ v: UnsafeMutablePointer<Double>, _ ld: Int, _ zeros: UnsafePointer<Double>,
                                 _ g: Window) {
        withUnsafePointer(to: g.raw) { ntk_wino_input_f64(Int32(tile), x, v, ld, zeros, $0) }
    }
    public static func winoOutput(tile: Int, _ m: UnsafePointer<Double>, _ ld: Int, _ z: UnsafeMutablePointer<Double>, _ cout: Int, _ g: Window,
                                  accumulate: Bool) {
        withUnsafePointer(to: g.raw) { ntk_wino_output_f64(Int32(tile), m, ld, z, cout, $0, accumulate ? 1 : 0) }
    }
    public static func winoOutputAdjoint(tile: Int, _ dy: UnsafePointer<Double>, _ dm: UnsafeMutablePointer<Double>, _ ld: Int, _ cout: Int,
                                         _ zeros: UnsafePointer<Double>, _ g: Window) {
        withUnsafePointer(to: g.raw) { ntk_wino_output_adjoint_f64(Int32(tile), dy, dm, ld, cout, zeros, $0) }
    }
    public static func winoInputAdjoint(tile: Int, _ dv: UnsafePointer<Double>, _ ld: Int, _ dx: UnsafeMutablePointer<Double>, _ g: Window) {
        withUnsafePointer(to: g.raw) { ntk_wino_input_adjoint_f64(Int32(tile), dv, ld, dx, $0) }
    }
    public static func winoFilter(tile: Int, _ w: UnsafePointer<Double>, _ u: UnsafeMutablePointer<Double>, _ n: Int) { ntk_wino_filter_f64(Int32(tile), w, u, n) }
    public static func winoFilterAdjoint(tile: Int, _ du: UnsafePointer<Double>, _ dw: UnsafeMutablePointer<Double>, _ n: Int, _ alpha: Double) {
        ntk_wino_filter_adjoint_f64(Int32(tile), du, dw, n, alpha)
    }
    public static func im2col(_ x: UnsafePointer<Double>, _ cols: UnsafeMutablePointer<Double>, _ g: Window) { withUnsafePointer(to: g.raw) { ntk_im2col_f64(x, cols, $0) } }
    public static func col2im(_ cols: UnsafePointer<Double>, _ dx: UnsafeMutablePointer<Double>, _ g: Window) { withUnsafePointer(to: g.raw) { ntk_col2im_f64(cols, dx, $0) } }
    public static func avgPoolForward(_ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ g: Window, _ normalize: Bool) {
        withUnsafePointer(to: g.raw) { ntk_avg_pool_forward_f64(x, y, $0, normalize ? 1 : 0) }
    }
    public static func avgPoolBackward(_ dy: UnsafePointer<Double>, _ dx: UnsafeMutablePointer<Double>, _ g: Window, _ normalize: Bool) {
        withUnsafePointer(to: g.raw) { ntk_avg_pool_backward_f64(dy, dx, $0, normalize ? 1 : 0) }
    }
    public static func layerNormForward(_ y: UnsafeMutablePointer<Double>, _ invStd: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Double>,
                                        _ positions: Int, _ c: Int, _ eps: Double) {
        ntk_layer_norm_forward_f64(y, invStd, x, positions, c, eps)
    }
    public static func layerNormBackward(_ dx: UnsafeMutablePointer<Double>, _ dy: UnsafePointer<Double>, _ y: UnsafePointer<Double>,
                                         _ invStd: UnsafePointer<Double>, _ positions: Int, _ c: Int) {
        ntk_layer_norm_backward_f64(dx, dy, y, invStd, positions, c)
    }
}

extension Float: NTKFloat {
    public static var dtypeName: String { "float32" }
    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Double { ntk_vec_dot_f32(x, y, n) }
    public static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Double { ntk_vec_sum_f32(x, n) }
    public static func sumsq(_ x: UnsafePointer<Float>, _ n: Int) -> Double { ntk_vec_sumsq_f32(x, n) }
    public static func axpy(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, _ n: Int) { ntk_vec_axpy_f32(y, a, x, n) }
    public static func scale(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ n: Int) { ntk_vec_scale_f32(y, a, n) }
    public static func affine(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ b: Float, _ n: Int) { ntk_vec_affine_f32(y, a, b, n) }
    public static func hadamardAcc(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) { ntk_vec_hadamard_acc_f32(y, a, b, n) }
    public static func hadamard(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) { ntk_vec_hadamard_f32(y, a, b, n) }
    public static func map(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, _ op: ElementMap) { ntk_vec_map_f32(y, x, n, op.c) }
    public static func convert(_ y: UnsafeMutablePointer<Float>, from x: UnsafePointer<Double>, _ n: Int) { ntk_convert_f64_f32(y, x, n) }
    public static func blasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    public static func blasSyrk(n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(n), Int32(k), alpha, a, Int32(lda), 0, c, Int32(ldc))
    }
    public static func mirrorUpper(_ a: UnsafeMutablePointer<Float>, _ n: Int, _ i0: Int, _ i1: Int) { ntk_mirror_upper_f32(a, n, i0, i1) }
    public static func transpose(_ dst: UnsafeMutablePointer<Float>, _ ldd: Int, _ src: UnsafePointer<Float>, _ lds: Int, rows: Int, cols: Int) {
        ntk_transpose_f32(dst, ldd, src, lds, rows, cols)
    }
    public static func activate(_ z: UnsafeMutablePointer<Float>, _ dz: UnsafeMutablePointer<Float>?, _ n: Int, _ act: Activation) {
        ntk_act_forward_f32(z, dz, n, act.c.0, act.c.1)
    }
    public static func smallKForward(_ a: UnsafePointer<Float>, m: Int, k: Int, _ w: UnsafePointer<Float>, n: Int,
                                     alpha: Float, bias: UnsafePointer<Float>?, beta: Float, _ z: UnsafeMutablePointer<Float>,
                                     accumulate: Bool) {
        ntk_small_k_forward_f32(a, m, k, w, n, alpha, bias, beta, z, accumulate ? 1 : 0)
    }
    public static func smallKBackward(_ a: UnsafePointer<Float>, m: Int, k: Int, _ dz: UnsafePointer<Float>, n: Int,
                                      _ dw: UnsafeMutablePointer<Float>, _ db: UnsafeMutablePointer<Float>?) {
        ntk_small_k_backward_f32(a, m, k, dz, n, dw, db)
    }
    public static func winoInput(tile: Int, _ x: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>, _ ld: Int, _ zeros: UnsafePointer<Float>,
                                 _ g: Window) {
        withUnsafePointer(to: g.raw) { ntk_wino_input_f32(Int32(tile), x, v, ld, zeros, $0) }
    }
    public static func winoOutput(tile: Int, _ m: UnsafePointer<Float>, _ ld: Int, _ z: UnsafeMutablePointer<Float>, _ cout: Int, _ g: Window,
                                  accumulate: Bool) {
        withUnsafePointer(to: g.raw) { ntk_wino_output_f32(Int32(tile), m, ld, z, cout, $0, accumulate ? 1 : 0) }
    }
    public static func winoOutputAdjoint(tile: Int, _ dy: UnsafePointer<Float>, _ dm: UnsafeMutablePointer<Float>, _ ld: Int, _ cout: Int,
                                         _ zeros: UnsafePointer<Float>, _ g: Window) {
        withUnsafePointer(to: g.raw) { ntk_wino_output_adjoint_f32(Int32(tile), dy, dm, ld, cout, zeros, $0) }
    }
    public static func winoInputAdjoint(tile: Int, _ dv: UnsafePointer<Float>, _ ld: Int, _ dx: UnsafeMutablePointer<Float>, _ g: Window) {
        withUnsafePointer(to: g.raw) { ntk_wino_input_adjoint_f32(Int32(tile), dv, ld, dx, $0) }
    }
    public static func winoFilter(tile: Int, _ w: UnsafePointer<Float>, _ u: UnsafeMutablePointer<Float>, _ n: Int) { ntk_wino_filter_f32(Int32(tile), w, u, n) }
    public static func winoFilterAdjoint(tile: Int, _ du: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>, _ n: Int, _ alpha: Float) {
        ntk_wino_filter_adjoint_f32(Int32(tile), du, dw, n, alpha)
    }
    public static func im2col(_ x: UnsafePointer<Float>, _ cols: UnsafeMutablePointer<Float>, _ g: Window) { withUnsafePointer(to: g.raw) { ntk_im2col_f32(x, cols, $0) } }
    public static func col2im(_ cols: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ g: Window) { withUnsafePointer(to: g.raw) { ntk_col2im_f32(cols, dx, $0) } }
    public static func avgPoolForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ g: Window, _ normalize: Bool) {
        withUnsafePointer(to: g.raw) { ntk_avg_pool_forward_f32(x, y, $0, normalize ? 1 : 0) }
    }
    public static func avgPoolBackward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ g: Window, _ normalize: Bool) {
        withUnsafePointer(to: g.raw) { ntk_avg_pool_backward_f32(dy, dx, $0, normalize ? 1 : 0) }
    }
    public static func layerNormForward(_ y: UnsafeMutablePointer<Float>, _ invStd: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                        _ positions: Int, _ c: Int, _ eps: Double) {
        ntk_layer_norm_forward_f32(y, invStd, x, positions, c, eps)
    }
    public static func layerNormBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                         _ invStd: UnsafePointer<Float>, _ positions: Int, _ c: Int) {
        ntk_layer_norm_backward_f32(dx, dy, y, invStd, positions, c)
    }
}

/// An array of `count` elements left uninitialized, for buffers the caller writes in full before reading. When every
/// large block is a fresh mapping (`Platform.freedMemoryIsKept` false), large ones are backed by transparent huge
/// pages where the kernel allows it (Linux THP in "madvise" mode): their first touch then faults once per 2 MB
/// instead of once per 4 KB. Not on recycled heap memory: it is already mapped in small pages, and asking for huge
/// ones sets khugepaged collapsing them on our cores (measured: the analytic recursion 0.035 → 0.068 s).
///
/// `hugePages: false` never asks (the empirical NTK's buffers: freed and reallocated call after call, where direct
/// compaction for huge pages measured slower — traced features 270 → 360–475 ms).
func uninitializedArray<T>(_ count: Int, hugePages: Bool = true) -> [T] {
    [T](unsafeUninitializedCapacity: count) { buffer, initialized in
        let bytes = count * MemoryLayout<T>.stride
        #if os(Linux)
        if hugePages, bytes >= 4 << 20, !Platform.freedMemoryIsKept, let base = buffer.baseAddress {
            let page = 4096, start = (Int(bitPattern: base) + page - 1) & ~(page - 1), end = (Int(bitPattern: base) + bytes) & ~(page - 1)
            if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_HUGEPAGE) }
        }
        #endif
        initialized = count
    }
}

/// Converts bytes to float64 with a scale: y_i = scale·x_i (pixels 0…255 → [0, 1] with scale 1/255).
public func convertBytes(_ y: UnsafeMutablePointer<Double>, _ x: UnsafePointer<UInt8>, count: Int, scale: Double) {
    ntk_convert_u8_f64(y, x, scale, count)
}

/// a[j, i] = a[i, j] for j > i on a row-major [n, n] matrix: the upper triangle copied onto the lower, in bands of
/// 64 rows interleaved across `threads` cores (C, cache-tiled).
func mirrorUpperParallel<T: NTKFloat>(_ a: UnsafeMutablePointer<T>, _ n: Int, threads: Int = ProcessInfo.processorCount) {
    let band = 64, bands = (n + band - 1) / band, nt = max(1, min(threads, bands))
    DispatchQueue.concurrentPerform(iterations: nt) { w in
        var b = w
        while b < bands {
            T.mirrorUpper(a, n, b * band, min(n, (b + 1) * band))
            b += nt
        }
    }
}
