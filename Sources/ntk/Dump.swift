import ArgumentParser
import Foundation
import NTKPipeline

extension NTKCommand {
    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an artifact: metadata, tensor table with statistics, first values.")

        @Argument(help: "The artifact (.npz), or any numpy .npz/.npy.", completion: .file(extensions: ["npz", "npy"]))
        var file: String

        @Option(help: "Print only this tensor: its statistics and values (no metadata).")
        var tensor: String?

        @Option(help: "How many values to print per tensor (default 6; all with --tensor).")
        var values: Int?

        @Flag(help: "Machine-readable JSON output.")
        var json = false

        func run() throws {
            var plain = false
            try NTKCommand.guarded {
                // A plain numpy .npz/.npy (no ntk metadata) is shown too, as its arrays.
                let a: ArtifactFile
                if ArtifactFile.looksLikeArtifact(file) {
                    a = try ArtifactFile.read(file)
                } else {
                    let arrays = try UserArrays.read(file)
                    a = ArtifactFile(kind: .dataset, metadata: ["note": .string("plain numpy file: no ntk metadata")],
                                     tensors: arrays.keys.sorted().map { arrays[$0]! })
                    plain = true
                }
                var shown = a.tensors
                if let tensor {
                    guard let t = a.tensor(tensor) else {
                        throw NTKError("no tensor '\(tensor)' (tensors: \(a.tensors.map(\.name).joined(separator: ", ")))", at: file)
                    }
                    shown = [t]
                }
                let limit = values ?? (tensor == nil ? 6 : Int.max)
                if json {
                    var m = a.metadata
                    m["kind"] = plain ? .null : .string(a.kind.rawValue)
                    if let net = try? ParamsArtifact.network(a.metadata["network"], path: file) { m["layer_table"] = net.tableJSON }
                    let out: JSONValue = .object([
                        "file": .string(file), "metadata": .object(m),
                        "tensors": .array(shown.map { t in
                            let s = TensorStats(t)
                            return .object([
                                "name": .string(t.name), "dtype": .string(t.dtype.rawValue), "shape": .array(t.shape.map { .int($0) }),
                                "bytes": .int(t.bytes.count), "min": .double(s.min), "max": .double(s.max), "mean": .double(s.mean),
                                "l2": .double(s.l2), "nan": .int(s.nan), "inf": .int(s.inf),
                                "values": .array(t.doubles().prefix(limit).map { .double($0) }),
                            ])
                        }),
                    ])
                    print(out.pretty, terminator: "")
                    return
                }
                let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
                print(plain ? "\(file): plain numpy file (no ntk metadata), \(format(bytes: size)) on disk"
                            : "\(file): \(a.kind.rawValue) artifact, \(format(bytes: size)) on disk")
                // --tensor shows that tensor only: no metadata, no layer table
                if tensor == nil {
                    print("metadata:")
                    for line in JSONValue.object(a.metadata).pretty.split(separator: "\n") { print("  " + line) }
                }
                if tensor == nil && a.metadata["network"] != nil {
                    // the network of a params/trained artifact as a layer table
                    let net = try ParamsArtifact.network(a.metadata["network"], path: file)
                    print("network: input \(net.inputShape), \(net.parameterCount) parameters (\(net.parameterization.rawValue) parameterization)")
                    var rows = [["layer", "kind", "output", "parameters"]]
                    rows += net.table.map { [$0.path, $0.kind, $0.output.description, String($0.parameters)] }
                    let widths = (0..<4).map { c in rows.map { $0[c].count }.max()! }
                    for r in rows {
                        print("  " + r.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                            .joined(separator: "  "))
                    }
                }
                print("tensors:")
                let header = ["name", "dtype", "shape", "bytes", "min", "max", "mean", "l2 norm", "nan", "inf"]
                var rows = [header]
                for t in shown {
                    let s = TensorStats(t)
                    rows.append([t.name, t.dtype.rawValue, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", format(bytes: t.bytes.count),
                                 num(s.min), num(s.max), num(s.mean), num(s.l2), String(s.nan), String(s.inf)])
                }
                let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
                for r in rows {
                    print("  " + r.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
                }
                print(tensor == nil ? "first values:" : "values:")
                for t in shown {
                    let v = t.doubles()
                    let cols = t.shape.count >= 2 ? t.shape.last! : max(v.count, 1)
                    if tensor != nil && t.shape.count >= 2 {
                        print("  \(t.name):")
                        var printed = 0
                        var r = 0
                        while r * cols < v.count && printed < limit {
                            let row = v[r * cols..<min((r + 1) * cols, v.count)].prefix(limit - printed)
                            print("    " + row.map(num).joined(separator: " "))
                            printed += row.count
                            r += 1
                        }
                    } else {
                        let head = v.prefix(limit).map(num).joined(separator: " ")
                        print("  \(t.name): \(head)\(v.count > limit ? " …" : "")")
                    }
                }
            }
        }

        func num(_ x: Double) -> String {
            if x.isNaN { return "nan" }
            if x == x.rounded() && abs(x) < 1e9 { return String(Int(x)) }
            return String(format: "%.6g", x)
        }
    }
}

/// min, max, mean, L2 norm over the finite values, and counts of NaN and ±Inf.
struct TensorStats {
    var min = Double.nan, max = Double.nan, mean = Double.nan, l2 = 0.0, nan = 0, inf = 0
    init(_ t: Tensor) {
        var lo = Double.infinity, hi = -Double.infinity, sum = 0.0, sq = 0.0, n = 0
        for x in t.doubles() {
            if x.isNaN { nan += 1; continue }
            if x.isInfinite { inf += 1; continue }
            lo = Swift.min(lo, x); hi = Swift.max(hi, x); sum += x; sq += x * x; n += 1
        }
        if n > 0 { min = lo; max = hi; mean = sum / Double(n) }
        l2 = sq.squareRoot()
    }
}

func format(bytes: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var v = Double(bytes), u = 0
    while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
    return u == 0 ? "\(bytes) B" : String(format: "%.1f %@", v, units[u])
}
