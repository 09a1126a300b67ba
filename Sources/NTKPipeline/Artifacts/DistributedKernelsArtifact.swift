import Foundation
import NTK

/// Kernels spread over the P processes of a distributed run: the stage's out is a small `kernels` manifest, and each
/// process writes its own tile beside it, a directory `<out without .npz>.tiles/tile-<row>-<col>/` (its grid
/// coordinates) of plain `.npy` files:
///
/// - one per matrix, that process's blocks of the block-cyclic matrix as its local array [local rows, local cols],
///   column-major (`fortran_order`, as ScaLAPACK keeps it: written and read straight from and into memory, no copy);
/// - `rows.npy`, `cols.npy`, `rows_test.npy`, `cols_test.npy` (int32): the global indices of those rows and columns.
///
/// So numpy puts a tile back where it belongs:
///
///     d = "artifacts/analytic.tiles/tile-0-1/"
///     K[np.ix_(np.load(d + "rows.npy"), np.load(d + "cols.npy"))] = np.load(d + "ntk_train_train.npy")
///     Kxt[np.ix_(np.load(d + "rows.npy"), np.load(d + "cols_test.npy"))] = np.load(d + "ntk_train_test.npy")
///
/// `nngp_train_train` and `ntk_train_train` [n, n] and `nngp_test_test` [m, m] (with `kernel.test_test`; its rows
/// are `rows_test`) hold the blocks on and below the block diagonal (the kernels are symmetric; blocks above it are
/// zero in the tiles); `*_train_test` are K(train, test), [n, m].
///
/// The manifest's metadata `distributed` records the grid [rows, cols], the block size, each matrix's global shape
/// and, per tile, its directory (relative to the manifest), grid position and each file's SHA-256 and size: a
/// reader checks the hash of every file it reads. Its tensor `nngp_test_test_diagonal` [m] is K(x, x) of each test
/// sample (for variances).
public enum DistributedKernelsArtifact {
    /// Matrix names → the index files of their rows and columns.
    static let matrices: [(name: String, rows: String, cols: String)] = [
        ("nngp_train_train", "rows", "cols"), ("ntk_train_train", "rows", "cols"),
        ("nngp_train_test", "rows", "cols_test"), ("ntk_train_test", "rows", "cols_test"),
        ("nngp_test_test", "rows_test", "cols_test"),
    ]

    static func tilesDirectory(_ out: String) -> String {
        (out.hasSuffix(".npz") ? String(out.dropLast(4)) : out) + ".tiles"
    }

    static func tileName(row: Int, col: Int) -> String { "tile-\(row)-\(col)" }

    /// Writes this process's tile of `matrices` beside `out` and returns its manifest entry, gathered onto every
    /// process in rank order. Each matrix is written from its local array as it is and then released: the tile
    /// costs no memory beyond the kernels themselves.
    static func writeTiles(_ matrices: inout [String: BlockCyclicMatrix], out: String, grid: ProcessGrid) throws
        -> [JSONValue]
    {
        let name = tileName(row: grid.row, col: grid.col)
        let dir = tilesDirectory(out) + "/" + name
        try Files.makeDirectory(dir)
        var files: [String: JSONValue] = [:]
        func record(_ file: String) throws {
            let path = dir + "/" + file
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            files[file] = .object(["sha256": .string(try ContentHasher.hashFile(path)), "size": .int(size)])
        }
        var indices: [String: [Int32]] = [:]
        for (matrix, rowsName, colsName) in Self.matrices {
            guard let m = matrices.removeValue(forKey: matrix) else { continue }
            try Files.writeAtomically(dir + "/" + matrix + ".npy") { write in
                try NPY.header(dtype: .float64, shape: [m.localRows, m.localCols], fortranOrder: true)
                    .withUnsafeBytes { try write($0) }
                try m.local.withUnsafeBytes { try write($0) }
            }
            try record(matrix + ".npy")
            indices[rowsName] = (0..<m.localRows).map { Int32(m.globalRow($0)) }
            indices[colsName] = (0..<m.localCols).map { Int32(m.globalCol($0)) }
        }
        for (file, values) in indices {
            try Files.writeAtomically(
                dir + "/" + file + ".npy",
                bytes: NPY.header(dtype: .int32, shape: [values.count])
                    + values.withUnsafeBytes { Array($0) })
            try record(file + ".npy")
        }
        let mine = JSONValue.object([
            "dir": .string((tilesDirectory(out) as NSString).lastPathComponent + "/" + name), "row": .int(grid.row),
            "col": .int(grid.col), "files": .object(files),
        ]).canonical
        return try grid.gather(Array(mine.utf8)).map { try JSONValue.parse(String(decoding: $0, as: UTF8.self)) }
    }

