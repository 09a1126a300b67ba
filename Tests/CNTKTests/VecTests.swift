import CNTK
import Foundation
import XCTest

/// The AVX2+FMA kernels against the scalar reference (and both against plain Swift), on awkward sizes.
///
/// Tolerances: reductions accumulate in double in both paths but in a different order, so they agree to
/// 1e-13 relative to Σ|terms|. Element-wise axpy/affine/hadamard use FMA (one rounding) in the SIMD path and
/// mul+add (two roundings) in the scalar one: they agree to 2 ulp of the magnitudes involved. relu, step,
/// abs and square, and scale, are exact in both paths and must agree bit for bit (up to the sign of zero).
final class VecTests: XCTestCase {
    static let sizes = [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 1000]

    var tables: [(String, UnsafePointer<ntk_vec_table>)] {
        var t = [("scalar", ntk_vec_table_scalar()!)]
        if let a = ntk_vec_table_avx2() { t.append(("avx2", a)) }
        return t
    }

    func testActiveTableFollowsEnvironment() {
        let env = ProcessInfo.processInfo.environment["NTK_SIMD"]
        let name = String(cString: ntk_simd_name())
        if env == "scalar" || ntk_vec_table_avx2() == nil {
            XCTAssertEqual(name, "scalar")
        } else if env == "avx2" || ntk_vec_table_avx512() == nil {
            XCTAssertEqual(name, "avx2+fma")
        } else {
            XCTAssertEqual(name, "avx2+fma+avx512")
        }
        XCTAssertEqual(ntk_vec_table_avx512() != nil, ntk_cpu_has_avx512() == 1 && ntk_vec_table_avx2() != nil)
        XCTAssertEqual(String(cString: ntk_vec_table_active()!.pointee.name), name)
    }

    func testThisMachineHasAVX2() throws {
        // The project's target machines have AVX2+FMA; if this fails the SIMD path is not being tested at all.
        try XCTSkipIf(ProcessInfo.processInfo.environment["NTK_ALLOW_NO_AVX2"] != nil)
        XCTAssertEqual(ntk_cpu_has_avx2(), 1)
        XCTAssertEqual(ntk_cpu_has_fma(), 1)
        XCTAssertNotNil(ntk_vec_table_avx2())
    }

    func random(_ n: Int, seed: Int) -> [Double] {
        var s = UInt64(truncatingIfNeeded: seed &* 2654435761 &+ 1)
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Double(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 250_000  // in [-4, 4], some exact zeros
        }
    }

