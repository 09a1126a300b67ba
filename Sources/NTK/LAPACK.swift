internal import COpenBLAS

/// Symmetric eigendecomposition and Cholesky through OpenBLAS's LAPACK (Fortran interface, column-major:
/// for a symmetric matrix row-major and column-major storage coincide, so no transposes are needed). The calls run
/// with OpenBLAS on a fixed thread count (`OwnThreads.withBLASThreads`): its blocked factorizations thread inside.
public enum LAPACK {
    /// A = V·diag(λ)·Vᵀ with λ ascending. Returns (λ, V) with V row-major [n, n], eigenvector i in column i.
    public static func eigh(_ a: Matrix) throws -> (values: [Double], vectors: Matrix) {
        precondition(a.rows == a.cols)
        var n = Int32(a.rows), lda = max(n, 1), info: Int32 = 0
        var v = a.data  // column-major = row-major for symmetric input; on exit column i is eigenvector i
        var w = [Double](repeating: 0, count: a.rows)
        var lwork: Int32 = -1, liwork: Int32 = -1
        var wq = [0.0], iwq: [Int32] = [0]
        var jobz = Int8(UInt8(ascii: "V")), uplo = Int8(UInt8(ascii: "L"))
        dsyevd_(&jobz, &uplo, &n, &v, &lda, &w, &wq, &lwork, &iwq, &liwork, &info)
        lwork = Int32(wq[0]); liwork = iwq[0]
        var work = [Double](repeating: 0, count: Int(max(lwork, 1)))
        var iwork = [Int32](repeating: 0, count: Int(max(liwork, 1)))
        OwnThreads.withBLASThreads { dsyevd_(&jobz, &uplo, &n, &v, &lda, &w, &work, &lwork, &iwork, &liwork, &info) }
        guard info == 0 else { throw LinearAlgebraError.eigendecompositionFailed(Int(info)) }
        // v holds eigenvectors as columns in column-major order: v[i + j*n] = V[i, j]; convert to row-major.
        return (w, Matrix(rows: a.rows, cols: a.rows, data: v).transposed)
    }

    /// The lower Cholesky factor L (A = L·Lᵀ) in LAPACK's packing, or nil if A is not positive definite.
    public static func cholesky(_ a: Matrix) -> Matrix? {
        var n = Int32(a.rows), lda = max(n, 1), info: Int32 = 0
        var f = a.data
        var uplo = Int8(UInt8(ascii: "U"))  // column-major "U" = row-major lower
        OwnThreads.withBLASThreads { dpotrf_(&uplo, &n, &f, &lda, &info) }
        return info == 0 ? Matrix(rows: a.rows, cols: a.cols, data: f) : nil
    }

    /// Solves A·X = B given `cholesky(A)`; B is [n, r] row-major.
    public static func choleskySolve(_ factor: Matrix, _ b: Matrix) -> Matrix {
        // LAPACK wants B column-major [n, r]: that is Bᵀ row-major.
        var bt = b.transposed
        var n = Int32(factor.rows), nrhs = Int32(b.cols), lda = max(n, 1), ldb = max(n, 1), info: Int32 = 0
        var uplo = Int8(UInt8(ascii: "U"))
        factor.data.withUnsafeBufferPointer { fp in
            OwnThreads.withBLASThreads { dpotrs_(&uplo, &n, &nrhs, fp.baseAddress, &lda, &bt.data, &ldb, &info) }
        }
        precondition(info == 0, "dpotrs: argument \(-info) invalid")
        return bt.transposed
    }
}

public enum LinearAlgebraError: Error, CustomStringConvertible {
    case eigendecompositionFailed(Int)
    case notPositiveDefinite(String)
    case nonFinite(String)

    public var description: String {
        switch self {
        case .eigendecompositionFailed(let i): "symmetric eigendecomposition (dsyevd) did not converge (info \(i))"
        case .notPositiveDefinite(let what): "\(what) is not positive definite"
        case .nonFinite(let what): "\(what) contains NaN or Inf"
        }
    }
}
