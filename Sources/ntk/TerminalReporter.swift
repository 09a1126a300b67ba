import Foundation
import NTKPipeline

/// Progress on standard error: a redrawn bar with rate and ETA when stderr is a terminal, otherwise
/// plain log lines at most every 10 % (so CI logs and redirected output stay readable).
final class TerminalReporter: Reporter {
    let isTTY = isatty(STDERR_FILENO) != 0

    func log(_ message: String) { FileHandle.standardError.write(Data((message + "\n").utf8)) }

    func begin(_ label: String, total: Int, unit: String) -> ProgressTask {
        Bar(label: label, total: total, unit: unit, reporter: self)
    }

    final class Bar: ProgressTask {
        let label: String, total: Int, unit: String
        unowned let reporter: TerminalReporter
        let start = Date()
        var lastDraw = Date.distantPast
        var lastDecile = -1

        init(label: String, total: Int, unit: String, reporter: TerminalReporter) {
            self.label = label; self.total = max(total, 1); self.unit = unit; self.reporter = reporter
        }

        func update(_ done: Int) {
            let frac = min(1, Double(done) / Double(total))
            let elapsed = Date().timeIntervalSince(start)
            if reporter.isTTY {
                guard Date().timeIntervalSince(lastDraw) > 0.1 || done >= total else { return }
                lastDraw = Date()
                let width = 30, filled = Int(frac * Double(width))
                let rate = elapsed > 0 ? Double(done) / elapsed : 0
                let eta = frac > 0 ? elapsed * (1 - frac) / frac : 0
                let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
                let line = String(format: "\r%@ %@ %3.0f%% %.1f %@/s ETA %.0fs ", label, bar, frac * 100, rate, unit, eta)
                FileHandle.standardError.write(Data(line.utf8))
            } else {
                let decile = Int(frac * 10)
                guard decile > lastDecile, elapsed > 1 || decile == 10 else { return }
                lastDecile = decile
                reporter.log(String(format: "%@: %.0f%% (%.1f s)", label, frac * 100, elapsed))
            }
        }

        func finish() {
            if reporter.isTTY {
                FileHandle.standardError.write(Data(String(format: "\r%@ done in %.2f s\u{1B}[K\n", label, Date().timeIntervalSince(start)).utf8))
            }
        }
    }
}