    func testReductionsF64() {
        for n in Self.sizes {
            let x = random(n, seed: n), y = random(n, seed: n + 7)
            let refDot = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 }, scaleDot = zip(x, y).reduce(0) { $0 + abs($1.0 * $1.1) } + 1e-300
            let refSum = x.reduce(0, +), scaleSum = x.reduce(0) { $0 + abs($1) } + 1e-300
            let refSq = x.reduce(0) { $0 + $1 * $1 }
            for (name, t) in tables {
                let ops = t.pointee.f64
                XCTAssertEqual(ops.dot(x, y, n), refDot, accuracy: 1e-13 * scaleDot, "\(name) dot n=\(n)")
                XCTAssertEqual(ops.sum(x, n), refSum, accuracy: 1e-13 * scaleSum, "\(name) sum n=\(n)")
                XCTAssertEqual(ops.sumsq(x, n), refSq, accuracy: 1e-13 * (refSq + 1e-300), "\(name) sumsq n=\(n)")
            }
        }
    }

    func testReductionsF32AccumulateInDouble() {
        for n in Self.sizes {
            let x = random(n, seed: n).map(Float.init), y = random(n, seed: n + 3).map(Float.init)
            let refDot = zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let scale = zip(x, y).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) } + 1e-300
            for (name, t) in tables {
                let ops = t.pointee.f32
                XCTAssertEqual(ops.dot(x, y, n), refDot, accuracy: 1e-13 * scale, "\(name) dot f32 n=\(n)")
                XCTAssertEqual(ops.sum(x, n), x.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-12 * (scale + 1), "\(name) sum f32 n=\(n)")
                XCTAssertEqual(ops.sumsq(x, n), x.reduce(0.0) { $0 + Double($1) * Double($1) }, accuracy: 1e-12 * (scale + 1), "\(name) sumsq f32 n=\(n)")
            }
        }
    }

    func testElementwiseF64() {
        let ulp = Double.ulpOfOne
        for n in Self.sizes {
            let x = random(n, seed: 2 * n + 1), y0 = random(n, seed: 3 * n + 2), b = random(n, seed: 5 * n)
            for (name, t) in tables {
                let ops = t.pointee.f64
                var y = y0
                ops.axpy(&y, 0.75, x, n)
                for i in 0..<n { XCTAssertEqual(y[i], y0[i] + 0.75 * x[i], accuracy: 2 * ulp * (abs(y0[i]) + abs(0.75 * x[i])), "\(name) axpy n=\(n)") }
                y = y0
                ops.scale(&y, -1.5, n)
                XCTAssertEqual(y, y0.map { -1.5 * $0 }, "\(name) scale n=\(n)")
                y = y0
                ops.affine(&y, 0.3, -2, n)
                for i in 0..<n { XCTAssertEqual(y[i], 0.3 * y0[i] - 2, accuracy: 2 * ulp * (abs(0.3 * y0[i]) + 2), "\(name) affine n=\(n)") }
                y = y0
                ops.hadamard(&y, x, b, n)
                XCTAssertEqual(y, zip(x, b).map { $0 * $1 }, "\(name) hadamard n=\(n)")
                y = y0
                ops.hadamard_acc(&y, x, b, n)
                for i in 0..<n { XCTAssertEqual(y[i], y0[i] + x[i] * b[i], accuracy: 2 * ulp * (abs(y0[i]) + abs(x[i] * b[i])), "\(name) hadamard n=\(n)") }
                let maps: [(ntk_map_op, (Double) -> Double)] = [
                    (NTK_MAP_RELU, { $0 > 0 ? $0 : 0 }), (NTK_MAP_STEP, { $0 > 0 ? 1 : 0 }), (NTK_MAP_ABS, { abs($0) }), (NTK_MAP_SQUARE, { $0 * $0 }),
                ]
                for (op, f) in maps {
                    var out = [Double](repeating: .nan, count: n)
                    ops.map(&out, x, n, op)
                    XCTAssertEqual(out, x.map(f), "\(name) map \(op) n=\(n)")
                    var inPlace = x  // y may alias x
                    inPlace.withUnsafeMutableBufferPointer { ops.map($0.baseAddress, $0.baseAddress, n, op) }
                    XCTAssertEqual(inPlace, x.map(f), "\(name) map in place \(op) n=\(n)")
                }
            }
        }
    }

    func testElementwiseF32() {
        let ulp = Double(Float.ulpOfOne)
        for n in Self.sizes {
            let x = random(n, seed: 7 * n + 1).map(Float.init), y0 = random(n, seed: 11 * n).map(Float.init)
            for (name, t) in tables {
                let ops = t.pointee.f32
                var y = y0
                ops.axpy(&y, 0.75, x, n)
                for i in 0..<n {
                    XCTAssertEqual(Double(y[i]), Double(y0[i]) + 0.75 * Double(x[i]), accuracy: 2 * ulp * Double(abs(y0[i]) + abs(0.75 * x[i])), "\(name) axpy f32 n=\(n)")
                }
                var out = [Float](repeating: .nan, count: n)
                ops.map(&out, x, n, NTK_MAP_RELU)
                XCTAssertEqual(out, x.map { $0 > 0 ? $0 : 0 }, "\(name) relu f32 n=\(n)")
                ops.map(&out, x, n, NTK_MAP_STEP)
                XCTAssertEqual(out, x.map { $0 > 0 ? 1 : 0 }, "\(name) step f32 n=\(n)")
            }
        }
    }

    /// NaN handling is part of the contract: relu and step map NaN to 0 in both paths.
    func testNaNHandlingMatchesScalar() {
        let x: [Double] = [.nan, -.infinity, .infinity, -0.0, 0, 1, -1, .nan, 2]
        for (name, t) in tables {
            var out = [Double](repeating: 7, count: x.count)
            t.pointee.f64.map(&out, x, x.count, NTK_MAP_RELU)
            XCTAssertEqual(out, [0, 0, .infinity, 0, 0, 1, 0, 0, 2], name)
            t.pointee.f64.map(&out, x, x.count, NTK_MAP_STEP)
            XCTAssertEqual(out, [0, 0, 1, 0, 0, 1, 0, 0, 1], name)
        }
    }
}

