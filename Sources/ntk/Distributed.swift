import Foundation
import NTKPipeline

/// `ntk run --ranks P`: the same command under Open MPI's mpirun on this machine (P processes, more than the cores
/// allowed), replacing this process — so its exit status is mpirun's.
enum Distributed {
    static func launch(_ ranks: Int) throws -> Never {
        guard let mpirun = which("mpirun") else {
            throw NTKError(
                "--ranks needs Open MPI's mpirun, which is not on PATH",
                hint: "install Debian's openmpi-bin and libscalapack-openmpi2.2 (scripts/setup installs them)")
        }
        var args = Array(CommandLine.arguments.dropFirst())
        if let i = args.firstIndex(of: "--ranks") {
            args.removeSubrange(i...min(i + 1, args.count - 1))
        } else if let i = args.firstIndex(where: { $0.hasPrefix("--ranks=") }) {
            args.remove(at: i)
        }
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let selfPath = FileManager.default.isExecutableFile(atPath: me) ? me : (which(CommandLine.arguments[0]) ?? me)
        // not bound to a core each (our threads use the process's share of them: ProcessGrid.threadsPerProcess);
        // waiting processes yield their core (process 0 runs the single-process stages on all of them)
        var argv = [
            mpirun, "-np", String(ranks), "--oversubscribe", "--bind-to", "none", "--mca",
            "mpi_yield_when_idle", "1",
        ]
        if getuid() == 0 { argv.append("--allow-run-as-root") }
        argv += [selfPath] + args
        let cargs = argv.map { strdup($0) } + [nil]
        execv(mpirun, cargs)
        throw NTKError("could not start \(mpirun) (\(String(cString: strerror(errno))))")
    }

    static func which(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}
