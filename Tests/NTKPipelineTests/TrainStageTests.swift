import Foundation
import NTK
import XCTest

@testable import NTKPipeline

/// The init and train stages through the real binary.
final class TrainStageTests: XCTestCase {
    static func yaml(steps: Int = 40, lr: Double = 2, extra: String = "") -> String {
        """
        schema: 1
        params:
          seed: 3
          data: {format: idx, num_classes: 3, path: data, n_train: 24, n_test: 9, standardize: global, l2_normalize: true}
          model: {depth: 2, width: 64, activation: relu, w_std: 1.4, b_std: 0.1}
          train: {learning_rate: \(lr), steps: \(steps), dtype: float64, checkpoint_every: 5\(extra)}
        stages:
          load:
            deps: ["${data.path}"]
            params: [seed, data]
            outs: [artifacts/dataset.npz]
          init:
            deps: [artifacts/dataset.npz]
            params: [seed, model]
            outs: [artifacts/params.npz]
          train:
            deps: [artifacts/dataset.npz, artifacts/params.npz]
            params: [seed, train]
            outs: [artifacts/trained.npz]
        """
    }

    func project(_ yaml: String = yaml()) -> String {
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data", perClass: 12)
        try! yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        return d
    }

    func testInitAndTrainEndToEnd() throws {
        let d = project()
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        let p = try ParamsArtifact(file: try ArtifactFile.read(d + "/artifacts/params.npz"), path: "")
        let spec = try XCTUnwrap(NetworkSpec(layers: p.network.layers, inputDim: p.network.inputShape.count))
        XCTAssertEqual(spec.widths, [64, 64])
        XCTAssertEqual(p.theta, MLP.initialize(spec, seed: 3).theta, "θ₀ is the seeded init")
        let t = try ArtifactFile.read(d + "/artifacts/trained.npz")
        XCTAssertEqual(t.kind, .trained)
        XCTAssertEqual(t.tensor("steps")?.integers()?.last, 40)
        XCTAssertEqual(t.tensor("relative_change")?.shape.last, 3)
        let losses = try XCTUnwrap(t.tensor("train_loss")).doubles()
        XCTAssertLessThan(losses.last!, losses.first!)
        XCTAssertEqual(t.tensor("final_W0")?.shape, [16, 64])
    }

