import NTK

/// Seeded, stratified choice of samples from one split.
public enum Selection {
    /// Indices of `n` samples (all if nil) of the given classes, stratified: class c gets a share
    /// proportional to its frequency (largest-remainder rounding, ties to the earlier class), the members of
    /// each class are a seeded random draw, and the final order is a seeded shuffle (classes interleaved).
    /// `what` names the split in errors ("training split of data/mnist").
    public static func stratified(labels: [Int32], classes: [Int], n: Int?, seed: UInt64, what: String) throws -> [Int] {
        var byClass: [[Int]] = classes.map { _ in [] }
        let position = Dictionary(uniqueKeysWithValues: classes.enumerated().map { (Int32($0.element), $0.offset) })
        for (i, l) in labels.enumerated() { if let p = position[l] { byClass[p].append(i) } }
        if let empty = byClass.firstIndex(where: \.isEmpty) {
            throw NTKError("class \(classes[empty]) has no samples in the \(what)")
        }
        let available = byClass.reduce(0) { $0 + $1.count }
        let total = n ?? available
        guard total <= available else {
            throw NTKError("\(total) samples requested but the \(what) has only \(available) of classes \(classes)")
        }
        // Largest-remainder apportionment of `total` over classes by frequency.
        let exact = byClass.map { Double($0.count) * Double(total) / Double(available) }
        var take = exact.map { Int($0.rounded(.down)) }
        let order = exact.indices.sorted { (exact[$0] - Double(take[$0]), -$0) > (exact[$1] - Double(take[$1]), -$1) }
        for i in order.prefix(total - take.reduce(0, +)) { take[i] += 1 }

        var rng = SplitMix64(seed: seed)
        var chosen: [Int] = []
        for (c, members) in byClass.enumerated() {
            var m = members
            rng.shuffle(&m)
            chosen += m.prefix(take[c])
        }
        rng.shuffle(&chosen)
        return chosen
    }
}
