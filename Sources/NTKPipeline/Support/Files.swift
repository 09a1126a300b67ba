import Foundation

/// Whole-file reads and atomic writes. Every failure names the file.
public enum Files {
    public static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    public static func isDirectory(_ path: String) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
    }

    /// Reads a whole file into memory.
    public static func read(_ path: String) throws -> [UInt8] {
        guard let fd = Optional(open(path, O_RDONLY)), fd >= 0 else {
            throw NTKError("cannot open (\(String(cString: strerror(errno))))", at: path)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw NTKError("cannot stat (\(String(cString: strerror(errno))))", at: path) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw NTKError("is a directory, expected a file", at: path) }
        let size = Int(st.st_size)
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        try out.withUnsafeMutableBytes { buf in
            while done < size {
                let r = Foundation.read(fd, buf.baseAddress! + done, min(size - done, 1 << 30))
                if r < 0 { throw NTKError("read failed (\(String(cString: strerror(errno))))", at: path) }
                if r == 0 { break }
                done += r
            }
        }
        if done < size { out.removeLast(size - done) }
        return out
    }

    /// What a file being written is called until it is complete: `<path>.ntk-tmp` (plainly temporary, plainly ntk's).
    public static let temporarySuffix = ".ntk-tmp"

    /// Writes `path` atomically: the bytes go to `path.ntk-tmp`, are fsynced, then renamed over `path`
    /// and the directory is fsynced. A crash at any moment leaves either the old file or the new one,
    /// never a mixture; a leftover temporary is overwritten by the next write and removed when a run starts.
    public static func writeAtomically(_ path: String, _ body: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try makeDirectory(dir) }
        let tmp = path + temporarySuffix
        Interruption.writing(tmp)
        defer { Interruption.written(tmp) }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw NTKError("cannot create (\(String(cString: strerror(errno))))", at: tmp) }
        var ok = false
        defer {
            if !ok { close(fd); unlink(tmp) }
        }
        try body { buf in
            var done = 0
            while done < buf.count {
                let r = Foundation.write(fd, buf.baseAddress! + done, min(buf.count - done, 1 << 30))
                if r < 0 { throw NTKError("write failed (\(String(cString: strerror(errno))))", at: tmp) }
                done += r
            }
        }
        guard fsync(fd) == 0 else { throw NTKError("fsync failed (\(String(cString: strerror(errno))))", at: tmp) }
        close(fd)
        ok = true
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw NTKError("cannot rename into place (\(String(cString: strerror(errno))))", at: path)
        }
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func writeAtomically(_ path: String, bytes: [UInt8]) throws {
        try writeAtomically(path) { write in try bytes.withUnsafeBytes { try write($0) } }
    }

    public static func writeAtomically(_ path: String, text: String) throws {
        try writeAtomically(path, bytes: Array(text.utf8))
    }

    public static func makeDirectory(_ path: String) throws {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw NTKError("cannot create directory (\(error.localizedDescription))", at: path)
        }
    }

    /// Regular files under a directory, as sorted relative paths (hidden files skipped).
    /// The absolute path with ".", ".." and every symlink resolved, component by component (a symlink whose target
    /// does not exist yet too); components not on disk are kept as written.
    public static func canonical(_ path: String) -> String {
        var pending = ((path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path) as NSString)
            .pathComponents.dropFirst().reversed() as [String]
        var resolved: [String] = [], hops = 0
        while let c = pending.popLast() {
            if c == "." || c.isEmpty { continue }
            if c == ".." { _ = resolved.popLast(); continue }
            let here = "/" + (resolved + [c]).joined(separator: "/")
            if hops < 64, let target = try? FileManager.default.destinationOfSymbolicLink(atPath: here) {
                hops += 1
                if target.hasPrefix("/") { resolved = [] }
                pending += (target as NSString).pathComponents.filter { $0 != "/" }.reversed()
                continue
            }
            resolved.append(c)
        }
        return "/" + resolved.joined(separator: "/")
    }

    /// `path` (relative to `base`, or absolute) in canonical form: relative to `base` (itself canonical) when it lies
    /// inside it, else absolute.
    public static func canonical(_ path: String, relativeTo base: String) -> String {
        let abs = canonical(path.hasPrefix("/") ? path : base + "/" + path)
        if abs == base { return "." }
        let inside = base == "/" ? "/" : base + "/"
        return abs.hasPrefix(inside) ? String(abs.dropFirst(inside.count)) : abs
    }

    public static func listFiles(under dir: String) throws -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { throw NTKError("cannot list directory", at: dir) }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            let name = (rel as NSString).lastPathComponent
            if name.hasPrefix(".") { if isDirectory(dir + "/" + rel) { e.skipDescendants() }; continue }
            if !isDirectory(dir + "/" + rel) { out.append(rel) }
        }
        return out.sorted()
    }
}