    /// On a terminal of 60 columns the progress bar never wraps (each redraw fits the line) and shows the loss.
    func testProgressBarFitsTheTerminalAndShowsTheLoss() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { throw XCTSkip("no script(1) for a pty") }
        let d = project(Self.yaml(steps: 3000, lr: 0.5))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        p.arguments = ["-qc", "stty cols 60; '\(TestSupport.ntkBinary)' run", "/dev/null"]
        p.currentDirectoryURL = URL(fileURLWithPath: d)
        let out = Pipe()
        p.standardOutput = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, text)
        // redraws: the pieces between carriage returns that hold a bar (log lines end in newlines and may wrap)
        let bars = text.split(whereSeparator: { $0 == "\r" || $0 == "\n" }).map { $0.replacingOccurrences(of: "\u{1B}[K", with: "") }
            .filter { $0.contains("ETA") }
        XCTAssertFalse(bars.isEmpty, text)
        for b in bars { XCTAssertLessThanOrEqual(b.count, 59, "a redraw wider than the terminal: \(b)") }
        XCTAssertTrue(bars.contains { $0.contains("loss ") }, "no loss in the bar: \(bars)")
    }

    /// `reduction: sum` (the paper's total loss) at η is the mean loss at η·n·k: the same weights, and the closed
    /// form of `evaluate` follows the effective rate.
    func testSumReductionIsTheMeanLossAtAScaledRate() throws {
        let mean = project(Self.yaml(steps: 10, lr: 1.2))
        let sum = project(Self.yaml(steps: 10, lr: 1.2 / (24 * 3), extra: ", reduction: sum"))
        for d in [mean, sum] { XCTAssertEqual(try TestSupport.ntk(["run"], in: d).status, 0) }
        let a = try ArtifactFile.read(mean + "/artifacts/trained.npz"), b = try ArtifactFile.read(sum + "/artifacts/trained.npz")
        XCTAssertEqual(b.metadata["effective_learning_rate"]?.number ?? 0, 1.2, accuracy: 1e-15)
        let wa = a.tensor("final_W1")!.doubles(), wb = b.tensor("final_W1")!.doubles()
        XCTAssertLessThan(zip(wa, wb).map { abs($0 - $1) }.max()!, 1e-12)
        for (x, y) in zip(a.tensor("time")!.doubles(), b.tensor("time")!.doubles()) { XCTAssertEqual(x, y, accuracy: 1e-12) }
    }

    /// Initial weights from a user's .npz (neural-tangents layout): the params artifact holds exactly them.
    func testInitFromUserWeights() throws {
        let d = project(Self.yaml().replacingOccurrences(of: "deps: [artifacts/dataset.npz]\n    params: [seed, model]", with: "deps: [artifacts/dataset.npz, mine.npz]\n    params: [seed, model]"))
        let spec = NetworkSpec(inputDim: 16, widths: [64, 64], outputs: 3, activation: .relu, wStd: 1.4, bStd: 0.1)
        let theta = MLP.initialize(spec, seed: 99).theta
        try ArtifactFile(kind: .params, metadata: [:], tensors: ParamsArtifact(spec: spec, theta: theta).tensors()).write(to: d + "/mine.npz")
        XCTAssertEqual(try TestSupport.ntk(["run", "init"], in: d).status, 0)
        XCTAssertEqual(try ParamsArtifact(file: try ArtifactFile.read(d + "/artifacts/params.npz"), path: "").theta, theta)
        // A wrong shape is named.
        let bad = NetworkSpec(inputDim: 16, widths: [32, 64], outputs: 3, activation: .relu, wStd: 1.4, bStd: 0.1)
        try ArtifactFile(kind: .params, metadata: [:], tensors: ParamsArtifact(spec: bad, theta: MLP.initialize(bad, seed: 1).theta).tensors()).write(to: d + "/mine.npz")
        let r = try TestSupport.ntk(["run", "init"], in: d)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("mine.npz") && r.stderr.contains("W0 has shape [16, 32], but layers[1] (dense) needs [16, 64]"), r.stderr)
    }

    /// Starts `ntk run` in d and waits (up to 20 s) until a training checkpoint exists; the process keeps running.
    func runUntilTrainingCheckpoint(in d: String, stderr: Pipe? = nil) throws -> (Process, found: Bool) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.ntkBinary)
        p.arguments = ["run"]
        p.currentDirectoryURL = URL(fileURLWithPath: d)
        p.standardError = stderr ?? FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        var found = false
        for _ in 0..<4000 where !found {
            Thread.sleep(forTimeInterval: 0.005)
            found = ((try? FileManager.default.subpathsOfDirectory(atPath: d + "/.ntk/checkpoints")) ?? [])
                .contains { $0.hasSuffix("train.npz") }
        }
        return (p, found)
    }

    /// SIGINT / SIGTERM during training: exit 130 / 143, a message saying the checkpoint was kept, no `.partial` file;
    /// the next run resumes.
    func testInterruptedTrainingSaysWhatWasKept() throws {
        let yaml = Self.yaml(steps: 1_000_000, lr: 0.5, extra: ", batch_size: 8")
            .replacingOccurrences(of: "checkpoint_every: 5", with: "checkpoint_every: 50")
        for (sig, status) in [(SIGINT, Int32(130)), (SIGTERM, Int32(143))] {
            let d = project(yaml)
            XCTAssertEqual(try TestSupport.ntk(["run", "init"], in: d).status, 0)
            let err = Pipe()
            let (p, found) = try runUntilTrainingCheckpoint(in: d, stderr: err)
            Thread.sleep(forTimeInterval: 0.05)
            kill(p.processIdentifier, sig)
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertTrue(found, "a training checkpoint should exist before the signal")
            XCTAssertEqual(p.terminationStatus, status, text)
            XCTAssertTrue(text.contains("stage train was running: its checkpoint at step"), text)
            let partials = (FileManager.default.subpaths(atPath: d) ?? [])
                .filter { $0.hasSuffix(Files.temporarySuffix) }
            XCTAssertEqual(partials, [], "temporary files left behind")
            let shown = try TestSupport.ntk(["status", "train"], in: d)
            XCTAssertTrue(shown.stdout.contains("checkpoint at step"), shown.stdout)
        }
    }

    /// kill -9 during training; the resumed run starts from the last checkpoint and ends byte-identical.
    func testKilledTrainingResumesToTheSameResult() throws {
        let yaml = Self.yaml(steps: 3000, lr: 0.5, extra: ", batch_size: 8, momentum: 0.9").replacingOccurrences(of: "checkpoint_every: 5", with: "checkpoint_every: 50")
        let reference = project(yaml)
        XCTAssertEqual(try TestSupport.ntk(["run"], in: reference).status, 0)
        let d = project(yaml)
        XCTAssertEqual(try TestSupport.ntk(["run", "init"], in: d).status, 0)
        let (p, found) = try runUntilTrainingCheckpoint(in: d)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertTrue(found, "a training checkpoint should exist before the kill")
        // status says a run would resume, and from which step
        let status = try TestSupport.ntk(["status", "train"], in: d)
        XCTAssertTrue(status.stdout.contains("train: stale") && status.stdout.contains("checkpoint at step "), status.stdout)
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("resumed training at step"), r.stderr)
        if let step = status.stdout.range(of: #"checkpoint at step \d+"#, options: .regularExpression) {
            XCTAssertTrue(r.stderr.contains("resumed training at step " + status.stdout[step].split(separator: " ").last!), r.stderr)
        }
        XCTAssertEqual(try ArtifactFile.read(d + "/artifacts/trained.npz").tensors, try ArtifactFile.read(reference + "/artifacts/trained.npz").tensors)
        XCTAssertTrue(TestSupport.read(d + "/artifacts/trained.npz") == TestSupport.read(reference + "/artifacts/trained.npz"), "byte-identical")
    }

    /// A learning rate that explodes stops with an error that says so and suggests a stable one; nothing lost.
    func testDivergenceSuggestsAStableLearningRate() throws {
        let d = project()
        XCTAssertEqual(try TestSupport.ntk(["run"], in: d).status, 0)
        let before = TestSupport.read(d + "/artifacts/trained.npz"), lock = TestSupport.read(d + "/pipeline.lock")
        let r = try TestSupport.ntk(["run", "--set", "train.learning_rate=100000"], in: d)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("diverged at step"), r.stderr)
        XCTAssertTrue(r.stderr.contains("stable below 2·N·k/λ_max ≈"), r.stderr)
        XCTAssertEqual(TestSupport.read(d + "/artifacts/trained.npz"), before)
        XCTAssertEqual(TestSupport.read(d + "/pipeline.lock"), lock)
    }
}

