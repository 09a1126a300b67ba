import Foundation

/// What an interrupted run (SIGINT, SIGTERM) must clean up and can report: the temporary files being written now
/// (removed, so no `.ntk-tmp` is left) and, per stage, the last checkpoint it saved (kept: the next run resumes).
/// The CLI's signal handler calls `cleanUp()` and prints `summary`; the library only records.
public enum Interruption {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var partials: Set<String> = []
    nonisolated(unsafe) private static var stage: String?
    nonisolated(unsafe) private static var checkpoint: String?

    static func writing(_ path: String) {
        lock.lock()
        partials.insert(path)
        lock.unlock()
    }
    static func written(_ path: String) {
        lock.lock()
        partials.remove(path)
        lock.unlock()
    }
    static func stageStarted(_ name: String) {
        lock.lock()
        stage = name
        checkpoint = nil
        lock.unlock()
    }
    static func stageEnded() {
        lock.lock()
        stage = nil
        checkpoint = nil
        lock.unlock()
    }
    static func checkpointSaved(_ what: String) {
        lock.lock()
        checkpoint = what
        lock.unlock()
    }

    /// Removes the temporary files being written; returns how many there were.
    @discardableResult
    public static func cleanUp() -> Int {
        lock.lock()
        defer { lock.unlock() }
        for p in partials { unlink(p) }
        defer { partials = [] }
        return partials.count
    }

    /// One line on what was kept: the stage that was running and its last checkpoint, or that nothing was.
    public static var summary: String {
        lock.lock()
        defer { lock.unlock() }
        guard let stage else { return "no stage was running; every finished stage is in the lock" }
        guard let checkpoint else {
            return "stage \(stage) was running and had no checkpoint yet: nothing of it was kept (finished stages are)"
        }
        return "stage \(stage) was running: its \(checkpoint) was kept; `ntk run` resumes from it"
    }
}