/// The AVX2 and AVX-512 analytic-kernel rows (vectorised atan/asin) against the libm-based scalar reference.
final class KernelRowTests: XCTestCase {
    func testRowsAgreeWithScalarReference() throws {
        guard let avx2 = ntk_vec_table_avx2() else { throw XCTSkip("no AVX2 on this CPU") }
        for avx in [avx2] + (ntk_vec_table_avx512().map { [$0] } ?? []) { try rowsAgree(avx) }
    }

    /// The covariance axis map (conv / pooling of a covariance, CSR terms) against the scalar reference and a
    /// direct sum, for inner sizes around the 16- and 4-wide steps, with repeated and absent sources.
    func testAxisMapAgreesWithScalarReference() throws {
        guard let avx2 = ntk_vec_table_avx2() else { throw XCTSkip("no AVX2 on this CPU") }
        let scalar = ntk_vec_table_scalar()!
        // 3 outputs from 4 inputs: out0 = 0.5·in1 + 0.25·in3, out1 = nothing, out2 = 2·in0 − in0 + 0.125·in2
        let offsets: [UInt32] = [0, 2, 2, 5], src: [UInt32] = [1, 3, 0, 0, 2], w = [0.5, 0.25, 2, -1, 0.125]
        for inner in [1, 3, 4, 5, 15, 16, 17, 37] {
            let outer = 2, x = (0..<(outer * 4 * inner)).map { Double(($0 * 7919) % 101) / 7 - 6 }
            var a = [Double](repeating: .nan, count: outer * 3 * inner), b = a
            scalar.pointee.kern.axis_map(&a, x, outer, 4, 3, inner, offsets, src, w)
            avx2.pointee.kern.axis_map(&b, x, outer, 4, 3, inner, offsets, src, w)
            for o in 0..<outer {
                for e in 0..<inner {
                    let xi = { (i: Int) in x[(o * 4 + i) * inner + e] }
                    let want = [0.5 * xi(1) + 0.25 * xi(3), 0, 2 * xi(0) - xi(0) + 0.125 * xi(2)]
                    for k in 0..<3 {
                        let j = (o * 3 + k) * inner + e
                        XCTAssertEqual(a[j], want[k], accuracy: 1e-14, "scalar inner=\(inner)")
                        XCTAssertEqual(b[j], a[j], accuracy: 1e-14, "avx2 inner=\(inner)")
                    }
                }
            }
        }
    }

    /// The float32 axis map: the scalar reference against the map's definition (in float64), the AVX2 twin
    /// against the reference, across every tail length of its 32- and 8-wide loops.
    func testFloat32AxisMapAgreesWithScalarReference() throws {
        guard let avx2 = ntk_vec_table_avx2() else { throw XCTSkip("no AVX2 on this CPU") }
        let scalar = ntk_vec_table_scalar()!
        let offsets: [UInt32] = [0, 2, 2, 5], src: [UInt32] = [1, 3, 0, 0, 2]
        let w: [Float] = [0.5, 0.25, 2, -1, 0.125]
        for inner in [1, 7, 8, 9, 31, 32, 33, 77] {
            let outer = 2, x = (0..<(outer * 4 * inner)).map { Float(($0 * 7919) % 101) / 7 - 6 }
            var a = [Float](repeating: .nan, count: outer * 3 * inner), b = a
            scalar.pointee.kern.axis_map_f32(&a, x, outer, 4, 3, inner, offsets, src, w)
            avx2.pointee.kern.axis_map_f32(&b, x, outer, 4, 3, inner, offsets, src, w)
            for o in 0..<outer {
                for e in 0..<inner {
                    let xi = { (i: Int) in Double(x[(o * 4 + i) * inner + e]) }
                    let want = [0.5 * xi(1) + 0.25 * xi(3), 0, 2 * xi(0) - xi(0) + 0.125 * xi(2)]
                    for k in 0..<3 {
                        let j = (o * 3 + k) * inner + e
                        XCTAssertEqual(Double(a[j]), want[k], accuracy: 1e-5, "scalar inner=\(inner)")
                        XCTAssertEqual(b[j], a[j], accuracy: 1e-5, "avx2 inner=\(inner)")
                    }
                }
            }
        }
    }

