import Foundation

/// A line plot rendered as inline SVG (no scripts, no external resources): linear or log₁₀ axes, a legend, and
/// optional fitted power laws and reference slopes for log-log plots. Points with a non-finite coordinate, or
/// ≤ 0 on a log axis, are left out (and counted in `dropped`).
struct SVGPlot {
    struct Series {
        var label: String
        var x: [Double]
        var y: [Double]
        /// Index into the palette; series sharing a label and colour share one legend entry.
        var color: Int
        var dashed = false
        var markers = false
        /// false: markers only, no connecting line.
        var line = true
        /// Fit y = c·x^slope by least squares in log-log space; the slope is drawn and shown in the legend.
        var fit = false
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var logX = false
    var logY = false
    var series: [Series] = []
    /// Reference slopes (log-log), drawn through the first point of the first series: (slope, label).
    var guides: [(slope: Double, label: String)] = []
    /// Unique within the page (the clip path's id).
    var id = "plot"

    static let palette = ["#222222", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]

    /// The least-squares slope of log y against log x (nil with fewer than 2 usable points).
    static func fitSlope(_ x: [Double], _ y: [Double]) -> (slope: Double, intercept: Double)? {
        let p = zip(x, y).filter { $0.0 > 0 && $0.1 > 0 && $0.0.isFinite && $0.1.isFinite }.map { (log10($0.0), log10($0.1)) }
        guard p.count >= 2 else { return nil }
        let mx = p.map(\.0).reduce(0, +) / Double(p.count), my = p.map(\.1).reduce(0, +) / Double(p.count)
        let sxx = p.reduce(0) { $0 + ($1.0 - mx) * ($1.0 - mx) }, sxy = p.reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) }
        guard sxx > 0 else { return nil }
        let slope = sxy / sxx
        return (slope, my - slope * mx)
    }

    /// Fitted slopes by series label.
    var fits: [(label: String, slope: Double)] {
        series.filter(\.fit).compactMap { s in Self.fitSlope(s.x, s.y).map { (s.label, $0.slope) } }
    }

    /// Number of points plotted (a plot without any is reported as empty).
    var plottedPoints: Int { series.reduce(0) { $0 + usable($1).count } }

    func usable(_ s: Series) -> [(Double, Double)] {
        zip(s.x, s.y).filter { $0.0.isFinite && $0.1.isFinite && (!logX || $0.0 > 0) && (!logY || $0.1 > 0) }
    }

    func svg() -> String {
        let w = 560.0, h = 360.0, left = 64.0, right = 12.0, top = 30.0, bottom = 46.0
        let pw = w - left - right, ph = h - top - bottom
        let pts = series.map(usable)
        let all = pts.flatMap { $0 }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(w)) \(Int(h + 22 * Double(legendRows)))\" role=\"img\" aria-label=\"\(esc(title))\">"
        out += "<text x=\"\(Int(w / 2))\" y=\"18\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">\(esc(title))</text>"
        guard !all.isEmpty else {
            return out + "<text x=\"\(Int(w / 2))\" y=\"\(Int(h / 2))\" text-anchor=\"middle\" class=\"empty\">no data</text></svg>"
        }
        func tx(_ v: Double) -> Double { logX ? log10(v) : v }
        func ty(_ v: Double) -> Double { logY ? log10(v) : v }
        var (x0, x1) = (all.map { tx($0.0) }.min()!, all.map { tx($0.0) }.max()!)
        var (y0, y1) = (all.map { ty($0.1) }.min()!, all.map { ty($0.1) }.max()!)
        if x1 - x0 < 1e-12 { x0 -= 0.5; x1 += 0.5 }
        if y1 - y0 < 1e-12 * max(1, abs(y0)) { y0 -= max(0.5, abs(y0) * 0.1); y1 += max(0.5, abs(y1) * 0.1) }
        let padY = (y1 - y0) * 0.05
        y0 -= padY; y1 += padY
        func px(_ v: Double) -> Double { left + (tx(v) - x0) / (x1 - x0) * pw }
        func py(_ v: Double) -> Double { top + ph - (ty(v) - y0) / (y1 - y0) * ph }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        // Axes, ticks, grid.
        out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\" fill=\"none\" stroke=\"#888\"/>"
        for (v, text) in Self.ticks(x0, x1, log: logX) {
            let x = left + (v - x0) / (x1 - x0) * pw
            out += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + ph))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(f(x))\" y=\"\(f(top + ph + 16))\" text-anchor=\"middle\" font-size=\"11\">\(text)</text>"
        }
        for (v, text) in Self.ticks(y0, y1, log: logY) {
            let y = top + ph - (v - y0) / (y1 - y0) * ph
            out += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + pw))\" y2=\"\(f(y))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(f(left - 5))\" y=\"\(f(y + 4))\" text-anchor=\"end\" font-size=\"11\">\(text)</text>"
        }
        out += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(top + ph + 36))\" text-anchor=\"middle\" font-size=\"12\">\(esc(xLabel))</text>"
        out += "<text transform=\"translate(14 \(f(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">\(esc(yLabel))</text>"
        out += "<clipPath id=\"clip-\(id)\"><rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\"/></clipPath><g clip-path=\"url(#clip-\(id))\">"
        // Reference slopes through the first point of the first series.
        if logX && logY, let anchor = pts.first(where: { !$0.isEmpty })?.first {
            let xa = all.map(\.0).min()!, xb = all.map(\.0).max()!
            for g in guides {
                let ya = anchor.1 * pow(xa / anchor.0, g.slope), yb = anchor.1 * pow(xb / anchor.0, g.slope)
                out += "<line x1=\"\(f(px(xa)))\" y1=\"\(f(py(ya)))\" x2=\"\(f(px(xb)))\" y2=\"\(f(py(yb)))\" stroke=\"#aaa\" stroke-dasharray=\"2 3\"/>"
                out += "<text x=\"\(f(px(xb) - 4))\" y=\"\(f(py(yb) - 4))\" text-anchor=\"end\" font-size=\"10\" fill=\"#888\">\(esc(g.label))</text>"
            }
        }
        for (s, p) in zip(series, pts) where !p.isEmpty {
            let color = Self.palette[s.color % Self.palette.count]
            let d = p.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
            if s.line { out += "<polyline points=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "")/>" }
            if s.markers || !s.line || p.count == 1 {
                for q in p { out += "<circle cx=\"\(f(px(q.0)))\" cy=\"\(f(py(q.1)))\" r=\"3\" fill=\"\(color)\"/>" }
            }
            if s.fit, logX, logY, let (slope, c) = Self.fitSlope(s.x, s.y) {
                let xa = p.map(\.0).min()!, xb = p.map(\.0).max()!
                out += "<line x1=\"\(f(px(xa)))\" y1=\"\(f(py(pow(10, c) * pow(xa, slope))))\" x2=\"\(f(px(xb)))\" y2=\"\(f(py(pow(10, c) * pow(xb, slope))))\" stroke=\"\(color)\" stroke-width=\"0.8\" stroke-dasharray=\"1 2\"/>"
            }
        }
        out += "</g>"
        // Legend below the plot.
        for (i, e) in legend.enumerated() {
            let col = Double(i % 2), row = Double(i / 2)
            let x = left + col * pw / 2, y = h - 4 + row * 22
            let color = Self.palette[e.color % Self.palette.count]
            out += "<line x1=\"\(f(x))\" y1=\"\(f(y))\" x2=\"\(f(x + 22))\" y2=\"\(f(y))\" stroke=\"\(color)\" stroke-width=\"2\"\(e.dashed ? " stroke-dasharray=\"6 4\"" : "")/>"
            out += "<text x=\"\(f(x + 28))\" y=\"\(f(y + 4))\" font-size=\"11\">\(esc(e.text))</text>"
        }
        return out + "</svg>"
    }

    var legend: [(text: String, color: Int, dashed: Bool)] {
        var seen = Set<String>()
        var out: [(String, Int, Bool)] = []
        for s in series where !s.label.isEmpty && seen.insert("\(s.label)|\(s.color)").inserted {
            var text = s.label
            if s.fit, logX, logY, let fit = Self.fitSlope(s.x, s.y) { text += String(format: " (slope %.2f)", fit.slope) }
            out.append((text, s.color, s.dashed))
        }
        return out
    }

    var legendRows: Int { (legend.count + 1) / 2 }

    /// Tick positions (in axis units: log₁₀ for log axes) and labels.
    static func ticks(_ lo: Double, _ hi: Double, log: Bool) -> [(Double, String)] {
        if log {
            let a = Int(ceil(lo - 1e-9)), b = Int(floor(hi + 1e-9))
            if b - a >= 1 {
                let stride = max(1, (b - a + 5) / 6)
                return Swift.stride(from: a, through: b, by: stride).map { (Double($0), "10<tspan dy=\"-5\" font-size=\"9\">\($0)</tspan>") }
            }
            // Less than a decade: label the values themselves.
            return linearTicks(lo, hi).map { v in (v, short(pow(10, v))) }
        }
        return linearTicks(lo, hi).map { ($0, short($0)) }
    }

    static func linearTicks(_ lo: Double, _ hi: Double) -> [Double] {
        let raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), r = raw / mag
        let step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag
        return Swift.stride(from: ceil(lo / step) * step, through: hi + step * 1e-9, by: step).map { abs($0) < step * 1e-9 ? 0 : $0 }
    }

    static func short(_ v: Double) -> String {
        if v == 0 { return "0" }
        let a = abs(v)
        if a < 1e6, v == v.rounded() { return String(Int(v)) }
        if a >= 1e4 || a < 1e-3 { return String(format: "%.0e", v) }
        return String(format: "%g", Double(String(format: "%.3g", v))!)
    }

    func esc(_ s: String) -> String { HTML.escape(s) }
}

enum HTML {
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
