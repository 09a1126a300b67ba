import Foundation
import NTK

/// Kernels spread over the P processes of a distributed run: the stage's out is a small `kernels` manifest, and each
/// process writes its own tile beside it, `<out without .npz>.tiles/tile-<row>-<col>.npz` (grid coordinates).
///
/// A tile (kind `tile`) holds that process's blocks of each block-cyclic matrix, row-major [local rows, local cols],
/// and the global indices of those rows and columns — so numpy puts one back where it belongs:
///
///     t = np.load("artifacts/analytic.tiles/tile-0-1.npz")
///     K[np.ix_(t["rows"], t["cols"])] = t["ntk_train_train"]         # K: [n, n]
///     Kxt[np.ix_(t["rows"], t["cols_test"])] = t["ntk_train_test"]   # Kxt: [n, m]
///
/// `nngp_train_train` and `ntk_train_train` [n, n] and `nngp_test_test` [m, m] (with `kernel.test_test`) hold the
/// blocks on and below the block diagonal (the kernels are symmetric; blocks above it are zero in the tiles, and
/// its rows are `rows_test`); `*_train_test` are K(train, test), [n, m].
///
/// The manifest's metadata `distributed` records the grid [rows, cols], the block size, each matrix's global shape
/// and, per tile, its file (relative to the manifest), grid position, SHA-256 and size: a reader checks the hash of
/// the tile it reads. Its tensor `nngp_test_test_diagonal` [m] is K(x, x) of each test sample (for variances).
public enum DistributedKernelsArtifact {
    /// Matrix names → the tile tensor holding the global indices of its columns.
    static let matrices: [(name: String, cols: String)] = [
        ("nngp_train_train", "cols"), ("ntk_train_train", "cols"), ("nngp_train_test", "cols_test"),
        ("ntk_train_test", "cols_test"), ("nngp_test_test", "cols_test"),
    ]

    static func tilesDirectory(_ out: String) -> String {
        (out.hasSuffix(".npz") ? String(out.dropLast(4)) : out) + ".tiles"
    }

    static func tileName(row: Int, col: Int) -> String { "tile-\(row)-\(col).npz" }

    /// Writes this process's tile of `matrices` (one layout per pair of names) beside `out` and returns its manifest
    /// entry, gathered onto every process in rank order.
    /// The matrices are taken (emptied) one by one as their bytes are made: the tile costs no memory beyond the
    /// kernels themselves.
    static func writeTiles(
        _ matrices: inout [String: BlockCyclicMatrix], out: String, grid: ProcessGrid,
        metadata: [String: JSONValue]
    ) throws -> [JSONValue] {
        let dir = tilesDirectory(out)
        try Files.makeDirectory(dir)
        let relative = (dir as NSString).lastPathComponent + "/" + tileName(row: grid.row, col: grid.col)
        var tensors: [Tensor] = []
        var indexTensors: [String: Tensor] = [:]
        for (name, colsName) in Self.matrices {
            guard let m = matrices.removeValue(forKey: name) else { continue }
            tensors.append(
                Tensor(name: name, dtype: .float64, shape: [m.localRows, m.localCols], bytes: m.rowMajorBytes))
            let rowsName = name.hasSuffix("test_test") ? "rows_test" : "rows"
            indexTensors[rowsName] = Tensor(
                name: rowsName, shape: [m.localRows],
                int32: (0..<m.localRows).map { Int32(m.globalRow($0)) })
            indexTensors[colsName] = Tensor(
                name: colsName, shape: [m.localCols],
                int32: (0..<m.localCols).map { Int32(m.globalCol($0)) })
        }
        tensors += indexTensors.keys.sorted().map { indexTensors[$0]! }
        var meta = metadata
        meta["grid"] = .array([.int(grid.rows), .int(grid.cols)])
        meta["position"] = .array([.int(grid.row), .int(grid.col)])
        let path = dir + "/" + tileName(row: grid.row, col: grid.col)
        try ArtifactFile(kind: .tile, metadata: meta, tensors: tensors).write(to: path, level: 0)
        let sha = try ContentHasher.hashFile(path)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        let mine = JSONValue.object([
            "file": .string(relative), "row": .int(grid.row), "col": .int(grid.col), "sha256": .string(sha),
            "size": .int(size),
        ]).canonical
        return try grid.gather(Array(mine.utf8)).map { try JSONValue.parse(String(decoding: $0, as: UTF8.self)) }
    }

    /// Tiles in the directory beside `out` that `entries` do not list (left by a run on another grid) are removed.
    static func removeUnlisted(out: String, entries: [JSONValue]) {
        let dir = tilesDirectory(out)
        let listed = Set(entries.compactMap { $0["file"]?.text }.map { ($0 as NSString).lastPathComponent })
        for f in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where !listed.contains(f) {
            try? FileManager.default.removeItem(atPath: dir + "/" + f)
        }
    }

