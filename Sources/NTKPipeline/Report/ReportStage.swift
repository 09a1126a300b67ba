import Foundation
import NTK

/// `report`: one self-contained HTML page (inline SVG, no scripts, no network) with a section per experiment,
/// plus every number in `metrics.json` and every plotted series in a CSV — built from the `evaluation` and
/// `predictions` artifacts among the deps, and rebuilt, like any out, only when one of them (or the report's
/// params) changes.
///
/// A section shows the artifacts of one stage or sweep group (`from`):
/// - without `sweep`: each artifact's curves over training time (test outputs at sample points, losses, accuracy,
///   RMSE between models, per-layer weight change), its error-vs-M curves (`kernel_convergence`), or the closed-form
///   predictions' test accuracy and MSE over t (`predict`);
/// - with `sweep`: scalars of the artifacts' `summary` against a swept param (read from the expansion's name,
///   e.g. `fig1_eval@width=256`), on log-log axes with least-squares slopes and reference slopes drawn.
///
/// ```yaml
/// report:
///   title: Wide networks evolve as linear models
///   sections:
///     - title: Figure 1 — weight change vs width
///       from: fig1_eval                      # stage or sweep group
///       notes: settings and deviations from the paper (blank lines separate paragraphs)
///       headline: [weight_change_W0_dense]     # summary values printed at the end of `ntk run`
///       sweep: {x: width, by: depth, plots: [{title: …, y: [weight_change_W0_dense, …], labels: […], guides: [-0.5, -1]}]}
/// ```
/// Outs: `report.html` (kind report), `metrics.json` (kind metrics: per section, each artifact's summary and the
/// fitted slopes), `series.csv` (kind table: section, plot, series, x, y).
public struct ReportStage: StageKind {
    public static let name = "report"
    public static let algorithmVersion = 1
    public static let summary = "HTML report with plots, metrics.json and series.csv from evaluation artifacts"
    public static let outputs: [ArtifactKind] = [.report, .metrics, .table]

    struct SweepPlot { var title: String; var y: [String]; var labels: [String]; var guides: [Double]; var yLabel: String }
    struct Section {
        var title: String, from: String, notes: String, headline: [String]
        var sweepX: String?, sweepBy: String?, plots: [SweepPlot]
    }

    public let title: String
    let sections: [Section]

    public init(params: StageParams) throws {
        var r = try params.reader("report")
        title = try r.string("title", default: "ntk report")!
        guard case .array(let list)? = r.raw("sections"), !list.isEmpty else { throw r.fail("sections", "expected a non-empty list of sections") }
        try r.finish()
        sections = try list.enumerated().map { i, v in
            var s = try ConfigReader(v, path: "params.report.sections.\(i)", locate: params.locate)
            let strings = { (s: inout ConfigReader, key: String) throws -> [String] in
                guard let v = s.raw(key) else { return [] }
                guard case .array(let a) = v else { throw s.fail(key, "expected a list of strings") }
                return try a.map { if case .string(let x) = $0 { return x }; throw s.fail(key, "expected strings, found \($0.canonical)") }
            }
            guard let from = try s.string("from") else { throw s.fail("from", "names the stage or sweep group whose evaluation artifacts the section shows") }
            var section = Section(title: try s.string("title", default: from)!, from: from, notes: try s.string("notes", default: "")!,
                                  headline: try strings(&s, "headline"), sweepX: nil, sweepBy: nil, plots: [])
            if let sw = s.raw("sweep") {
                var w = try ConfigReader(sw, path: "params.report.sections.\(i).sweep", locate: params.locate)
                guard let x = try w.string("x") else { throw w.fail("x", "names the swept param (the key in the expansion's name, e.g. width)") }
                section.sweepX = x
                section.sweepBy = try w.string("by")
                guard case .array(let plots)? = w.raw("plots"), !plots.isEmpty else { throw w.fail("plots", "expected a non-empty list of plots") }
                try w.finish()
                section.plots = try plots.enumerated().map { j, pv in
                    var p = try ConfigReader(pv, path: "params.report.sections.\(i).sweep.plots.\(j)", locate: params.locate)
                    let y = try strings(&p, "y")
                    guard !y.isEmpty else { throw p.fail("y", "names the summary values to plot") }
                    let labels = try strings(&p, "labels")
                    guard labels.isEmpty || labels.count == y.count else { throw p.fail("labels", "needs one label per y (\(y.count))") }
                    var guides: [Double] = []
                    if case .array(let g)? = p.raw("guides") {
                        guides = try g.map { switch $0 { case .int(let v): Double(v); case .double(let v): v; default: throw p.fail("guides", "expected slopes (numbers)") } }
                    }
                    let plot = SweepPlot(title: try p.string("title", default: y.joined(separator: ", "))!, y: y, labels: labels.isEmpty ? y : labels,
                                         guides: guides, yLabel: try p.string("y_label", default: "")!)
                    try p.finish()
                    return plot
                }
            }
            try s.finish()
            return section
        }
    }

