import Foundation
import NTK

/// The IDX format of MNIST, Fashion-MNIST and KMNIST (gzipped or not):
/// a big-endian header `00 00 <type> <ndim>`, then ndim big-endian u32 sizes, then the data.
/// Images are type 0x08 (unsigned byte) with 3 dims [N, rows, cols]; labels type 0x08 with 1 dim [N].
///
/// A directory is searched for the standard file names, with or without `.gz` (`train-images-idx3-ubyte.gz`,
/// `t10k-labels-idx1-ubyte`); without them, for the one file with a prefix (`kmnist-train-images-idx3-ubyte.gz`).
/// More than one candidate is an error that lists them (a `backup-train-labels…` beside the real file is not used).
public enum IDXReader {
    public static let roles = [
        ("train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ]

    public static func read(directory dir: String, numClasses: Int, progress: Compression.Progress? = nil) throws -> RawDataset {
        guard Files.isDirectory(dir) else {
            throw NTKError(Files.exists(dir) ? "expected a directory holding IDX files" : "data directory does not exist", at: dir)
        }
        let files = try Files.listFiles(under: dir)
        // the standard name (with or without .gz); else the one name with a prefix (kmnist-…); never a guess
        func find(_ stem: String) throws -> String {
            let names = files.map { ($0, ($0 as NSString).lastPathComponent) }   // (relative path, file name)
            let exact = names.filter { $0.1 == stem || $0.1 == stem + ".gz" }.map(\.0)
            let prefixed = names.filter { $0.1.hasSuffix("-" + stem) || $0.1.hasSuffix("-" + stem + ".gz") }.map(\.0)
            let hits = exact.isEmpty ? prefixed : exact
            guard hits.count == 1 else {
                throw NTKError(hits.isEmpty ? "no file named \(stem)[.gz] (found: \(files.isEmpty ? "nothing" : files.joined(separator: ", ")))"
                                            : "\(hits.count) files could be the \(stem) file (\(hits.joined(separator: ", "))); refusing to guess",
                               at: dir, hint: hits.isEmpty ? nil : "keep one of them in the directory (or move the others away)")
            }
            return dir + "/" + hits[0]
        }
        var splits: [RawSplit] = []
        var sources: [String] = []
        for (_, imagesStem, labelsStem) in roles {
            let imagesPath = try find(imagesStem), labelsPath = try find(labelsStem)
            let split = try readPair(images: imagesPath, labels: labelsPath, numClasses: numClasses, progress: progress)
            splits.append(split)
            sources += [imagesPath, labelsPath]
        }
        return RawDataset(train: splits[0], test: splits[1], sources: sources)
    }

    /// One split from an images file and a labels file.
    public static func readPair(images: String, labels: String, numClasses: Int, progress: Compression.Progress? = nil) throws -> RawSplit {
        let img = try Compression.readMaybeGzip(images, progress: progress)
        let (imgDims, imgStart) = try header(img, path: images, magic: 0x0000_0803, what: "image")
        let lab = try Compression.readMaybeGzip(labels)
        let (labDims, labStart) = try header(lab, path: labels, magic: 0x0000_0801, what: "label")
        guard imgDims[0] == labDims[0] else {
            throw NTKError("\(labDims[0]) labels, but \(images) has \(imgDims[0]) images: the counts must match", at: labels)
        }
        let labelsArr = lab[labStart...].map { Int32($0) }
        if let bad = labelsArr.firstIndex(where: { $0 >= numClasses }) {
            throw NTKError("label \(labelsArr[bad]) at index \(bad) is out of range 0…\(numClasses - 1)", at: labels,
                           hint: "set data.num_classes if this data set has more classes")
        }
        return RawSplit(features: .bytes(Array(img[imgStart...])), sampleShape: imageShape(Array(imgDims.dropFirst())), labels: labelsArr)
    }

    /// A sample of [H, W] pixels is an image with one channel, [H, W, 1] (NHWC); other ranks stay as given.
    static func imageShape(_ dims: [Int]) -> [Int] { dims.count == 2 ? dims + [1] : dims }

    /// Validates the IDX header and the data length; returns the dims and where the data starts.
    static func header(_ b: [UInt8], path: String, magic: UInt32, what: String) throws -> ([Int], Int) {
        func be32(_ i: Int) -> UInt32 { UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3]) }
        guard b.count >= 4 else { throw NTKError("file too short for an IDX header (\(b.count) bytes)", at: path) }
        let found = be32(0)
        guard found == magic else {
            throw NTKError(String(format: "wrong IDX magic 0x%08x for an %@ file (expected 0x%08x)", found, what, magic), at: path,
                           hint: "is this the right file? images are *-images-idx3-ubyte, labels *-labels-idx1-ubyte")
        }
        let ndim = Int(magic & 0xff)
        guard b.count >= 4 + 4 * ndim else { throw NTKError("IDX header truncated", at: path) }
        let dims = (0..<ndim).map { Int(be32(4 + 4 * $0)) }
        let start = 4 + 4 * ndim
        // checked: a header's dims come from the file and their product may not fit in an Int
        guard let expected = MemoryBudget.product(dims) else {
            throw NTKError("IDX header dims \(dims) are too large (their product overflows)", at: path)
        }
        guard b.count - start == expected else {
            throw NTKError("IDX data is \(b.count - start) bytes but the header \(dims) needs \(expected)", at: path)
        }
        return (dims, start)
    }
}
