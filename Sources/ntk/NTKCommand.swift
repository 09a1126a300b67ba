import ArgumentParser
import Foundation
import NTK
import NTKPipeline

/// `ntk`: the only place that prints and exits. Errors from the libraries (`NTKError`) are printed as
/// "error: <where>: <what>" with an optional hint, and the process exits with status 1.
@main
struct NTKCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ntk",
        abstract: "Wide networks, their linearization and neural tangent kernels, as a cached pipeline.",
        version: ntkVersion,
        subcommands: [Run.self, Status.self, Params.self, Exec.self, Dump.self, Info.self, Bench.self])

    /// Every command: OpenBLAS on the kernels the CPU allows (`Platform.restartWithBetterBLASCore`), freed memory
    /// stays mapped for reuse (`Platform.keepFreedMemory`), then the arguments are parsed.
    static func main() {
        // under mpirun only `ntk run` knows how to share the work; any other command would run P times over
        if ProcessGrid.launchedByMPI, let command = CommandLine.arguments.dropFirst().first, command != "run" {
            let message = "error: `ntk \(command)` does not run under mpirun; only `ntk run` does\n"
            FileHandle.standardError.write(Data(message.utf8))
            Foundation.exit(1)
        }
        Platform.restartWithBetterBLASCore()
        Platform.keepFreedMemory()
        handleInterrupts()
        main(nil)
    }

    /// SIGINT and SIGTERM: remove the temporary file being written (no `.ntk-tmp` is left), say what was kept (the
    /// running stage's last checkpoint, or nothing), exit 130 / 143. Finished stages are already in the lock.
    static func handleInterrupts() {
        for (sig, status) in [(SIGINT, Int32(130)), (SIGTERM, Int32(143))] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                Interruption.cleanUp()
                let name = sig == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)"
                FileHandle.standardError.write(Data("\n\(name): \(Interruption.summary)\n".utf8))
                // _exit, not exit: the main thread is still computing (a GEMM may be in flight), and exit's handlers
                // would tear down the libraries under it
                _exit(status)
            }
            source.resume()
            interruptSources.append(source)
        }
    }
    nonisolated(unsafe) static var interruptSources: [DispatchSourceSignal] = []

    /// Runs a command body, turning every error into a clean message and exit status 1 — the one error boundary:
    /// the libraries' errors (NTKError, and the maths library's through `NTKError(wrapping:)`) all end here.
    /// In a distributed run an error on any process ends every process (they would wait for it forever).
    static func guarded(_ body: () throws -> Void) throws {
        do { try body() } catch let e as ExitCode { throw e } catch {
            let grid = ProcessGrid.current
            let who = grid.map { $0.size > 1 ? "process \($0.rank) of \($0.size): " : "" } ?? ""
            FileHandle.standardError.write(Data(("error: " + who + NTKError(wrapping: error).description + "\n").utf8))
            if let grid { grid.abort(code: 1) }
            throw ExitCode(1)
        }
    }
}

struct PipelineOptions: ParsableArguments {
    @Option(name: .long, help: "The pipeline file.")
    var pipeline: String = "pipeline.yaml"

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a param: key=value (e.g. fig3.data.n_train=500). Repeatable.", valueName: "key=value"))
    var overrides: [String] = []
}

extension NTKCommand {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the stale stages of the pipeline (or the named stages and the stale stages they need).")

        @Argument(help: "Stages to run (default: all).")
        var stages: [String] = []

        @OptionGroup var options: PipelineOptions

        @Flag(help: "Rerun the named stages (all if none are named) even if they are up to date.")
        var force = false

        @Option(help: "Worker threads (default: OPENBLAS_NUM_THREADS, else the cores). Results do not depend on it.")
        var threads: Int?

        @Flag(help: "Rehash every dep and out first (see `ntk status --verify`): a damaged out is rebuilt.")
        var verify = false

        @Option(help: ArgumentHelp("""
            Run on P processes (Open MPI's mpirun -np P on this machine; the same as starting `mpirun -np P ntk run …` \
            yourself, e.g. with a hostfile): analytic_kernels and predict then spread their kernels over the \
            processes (ScaLAPACK), the other stages run on process 0.
            """, valueName: "P"))
        var ranks: Int?

        func validate() throws {
            if let ranks, ranks < 1 { throw ValidationError("--ranks must be at least 1") }
            if ranks != nil && ProcessGrid.launchedByMPI {
                throw ValidationError("--ranks starts mpirun itself; this process already runs under mpirun")
            }
        }

