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

    /// Columns of the terminal on standard error (80 when unknown).
    static var columns: Int {
        var w = winsize()
        return ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &w) == 0 && w.ws_col > 0 ? Int(w.ws_col) : 80
    }

    /// One line that fits the terminal: "label ███···  42% 12.3 steps/s ETA 8s loss 0.0123", the bar shrinking
    /// (down to 10 cells), then the label shortened, so a redraw never wraps. The rate counts only the work done in
    /// this process (a resumed run starts from its checkpoint's count).
    final class Bar: ProgressTask {
        let label: String, total: Int, unit: String
        unowned let reporter: TerminalReporter
        let start = Date()
        var lastDraw = Date.distantPast
        var lastDecile = -1
        var base: Int?

        init(label: String, total: Int, unit: String, reporter: TerminalReporter) {
            self.label = label; self.total = max(total, 1); self.unit = unit; self.reporter = reporter
        }

        func update(_ done: Int, note: String?) {
            let frac = min(1, Double(done) / Double(total))
            let elapsed = Date().timeIntervalSince(start)
            if base == nil { base = done }   // the first update: where this process starts (0, or a checkpoint's count)
            let rate = elapsed > 0 ? Double(done - base!) / elapsed : 0
            let eta = rate > 0 ? Double(total - done) / rate : 0
            let noteText = note.map { " " + $0 } ?? ""
            if reporter.isTTY {
                guard Date().timeIntervalSince(lastDraw) > 0.1 || done >= total else { return }
                lastDraw = Date()
                let stats = String(format: " %3.0f%% %.1f %@/s ETA %.0fs", frac * 100, rate, unit, eta) + noteText
                // the numbers first; the bar shrinks to 10 cells, then the label is shortened, then the line is cut
                let columns = TerminalReporter.columns - 1, budget = columns - stats.count - 1
                let width = max(10, min(30, budget - label.count))
                var shown = label
                if shown.count + width > budget { shown = String(label.prefix(max(0, budget - width - 1))) + "…" }
                let filled = Int(frac * Double(width))
                let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
                let line = String((shown + " " + bar + stats).prefix(columns))
                FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8))
            } else {
                let decile = Int(frac * 10)
                guard decile > lastDecile, elapsed > 1 || decile == 10 else { return }
                lastDecile = decile
                reporter.log(String(format: "%@: %.0f%% (%.1f s)", label, frac * 100, elapsed) + noteText)
            }
        }

        func finish() {
            if reporter.isTTY {
                let text = String(format: "%@ done in %.2f s", label, Date().timeIntervalSince(start))
                let line = String(text.prefix(TerminalReporter.columns - 1))
                FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K\n").utf8))
            }
        }
    }
}