    public var requiredDeps: [String] { [] }

    /// One evaluation artifact with its stage name and the values of its sweep expansion.
    struct Entry {
        var stage: String; var values: [String: Double]; var file: ArtifactFile; var path: String
        /// The artifact's scalar results (metadata `summary`).
        var summary: [String: JSONValue] { if case .object(let o)? = file.metadata["summary"] { return o }; return [:] }
    }

    public func run(_ ctx: StageContext) throws -> [ArtifactFile] {
        let entries = try (ctx.artifacts(.evaluation) + ctx.artifacts(.predictions)).map { path, f -> Entry in
            guard case .string(let stage)? = f.metadata["stage"] else {
                throw NTKError("artifact without its stage name", at: path)
            }
            return Entry(stage: stage, values: Self.expansionValues(stage), file: f, path: path)
        }
        var html = Page(title: title)
        var metrics: [JSONValue] = []
        var csv = "section,plot,series,x,y\n"
        var plotCount = 0
        for s in sections {
            var members = entries.filter { String($0.stage.split(separator: "@", maxSplits: 1)[0]) == s.from }
            guard !members.isEmpty else {
                throw NTKError("section '\(s.title)': no evaluation artifact of stage '\(s.from)' among the deps (found: \(Set(entries.map(\.stage)).sorted().joined(separator: ", ")))",
                               key: "params.report.sections")
            }
            var plots: [SVGPlot] = []
            if let x = s.sweepX {
                for e in members where e.values[x] == nil { throw NTKError("stage \(e.stage) is not an expansion over \(x)", key: "params.report.sections") }
                members.sort { ($0.values[s.sweepBy ?? ""] ?? 0, $0.values[x]!) < ($1.values[s.sweepBy ?? ""] ?? 0, $1.values[x]!) }
                plots = try sweepPlots(s, x: x, members)
            } else {
                for e in members { plots += timePlots(e) }
            }
            var fits: [String: JSONValue] = [:]
            for var p in plots {
                plotCount += 1
                p.id = "p\(plotCount)"
                html.figure(p)
                for f in p.fits { fits["\(p.title) / \(f.label)"] = .double(f.slope) }
                for series in p.series { for (x, y) in zip(series.x, series.y) { csv += [s.title, p.title, series.label].map(Self.csvField).joined(separator: ",") + ",\(x),\(y)\n" } }
            }
            html.section(s, members: members, plots: plots, fits: fits)
            metrics.append(.object(["title": .string(s.title), "from": .string(s.from), "fits": .object(fits),
                                    "artifacts": .object(Dictionary(uniqueKeysWithValues: members.map { ($0.stage, $0.file.metadata["summary"] ?? .null) }))]))
            for (k, v) in fits.sorted(by: { $0.key < $1.key }) { ctx.reporter.log("\(s.title): slope of \(k) = \(String(format: "%.3f", v.number ?? .nan))") }
            var headline: [String: JSONValue] = [:]
            for key in s.headline {
                for e in members {
                    guard let v = e.summary[key]?.number else {
                        throw NTKError("section '\(s.title)': headline '\(key)' is not in the summary of \(e.stage)", key: "params.report.sections")
                    }
                    headline[members.count > 1 ? "\(key) (\(e.stage))" : key] = .double(v)
                }
            }
            metrics[metrics.count - 1] = metrics[metrics.count - 1].setting(path: ["headline"], to: .object(headline))
        }
        let json = JSONValue.object(["title": .string(title), "sections": .array(metrics)])
        return [ArtifactFile(document: .report, text: html.finish()), ArtifactFile(document: .metrics, text: json.pretty + "\n"),
                ArtifactFile(document: .table, text: csv)]
    }