    /// Beside a kernels out just written whole (by a single-process run): the tiles of an earlier distributed run are
    /// stale and go.
    static func removeStaleTiles(out: String, written: ArtifactFile) {
        guard written.kind == .kernels, processes(written) == nil, Files.isDirectory(tilesDirectory(out)) else {
            return
        }
        try? FileManager.default.removeItem(atPath: tilesDirectory(out))
    }

    /// What is wrong with the tiles a manifest at `path` lists (missing, or another size than recorded), or nil —
    /// a cheap check for `ntk status` and the runner (a reader also checks each tile's hash).
    static func tileProblem(_ path: String) -> String? {
        guard let f = try? ArtifactFile.read(path), case .object(let d)? = f.metadata["distributed"],
            case .array(let tiles)? = d["tiles"]
        else { return nil }
        let base = (path as NSString).deletingLastPathComponent
        for t in tiles {
            guard let file = t["file"]?.text, let size = t["size"]?.number else { continue }
            let attributes = try? FileManager.default.attributesOfItem(atPath: base + "/" + file)
            guard let actual = attributes?[.size] as? Int else { return "tile \(file) missing" }
            if actual != Int(size) { return "tile \(file) changed" }
        }
        return nil
    }

    /// The `distributed` record of a manifest.
    static func record(grid: ProcessGrid, block: Int, shapes: [String: [Int]], tiles: [JSONValue]) -> JSONValue {
        .object([
            "grid": .array([.int(grid.rows), .int(grid.cols)]), "block": .int(block),
            "shapes": .object(shapes.mapValues { .array($0.map { .int($0) }) }), "tiles": .array(tiles),
            "lower": .array([.string("nngp_train_train"), .string("ntk_train_train"), .string("nngp_test_test")]),
        ])
    }

    /// Whether a kernels artifact is a manifest of tiles (and over how many processes).
    public static func processes(_ file: ArtifactFile) -> Int? {
        guard case .object(let d)? = file.metadata["distributed"], case .array(let g)? = d["grid"], g.count == 2,
            let r = g[0].number, let c = g[1].number
        else { return nil }
        return Int(r) * Int(c)
    }

    /// This process's blocks of the matrices `names` of the manifest at `path`, checked against the grid (same shape) and
    /// the manifest's hash of the tile.
    static func readTiles(_ manifest: ArtifactFile, path: String, grid: ProcessGrid, names: Set<String>) throws
        -> [String: BlockCyclicMatrix]
    {
        guard case .object(let d)? = manifest.metadata["distributed"], case .array(let g)? = d["grid"], g.count == 2,
            let block = d["block"]?.number, case .object(let shapes)? = d["shapes"],
            case .array(let tiles)? = d["tiles"]
        else {
            throw NTKError("not a manifest of distributed kernels (no 'distributed' record)", at: path)
        }
        let shape = (Int(g[0].number ?? 0), Int(g[1].number ?? 0))
        guard shape == (grid.rows, grid.cols) else {
            throw NTKError(
                "kernels were computed on a \(shape.0)×\(shape.1) process grid, this run has "
                    + "\(grid.rows)×\(grid.cols)", at: path,
                hint: "run with mpirun -np \(shape.0 * shape.1), or rerun the kernels stage with this count")
        }
        guard
            case .object(let entry)? = tiles.first(where: {
                if case .object(let t) = $0 {
                    return t["row"]?.number == Double(grid.row) && t["col"]?.number == Double(grid.col)
                }
                return false
            }), let file = entry["file"]?.text, let sha = entry["sha256"]?.text
        else {
            throw NTKError("the manifest lists no tile for grid position (\(grid.row), \(grid.col))", at: path)
        }
        let tilePath = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent(file)
        guard Files.exists(tilePath) else { throw NTKError("tile listed by \(path) is missing", at: tilePath) }
        guard try ContentHasher.hashFile(tilePath) == sha else {
            throw NTKError(
                "tile differs from the hash its manifest records (changed or damaged)", at: tilePath,
                hint: "rerun the kernels stage (ntk run --force <stage>)")
        }
        var tile = try ArtifactFile.read(tilePath)
        var out: [String: BlockCyclicMatrix] = [:]
        for (name, _) in matrices where names.contains(name) {
            guard case .array(let s)? = shapes[name], s.count == 2,
                let index = tile.tensors.firstIndex(where: { $0.name == name })
            else { continue }
            let t = tile.tensors.remove(at: index)  // its bytes go once they are copied
            guard t.dtype == .float64 else { throw NTKError("\(name) is not float64", at: tilePath) }
            var m = BlockCyclicMatrix(
                grid: grid, rows: Int(s[0].number ?? 0), cols: Int(s[1].number ?? 0),
                block: Int(block))
            guard t.shape == [m.localRows, m.localCols] else {
                throw NTKError(
                    "\(name) is \(t.shape) in the tile, the layout needs [\(m.localRows), \(m.localCols)]",
                    at: tilePath)
            }
            m.setRowMajor(bytes: t.bytes)
            out[name] = m
        }
        return out
    }
}