    /// Tiles in the directory beside `out` that `entries` do not list (left by a run on another grid) are removed.
    static func removeUnlisted(out: String, entries: [JSONValue]) {
        let dir = tilesDirectory(out)
        let listed = Set(entries.compactMap { $0["dir"]?.text }.map { ($0 as NSString).lastPathComponent })
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

    /// What is wrong with the tiles the manifest at `path` lists (a file missing, or of another size than
    /// recorded), or nil — a cheap check for `ntk status` and the runner (a reader also checks each file's hash).
    static func tileProblem(_ path: String) -> String? {
        guard let f = try? ArtifactFile.read(path), case .object(let d)? = f.metadata["distributed"],
            case .array(let tiles)? = d["tiles"]
        else { return nil }
        let base = (path as NSString).deletingLastPathComponent
        for t in tiles {
            guard let dir = t["dir"]?.text, case .object(let files)? = t["files"] else { continue }
            for (file, entry) in files.sorted(by: { $0.key < $1.key }) {
                guard let size = entry["size"]?.number else { continue }
                let attributes = try? FileManager.default.attributesOfItem(atPath: base + "/" + dir + "/" + file)
                guard let actual = attributes?[.size] as? Int else { return "tile \(dir)/\(file) missing" }
                if actual != Int(size) { return "tile \(dir)/\(file) changed" }
            }
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

    /// This process's blocks of the matrices `names` of the manifest at `path`, checked against the grid (same shape)
    /// and the manifest's hashes, each read from its file straight into the local array.
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
                "kernels were computed on a \(shape.0)×\(shape.1) process grid, this run has \(grid.rows)×\(grid.cols)",
                at: path, hint: "run with mpirun -np \(shape.0 * shape.1), or rerun the kernels stage with this count")
        }
        let mine = tiles.first { $0["row"]?.number == Double(grid.row) && $0["col"]?.number == Double(grid.col) }
        guard let dir = mine?["dir"]?.text, case .object(let files)? = mine?["files"] else {
            throw NTKError("the manifest lists no tile for grid position (\(grid.row), \(grid.col))", at: path)
        }
        let base = (path as NSString).deletingLastPathComponent + "/" + dir
        var out: [String: BlockCyclicMatrix] = [:]
        for (name, _, _) in matrices where names.contains(name) {
            guard case .array(let s)? = shapes[name], s.count == 2 else { continue }
            let file = base + "/" + name + ".npy"
            guard Files.exists(file) else { throw NTKError("tile listed by \(path) is missing", at: file) }
            guard let sha = files[name + ".npy"]?["sha256"]?.text, try ContentHasher.hashFile(file) == sha else {
                throw NTKError(
                    "tile differs from the hash its manifest records (changed or damaged)", at: file,
                    hint: "rerun the kernels stage (ntk run --force <stage>)")
            }
            var m = BlockCyclicMatrix(
                grid: grid, rows: Int(s[0].number ?? 0), cols: Int(s[1].number ?? 0),
                block: Int(block))
            try readLocal(file, into: &m)
            out[name] = m
        }
        return out
    }

    /// Reads a column-major float64 `.npy` of the matrix's local shape straight into its local array.
    static func readLocal(_ file: String, into m: inout BlockCyclicMatrix) throws {
        guard let h = FileHandle(forReadingAtPath: file) else { throw NTKError("cannot open", at: file) }
        defer { try? h.close() }
        let head = [UInt8](h.readData(ofLength: 4096))
        let header: NPY.Header
        do { header = try NPY.parseHeader(head, name: (file as NSString).lastPathComponent) } catch let e as NTKError {
            throw e.located(file)
        }
        guard header.dtype == .float64, header.fortranOrder, header.shape == [m.localRows, m.localCols] else {
            throw NTKError(
                "holds \(header.dtype.rawValue) \(header.shape) (Fortran order: \(header.fortranOrder)); "
                    + "the layout needs float64 [\(m.localRows), \(m.localCols)] in Fortran order", at: file)
        }
        try h.seek(toOffset: UInt64(header.dataStart))
        let fd = h.fileDescriptor
        try m.local.withUnsafeMutableBytes { dst in
            var done = 0
            while done < dst.count {
                let r = Foundation.read(fd, dst.baseAddress! + done, min(dst.count - done, 1 << 30))
                guard r > 0 else { throw NTKError("ends after \(done) of \(dst.count) data bytes", at: file) }
                done += r
            }
        }
    }
}