    /// "fig1_eval@depth=3,width=256" → ["depth": 3, "width": 256] (numeric values only).
    static func expansionValues(_ stage: String) -> [String: Double] {
        guard let at = stage.firstIndex(of: "@") else { return [:] }
        var out: [String: Double] = [:]
        for part in stage[stage.index(after: at)...].split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            if kv.count == 2, let v = Double(kv[1]) { out[String(kv[0])] = v }
        }
        return out
    }

    static func csvField(_ s: String) -> String { s.contains(where: { $0 == "," || $0 == "\"" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }

    func sweepPlots(_ s: Section, x: String, _ members: [Entry]) throws -> [SVGPlot] {
        for p in s.plots { for key in p.y where !members.contains(where: { $0.summary[key] != nil }) {
            let known = Set(members.flatMap(\.summary.keys))
            throw NTKError("section '\(s.title)': no artifact of \(s.from) has '\(key)' in its summary (it has: \(known.sorted().joined(separator: ", ")))",
                           key: "params.report.sections")
        } }
        let groups: [(Double?, [Entry])] = s.sweepBy.map { by in
            Dictionary(grouping: members) { $0.values[by] ?? .nan }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        } ?? [(nil, members)]
        return s.plots.map { p in
            var plot = SVGPlot(title: p.title, xLabel: x, yLabel: p.yLabel, logX: true, logY: true)
            plot.guides = p.guides.map { ($0, Self.guideLabel($0, x)) }
            for (gi, (gv, es)) in groups.enumerated() {
                for (yi, key) in p.y.enumerated() {
                    let ys = es.map { $0.summary[key]?.number ?? .nan }
                    let label = p.labels[yi] + (gv.map { " (\(s.sweepBy!) = \(SVGPlot.short($0)))" } ?? "")
                    plot.series.append(.init(label: label, x: es.map { $0.values[x]! }, y: ys, color: gi * p.y.count + yi,
                                             dashed: gi % 2 == 1, markers: true, fit: true))
                }
            }
            return plot
        }
    }

    static func guideLabel(_ slope: Double, _ x: String) -> String {
        switch slope {
        case -0.5: "∝ 1/√\(x == "width" ? "n" : x)"
        case -1: "∝ 1/\(x == "width" ? "n" : x)"
        default: "∝ \(x)^\(SVGPlot.short(slope))"
        }
    }

    static let modelNames = ["network": "network", "linearized": "linearized (trained)", "closed_empirical": "closed form, Θ̂₀",
                             "closed_analytic": "closed form, Θ", "ntkgp": "NTK-GP mean", "nngp": "NNGP mean"]

    /// The curves over training time of one evaluation artifact (or error vs M of a kernel_convergence one).
    func timePlots(_ e: Entry) -> [SVGPlot] {
        let f = e.file
        let suffix = e.stage.contains("@") ? " — " + e.stage.split(separator: "@")[1] : ""
        if let m = f.tensor("m")?.doubles() {
            var p = SVGPlot(title: "kernel error vs M" + suffix, xLabel: "M (initialisations averaged)", yLabel: "relative Frobenius error", logX: true, logY: true)
            p.series = [.init(label: "‖Θ̂ − Θ‖/‖Θ‖", x: m, y: f.tensor("ntk_error")!.doubles(), color: 1, markers: true, fit: true),
                        .init(label: "‖K̂ − K‖/‖K‖", x: m, y: f.tensor("nngp_error")!.doubles(), color: 2, markers: true, fit: true)]
            p.guides = [(-0.5, "∝ 1/√M")]
            return [p]
        }
        if f.kind == .predictions, let times = f.tensor("times")?.doubles() {
            return predictionPlots(f, times: times, suffix: suffix)
        }
        if let mean = f.tensor("ensemble_mean"), mean.shape.count == 2, let times = f.tensor("snapshot_times")?.doubles() {
            return ensemblePlots(f, mean: mean, times: times, suffix: suffix)
        }
        guard let t = f.tensor("time")?.doubles() else { return [] }
        let models: [String] = { if case .array(let a)? = f.metadata["models"] { return a.compactMap(\.text) }; return [] }()
        let color = Dictionary(uniqueKeysWithValues: models.enumerated().map { ($0.element, $0.offset) })
        var names = Self.modelNames
        if case .object(let extra)? = f.metadata["model_labels"] { for (k, v) in extra { names[k] = "network (\(v.text ?? k))" } }
        func series(_ name: String) -> [Double]? { f.tensor(name)?.doubles() }
        var plots: [SVGPlot] = []
        // Test outputs at sample points (the first output; all logits of the first sample when k > 1).
        var outs = SVGPlot(title: "test outputs at sample points" + suffix, xLabel: "t = η·step", yLabel: "f(x)", logX: true)
        for mdl in models where !["ntkgp", "nngp"].contains(mdl) {
            guard let tsr = f.tensor("samples_" + mdl), tsr.shape.count == 3 else { continue }
            let (r, s, k) = (tsr.shape[0], tsr.shape[1], tsr.shape[2]), v = tsr.doubles()
            let curves: [(Int, Int)] = k == 1 ? (0..<s).map { ($0, 0) } : (0..<k).map { (0, $0) }
            for (i, j) in curves {
                outs.series.append(.init(label: names[mdl] ?? mdl, x: t, y: (0..<r).map { v[($0 * s + i) * k + j] }, color: color[mdl]!, dashed: !mdl.hasPrefix("network")))
            }
        }
        plots.append(outs)
        var loss = SVGPlot(title: "loss" + suffix, xLabel: "t = η·step", yLabel: "loss (solid: train, dashed: test)", logX: true, logY: true)
        var acc = SVGPlot(title: "test accuracy" + suffix, xLabel: "t = η·step", yLabel: "accuracy", logX: true)
        for mdl in models {
            if let a = series("train_loss_" + mdl) { loss.series.append(.init(label: names[mdl] ?? mdl, x: t, y: a, color: color[mdl]!)) }
            if let a = series("test_loss_" + mdl) { loss.series.append(.init(label: names[mdl] ?? mdl, x: t, y: a, color: color[mdl]!, dashed: true)) }
            if let a = series("test_accuracy_" + mdl) { acc.series.append(.init(label: names[mdl] ?? mdl, x: t, y: a, color: color[mdl]!)) }
        }
        plots += [loss, acc]
        var rmse = SVGPlot(title: "test RMSE between models" + suffix, xLabel: "t = η·step", yLabel: "RMSE", logX: true, logY: true)
        for b in models.dropFirst() where !["ntkgp", "nngp"].contains(b) {
            if let a = series("rmse_network__" + b) { rmse.series.append(.init(label: "network vs " + (names[b] ?? b), x: t, y: a, color: color[b]!)) }
        }
        if let a = series("rmse_linearized__closed_empirical") { rmse.series.append(.init(label: "linearized vs closed form, Θ̂₀", x: t, y: a, color: color["closed_empirical"] ?? 4, dashed: true)) }
        plots.append(rmse)
        if let w = f.tensor("weight_change"), w.shape.count == 2 {
            var p = SVGPlot(title: "relative weight change per layer" + suffix, xLabel: "t = η·step", yLabel: "‖θˡ_t − θˡ₀‖/‖θˡ₀‖ (dashed: linearized)", logX: true, logY: true)
            for (prefix, dashed) in [("", false), ("lin_", true)] {
                guard let w = f.tensor(prefix + "weight_change"), w.shape.count == 2 else { continue }
                let v = w.doubles(), (r, layers) = (w.shape[0], w.shape[1])
                let names: [String] = { if case .array(let a)? = f.metadata["weight_change_layers"], a.count == layers { return a.compactMap(\.text) }
                                        return (0..<layers).map { "W\($0)_dense" } }()
                for l in 0..<layers {
                    p.series.append(.init(label: names[l].replacingOccurrences(of: "_", with: " "), x: t, y: (0..<r).map { v[$0 * layers + l] },
                                          color: l, dashed: dashed))
                }
            }
            plots.append(p)
        }
        return plots
    }
}

extension ReportStage {
    /// A `predict` artifact: test accuracy and MSE of the NTK-GP (solid) and NNGP (dashed) means against the training
    /// time t (finite times on the axis; t = ∞ is in the section's numbers).
    func predictionPlots(_ f: ArtifactFile, times: [Double], suffix: String) -> [SVGPlot] {
        let finite = times.indices.filter { times[$0].isFinite && times[$0] > 0 }
        guard finite.count >= 2 else { return [] }
        var acc = SVGPlot(title: "test accuracy of the closed-form predictions" + suffix, xLabel: "t (continuous time)",
                          yLabel: "test accuracy", logX: true)
        var mse = SVGPlot(title: "test MSE of the closed-form predictions" + suffix, xLabel: "t (continuous time)",
                          yLabel: "test MSE", logX: true, logY: true)
        for (i, (mode, label)) in [("ntk", "NTK-GP mean"), ("nngp", "NNGP mean")].enumerated() {
            let x = finite.map { times[$0] }
            for (name, plot) in [("_test_accuracy", 0), ("_test_mse", 1)] {
                guard let a = f.tensor(mode + name)?.doubles(), a.count == times.count else { continue }
                let series = SVGPlot.Series(label: label, x: x, y: finite.map { a[$0] }, color: 4 + i, dashed: i == 1,
                                            markers: true)
                if plot == 0 { acc.series.append(series) } else { mse.series.append(series) }
            }
        }
        return [acc, mse]
    }

    /// One plot per snapshot time: the ensemble's mean ± 2 std against the NTK-GP and NNGP means ± 2σ (Figure 2).
    func ensemblePlots(_ f: ArtifactFile, mean: Tensor, times: [Double], suffix: String) -> [SVGPlot] {
        let (sCount, p) = (mean.shape[0], mean.shape[1])
        let x = f.tensor("alpha")?.doubles() ?? (0..<p).map(Double.init)
        let xLabel = f.tensor("alpha") == nil ? "test input" : "α   (x(α) = α·x⁽¹⁾ + (1 − α)·x⁽²⁾; training points at α = 0, 1)"
        let members = f.metadata["members"]?.number.map { Int($0) } ?? 0
        return (0..<sCount).map { s in
            var plot = SVGPlot(title: "t = \(SVGPlot.short(times[s]))" + suffix, xLabel: xLabel, yLabel: "f(x) (mean ± 2 std)")
            for (name, label, color) in [("ensemble", "\(members) trained networks", 0), ("ntkgp", "NTK-GP (Eqs. 14–15)", 1), ("nngp", "NNGP (S22–S23)", 2)] {
                guard let m = f.tensor(name + "_mean")?.doubles(), let v = f.tensor(name + "_var")?.doubles() else { continue }
                let mu = Array(m[s * p..<(s + 1) * p]), sd = v[s * p..<(s + 1) * p].map { max($0, 0).squareRoot() }
                plot.series.append(.init(label: label, x: x, y: mu, color: color))
                plot.series.append(.init(label: label, x: x, y: zip(mu, sd).map { $0 + 2 * $1 }, color: color, dashed: true))
                plot.series.append(.init(label: label, x: x, y: zip(mu, sd).map { $0 - 2 * $1 }, color: color, dashed: true))
            }
            return plot
        }
    }
}

/// The HTML page: a responsive column of sections, figures in a grid that folds to one column on a phone.
struct Page {
    var body = ""
    var figures: [String] = []
    let title: String
    init(title: String) { self.title = title }

    mutating func figure(_ p: SVGPlot) { figures.append("<figure>\(p.svg())</figure>") }

    mutating func section(_ s: ReportStage.Section, members: [ReportStage.Entry], plots: [SVGPlot], fits: [String: JSONValue]) {
        let esc = HTML.escape
        body += "<section><h2>\(esc(s.title))</h2>"
        for para in s.notes.components(separatedBy: "\n\n") where !para.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            body += "<p>\(esc(para))</p>"
        }
        body += "<div class=\"grid\">" + figures.joined() + "</div>"
        figures = []
        if !fits.isEmpty {
            body += "<h3>Fitted log-log slopes</h3><table><tr><th>plot / series</th><th>slope</th></tr>"
            for (k, v) in fits.sorted(by: { $0.key < $1.key }) {
                let slope = String(format: "%.3f", v.number ?? .nan)
                body += "<tr><td>\(esc(k))</td><td>\(slope)</td></tr>"
            }
            body += "</table>"
        }
        body += "<h3>Numbers (each artifact's summary; for runs over time, at the last step)</h3><div class=\"scroll\"><table><tr><th>value</th>"
        body += members.map { "<th>\(esc($0.stage))</th>" }.joined() + "</tr>"
        let sums = members.map(\.summary)
        for key in Set(sums.flatMap(\.keys)).sorted() {
            let cells = sums.map { sum -> String in
                guard let v = sum[key]?.number else { return "<td></td>" }
                return "<td>" + String(format: "%.4g", v) + "</td>"
            }
            body += "<tr><td>\(esc(key))</td>" + cells.joined() + "</tr>"
        }
        body += "</table></div>"
        if let first = members.first, case .object(let settings)? = first.file.metadata["settings"] {
            body += "<details><summary>Settings (\(esc(first.stage))\(members.count > 1 ? " and the other expansions" : ""))</summary><pre>"
            body += esc(JSONValue.object(settings).pretty) + "</pre></details>"
        }
        body += "</section>"
    }

    func finish() -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(HTML.escape(title))</title>
        <style>
        body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:0 12px;color:#222;line-height:1.45}
        h1{font-size:1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:2em}h3{font-size:1em}
        .grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:8px}
        figure{margin:0}svg{width:100%;height:auto;font-family:inherit}
        table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}td:first-child,th:first-child{text-align:left}
        .scroll{overflow-x:auto}pre{font-size:.8em;overflow-x:auto;background:#f6f6f6;padding:6px}
        </style></head><body>
        <h1>\(HTML.escape(title))</h1>
        <p>Written by ntk \(ntkVersion). Every curve below is also in series.csv, every number in metrics.json, beside this file.</p>
        \(body)
        </body></html>

        """
    }
}
