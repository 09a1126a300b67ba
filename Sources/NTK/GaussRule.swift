/// Gauss quadrature rules by Golub–Welsch: the nodes are the eigenvalues of the symmetric tridiagonal Jacobi
/// matrix of the weight's orthogonal polynomials, the weights μ₀·v₀² from the eigenvectors' first entries.
public enum GaussRule {
    /// The most nodes a rule is built with (its Jacobi matrix is m × m, eigendecomposed densely).
    public static let maxNodes = 512

    /// Σ w_k g(x_k) ≈ ∫₋₁¹ g(x) dx (Legendre), exact for degree < 2m.
    public static func legendre(_ m: Int) throws -> (nodes: [Double], weights: [Double]) {
        try golubWelsch(m, mu0: 2, diagonal: { _ in 0 }, offDiagonal: { k in Double(k) / (4 * Double(k * k) - 1).squareRoot() })
    }

    /// Σ w_k g(x_k) ≈ ∫₀^∞ e^{−x} g(x) dx (Laguerre), exact for degree < 2m.
    public static func laguerre(_ m: Int) throws -> (nodes: [Double], weights: [Double]) {
        try golubWelsch(m, mu0: 1, diagonal: { k in Double(2 * k + 1) }, offDiagonal: { k in Double(k) })
    }

    /// Σ w_k g(x_k) ≈ ∫ e^{−x²} g(x) dx (Hermite), exact for degree < 2m.
    public static func hermite(_ m: Int) throws -> (nodes: [Double], weights: [Double]) {
        try golubWelsch(m, mu0: Double.pi.squareRoot(), diagonal: { _ in 0 }, offDiagonal: { k in (Double(k) / 2).squareRoot() })
    }

    /// Jacobi matrix J[k, k] = diagonal(k), J[k−1, k] = offDiagonal(k) for k = 1…m−1.
    static func golubWelsch(_ m: Int, mu0: Double, diagonal: (Int) -> Double, offDiagonal: (Int) -> Double) throws -> (nodes: [Double], weights: [Double]) {
        precondition(m >= 1 && m <= maxNodes)
        var j = Matrix(rows: m, cols: m)
        for k in 0..<m { j[k, k] = diagonal(k) }
        for k in 1..<max(m, 1) {
            j[k - 1, k] = offDiagonal(k)
            j[k, k - 1] = j[k - 1, k]
        }
        let (values, vectors) = try LAPACK.eigh(j)
        return (values, (0..<m).map { mu0 * vectors[0, $0] * vectors[0, $0] })
    }
}