    /// ntk_kernel_row_f32 is the float64 row on widened inputs, rounded: exactly that, across chunk boundaries.
    func testFloat32RowIsTheFloat64RowRounded() {
        let n = 600, d1 = 1.3
        let q = (0..<n).map { Float(sin(Double($0))) }, d2 = (0..<n).map { Float(1.5 + cos(Double($0))) }
        let t0 = (0..<n).map { Float(Double($0 % 7) / 7) }
        var c = ntk_layer_coef(w_var: 1.7, b_var: 0.1, ntk_t_scale: 1.7, ntk_shift: 0.1, a: 0, b: 1)
        var k32 = q, t32 = t0
        ntk_kernel_row_f32(NTK_ROW_ABRELU, &k32, &t32, d2, d1, n, &c, NTK_ACT_RELU, 0, nil)
        var k64 = q.map(Double.init), t64 = t0.map(Double.init)
        ntk_kernel_abrelu_row(&k64, &t64, d2.map(Double.init), d1, n, &c)
        XCTAssertEqual(k32, k64.map { Float($0) })
        XCTAssertEqual(t32, t64.map { Float($0) })
    }

    func rowsAgree(_ avx: UnsafePointer<ntk_vec_table>) throws {
        let scalar = ntk_vec_table_scalar()!
        let table = String(cString: avx.pointee.name)
        var s: UInt64 = 99
        func u() -> Double { s = s &* 6364136223846793005 &+ 1442695040888963407; return Double(s >> 11) / Double(1 << 53) }
        for n in [0, 1, 3, 4, 5, 7, 8, 9, 12, 16, 17, 33, 1000] {
            let d1 = 0.3 + 2 * u()
            let d2 = (0..<n).map { _ in 0.01 + 3 * u() }
            // q spans the whole range |q| ≤ √(d1·d2), including exact ±√(d1·d2), 0 and tiny values.
            var q = d2.map { (2 * u() - 1) * ($0 * d1).squareRoot() }
            if n > 4 { q[0] = (d1 * d2[0]).squareRoot(); q[1] = -(d1 * d2[1]).squareRoot(); q[2] = 0; q[3] = 1e-300 }
            let ntk0 = (0..<n).map { _ in u() }
            for (a, b) in [(0.0, 1.0), (-1.0, 1.0), (0.2, 1.0)] {
                var c = ntk_layer_coef(w_var: 1.7, b_var: 0.1, ntk_t_scale: 1.7, ntk_shift: 0.1, a: a, b: b)
                for erf in [false, true] {
                    var k1 = q, t1 = ntk0, k2 = q, t2 = ntk0
                    if erf {
                        scalar.pointee.kern.erf_row(&k1, &t1, d2, d1, n, &c)
                        avx.pointee.kern.erf_row(&k2, &t2, d2, d1, n, &c)
                    } else {
                        scalar.pointee.kern.abrelu_row(&k1, &t1, d2, d1, n, &c)
                        avx.pointee.kern.abrelu_row(&k2, &t2, d2, d1, n, &c)
                    }
                    for j in 0..<n {
                        XCTAssertEqual(k2[j], k1[j], accuracy: 4e-15 * max(abs(k1[j]), 1), "\(table) nngp erf=\(erf) a=\(a) n=\(n) j=\(j)")
                        XCTAssertEqual(t2[j], t1[j], accuracy: 4e-15 * max(abs(t1[j]), 1), "\(table) ntk erf=\(erf) a=\(a) n=\(n) j=\(j)")
                    }
                }
            }
        }
    }
}

