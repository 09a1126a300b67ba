// swift-tools-version:5.9
//
// ntk — wide neural networks, their linearization and neural tangent kernels.
// Data flows one way: the `ntk` CLI → NTKPipeline (files, data sets, artifacts, stages, lock)
// → NTK (maths) → CNTK (C kernels) → OpenBLAS.
import PackageDescription

let package = Package(
    name: "ntk",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ntk", targets: ["ntk"]),
        .library(name: "NTK", targets: ["NTK"]),
        .library(name: "NTKPipeline", targets: ["NTKPipeline"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // MARK: - System libraries (Debian: libopenblas-dev, zlib1g-dev)
        .systemLibrary(
            name: "COpenBLAS", path: "CSources/COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CZlib", path: "CSources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),

        // MARK: - The C core: vector primitives with scalar references and AVX2/FMA twins
        .target(
            name: "CNTK", dependencies: ["COpenBLAS"], path: "CSources/CNTK",
            exclude: ["vec_avx2_body.h", "vec_internal.h", "layers_body.h", "winograd_body.h"],
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [
                .linkedLibrary("m"), .linkedLibrary("pthread"),
                // glibc's vector math (AVX2 erf/tanh/exp/log1p for the smooth activations)
                .linkedLibrary("mvec", .when(platforms: [.linux])),
            ]),

        // MARK: - Swift libraries
        .target(name: "NTK", dependencies: ["CNTK", "COpenBLAS"], path: "Sources/NTK"),
        .target(
            name: "NTKPipeline",
            dependencies: ["NTK", "CNTK", "CZlib", .product(name: "Yams", package: "Yams")],
            path: "Sources/NTKPipeline"),

        // MARK: - The command-line tool
        .executableTarget(
            name: "ntk",
            dependencies: [
                "NTK", "NTKPipeline", "COpenBLAS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/ntk"),

        // MARK: - Tests
        .testTarget(name: "CNTKTests", dependencies: ["CNTK"], path: "Tests/CNTKTests"),
        .testTarget(name: "NTKTests", dependencies: ["NTK", "NTKPipeline"], path: "Tests/NTKTests"),
        .testTarget(
            name: "NTKPipelineTests", dependencies: ["NTKPipeline", "NTK", "CZlib", "ntk"],
            path: "Tests/NTKPipelineTests"),
    ]
)
