internal import CNTK
internal import COpenBLAS

/// What the process runs on: CPU features, the SIMD path the C core chose, and the BLAS library.
public enum Platform {
    /// "avx2+fma" or "scalar": the kernel table every `ntk_vec_*` call uses (fixed for the process;
    /// `NTK_SIMD=scalar` forces the scalar reference). Recorded in every artifact.
    public static var simdPath: String { String(cString: ntk_simd_name()) }
    public static var cpuHasAVX2: Bool { ntk_cpu_has_avx2() != 0 }
    public static var cpuHasFMA: Bool { ntk_cpu_has_fma() != 0 }
    /// OpenBLAS build configuration string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64".
    public static var blasConfig: String { String(cString: openblas_get_config()) }
    /// The OpenBLAS kernel family chosen for this CPU, e.g. "Haswell".
    public static var blasCore: String { String(cString: openblas_get_corename()) }
    public static var blasThreads: Int { Int(openblas_get_num_threads()) }
    public static func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}

/// The producer version written into every artifact and the lock file.
public let ntkVersion = "0.1.0"
