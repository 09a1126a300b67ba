import Foundation

/// This process's part of a global `globalRows` × `globalCols` float64 matrix in ScaLAPACK's 2-D block-cyclic
/// layout over a `ProcessGrid`: square blocks of `block`, block (I, J) held by the process at grid coordinates
/// (I mod grid.rows, J mod grid.cols). The process keeps its blocks as one column-major local array
/// `local` [localRows, localCols] (leading dimension max(1, localRows)): local row i is global row
/// `globalRow(i)`, local column j global column `globalCol(j)`.
public struct BlockCyclicMatrix {
    public let globalRows: Int, globalCols: Int, block: Int
    /// The grid's shape and this process's coordinates in it.
    public let gridRows: Int, gridCols: Int, row: Int, col: Int
    public let localRows: Int, localCols: Int
    /// Column-major [localRows, localCols].
    public var local: [Double]
    /// ScaLAPACK's array descriptor (DTYPE 1, context, M, N, MB, NB, RSRC 0, CSRC 0, LLD).
    public let descriptor: [Int32]

    /// A zero matrix on `grid`.
    public init(grid: ProcessGrid, rows: Int, cols: Int, block: Int) {
        self.init(
            rows: rows, cols: cols, block: block, gridRows: grid.rows, gridCols: grid.cols, row: grid.row,
            col: grid.col, context: grid.context)
    }

    /// This process's part of a matrix every process holds whole.
    public init(grid: ProcessGrid, distributing a: Matrix, block: Int) {
        self.init(grid: grid, rows: a.rows, cols: a.cols, block: block)
        for j in 0..<localCols {
            let gj = globalCol(j)
            for i in 0..<localRows { local[j * localRows + i] = a[globalRow(i), gj] }
        }
    }

    /// The layout alone (no grid started): for planning and tests.
    init(rows: Int, cols: Int, block: Int, gridRows: Int, gridCols: Int, row: Int, col: Int, context: Int32 = -1) {
        precondition(block > 0 && rows >= 0 && cols >= 0)
        (globalRows, globalCols, self.block) = (rows, cols, block)
        (self.gridRows, self.gridCols, self.row, self.col) = (gridRows, gridCols, row, col)
        localRows = Self.count(rows, block: block, process: row, processes: gridRows)
        localCols = Self.count(cols, block: block, process: col, processes: gridCols)
        local = [Double](repeating: 0, count: localRows * localCols)
        descriptor = [1, context, Int32(rows), Int32(cols), Int32(block), Int32(block), 0, 0, Int32(max(1, localRows))]
    }

    /// How many of n indices, in blocks of `block` dealt round-robin from process 0, process p of `processes`
    /// holds (ScaLAPACK's NUMROC).
    public static func count(_ n: Int, block: Int, process p: Int, processes: Int) -> Int {
        let blocks = n / block
        var c = (blocks / processes) * block
        let extra = blocks % processes
        if p < extra { c += block } else if p == extra { c += n % block }
        return c
    }

    /// The global index of local index i along an axis where this process is `p` of `processes`.
    static func global(_ i: Int, block: Int, process p: Int, processes: Int) -> Int {
        ((i / block) * processes + p) * block + i % block
    }

    public func globalRow(_ i: Int) -> Int { Self.global(i, block: block, process: row, processes: gridRows) }
    public func globalCol(_ j: Int) -> Int { Self.global(j, block: block, process: col, processes: gridCols) }

    /// The global row blocks this process holds rows of, in order (local row block b is global block
    /// b·gridRows + row).
    public var rowBlocks: [Int] { Array(stride(from: row, to: (globalRows + block - 1) / block, by: gridRows)) }
    public var colBlocks: [Int] { Array(stride(from: col, to: (globalCols + block - 1) / block, by: gridCols)) }

    /// Global rows of global block I.
    public func rows(ofBlock i: Int) -> Range<Int> { i * block..<min(globalRows, (i + 1) * block) }
    public func cols(ofBlock j: Int) -> Range<Int> { j * block..<min(globalCols, (j + 1) * block) }

    /// The local row where global block I starts (I must be one of `rowBlocks`).
    public func localRow(ofBlock i: Int) -> Int { (i / gridRows) * block }

    /// The local array as row-major [localRows, localCols] float64 bytes (what a tile file stores): one copy.
    public var rowMajorBytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: local.count * 8) { raw, count in
            raw.withMemoryRebound(to: Double.self) { out in
                local.withUnsafeBufferPointer { a in
                    for i in 0..<localRows { for j in 0..<localCols { out[i * localCols + j] = a[j * localRows + i] } }
                }
            }
            count = local.count * 8
        }
    }

    /// Sets the local array from row-major [localRows, localCols] float64 bytes.
    public mutating func setRowMajor(bytes: [UInt8]) {
        precondition(bytes.count == localRows * localCols * 8)
        let (r, c) = (localRows, localCols)
        bytes.withUnsafeBytes { raw in
            local.withUnsafeMutableBufferPointer { out in
                for i in 0..<r {
                    for j in 0..<c { out[j * r + i] = raw.load(fromByteOffset: (i * c + j) * 8, as: Double.self) }
                }
            }
        }
    }

    /// Writes a row-major [r, localCols] band into local rows r0 ..< r0 + r.
    public mutating func setRows(_ r0: Int, _ band: [Double]) {
        let r = band.count / max(localCols, 1)
        for j in 0..<localCols { for i in 0..<r { local[j * localRows + r0 + i] = band[i * localCols + j] } }
    }

    /// The global matrix, summed from every process's part onto every process (tests and small results only).
    public func gathered(_ grid: ProcessGrid) -> Matrix {
        var all = [Double](repeating: 0, count: globalRows * globalCols)
        for j in 0..<localCols {
            let gj = globalCol(j)
            for i in 0..<localRows { all[globalRow(i) * globalCols + gj] = local[j * localRows + i] }
        }
        grid.sum(&all)
        return Matrix(rows: globalRows, cols: globalCols, data: all)
    }
}
