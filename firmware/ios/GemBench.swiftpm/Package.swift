// swift-tools-version:5.9
// The iOS app: an app package (Xcode and Swift Playgrounds open it; xcodebuild builds
// it: see ../README.md). All the work is in ../GemBenchCore.
import AppleProductTypes
import PackageDescription

let package = Package(
    name: "GemBench",
    platforms: [.iOS("17.0")],
    products: [
        .iOSApplication(
            name: "GemBench",
            targets: ["GemBenchApp"],
            bundleIdentifier: "dev.gemhil.GemBench",
            teamIdentifier: "",  // your team: Xcode > Signing & Capabilities, or DEVELOPMENT_TEAM=
            displayVersion: "1.0",
            bundleVersion: "1",
            appIcon: .placeholder(icon: .bolt),
            accentColor: .presetColor(.orange),
            supportedDeviceFamilies: [.phone],
            supportedInterfaceOrientations: [.portrait],
            appCategory: .developerTools
        ),
    ],
    dependencies: [
        .package(path: "../GemBenchCore"),
    ],
    targets: [
        .executableTarget(
            name: "GemBenchApp",
            dependencies: [.product(name: "GemBenchCore", package: "GemBenchCore")],
            path: "Sources"
        ),
    ]
)
