import ArgumentParser
import COpenBLAS
import Foundation
import NTK
import NTKPipeline

extension NTKCommand {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure the hot paths against the machine's GEMM peak measured in the same process.",
            discussion: "Times are the median of --repeats runs after one warm-up. Build with -c release.")

        @Flag(help: "Small sizes (a quick smoke run).")
        var quick = false

        @Flag(help: "Machine-readable JSON output.")
        var json = false

        @Option(help: "Repeats per measurement.")
        var repeats = 3

        @Option(help: "Sample count N for the analytic kernels.")
        var n: Int?

        @Option(help: "Only measure the tiled empirical NTK (traced, float32, 784-2048-2048-10) of this many inputs under --cap: time and peak RSS.")
        var tiledN: Int?

        @Option(help: "Working-memory cap for --tiled-n (e.g. 2G).")
        var cap = "2G"

        @Flag(help: "Also measure how the kernels scale: analytic time vs N, empirical time vs width, with fitted exponents.")
        var scaling = false

        @Flag(help: "Only the convolutional rows: a Myrtle-style CNN on 28×28 MNIST, f32 — one training step on 256 images and the traced empirical NTK of 128, with the sgemm peak of the same run.")
        var cnn = false

        @Flag(help: "Only the GEMM peaks (dgemm and sgemm 4096³, all cores), the reference for other tools' rates.")
        var peak = false

        @Option(help: "Data directory (IDX) for realistic inputs.")
        var data = "data/mnist"

        func run() throws {
            try NTKCommand.guarded {
                var rows: [JSONValue] = []
                func report(_ name: String, seconds: Double, flops: Double? = nil, peak: Double? = nil, extra: [String: JSONValue] = [:]) {
                    var r: [String: JSONValue] = ["name": .string(name), "seconds": .double(seconds)]
                    var line = String(format: "%-44@ %9.4f s", name as NSString, seconds)
                    if let flops {
                        let gf = flops / seconds / 1e9
                        r["gflops"] = .double(gf)
                        line += String(format: "  %8.1f GFLOP/s", gf)
                        if let peak {
                            r["fraction_of_peak"] = .double(gf / peak)
                            line += String(format: "  %5.1f %% of peak", 100 * gf / peak)
                        }
                    }
                    for (k, v) in extra.sorted(by: { $0.key < $1.key }) {
                        r[k] = v
                        line += "  \(k)=\(v.canonical)"
                    }
                    rows.append(.object(r))
                    if !json { print(line) }
                }
                if let tiledN { return try measureTiled(n: tiledN) }
                if !json {
                    print("ntk \(ntkVersion) bench — simd \(Platform.simdPath), BLAS \(Platform.blasCore), "
                          + "\(OwnThreads.workers) threads, \(ProcessInfo.processInfo.activeProcessorCount) cores")
                    if let note = Platform.blasKernelNote { print("note: " + note) }
                    if let note = Platform.blasCoreRestartNote { print("note: " + note) }
                }
                /// The JSON document: the platform (with the kernels OpenBLAS chose by itself) and the rows.
                func printJSON() {
                    guard json else { return }
                    let chose = ProcessInfo.processInfo.environment[Platform.blasCoreRestartVariable] ?? Platform.blasCore
                    print(JSONValue.object(["version": .string(ntkVersion), "simd": .string(Platform.simdPath),
                                            "blas": .string(Platform.blasCore), "blas_chosen_by_openblas": .string(chose),
                                            "results": .array(rows)]).pretty, terminator: "")
                }
                if cnn {
                    try measureCNN(report: report)
                    return printJSON()
                }
                // GEMM peaks in this process.
                let g = quick ? 1024 : 4096
                let dPeak = try gemmPeak(n: g, double: true)
                report("dgemm \(g)³ (peak reference)", seconds: dPeak.seconds, flops: dPeak.flops)
                let sPeak = try gemmPeak(n: g, double: false)
                report("sgemm \(g)³ (peak reference)", seconds: sPeak.seconds, flops: sPeak.flops)
                if peak { return printJSON() }
                let dgemmPeak = dPeak.flops / dPeak.seconds / 1e9

                // Analytic NNGP + NTK, relu depth 3, on real MNIST digits.
                let raw = try IDXReader.read(directory: data, numClasses: 10)
                let count = n ?? (quick ? 1000 : 4000)
                guard count <= raw.train.count else { throw NTKError("--n \(count) exceeds the \(raw.train.count) training images in \(data)") }
                let x = Matrix(rows: count, cols: 784, data: raw.train.rows(Array(0..<count), byteScale: 1 / 255.0))
                let spec = NetworkSpec(inputDim: 784, widths: [1, 1, 1], outputs: 1, activation: .relu, wStd: 1.5, bStd: 0.05)
                var phases: [(gram: Double, layers: Double, assemble: Double)] = []
                let options = AnalyticKernels.Options()
                let total = try median(repeats) { run in
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let plan = try AnalyticKernels.Plan(x1: x, x2: nil, spec: spec, options: options)
                    let (_, gram, layers) = plan.computeAll()
                    if run >= 0 { phases.append((gram, layers, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 - gram - layers)) }
                }
                let ph = phases.sorted { $0.gram + $0.layers < $1.gram + $1.layers }[phases.count / 2]
                let gramFlops = Double(count) * Double(count + 1) * 784  // upper triangle: N(N+1)/2 dot products of length d
                report("analytic nngp+ntk relu L=3 N=\(count) f64", seconds: total)
                report("  of which Gram product (SYRK, upper)", seconds: ph.gram, flops: gramFlops, peak: dgemmPeak)
                report("  of which 3-layer recursion (C, SIMD)", seconds: ph.layers,
                       extra: ["ns_per_entry_layer": .double(ph.layers / (3 * Double(count) * Double(count + 1) / 2) * 1e9),
                               "fraction_of_gram": .double(ph.layers / ph.gram)])
                report("  of which diagonals, allocation, mirror", seconds: ph.assemble)
                // One full-batch training step (forward + backward + update) of 784-2048-2048-10 relu on MNIST.
                let nStep = quick ? 256 : 1024, width = quick ? 512 : 2048
                let stepSpec = NetworkSpec(inputDim: 784, widths: [width, width], outputs: 10, activation: .relu, wStd: 1.4, bStd: 0.05)
                let xs = Matrix(rows: nStep, cols: 784, data: raw.train.rows(Array(0..<nStep), byteScale: 1 / 255.0))
                var ys = Matrix(rows: nStep, cols: 10)
                for r in 0..<nStep { ys[r, Int(raw.train.labels[r])] = 1 }
                let theta0 = MLP.initialize(stepSpec, seed: 0).theta
                // useful flops: forward 2·N·Σ fan_in·fan_out; weight gradients the same; input gradients for all
                // but the first layer.
                let dense = [784 * width, width * width, width * 10].map(Double.init)
                let stepFlops = 2 * Double(nStep) * (2 * dense.reduce(0, +) + dense.dropFirst().reduce(0, +))
                var c = TrainingConfig()
                c.learningRate = 1
                let t32 = Trainer<Float>(spec: stepSpec, theta0: theta0, xTrain: xs, yTrain: ys, config: c)
                let s32 = try median(repeats) { _ in try t32.stepOnce() }
                report("train step 784-\(width)-\(width)-10 N=\(nStep) f32", seconds: s32, flops: stepFlops, peak: sPeak.flops / sPeak.seconds / 1e9)
                let t64 = Trainer<Double>(spec: stepSpec, theta0: theta0, xTrain: xs, yTrain: ys, config: c)
                let s64 = try median(repeats) { _ in try t64.stepOnce() }
                report("train step 784-\(width)-\(width)-10 N=\(nStep) f64", seconds: s64, flops: stepFlops, peak: dgemmPeak)

                // One linearized-model step (JVP at θ₀ for f_lin − f₀, then the VJP at θ₀): the tangent costs a
                // forward's flops plus the W₀·da products of the hidden layers; the VJP is the network's backward.
                let lin = Trainer<Float>(spec: stepSpec, theta0: theta0, xTrain: xs, yTrain: ys, config: c, model: .linearized)
                let linFlops = 2 * Double(nStep) * (2 * dense.reduce(0, +) + 2 * dense.dropFirst().reduce(0, +))
                let sl = try median(repeats) { _ in try lin.stepOnce() }
                report("linearized step (JVP+VJP) 784-\(width)-\(width)-10 N=\(nStep) f32", seconds: sl, flops: linFlops, peak: sPeak.flops / sPeak.seconds / 1e9)

                // Closed-form predictor on the analytic NTK: setup (eigendecomposition of Θ(X, X), LAPACK dsyevd) and
                // one prediction time on a test set (Θ(x*, X)·U·diag·Uᵀ·(f₀ − Y)).
                let nPred = quick ? 256 : 1000, nTest = quick ? 128 : 500
                let xTr = Matrix(rows: nPred, cols: 784, data: raw.train.rows(Array(0..<nPred), byteScale: 1 / 255.0))
                let xTe = Matrix(rows: nTest, cols: 784, data: raw.test.rows(Array(0..<nTest), byteScale: 1 / 255.0))
                var yTr = Matrix(rows: nPred, cols: 10)
                for r in 0..<nPred { yTr[r, Int(raw.train.labels[r])] = 1 }
                let kTT = try AnalyticKernels.compute(x1: xTr, spec: spec).ntk
                let kST = try AnalyticKernels.compute(x1: xTe, x2: xTr, spec: spec).ntk
                var predictor: GradientDescentMSE?
                let setup = try median(repeats) { _ in  // the eigendecomposition is lazy: force it
                    predictor = try GradientDescentMSE(kTrainTrain: kTT, yTrain: yTr)
                    _ = try predictor!.kernel.eigh()
                }
                report("predictor setup (eigh of Θ) N=\(nPred) f64", seconds: setup, extra: ["dsyevd_flops_approx": .double(4.0 / 3 * pow(Double(nPred), 3) + 2 * pow(Double(nPred), 3))])
                let zeroTr = Matrix(rows: nPred, cols: 10), zeroTe = Matrix(rows: nTest, cols: 10)
                let perTime = try median(repeats) { _ in _ = try predictor!.test(at: [.continuous(100)], fxTrain0: zeroTr, fxTest0: zeroTe, kTestTrain: kST) }
                report("prediction at one time, \(nTest) test × \(nPred) train × 10 f64", seconds: perTime,
                       flops: 2 * Double(nTest) * Double(nPred) * 10 + 4 * Double(nPred) * Double(nPred) * 10, peak: dgemmPeak)

                // Empirical NTK of the same network (f32), traced and full, x2 = None.
                let engine = EmpiricalNTK<Float>(MLP(spec: stepSpec, theta: theta0))
                for output in [EmpiricalNTK<Float>.Output.traced, .full] {
                    var flops = 0.0
                    let secs = try median(repeats) { _ in flops = engine.compute(x1: xs, output: output).flops }
                    report("empirical NTK \(output) 784-\(width)-\(width)-10 N=\(nStep) f32", seconds: secs, flops: flops, peak: sPeak.flops / sPeak.seconds / 1e9)
                }

                if scaling { try measureScaling(report: report) }

                // Artifact write and read.
                let mb = quick ? 16 : 128
                let values: [Double] = (0..<(mb << 20) / 8).map { (i: Int) -> Double in
                    let a: Double = Double(i % 1000) * 1e-3
                    return a + sin(Double(i))
                }
                let file = ArtifactFile(kind: .kernels, metadata: [:], tensors: [Tensor(name: "k", shape: [values.count], values: values)])
                let path = NSTemporaryDirectory() + "ntk-bench-\(getpid()).npz"
                defer { unlink(path) }
                for level in [0, 1] {
                    let w = try median(repeats) { _ in try file.write(to: path, level: level) }
                    let r = try median(repeats) { _ in _ = try ArtifactFile.read(path) }
                    let bytes = Double(values.count * 8)
                    report("artifact write \(mb) MB, deflate level \(level)", seconds: w, extra: ["mb_per_s": .double(bytes / w / 1e6)])
                    report("artifact read \(mb) MB, deflate level \(level)", seconds: r, extra: ["mb_per_s": .double(bytes / r / 1e6)])
                }
                printJSON()
            }
        }

        /// The Myrtle-style CNN of the benchmarks (PAPER §3's convolutional family; the same list in
        /// bench/side_by_side.py for PyTorch and neural-tangents): conv 3×3 SAME 64 → relu → 2×2 avg pool → conv 128 →
        /// relu → 2×2 avg pool → conv 256 → relu → global avg pool → dense 10, on 28×28×1.
        static let myrtle: [Layer] = {
            func conv(_ c: Int) -> Layer { .conv(channels: c, filter: [3, 3], strides: [1, 1], padding: .same, wStd: 1.4, bStd: 0.05) }
            let pool = Layer.avgPool(window: [2, 2], strides: [2, 2], padding: .valid, normalizeEdges: false)
            return [conv(64), .activation(.relu), pool, conv(128), .activation(.relu), pool, conv(256), .activation(.relu), .globalAvgPool,
                    .dense(out: 10, wStd: 1.4, bStd: 0.05)]
        }()

        /// One f32 training step of the Myrtle CNN on 256 MNIST images (forward, MSE, backward, update) and its traced
        /// empirical NTK on 128, each with its flop count, % of the sgemm peak of this run, and the peak RSS so far.
        func measureCNN(report: (String, Double, Double?, Double?, [String: JSONValue]) -> Void) throws {
            let g = quick ? 1024 : 4096
            let sPeak = try gemmPeak(n: g, double: false)
            report("sgemm \(g)³ (peak reference)", sPeak.seconds, sPeak.flops, nil, [:])
            let peak = sPeak.flops / sPeak.seconds / 1e9
            let raw = try IDXReader.read(directory: data, numClasses: 10)
            let net = try Network(layers: Self.myrtle, input: Shape(spatial: [28, 28], channels: 1))
            let theta = net.initialize(seed: 0)
            func rss() -> JSONValue {
                var u = rusage()
                getrusage(RUSAGE_SELF.rawValue, &u)
                return .double(Double(u.ru_maxrss) / 1024)
            }
            // flops per sample: forward, weight gradients, input gradients of every layer that does not read x — as a
            // direct conv counts them (the rate reported) and as the passes execute them (3×3 convs on Winograd tiles)
            let flops = Passes<Float>(network: net, maxBatch: 1).trainingStepFlopsPerSample
            let nStep = quick ? 64 : 256
            let xs = Matrix(rows: nStep, cols: 784, data: raw.train.rows(Array(0..<nStep), byteScale: 1 / 255.0))
            var ys = Matrix(rows: nStep, cols: 10)
            for r in 0..<nStep { ys[r, Int(raw.train.labels[r])] = 1 }
            var c = TrainingConfig()
            c.learningRate = 0.1
            let trainer = Trainer<Float>(network: net, theta0: theta, xTrain: xs, yTrain: ys, config: c)
            let step = try median(repeats) { _ in try trainer.stepOnce() }
            let executed = Double(nStep) * flops.executed
            report("cnn train step myrtle N=\(nStep) f32", step, Double(nStep) * flops.direct, peak,
                   ["peak_rss_mb": rss(), "parameters": .int(net.parameterCount), "executed_gemm_gflop": .double(executed / 1e9),
                    "executed_fraction_of_peak": .double(executed / step / 1e9 / peak)])
            // where the step's time goes: per layer, forward and backward, over `repeats` more steps
            let zeros = [Double](repeating: 0, count: net.nodes.count)
            trainer.passes.profile = (zeros, zeros)
            for _ in 0..<repeats { try trainer.stepOnce() }
            if let p = trainer.passes.profile, !json {
                for (j, node) in net.nodes.enumerated() where p.forward[j] + p.backward[j] > 0 {
                    let kind = net.table.first { $0.path == node.path }?.kind ?? ""
                    let name = (node.path + " " + kind).padding(toLength: 28, withPad: " ", startingAt: 0)
                    print("  " + name + String(format: "forward %7.1f ms  backward %7.1f ms", 1e3 * p.forward[j] / Double(repeats),
                                                1e3 * p.backward[j] / Double(repeats)))
                }
            }
            trainer.passes.profile = nil
            let e = EmpiricalNTK<Float>(network: net, theta: theta)
            for nK in quick ? [32] : [32, 128] {
                let xk = Matrix(rows: nK, cols: 784, data: raw.train.rows(Array(0..<nK), byteScale: 1 / 255.0))
                var flops = 0.0
                let t = median(repeats) { _ in flops = e.compute(x1: xk).flops }
                report("cnn empirical ntk traced myrtle N=\(nK) f32", t, flops, peak, ["peak_rss_mb": rss()])
            }
        }

        /// Time vs size on log-log axes: analytic NNGP+NTK (relu depth 3, d = 784) vs N, expected ∝ N² (Gram and
        /// recursion are both N²); empirical NTK (traced, f32, N = 512) vs width w, expected between w¹ and w²
        /// (Grams ∝ N²·k·w, the first layer's signals ∝ N·k·w²), and vs N at width 2048, expected between N¹ and N²
        /// (features ∝ N, Grams ∝ N²). Inputs are seeded normal draws.
        func measureScaling(report: (String, Double, Double?, Double?, [String: JSONValue]) -> Void) throws {
            func slope(_ xs: [Double], _ ys: [Double]) -> Double {
                let lx = xs.map(log), ly = ys.map(log), mx = lx.reduce(0, +) / Double(lx.count), my = ly.reduce(0, +) / Double(ly.count)
                return zip(lx, ly).reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) } / lx.reduce(0) { $0 + ($1 - mx) * ($1 - mx) }
            }
            var rng = SplitMix64(seed: 1)
            let sizes = quick ? [250, 500, 1000, 2000] : [1000, 2000, 4000, 8000]
            var times: [Double] = []
            let spec = NetworkSpec(inputDim: 784, widths: [1, 1, 1], outputs: 1, activation: .relu, wStd: 1.5, bStd: 0.05)
            for n in sizes {
                let x = Matrix(rows: n, cols: 784, data: (0..<n * 784).map { _ in rng.normal() / 28 })
                let t = try median(max(1, repeats / 2)) { _ in _ = try AnalyticKernels.compute(x1: x, spec: spec) }
                times.append(t)
                report("scaling: analytic N=\(n)", t, nil, nil, [:])
            }
            report("scaling: analytic time ∝ N^p", times.last!, nil, nil, ["fitted_p": .double(slope(sizes.map(Double.init), times))])
            let widths = quick ? [64, 128, 256, 512] : [256, 512, 1024, 2048]
            times = []
            let n = quick ? 128 : 512
            let x = Matrix(rows: n, cols: 784, data: (0..<n * 784).map { _ in rng.normal() / 28 })
            for w in widths {
                let net = MLP.initialize(NetworkSpec(inputDim: 784, widths: [w, w], outputs: 10, activation: .relu, wStd: 1.4, bStd: 0.05), seed: 0)
                let e = EmpiricalNTK<Float>(net)
                let t = median(max(1, repeats / 2)) { _ in _ = e.compute(x1: x) }
                times.append(t)
                report("scaling: empirical traced width=\(w) N=\(n)", t, nil, nil, [:])
            }
            report("scaling: empirical time ∝ width^p", times.last!, nil, nil, ["fitted_p": .double(slope(widths.map(Double.init), times))])
            // and vs N at the benchmark's width: features ∝ N, Grams ∝ N², so p between 1 and 2, rising with N
            let counts = quick ? [128, 256, 512] : [512, 1024, 2048, 4096]
            let width = quick ? 512 : 2048
            let net = MLP.initialize(NetworkSpec(inputDim: 784, widths: [width, width], outputs: 10, activation: .relu, wStd: 1.4, bStd: 0.05), seed: 0)
            let e = EmpiricalNTK<Float>(net)
            times = []
            for n in counts {
                let x = Matrix(rows: n, cols: 784, data: (0..<n * 784).map { _ in rng.normal() / 28 })
                let t = median(max(1, repeats / 2)) { _ in _ = e.compute(x1: x) }
                times.append(t)
                report("scaling: empirical traced N=\(n) width=\(width)", t, nil, nil, [:])
            }
            report("scaling: empirical time ∝ N^p", times.last!, nil, nil, ["fitted_p": .double(slope(counts.map(Double.init), times))])
        }

        /// The traced empirical NTK of n seeded-normal inputs in tiles, features kept on disk (as the pipeline stage
        /// does), under the working-memory cap; prints time, tile size, the kernel's size and the peak RSS.
        func measureTiled(n: Int) throws {
            guard let capBytes = parseSize(cap) else { throw NTKError("--cap: expected a size like 2G, found \(cap)") }
            let spec = NetworkSpec(inputDim: 784, widths: [2048, 2048], outputs: 10, activation: .relu, wStd: 1.4, bStd: 0.05)
            let net = MLP.initialize(spec, seed: 0)
            var rng = SplitMix64(seed: 1)
            let x = Matrix(rows: n, cols: 784, data: (0..<n * 784).map { _ in Double(Float(rng.normal() / 28)) })
            let e = EmpiricalNTK<Float>(net)
            let k = 10, perRow = 4 * (net.layers.reduce(0) { $0 + $1.fanIn } + 2 * k * 4096 + 4 * 2048)
            let rows = max(1, min(capBytes / (3 * perRow), Int((Double(capBytes) / 32).squareRoot())))
            let dir = NSTemporaryDirectory() + "ntk-tiles-\(getpid())"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let store = Checkpoints(directory: dir)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let kernel = try e.computeTiled(n1: n, n2: n, symmetric: true, tileRows: rows, features: { _, tile, range in
                if let f = store.load("t\(tile)"), let tf = EmpiricalKernelsStage.decode(f, rows: range, layers: 3, as: Float.self) { return tf }
                let tf = e.tileFeatures(x, rows: range)
                try store.save("t\(tile)", EmpiricalKernelsStage.encode(tf))
                return tf
            }, progress: { done, total in if !json && done % 10 == 0 { FileHandle.standardError.write(Data("  \(done)/\(total) tile pairs\n".utf8)) } })
            let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            var u = rusage()
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
            let rss = Double(u.ru_maxrss) * 1024, kernelBytes = Double(kernel.count * 4)
            let out: JSONValue = .object(["n": .int(n), "seconds": .double(secs), "tile_rows": .int(rows), "cap_bytes": .int(capBytes),
                                          "kernel_bytes": .double(kernelBytes), "peak_rss_bytes": .double(rss),
                                          "within_kernel_plus_cap": .bool(rss <= kernelBytes + Double(capBytes))])
            print(json ? out.pretty : "tiled empirical NTK traced, N=\(n), 784-2048-2048-10 f32: \(String(format: "%.1f", secs)) s, tiles of \(rows) rows, kernel \(format(bytes: Int(kernelBytes))), cap \(cap), peak RSS \(format(bytes: Int(rss))) (kernel + cap = \(format(bytes: Int(kernelBytes) + capBytes)))", terminator: json ? "" : "\n")
        }

        func parseSize(_ s: String) -> Int? {
            let t = s.uppercased().replacingOccurrences(of: "B", with: "")
            let mult: [Character: Double] = ["K": 0x1p10, "M": 0x1p20, "G": 0x1p30]
            if let u = t.last, let m = mult[u], let v = Double(t.dropLast()) { return Int(v * m) }
            return Int(t)
        }

        /// Median wall time of `count` runs after one warm-up.
        func median(_ count: Int, _ body: (Int) throws -> Void) rethrows -> Double {
            try body(-1)
            var times: [Double] = []
            for i in 0..<max(count, 1) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try body(i)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            return times.sorted()[times.count / 2]
        }

        /// The machine's GEMM peak for the fractions: the faster of one n³ GEMM on OpenBLAS's threads and one n³ GEMM
        /// per worker side by side on our own threads (OpenBLAS single-threaded inside, as `OwnThreads` runs the
        /// kernels) — with OpenBLAS's AVX2 kernels here the second is the faster, and a fraction of the slower
        /// would overstate ours.
        func gemmPeak(n: Int, double: Bool) throws -> (seconds: Double, flops: Double) {
            let flops = 2 * Double(n) * Double(n) * Double(n), workers = OwnThreads.workers
            func gemm(_ c: inout [Double], _ a: [Double]) {
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), a, Int32(n), 0, &c, Int32(n))
            }
            func gemm(_ c: inout [Float], _ a: [Float]) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), a, Int32(n), 0, &c, Int32(n))
            }
            func peak<T: NTKFloat>(_: T.Type, _ run: (inout [T], [T]) -> Void) -> (seconds: Double, flops: Double) {
                let a = [T](repeating: T(1.0001), count: n * n)
                var cs = (0..<workers).map { _ in [T](repeating: 0, count: n * n) }
                let shared = OwnThreads.withBLASThreads { median(repeats) { _ in run(&cs[0], a) } }
                let own = median(repeats) { _ in
                    cs.withUnsafeMutableBufferPointer { cp in OwnThreads.forEach(workers, workers: workers) { _, i in run(&cp[i], a) } }
                }
                return flops / shared >= Double(workers) * flops / own ? (shared, flops) : (own, Double(workers) * flops)
            }
            return double ? peak(Double.self, gemm) : peak(Float.self, gemm)
        }
    }
}