/// The empirical_kernels stage at θ₀ and at θ_T, and predict on empirical kernels.
final class EmpiricalKernelsStageTests: XCTestCase {
    func testEmpiricalKernelsAtThetaZeroAndThetaT() throws {
        let yaml = TrainStageTests.yaml() + """

          ntk0:
            kind: empirical_kernels
            deps: [artifacts/dataset.npz, artifacts/params.npz]
            params: [empirical]
            outs: [artifacts/ntk0.npz]
          ntkT:
            kind: empirical_kernels
            deps: [artifacts/dataset.npz, artifacts/params.npz, artifacts/trained.npz]
            params: [empirical]
            outs: [artifacts/ntkT.npz]
          predict:
            deps: [artifacts/dataset.npz, artifacts/ntk0.npz]
            params: [predict]
            outs: [artifacts/predictions.npz]
        """
        let withParams = yaml.replacingOccurrences(of: "  train: {", with: "  empirical: {output: traced}\n  predict: {times: [10, inf]}\n  train: {")
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data", perClass: 12)
        try withParams.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        let ds = try DatasetArtifact(file: try ArtifactFile.read(d + "/artifacts/dataset.npz"), path: "")
        let p = try ParamsArtifact(file: try ArtifactFile.read(d + "/artifacts/params.npz"), path: "")
        let k0 = try ArtifactFile.read(d + "/artifacts/ntk0.npz"), kT = try ArtifactFile.read(d + "/artifacts/ntkT.npz")
        XCTAssertEqual(k0.metadata["at"], .string("theta0"))
        XCTAssertEqual(kT.metadata["at"], .string("thetaT"))
        let expected = EmpiricalNTK<Double>(network: p.network, theta: p.theta).compute(x1: Matrix(rows: ds.nTrain, cols: ds.features, data: ds.xTrain)).ntk
        XCTAssertEqual(k0.tensor("ntk_train_train")?.doubles(), expected)
        let a = k0.tensor("ntk_train_train")!.doubles(), b = kT.tensor("ntk_train_train")!.doubles()
        let change = zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot() / a.reduce(0) { $0 + $1 * $1 }.squareRoot()
        XCTAssertGreaterThan(change, 0, "training moves the kernel")
        XCTAssertLessThan(change, 0.5, "but a width-64 network's kernel stays close")
        XCTAssertTrue(r.stderr.contains("NTK-GP t=∞"), r.stderr)

        // per_layer: each Dense layer's W and b contributions, summing to the kernel.
        let perLayer = try TestSupport.ntk(["run", "ntk0", "--set", "empirical.per_layer=true"], in: d)
        XCTAssertEqual(perLayer.status, 0, perLayer.stderr)
        let kl = try ArtifactFile.read(d + "/artifacts/ntk0.npz")
        XCTAssertEqual(kl.tensor("ntk_train_train")?.doubles(), expected)
        for name in ["train_train", "test_train"] {
            let parts = (0..<3).flatMap { l in ["W", "b"].compactMap { kl.tensor("ntk_\(name)_\($0)\(l)")?.doubles() } }
            XCTAssertEqual(parts.count, 6)
            let total = kl.tensor("ntk_\(name)")!.doubles()
            let summed = parts.dropFirst().reduce(parts[0]) { zip($0, $1).map(+) }
            XCTAssertLessThan(zip(total, summed).map { abs($0 - $1) }.max()!, 1e-10 * (total.map(abs).max() ?? 1))
        }
    }