        func run() throws {
            try NTKCommand.guarded {
                if let ranks { try Distributed.launch(ranks) }
                let grid = ProcessGrid.launchedByMPI ? try ProcessGrid.start() : nil
                if let threads {
                    OwnThreads.workers = threads
                } else if let grid {
                    OwnThreads.workers = grid.threadsPerProcess
                }
                let started = Date()
                let leader = (grid?.rank ?? 0) == 0
                let reporter: Reporter = leader ? TerminalReporter() : SilentReporter()
                let runner = try Runner(pipeline: options.pipeline, overrides: options.overrides, reporter: reporter,
                                        verify: verify)
                runner.grid = grid
                runner.leaderThreads = threads
                if let grid, leader {
                    reporter.log("distributed run: \(grid.size) process\(grid.size == 1 ? "" : "es") on a "
                                 + "\(grid.rows)×\(grid.cols) grid, "
                                 + "\(OwnThreads.workers) thread(s) each")
                }
                let outcomes = try runner.run(targets: stages, force: force)
                // every process's peak memory (one number per process of a distributed run)
                var peaks = [Double](repeating: 0, count: grid?.size ?? 1)
                peaks[grid?.rank ?? 0] = Double(Platform.peakResidentBytes ?? 0)
                grid?.sum(&peaks)
                ProcessGrid.finish()  // MPI_Finalize on success only: an error aborts every process instead
                guard leader else { return }
                let ran = outcomes.filter(\.ran).count
                let memory = peaks.map { MemoryBudget.size(Int($0)) }.joined(separator: ", ")
                reporter.log(ran == 0
                    ? String(format: "everything is up to date; nothing to do (%.2f s)", Date().timeIntervalSince(started))
                    : String(format: "ran %d of %d stage(s) in %.2f s", ran, outcomes.count,
                             Date().timeIntervalSince(started))
                        + (peaks[0] > 0 ? (peaks.count > 1 ? "; peak memory per process " : "; peak memory ") + memory
                                        : ""))
                for line in try runner.reportSummary(stages: outcomes.map(\.stage)) { reporter.log(line) }
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show which stages are up to date and why the others would rerun.")

        @Argument(help: "Stages to show (default: all).")
        var stages: [String] = []

        @OptionGroup var options: PipelineOptions

        @Flag(help: "Rehash every dep and out (a byte changed in place, with size and time kept, shows as changed).")
        var verify = false

        func run() throws {
            try NTKCommand.guarded {
                let runner = try Runner(pipeline: options.pipeline, overrides: options.overrides, verify: verify)
                for s in try runner.status(targets: stages) {
                    print(s.upToDate ? "\(s.stage): up to date"
                                     : "\(s.stage): stale — \((s.reasons + [s.checkpoint].compactMap { $0 }).joined(separator: "; "))")
                }
            }
        }
    }

    struct Params: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the params a stage reads, with their effective values (defaults marked).",
            discussion: """
                ntk params fig3_train              the params of one stage of pipeline.yaml (every expansion of a matrix)
                ntk params fig3_train --set fig3.train.steps=50
                ntk params --kind train            what a stage kind reads outside a pipeline (ntk exec) and its defaults
                """)

        @Argument(help: "A stage of the pipeline.")
        var stage: String?

        @Option(help: "A stage kind instead of a stage: its params and defaults outside a pipeline.")
        var kind: String?

        @OptionGroup var options: PipelineOptions

        func validate() throws {
            if (stage == nil) == (kind == nil) { throw ValidationError("name a stage, or a stage kind with --kind") }
        }

        func run() throws {
            try NTKCommand.guarded {
                func show(_ trace: ParamTrace) {
                    let width = min(48, trace.keys.map(\.count).max() ?? 0)
                    for k in trace.keys {
                        let v = trace.values[k]!
                        print("  " + k.padding(toLength: max(width, k.count), withPad: " ", startingAt: 0) + "  "
                              + v.value.canonical + (v.isDefault ? "   (default)" : ""))
                    }
                }
                if let kind {
                    print("kind \(kind) (outside a pipeline):")
                    show(try Runner.defaultParams(kind: kind))
                    return
                }
                let runner = try Runner(pipeline: options.pipeline, overrides: options.overrides)
                for (name, trace) in try runner.effectiveParams(stage!) {
                    print("\(name):")
                    show(trace)
                }
            }
        }
    }

    struct Exec: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one stage kind on explicit files, outside any pipeline (no lock, no cache).",
            discussion: """
                Params come from --params FILE (its params: block) and --set; anything missing takes its default.
                Example: ntk exec load --set data.path=data/mnist --set data.n_train=100 --out /tmp/dataset.npz
                """)

        @Argument(help: "Stage kind: load, init, train, analytic_kernels, empirical_kernels, predict (see `ntk info`).")
        var kind: String

        @Option(name: .customLong("in"), help: "An input artifact or file (repeatable).")
        var inputs: [String] = []

        @Option(help: "Output artifact path (repeat for kinds with several outputs).")
        var out: [String] = []

        @Option(help: "A pipeline.yaml whose params: block to use.")
        var params: String?

        @Option(name: .customLong("set"), help: ArgumentHelp("Override a param: key=value.", valueName: "key=value"))
        var overrides: [String] = []

        func validate() throws {
            if out.isEmpty { throw ValidationError("give the output path with --out FILE") }
        }

        func run() throws {
            try NTKCommand.guarded {
                try Runner.exec(kind: kind, paramsFile: params, overrides: overrides, inputs: inputs, outs: out, reporter: TerminalReporter())
                for o in out { FileHandle.standardError.write(Data("wrote \(o)\n".utf8)) }
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Version, CPU features, SIMD path and BLAS library.")

        func run() throws {
            print("ntk \(ntkVersion)")
            print("cpu features: avx2 \(Platform.cpuHasAVX2 ? "yes" : "no"), fma \(Platform.cpuHasFMA ? "yes" : "no"), avx512 \(Platform.cpuHasAVX512 ? "yes" : "no")")
            let forced = ProcessInfo.processInfo.environment["NTK_SIMD"] == "scalar"
            print("simd path: \(Platform.simdPath)\(forced ? " (forced by NTK_SIMD=scalar)" : "")")
            print("blas: \(Platform.blasConfig.trimmingCharacters(in: .whitespaces)); kernel \(Platform.blasCore); threads \(OwnThreads.workers) (ours; OpenBLAS single-threaded inside)")
            if let note = Platform.blasKernelNote { print("note: " + note) }
            if let note = Platform.blasCoreRestartNote { print("note: " + note) }
            print("cores: \(ProcessInfo.processInfo.activeProcessorCount)")
            print("stage kinds:")
            for k in stageKinds { print("  \(k.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(k.summary)") }
        }
    }
}
