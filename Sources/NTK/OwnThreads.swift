import Dispatch
import Foundation

/// Our own threads for work made of independent BLAS calls. While `forEach` runs, OpenBLAS is single-threaded
/// (every call runs in the thread that makes it), and `workers` threads each take items from a shared queue —
/// so two medium GEMMs run side by side, one per core, instead of one after the other on OpenBLAS's threads with a
/// hand-off (spin, yield, wake) between every pair of calls. OpenBLAS's thread count is process-wide: it is
/// restored when `forEach` returns, and BLAS calls made elsewhere in the meantime run single-threaded.
public enum OwnThreads {
    /// How many workers to use: OpenBLAS's own thread count (which follows OPENBLAS_NUM_THREADS), at least 1.
    public static var workers: Int { max(1, Platform.blasThreads) }

    /// Calls `body(worker, item)` once for every item in 0..<count, spread over `workers` threads in the order given
    /// (put the costliest items first). `worker` (0..<workers) indexes per-thread scratch space.
    /// Inside another `forEach` (on any thread) the items run one after the other on the calling thread.
    public static func forEach(_ count: Int, workers: Int = OwnThreads.workers, _ body: (_ worker: Int, _ item: Int) -> Void) {
        let threads = max(1, min(workers, count))
        if threads == 1 || !enter() {
            for i in 0..<count { body(0, i) }
            return
        }
        let saved = Platform.blasThreads
        Platform.setBLASThreads(1)
        defer {
            Platform.setBLASThreads(saved)
            leave()
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
