// swift-tools-version:5.9
// GemBenchCore: the benchmark itself (arguments, inputs, stopping rule, parity, op
// placement, memory, the record), shared by the iOS app (../GemBench.swiftpm) and a
// macOS command-line twin (`swift run gembench ...` on the Mac, same flags).
import PackageDescription

let package = Package(
    name: "GemBenchCore",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [
        .library(name: "GemBenchCore", targets: ["GemBenchCore"]),
        .executable(name: "gembench", targets: ["gembench"]),
    ],
    targets: [
        .target(name: "GemBenchCore"),
        .executableTarget(name: "gembench", dependencies: ["GemBenchCore"]),
        .testTarget(name: "GemBenchCoreTests", dependencies: ["GemBenchCore"]),
    ]
)
