import Foundation

/// The one check made before a large allocation whose size comes from a user's file or params (a network's θ, a
/// kernel, one-hot targets): the bytes asked for, computed without overflow, against what the machine has. Asking for
/// more is an error that says both numbers, instead of an allocation abort or the kernel's OOM killer minutes later.
public enum MemoryBudget {
    /// The machine's physical memory in bytes; `NTK_MEMORY_BYTES` overrides it (a share of a shared machine, a test).
    public static var availableBytes: Int {
        if let s = ProcessInfo.processInfo.environment["NTK_MEMORY_BYTES"], let v = Int(s), v > 0 { return v }
        return Int(clamping: ProcessInfo.processInfo.physicalMemory)
    }

    /// The product of sizes read from a file or a param, or nil when it overflows an Int — the one checked product
    /// every reader and shape check uses (IDX dims, npy shapes, layer sizes, allocation budgets).
    public static func product(_ factors: [Int]) -> Int? {
        var p = 1
        for f in factors {
            let (next, overflow) = p.multipliedReportingOverflow(by: f)
            if overflow { return nil }
            p = next
        }
        return p
    }

    /// nil when `factors` multiplied (e.g. [copies, n, n, bytes per element]) fit in `availableBytes`; else a sentence
    /// "needs 38.4 GB (3 × 3200000000 × 4 bytes), more than this machine's 24.0 GB of memory".
    public static func excess(_ factors: [Int]) -> String? {
        let product = self.product(factors.map { Swift.max($0, 0) })
        let have = availableBytes
        if let product, product <= have { return nil }
        let asked = product.map(gigabytes) ?? "more than 2⁶³ bytes"
        return "needs \(asked) (\(factors.map(String.init).joined(separator: " × ")) bytes), more than this machine's "
            + "\(gigabytes(have)) of memory"
    }

    public static func gigabytes(_ bytes: Int) -> String { String(format: "%.1f GB", Double(bytes) / 1e9) }

    /// A size in the unit that reads best: "512 B", "16.4 kB", "3.1 MB", "1.1 GB" (powers of 1000).
    public static func size(_ bytes: Int) -> String {
        let b = Double(bytes)
        return b < 1e3 ? "\(bytes) B" : b < 1e6 ? String(format: "%.1f kB", b / 1e3)
            : b < 1e9 ? String(format: "%.1f MB", b / 1e6) : gigabytes(bytes)
    }
}
