import Dispatch
import Foundation

/// Our own threads: the only parallelism in the process. OpenBLAS is set to one thread on first use (every BLAS call
/// runs in the thread that makes it; large products are tiled over these workers by `TiledBLAS`), and `workers`
/// threads each take items from a shared queue — so two medium GEMMs run side by side, one per core, with no
/// OpenBLAS worker spinning beside them. The one exception is LAPACK (`withBLASThreads`), whose blocked
/// factorizations thread inside OpenBLAS.
public enum OwnThreads {
    /// How many workers to use: `--threads` when set, else OpenBLAS's thread count at start (which follows
    /// OPENBLAS_NUM_THREADS, else the cores).
    public static var workers: Int {
        get {
            setup
            return state.withLock { count }
        }
        set {
            setup
            state.withLock { count = max(1, newValue) }
        }
    }

    /// Reads OpenBLAS's thread count once, then sets OpenBLAS to one thread.
    private static let setup: Void = {
        let n = max(1, Platform.blasThreads)
        Platform.setBLASThreads(1)
        state.withLock { count = n }
    }()
    nonisolated(unsafe) private static var count = 1

    /// Calls `body(worker, item)` once for every item in 0..<count, spread over `workers` threads in the order given
    /// (put the costliest items first). `worker` (0..<workers) indexes per-thread scratch space.
    /// Inside another `forEach` (on any thread) the items run one after the other on the calling thread; with one
    /// worker they do too, inside a region all the same (so `TiledBLAS` cuts exactly the same products whatever the
    /// worker count).
    public static func forEach(_ count: Int, workers: Int = OwnThreads.workers, _ body: (_ worker: Int, _ item: Int) -> Void) {
        guard enter() else {
            for i in 0..<count { body(0, i) }
            return
        }
        defer { leave() }
        let threads = max(1, min(workers, count))
        if threads == 1 {
            for i in 0..<count { body(0, i) }
            return
        }
        let lock = NSLock()
        var next = 0
        DispatchQueue.concurrentPerform(iterations: threads) { w in
            while true {
                lock.lock()
                let i = next
                next += 1
                lock.unlock()
                if i >= count { break }
                body(w, i)
            }
        }
    }

    /// Whether a `forEach` region is running (products inside it are single calls).
    static var isInRegion: Bool { state.withLock { active } }

    /// OpenBLAS threads for LAPACK: a fixed count, not `workers` — OpenBLAS's factorizations give bits that depend on
    /// their thread count (dpotrf, dpotrs and dsyevd on N = 300 and 1,500: four different results for 1, 2, 3 and 4
    /// threads, the same result on every run with one count), so a fixed count keeps artifacts independent of
    /// --threads. 2 (the cores of the machines this is built on) unless NTK_LAPACK_THREADS says otherwise (which
    /// changes the last bits of predictions; it is recorded in no artifact).
    public static let lapackThreads: Int =
        max(1, Int(ProcessInfo.processInfo.environment["NTK_LAPACK_THREADS"] ?? "") ?? 2)

    /// Runs `body` (LAPACK) with OpenBLAS on `lapackThreads` threads, then back to one.
    public static func withBLASThreads<R>(_ body: () throws -> R) rethrows -> R {
        let n = lapackThreads
        setup
        Platform.setBLASThreads(n)
        defer { Platform.setBLASThreads(1) }
        return try body()
    }

    private static let state = NSLock()
    nonisolated(unsafe) private static var active = false
    /// Claims the threads for one region; false if a region is already running.
    private static func enter() -> Bool {
        state.lock()
        defer { state.unlock() }
        if active { return false }
        active = true
        return true
    }
    private static func leave() {
        state.lock()
        active = false
        state.unlock()
    }
}
