/// How long work tells the user what it is doing. The library only calls this protocol; the CLI decides
/// how it looks (a progress bar on a terminal, plain log lines otherwise).
public protocol Reporter: AnyObject {
    func log(_ message: String)
    /// Starts a unit of work of `total` units (bytes, steps, tiles …).
    func begin(_ label: String, total: Int, unit: String) -> ProgressTask
}

public protocol ProgressTask: AnyObject {
    /// `done` units so far; `note` (e.g. "loss 0.0123") is shown beside the bar.
    func update(_ done: Int, note: String?)
    func finish()
}

extension ProgressTask {
    public func update(_ done: Int) { update(done, note: nil) }
}

/// Says nothing (tests, library use).
public final class SilentReporter: Reporter, ProgressTask {
    public init() {}
    public func log(_ message: String) {}
    public func begin(_ label: String, total: Int, unit: String) -> ProgressTask { self }
    public func update(_ done: Int, note: String?) {}
    public func finish() {}
}
