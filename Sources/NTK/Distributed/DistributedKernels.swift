import Foundation

extension AnalyticKernels {
    /// The NNGP and NTK of the rows of x1 against the rows of x2 as this process's blocks of a block-cyclic matrix
    /// (`layout`), band by band: band I is global row block I (one of `layout.rowBlocks`) against every column this
    /// process holds, computed by the single-process engine (`Plan`) on those rows and columns — so each entry is
    /// the same computation as in a single-process run, and a finished band can be checkpointed.
    ///
    /// x2 = nil: x1 with itself. Then only blocks on or below the block diagonal are computed (the kernel is
    /// symmetric and ScaLAPACK's pdpotrf/pdsyevd/pdsymm read its lower triangle); blocks above stay zero, and a
    /// diagonal block is computed as a symmetric set (with the exact c = 1 diagonal, as the single-process path).
    public struct DistributedPlan {
        public let x1: Matrix, x2: Matrix?
        public let network: Network
        public let options: Options
        /// The layout of the result (zeros); `band` fills parts of it.
        public let layout: BlockCyclicMatrix

        public init(x1: Matrix, x2: Matrix?, network: Network, options: Options, layout: BlockCyclicMatrix) {
            precondition(layout.globalRows == x1.rows && layout.globalCols == (x2 ?? x1).rows)
            (self.x1, self.x2, self.network, self.options, self.layout) = (x1, x2, network, options, layout)
        }

        /// The most bytes of results one checkpoint group holds (256 MiB).
        public static let groupBytes = 1 << 28

        /// Global row blocks of this process: the bands, in order.
        public var bands: [Int] { layout.rowBlocks }

        /// Pairs computed by this process (for progress and flop counts).
        public var pairs: Int {
            bands.reduce(0) { s, i in
                s + layout.rows(ofBlock: i).count * columns(of: i).reduce(0) { $0 + $1.cols.count }
            }
        }

        /// The bands in groups for checkpoints, in order: consecutive bands of about `Plan.blockWork` covariance
        /// entries of work each (about a second) and at most `groupBytes` of results, or of `options.blockRows`
        /// rows — so a fully-connected kernel, whose bands take milliseconds, is not written to disk band by band,
        /// and a group's checkpoint stays small beside the kernels.
        public var checkpointGroups: [[Int]] {
            let program = try? KernelProgram(network)
            let perRow = layout.localCols * 8 * (options.computeNTK ? 2 : 1)
            var groups: [[Int]] = []
            var current: [Int] = []
            var work = 0
            var rows = 0
            for i in bands {
                let r = layout.rows(ofBlock: i).count
                if options.blockRows == nil && !current.isEmpty && (rows + r) * perRow > Self.groupBytes {
                    groups.append(current)
                    (current, work, rows) = ([], 0, 0)
                }
                rows += r
                work += r * columns(of: i).reduce(0) { $0 + $1.cols.count } * max(program?.workPerPair ?? 1, 1)
                current.append(i)
                if options.blockRows.map({ rows >= $0 }) ?? (work >= Plan.blockWork) {
                    groups.append(current)
                    (current, work, rows) = ([], 0, 0)
                }
            }
            if !current.isEmpty { groups.append(current) }
            return groups
        }

        /// This process's column blocks that band I computes: (local column of the block's start, its global
        /// columns, whether it is the diagonal block of a symmetric kernel).
        func columns(of i: Int) -> [(local: Int, cols: Range<Int>, diagonal: Bool)] {
            layout.colBlocks.enumerated().compactMap { b, j in
                if x2 == nil && j > i { return nil }
                return (b * layout.block, layout.cols(ofBlock: j), x2 == nil && j == i)
            }
        }

        /// Band I: row-major [rows in block I, layout.localCols] NNGP and NTK (NTK empty without
        /// `options.computeNTK`); the blocks this process holds but does not compute are zero.
        public func band(_ i: Int) throws -> (nngp: [Double], ntk: [Double]) {
            let rows = layout.rows(ofBlock: i)
            let lc = layout.localCols
            let r = rows.count
            var k = [Double](repeating: 0, count: r * lc)
            var t = [Double](repeating: 0, count: options.computeNTK ? r * lc : 0)
            let xr = x1.rows(rows)
            let blocks = columns(of: i)
            func place(_ res: Result, _ parts: [(local: Int, cols: Range<Int>, diagonal: Bool)]) {
                let width = res.nngp.cols
                var c0 = 0
                for p in parts {
                    for a in 0..<r {
                        for c in 0..<p.cols.count {
                            k[a * lc + p.local + c] = res.nngp.data[a * width + c0 + c]
                            if options.computeNTK { t[a * lc + p.local + c] = res.ntk.data[a * width + c0 + c] }
                        }
                    }
                    c0 += p.cols.count
                }
            }
            let off = blocks.filter { !$0.diagonal }
            if !off.isEmpty {
                let src = x2 ?? x1
                var data: [Double] = []
                data.reserveCapacity(off.reduce(0) { $0 + $1.cols.count } * src.cols)
                for p in off { data += src.data[p.cols.lowerBound * src.cols..<p.cols.upperBound * src.cols] }
                let xc = Matrix(rows: data.count / max(src.cols, 1), cols: src.cols, data: data)
                place(
                    try AnalyticKernels.compute(
                        x1: xr, x2: xc, network: network, options: options,
                        progress: nil, estimate: false), off)
            }
            if let d = blocks.first(where: \.diagonal) {
                place(
                    try AnalyticKernels.compute(
                        x1: xr, x2: nil, network: network, options: options,
                        progress: nil, estimate: false), [d])
            }
            return (k, t)
        }
    }
}
