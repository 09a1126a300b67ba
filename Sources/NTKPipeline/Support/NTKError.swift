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

    /// The same error, located in `file` unless it already names a location.
    public func located(_ file: String) -> NTKError {
        var e = self
        if e.location == nil { e.location = file }
        return e
    }
}
