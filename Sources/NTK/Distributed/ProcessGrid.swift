internal import CNTK
import Foundation

/// The processes of a distributed run (`mpirun -np P ntk …`) as a BLACS process grid of `rows` × `cols` (as
/// square as P allows, rows ≤ cols), through Open MPI + ScaLAPACK loaded at run time (`CSources/CNTK/scalapack.c`):
/// nothing here is touched, and no MPI library is loaded, in a single-process run.
///
/// Collectives (`barrier`, `sum`, `broadcast`, `gather`) involve every process and must be called by all of them in the same
/// order. A process that fails ends the whole run (`abort`): the others would wait for it forever.
public final class ProcessGrid: @unchecked Sendable {
    /// This process's number (0 is the one that reads and writes the pipeline's lock and shared artifacts) and the
    /// number of processes.
    public let rank: Int, size: Int
    /// The grid's shape and this process's coordinates in it (rank = row·cols + col).
    public let rows: Int, cols: Int, row: Int, col: Int
    /// Processes of this run on this machine (Open MPI's local size): they share its cores.
    public let localSize: Int
    let context: Int32

    /// This process's share of the machine's cores (our threads and ScaLAPACK's local BLAS): the cores over the
    /// processes on this machine, and no more than the cores mpirun let it run on (its binding).
    public var threadsPerProcess: Int {
        min(Self.coresAllowed, max(1, ProcessInfo.processInfo.activeProcessorCount / localSize))
    }

    /// The cores this process may run on: the machine's, or fewer if it is bound to some.
    public static var coresAllowed: Int {
        let all = ProcessInfo.processInfo.activeProcessorCount
        let allowed = Int(ntk_cpus_allowed())
        return allowed > 0 ? min(all, allowed) : all
    }

    /// True when this process was started by mpirun (Open MPI's or a PMIx launcher's environment is set).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil
    }

    nonisolated(unsafe) private static var started: ProcessGrid?
    private static let lock = NSLock()

    /// The grid of this run, started on first use (MPI_Init through BLACS). Throws when MPI or ScaLAPACK cannot be
    /// loaded, saying which package provides them.
    public static func start() throws -> ProcessGrid {
        lock.lock()
        defer { lock.unlock() }
        if let started { return started }
        var error = [CChar](repeating: 0, count: 512)
        guard ntk_dist_load(&error, error.count) == 0 else {
            throw DistributedError.unavailable(String(cString: error))
        }
        var rank: Int32 = 0
        var size: Int32 = 0
        ntk_blacs_pinfo(&rank, &size)
        let (r, c) = shape(Int(size))
        let ctxt = ntk_blacs_grid(Int32(r), Int32(c))
        var nr: Int32 = 0
        var nc: Int32 = 0
        var myr: Int32 = 0
        var myc: Int32 = 0
        ntk_blacs_gridinfo(ctxt, &nr, &nc, &myr, &myc)
        let local = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? Int(size)
        let g = ProcessGrid(
            rank: Int(rank), size: Int(size), rows: Int(nr), cols: Int(nc), row: Int(myr),
            col: Int(myc), localSize: max(1, local), context: ctxt)
        started = g
        return g
    }

    /// The grid started so far, if any.
    public static var current: ProcessGrid? {
        lock.lock()
        defer { lock.unlock() }
        return started
    }

    private init(rank: Int, size: Int, rows: Int, cols: Int, row: Int, col: Int, localSize: Int, context: Int32) {
        (self.rank, self.size, self.rows, self.cols, self.row, self.col) = (rank, size, rows, cols, row, col)
        self.localSize = localSize
        self.context = context
    }

    /// rows × cols = p with rows ≤ cols and rows as large as possible (1×2, 2×2, 2×3, 3×3, 2×5 …).
    public static func shape(_ p: Int) -> (rows: Int, cols: Int) {
        var r = Int(Double(p).squareRoot())
        while r > 1 && p % r != 0 { r -= 1 }
        return (max(r, 1), p / max(r, 1))
    }

    public func barrier() { ntk_blacs_barrier(context) }

    /// a ← Σ over all processes of their a (the same length everywhere); the result on every process.
    public func sum(_ a: inout [Double]) {
        a.withUnsafeMutableBufferPointer { ntk_blacs_dsum(context, $0.baseAddress, $0.count) }
    }

    public func sum(_ a: inout [Int32]) {
        a.withUnsafeMutableBufferPointer { ntk_blacs_isum(context, $0.baseAddress, $0.count) }
    }

    /// Rank 0's bytes on every process (each process passes its own; only rank 0's count and contents matter).
    public func broadcast(_ bytes: [UInt8]) -> [UInt8] {
        var count: [Int32] = [rank == 0 ? Int32(bytes.count) : 0]
        sum(&count)
        var words = [Int32](repeating: 0, count: Int(count[0]))
        if rank == 0 { for (i, b) in bytes.enumerated() { words[i] = Int32(b) } }
        sum(&words)
        return words.map { UInt8(truncatingIfNeeded: $0) }
    }

    public func broadcast(_ s: String) -> String { String(decoding: broadcast(Array(s.utf8)), as: UTF8.self) }

    /// Every process's bytes, on every process, in rank order.
    public func gather(_ bytes: [UInt8]) -> [[UInt8]] {
        var counts = [Int32](repeating: 0, count: size)
        counts[rank] = Int32(bytes.count)
        sum(&counts)
        let offsets = counts.reduce(into: [0]) { $0.append($0.last! + Int($1)) }
        var words = [Int32](repeating: 0, count: offsets.last!)
        for (i, b) in bytes.enumerated() { words[offsets[rank] + i] = Int32(b) }
        sum(&words)
        return (0..<size).map { r in words[offsets[r]..<offsets[r + 1]].map { UInt8(truncatingIfNeeded: $0) } }
    }

    /// Ends every process of the run with `code` (MPI_Abort through BLACS).
    public func abort(code: Int32) -> Never {
        ntk_blacs_abort(context, code)
        exit(code)
    }

    /// Finishes MPI (MPI_Finalize through BLACS) if a grid was started; call once, at the end of the process.
    public static func finish() {
        lock.lock()
        defer { lock.unlock() }
        if started != nil { ntk_blacs_exit() }
        started = nil  // an error after this exits plainly (MPI_Abort after MPI_Finalize is not allowed)
    }
}

public enum DistributedError: Error, CustomStringConvertible {
    case unavailable(String)
    case scalapack(String, Int)

    public var description: String {
        switch self {
        case .unavailable(let why):
            "a distributed run needs Open MPI and ScaLAPACK: \(why) — install Debian's openmpi-bin and "
                + "libscalapack-openmpi2.2 (scripts/setup installs them)"
        case .scalapack(let routine, let info): "ScaLAPACK \(routine) failed (info \(info))"
        }
    }
}