    /// `ntk exec empirical_kernels` on explicit files: x1/x2 in a plain .npz plus a params artifact.
    func testExecOnExplicitFiles() throws {
        let d = TestSupport.tempDir()
        var rng = SplitMix64(seed: 3)
        let spec = NetworkSpec(inputDim: 4, widths: [16], outputs: 2, activation: .erf, wStd: 1.2, bStd: 0.1)
        let net = MLP.initialize(spec, seed: 4)
        try ParamsArtifact(spec: spec, theta: net.theta).file(metadata: [:]).write(to: d + "/params.npz")
        let x1 = (0..<20).map { _ in rng.normal() }, x2 = (0..<12).map { _ in rng.normal() }
        try ArtifactFile(kind: .dataset, metadata: [:], tensors: [Tensor(name: "x1", shape: [5, 4], values: x1), Tensor(name: "x2", shape: [3, 4], values: x2)])
            .write(to: d + "/x.npz")
        let r = try TestSupport.ntk(["exec", "empirical_kernels", "--in", "x.npz", "--in", "params.npz", "--out", "k.npz", "--set", "empirical.output=full"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        let k = try ArtifactFile.read(d + "/k.npz")
        let expected = EmpiricalNTK<Double>(net).compute(x1: Matrix(rows: 5, cols: 4, data: x1), x2: Matrix(rows: 3, cols: 4, data: x2), output: .full)
        XCTAssertEqual(k.tensor("ntk")?.shape, [10, 6])
        XCTAssertEqual(k.tensor("ntk")?.doubles(), expected.ntk)
        XCTAssertEqual(k.tensor("nngp")?.shape, [5, 3])
    }

    /// Under a memory cap the kernels are computed in tiles (features checkpointed): same numbers; and a run killed
    /// mid-way resumes from the finished tiles' features.
    func testTiledUnderMemoryCapAndResume() throws {
        let yaml = TrainStageTests.yaml().replacingOccurrences(of: "  train: {", with: "  empirical: {output: traced, max_memory: 400K}\n  train: {")
            .replacingOccurrences(of: "n_train: 24, n_test: 9", with: "n_train: 150, n_test: 30") + """

          ntk0:
            kind: empirical_kernels
            deps: [artifacts/dataset.npz, artifacts/params.npz]
            params: [empirical]
            outs: [artifacts/ntk0.npz]
        """
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data", perClass: 80)
        try yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        XCTAssertEqual(try TestSupport.ntk(["run", "init"], in: d).status, 0)
        let tiles = try TestSupport.killAfterCheckpoints(["run", "ntk0"], in: d, count: 2, matching: "train_train-x1")
        let r = try TestSupport.ntk(["run", "ntk0"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("tiles of"), r.stderr)
        XCTAssertGreaterThanOrEqual(tiles, 2, "the kill should land after two tiles were checkpointed")
        XCTAssertTrue(r.stderr.contains("resumed from checkpoints"), r.stderr)
        let ds = try DatasetArtifact(file: try ArtifactFile.read(d + "/artifacts/dataset.npz"), path: "")
        let params = try ParamsArtifact(file: try ArtifactFile.read(d + "/artifacts/params.npz"), path: "")
        let e = EmpiricalNTK<Double>(network: params.network, theta: params.theta)
        let xtr = Matrix(rows: ds.nTrain, cols: ds.features, data: ds.xTrain), xte = Matrix(rows: ds.nTest, cols: ds.features, data: ds.xTest)
        let k = try ArtifactFile.read(d + "/artifacts/ntk0.npz")
        for (a, b) in zip(k.tensor("ntk_train_train")!.doubles(), e.compute(x1: xtr).ntk) { XCTAssertEqual(a, b, accuracy: 1e-10 * max(1, abs(b))) }
        for (a, b) in zip(k.tensor("ntk_test_train")!.doubles(), e.compute(x1: xte, x2: xtr).ntk) { XCTAssertEqual(a, b, accuracy: 1e-10 * max(1, abs(b))) }
    }

    /// A numpy-written .npz among a stage's deps (no metadata member) is input, not a damaged artifact.
    func testNumpyWrittenInputsBesideArtifacts() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["NTK_SKIP_NUMPY"] != nil, "NTK_SKIP_NUMPY set")
        let d = TestSupport.tempDir()
        let spec = NetworkSpec(inputDim: 4, widths: [8], outputs: 2, activation: .relu, wStd: 1.2, bStd: 0.1)
        try ParamsArtifact(spec: spec, theta: MLP.initialize(spec, seed: 4).theta).file(metadata: [:]).write(to: d + "/params.npz")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import numpy as np; np.savez('\(d)/x.npz', x1=np.arange(12.0).reshape(3, 4) / 10)"]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "python3 with numpy is needed (CI installs it)")
        let r = try TestSupport.ntk(["exec", "empirical_kernels", "--in", "x.npz", "--in", "params.npz", "--out", "k.npz"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try ArtifactFile.read(d + "/k.npz").tensor("ntk")?.shape, [3, 3])
    }

    /// PAPER Figure 3's comparison in one pipeline: the network and its linearization trained by full-batch GD, and
    /// the closed form with the full empirical NTK at θ₀ from the same f₀ — equal to the trained linearization to
    /// round-off, close to the network.
    func testClosedFormBesideTrainedNetworkAndLinearization() throws {
        let yaml = TrainStageTests.yaml(steps: 60, lr: 1).replacingOccurrences(of: "  train: {", with: "  empirical: {output: full}\n  predict: {times: [inf]}\n  train: {") + """

          ntk0:
            kind: empirical_kernels
            deps: [artifacts/dataset.npz, artifacts/params.npz]
            params: [empirical]
            outs: [artifacts/ntk0.npz]
          predict:
            deps: [artifacts/dataset.npz, artifacts/ntk0.npz, artifacts/trained.npz]
            params: [predict]
            outs: [artifacts/predictions.npz]
        """
        let d = TestSupport.tempDir()
        TestSupport.tinyIDX(at: d + "/data", perClass: 12)
        try yaml.write(toFile: d + "/pipeline.yaml", atomically: true, encoding: .utf8)
        let r = try TestSupport.ntk(["run"], in: d)
        XCTAssertEqual(r.status, 0, r.stderr)
        let p = try ArtifactFile.read(d + "/artifacts/predictions.npz")
        guard case .object(let metrics)? = p.metadata["metrics"], case .array(let rows)? = metrics["closed_form"], case .object(let last)? = rows.last,
              case .double(let vsLin)? = last["rmse_closed_vs_linearized"], case .double(let vsNet)? = last["rmse_closed_vs_network"] else {
            return XCTFail("no closed-form metrics: \(p.metadata)")
        }
        XCTAssertLessThan(vsLin, 1e-9, "exact discrete closed form = trained linearization")
        XCTAssertLessThan(vsNet, 0.2, "and close to the width-64 network")
        XCTAssertGreaterThan(vsNet, vsLin)
        XCTAssertTrue(r.stderr.contains("closed form with this kernel vs the trained network"), r.stderr)
    }
}