/// The smooth activations' AVX2 twin (glibc libmvec) against the scalar reference (libm in double).
/// Stated accuracy (the reference evaluates in double and rounds once; the twin works in the precision itself):
/// - erf, tanh, softplus: φ within 4 ulp (of max(|φ|, 1e-3)); gelu within 8 ulp (erfc(−z/√2) amplifies the
///   rounding of its argument by ~z²);
/// - φ' within (4 + 4z²) ulp, because e^{−z²} (e^{−2|z|} for tanh) amplifies the rounding of its argument — for
///   gelu relative to max(|φ'|, 0.1), since Φ(z) + z·φ(z) cancels near z ≈ −0.75.
final class SmoothActivationTests: XCTestCase {
    static let acts = [NTK_ACT_ERF, NTK_ACT_TANH, NTK_ACT_GELU, NTK_ACT_SOFTPLUS]

    func inputs(_ n: Int) -> [Double] {
        (0..<n).map { i in -6 + 12 * Double((i * 7919) % max(n, 1)) / Double(max(n - 1, 1)) } + [0, -0.0, 1e-8, -30, 30].prefix(n > 5 ? 5 : 0)
    }

    func testF64AgainstReference() throws {
        guard let avx = ntk_vec_table_avx2() else { throw XCTSkip("no AVX2") }
        let scalar = ntk_vec_table_scalar()!
        for act in Self.acts {
            for n in [0, 1, 3, 4, 5, 9, 33, 1000] {
                let x = inputs(n)
                var f1 = x, d1 = x, f2 = x, d2 = x
                scalar.pointee.f64.smooth(&f1, &d1, x.count, Int32(act.rawValue))
                avx.pointee.f64.smooth(&f2, &d2, x.count, Int32(act.rawValue))
                for i in x.indices {
                    let ulp = Double.ulpOfOne
                    let gelu = act == NTK_ACT_GELU
                    XCTAssertEqual(f2[i], f1[i], accuracy: (gelu ? 8 : 4) * ulp * max(abs(f1[i]), 1e-3), "φ act \(act.rawValue) x=\(x[i])")
                    XCTAssertEqual(d2[i], d1[i], accuracy: (4 + 4 * x[i] * x[i]) * ulp * max(abs(d1[i]), gelu ? 0.1 : 1e-3), "φ' act \(act.rawValue) x=\(x[i])")
                }
            }
        }
    }

    func testF32AgainstReference() throws {
        guard let avx = ntk_vec_table_avx2() else { throw XCTSkip("no AVX2") }
        let scalar = ntk_vec_table_scalar()!
        var worst = 0.0
        for act in Self.acts {
            for n in [0, 1, 7, 8, 9, 33, 1000] {
                let x = inputs(n).map(Float.init)
                var f1 = x, d1 = x, f2 = x, d2 = x
                scalar.pointee.f32.smooth(&f1, &d1, x.count, Int32(act.rawValue))
                avx.pointee.f32.smooth(&f2, &d2, x.count, Int32(act.rawValue))
                for i in x.indices {
                    let ulp = Double(Float.ulpOfOne), xi = Double(x[i])
                    let e = abs(Double(f2[i]) - Double(f1[i])) / (ulp * max(abs(Double(f1[i])), 1e-3))
                    worst = max(worst, e)
                    let gelu = act == NTK_ACT_GELU
                    XCTAssertLessThanOrEqual(e, gelu ? 8 : 4, "φ act \(act.rawValue) x=\(x[i])")
                    XCTAssertEqual(Double(d2[i]), Double(d1[i]), accuracy: (4 + 4 * xi * xi) * ulp * max(abs(Double(d1[i])), gelu ? 0.1 : 1e-3), "φ' act \(act.rawValue) x=\(x[i])")
                }
            }
        }
        print("smooth activations, float32 AVX2 vs reference: worst \(worst) ulp")
    }
}
