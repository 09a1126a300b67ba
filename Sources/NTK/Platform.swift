internal import CNTK
internal import COpenBLAS
import Foundation

/// What the process runs on: CPU features, the SIMD path the C core chose, and the BLAS library.
public enum Platform {
    /// "avx2+fma" or "scalar": the kernel table every `ntk_vec_*` call uses (fixed for the process;
    /// `NTK_SIMD=scalar` forces the scalar reference). Recorded in every artifact.
    public static var simdPath: String { String(cString: ntk_simd_name()) }
    /// This process's peak resident set since its last exec (VmHWM of /proc/self/status; nil where unreadable).
    /// Not getrusage's ru_maxrss, which Linux carries over an exec from the forking parent.
    public static var peakResidentBytes: Int? {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ")[0]) else {
            return nil
        }
        return kb * 1024
    }
    public static var cpuHasAVX2: Bool { ntk_cpu_has_avx2() != 0 }
    public static var cpuHasFMA: Bool { ntk_cpu_has_fma() != 0 }
    /// OpenBLAS build configuration string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64".
    public static var blasConfig: String { String(cString: openblas_get_config()) }
    /// The OpenBLAS kernel family chosen for this CPU, e.g. "Haswell".
    public static var blasCore: String { String(cString: openblas_get_corename()) }
    public static var blasThreads: Int { Int(openblas_get_num_threads()) }
    public static func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    public static var cpuHasAVX512: Bool { ntk_cpu_has_avx512() != 0 }

    /// Keeps freed memory mapped for reuse (glibc: large blocks come from the heap instead of fresh mmaps, and the
    /// heap is not trimmed), so a second kernel, tile or training buffer of a size seen before costs no page faults:
    /// on this VM a first touch costs 0.33 ms per MB (400 MB: 130 ms) against 0.03 ms per MB for memory already
    /// mapped. `ntk` calls it at start; the price is that the process's RSS does not shrink after a large free.
    @discardableResult
    public static func keepFreedMemory() -> Bool { ntk_keep_freed_memory() != 0 }
    public static var freedMemoryIsKept: Bool { ntk_freed_memory_kept() != 0 }

    public static var cpuHasAVX512BF16: Bool { ntk_cpu_has_avx512_bf16() != 0 }

    /// The OpenBLAS kernel family this CPU's features allow, when OpenBLAS chose an older one by itself (nil when its
    /// choice is right, or when the user set OPENBLAS_CORETYPE). OpenBLAS 0.3.21 (Debian 12) knows CPUs by model
    /// number, and gives one newer than it knows its generic SSE3 "Prescott" kernels: seen on an Intel Xeon of
    /// family 6, model 207 (Emerald Rapids), where one core's sgemm 2048³ runs at 32 GFLOP/s with Prescott, 82 with
    /// Haswell, 141 with SkylakeX and 150 with Cooperlake. Features decide here: AVX-512 with BF16 → "Cooperlake",
    /// AVX-512 → "SkylakeX", AVX2 and FMA → "Haswell".
    public static var blasCoreUpgrade: String? {
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil else { return nil }
        let avx512 = ["skylakex", "cooperlake", "sapphirerapids"]
        let current = blasCore.lowercased()
        if cpuHasAVX512 && cpuHasAVX2 && cpuHasFMA {
            if avx512.contains(current) { return nil }
            return cpuHasAVX512BF16 ? "Cooperlake" : "SkylakeX"
        }
        if cpuHasAVX2 && cpuHasFMA && !(avx512 + ["haswell", "zen"]).contains(current) { return "Haswell" }
        return nil
    }

    /// The environment variable that marks a process `ntk` restarted with a better OPENBLAS_CORETYPE; its value is the
    /// kernel family OpenBLAS had chosen by itself.
    public static let blasCoreRestartVariable = "NTK_OPENBLAS_CHOSE"

    /// Restarts the process with OPENBLAS_CORETYPE set to `blasCoreUpgrade`, once (OpenBLAS reads the variable when
    /// it is loaded, before `main`). Returns only when there is nothing to change or the restart failed.
    public static func restartWithBetterBLASCore() {
        let env = ProcessInfo.processInfo.environment
        guard env[blasCoreRestartVariable] == nil, let core = blasCoreUpgrade else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv(blasCoreRestartVariable, blasCore, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv("OPENBLAS_CORETYPE") // the restart failed: go on as OpenBLAS chose
        unsetenv(blasCoreRestartVariable)
    }

    /// "OpenBLAS chose Prescott for this CPU; ntk set OPENBLAS_CORETYPE=SkylakeX" after such a restart, else nil.
    public static var blasCoreRestartNote: String? {
        guard let chose = ProcessInfo.processInfo.environment[blasCoreRestartVariable] else { return nil }
        return "OpenBLAS chose its \(chose) kernels for this CPU (newer than it knows); ntk restarted with "
            + "OPENBLAS_CORETYPE=\(blasCore)"
    }

    /// A warning when OpenBLAS runs AVX2 kernels on a CPU with AVX-512 because OPENBLAS_CORETYPE says so (this
    /// machine's environment sets Haswell; unset, OpenBLAS 0.3.21 picks its AVX-512 "Cooperlake" kernels here and
    /// the GEMM peak nearly doubles: sgemm 250 → 456–486, dgemm 125 → 206–215 GFLOP/s). nil when there is nothing to say.
    public static var blasKernelNote: String? {
        guard cpuHasAVX512, ProcessInfo.processInfo.environment[blasCoreRestartVariable] == nil,
              let forced = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"],
              ["haswell", "zen", "sandybridge", "prescott", "nehalem"].contains(forced.lowercased()) else { return nil }
        return "the CPU has AVX-512 but OPENBLAS_CORETYPE=\(forced) keeps OpenBLAS on narrower kernels; unset it (or set SkylakeX) for about 1.8× faster GEMMs"
    }
}

/// The producer version written into every artifact and the lock file.
public let ntkVersion = "0.1.0"
