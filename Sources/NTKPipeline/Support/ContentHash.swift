import Foundation

/// Content hashes of files and directories (SHA-256), with a stat-keyed cache so an unchanged large file
/// is not re-read (dvc-data's "state"): the key is (path, size, mtime, inode), the value the hash. The hash
/// stays the truth — the cache only avoids recomputing it for a file whose stat has not changed.
///
/// A directory hashes as the SHA-256 of its sorted "relative-path<TAB>file-hash<LF>" lines (DVC's `.dir`).
public final class ContentHasher {
    private let cachePath: String?
    private var cache: [String: String] = [:]
    private var dirty = false
    /// Rehash every file once, whatever the cache says (`ntk status --verify`: a byte changed in place with the size
    /// and mtime kept is invisible to the stat key); the fresh hashes replace the cached ones.
    private var verify: Bool
    private var verified: Set<String> = []

    /// `cachePath`: a JSON file for the stat cache (nil: no cache).
    public init(cachePath: String?, verify: Bool = false) {
        self.cachePath = cachePath
        self.verify = verify
        if let cachePath, let bytes = try? Files.read(cachePath),
            case .object(let o)? = try? JSONValue.parse(String(decoding: bytes, as: UTF8.self))
        {
            for (k, v) in o { if case .string(let s) = v { cache[k] = s } }
        }
    }

    public struct Entry: Equatable {
        public var sha256: String
        public var size: Int
    }

    /// Hash and total size of a file or directory; nil if it does not exist.
    public func hash(_ path: String) throws -> Entry? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            var lines = ""
            var total = 0
            for rel in try Files.listFiles(under: path) {
                guard let e = try hash(path + "/" + rel) else { continue }
                lines += "\(rel)\t\(e.sha256)\n"
                total += e.size
            }
            return Entry(sha256: SHA256.hex(Array(lines.utf8)), size: total)
        }
        let key = "\(path)|\(st.st_size)|\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)|\(st.st_ino)"
        if let h = cache[key], !verify || verified.contains(key) { return Entry(sha256: h, size: Int(st.st_size)) }
        let h = try Self.hashFile(path)
        if verify { verified.insert(key) }
        if cache.keys.contains(where: { $0.hasPrefix(path + "|") && $0 != key }) {
            cache = cache.filter { !$0.key.hasPrefix(path + "|") }
            dirty = true
        }
        if cache[key] != h { dirty = true }
        cache[key] = h
        return Entry(sha256: h, size: Int(st.st_size))
    }

    /// Forgets the cached hash of `path` (a file found damaged: the next `hash` reads it again).
    public func forget(_ path: String) {
        cache = cache.filter { !$0.key.hasPrefix(path + "|") }
        dirty = true
    }

    /// SHA-256 of a file, read in 4 MiB chunks.
    public static func hashFile(_ path: String) throws -> String {
        guard let f = FileHandle(forReadingAtPath: path) else { throw NTKError("cannot open", at: path) }
        defer { try? f.close() }
        var sha = SHA256()
        while true {
            let chunk = f.readData(ofLength: 4 << 20)
            if chunk.isEmpty { break }
            sha.update(chunk)
        }
        return sha.finalize()
    }

    /// Writes the stat cache if it changed (atomically; failure to save a cache is not an error).
    public func save() {
        guard dirty, let cachePath else { return }
        let v = JSONValue.object(cache.mapValues { .string($0) })
        try? Files.writeAtomically(cachePath, text: v.pretty)
        dirty = false
    }
}
