internal import COpenBLAS

/// A dense row-major float64 matrix: `data[i * cols + j]` is entry (i, j). Kernels, targets and
/// predictions are Matrices; every O(n³) or GEMM-shaped operation on them goes to OpenBLAS.
public struct Matrix: Equatable, Sendable {
    public var rows: Int
    public var cols: Int
    public var data: [Double]

    public init(rows: Int, cols: Int, data: [Double]) {
        precondition(data.count == rows * cols, "Matrix: \(data.count) values for \(rows)×\(cols)")
        self.rows = rows
        self.cols = cols
        self.data = data
    }

    public init(rows: Int, cols: Int, repeating v: Double = 0) {
        self.init(rows: rows, cols: cols, data: [Double](repeating: v, count: rows * cols))
    }

    public static func identity(_ n: Int) -> Matrix {
        var m = Matrix(rows: n, cols: n)
        for i in 0..<n { m[i, i] = 1 }
        return m
    }

    public subscript(i: Int, j: Int) -> Double {
        get { data[i * cols + j] }
        set { data[i * cols + j] = newValue }
    }

    public var transposed: Matrix {
        var t = Matrix(rows: cols, cols: rows)
        for i in 0..<rows { for j in 0..<cols { t.data[j * rows + i] = data[i * cols + j] } }
        return t
    }

    public func row(_ i: Int) -> ArraySlice<Double> { data[i * cols..<(i + 1) * cols] }

    /// Rows `range` as a new matrix.
    public func rows(_ range: Range<Int>) -> Matrix {
        Matrix(rows: range.count, cols: cols, data: Array(data[range.lowerBound * cols..<range.upperBound * cols]))
    }

    /// The diagonal (square matrices).
    public var diagonal: [Double] { (0..<min(rows, cols)).map { self[$0, $0] } }

    /// ‖A‖_F
    public var frobeniusNorm: Double { data.withUnsafeBufferPointer { Double.sumsq($0.baseAddress!, $0.count) }.squareRoot() }

    /// Largest |a_ij − b_ij| / max(|b_ij|, floor).
    public func maxRelativeError(to b: Matrix, floor: Double = 1e-300) -> Double {
        zip(data, b.data).reduce(0) { max($0, abs($1.0 - $1.1) / max(abs($1.1), floor)) }
    }

    /// C = α·op(A)·op(B) (+ β·C), on our threads (`Double.gemm`).
    public static func gemm(_ a: Matrix, _ b: Matrix, transA: Bool = false, transB: Bool = false, alpha: Double = 1,
                            beta: Double = 0, into c: inout Matrix) {
        let m = transA ? a.cols : a.rows, k = transA ? a.rows : a.cols
        let n = transB ? b.rows : b.cols
        precondition((transB ? b.cols : b.rows) == k && c.rows == m && c.cols == n, "gemm: shape mismatch")
        guard m > 0, n > 0 else { return }
        if k == 0 {
            c.data = beta == 0 ? [Double](repeating: 0, count: m * n) : c.data.map { beta * $0 }
            return
        }
        a.data.withUnsafeBufferPointer { ap in
            b.data.withUnsafeBufferPointer { bp in
                c.data.withUnsafeMutableBufferPointer { cp in
                    Double.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!,
                                lda: a.cols, b: bp.baseAddress!, ldb: b.cols, beta: beta, c: cp.baseAddress!, ldc: n)
                }
            }
        }
    }

    /// op(A)·op(B)
    public static func product(_ a: Matrix, _ b: Matrix, transA: Bool = false, transB: Bool = false) -> Matrix {
        var c = Matrix(rows: transA ? a.cols : a.rows, cols: transB ? b.rows : b.cols)
        gemm(a, b, transA: transA, transB: transB, into: &c)
        return c
    }

    public static func + (a: Matrix, b: Matrix) -> Matrix {
        precondition(a.rows == b.rows && a.cols == b.cols)
        var c = a
        c.data.withUnsafeMutableBufferPointer { cp in b.data.withUnsafeBufferPointer { Double.axpy(cp.baseAddress!, 1, $0.baseAddress!, cp.count) } }
        return c
    }

    public static func - (a: Matrix, b: Matrix) -> Matrix {
        precondition(a.rows == b.rows && a.cols == b.cols)
        var c = a
        c.data.withUnsafeMutableBufferPointer { cp in b.data.withUnsafeBufferPointer { Double.axpy(cp.baseAddress!, -1, $0.baseAddress!, cp.count) } }
        return c
    }

    public static func * (s: Double, a: Matrix) -> Matrix {
        var c = a
        c.data.withUnsafeMutableBufferPointer { Double.scale($0.baseAddress!, s, $0.count) }
        return c
    }
}
