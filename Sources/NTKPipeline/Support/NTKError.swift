import NTK

/// The one error type of the pipeline library: what is wrong, and where (a file, a key, or both).
///
/// Messages read "<where>: <problem>" with an optional hint line, e.g.
/// `data/mnist/train-images-idx3-ubyte.gz: truncated gzip stream (file ends after 812 bytes)`.
public struct NTKError: Error, CustomStringConvertible, Equatable {
    /// File path (or `pipeline.yaml:12` for a line) the problem is in, if any.
    public var location: String?
    /// Dotted key (`params.data.n_train`) the problem is about, if any.
    public var key: String?
    public var problem: String
    public var hint: String?

    public init(_ problem: String, at location: String? = nil, key: String? = nil, hint: String? = nil) {
        self.location = location
        self.key = key
        self.problem = problem
        self.hint = hint
    }

    public var description: String {
        var s = ""
        if let location { s += location + ": " }
        if let key { s += key + ": " }
        s += problem
        if let hint { s += "\n  hint: " + hint }
        return s
    }

    /// Any error as an NTKError: the maths library's (a kernel that is not positive definite, training that
    /// diverged, a layer list that does not fit) with what to do about it, located at `stage`; an NTKError as it is.
    public init(wrapping error: Error, stage: String? = nil) {
        let prefix = stage.map { "stage \($0): " } ?? ""
        switch error {
        case var e as NTKError:
            if let stage, !e.problem.hasPrefix("stage ") { e.problem = "stage \(stage): " + e.problem }
            self = e
        case let e as LinearAlgebraError:
            self.init(prefix + e.description,
                      hint: "a kernel that is singular or not finite: raise diag_reg, check the inputs for duplicates or NaN")
        case let e as TrainingDiverged:
            self.init(prefix + e.description, hint: "lower the learning rate (see the stage's train params)")
        case let e as LayerError:
            self.init(e.message, key: e.path + (e.key.map { "." + $0 } ?? ""))
            if let stage { problem = "stage \(stage): " + problem }
        default:
            self.init(prefix + "unexpected error: \(error)", hint: "this is a bug in ntk; please report it with the command")
        }
    }

    /// The same error, located in `file` unless it already names a location.
    public func located(_ file: String) -> NTKError {
        var e = self
        if e.location == nil { e.location = file }
        return e
    }
}
