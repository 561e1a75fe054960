// `swift test` on a Mac (the logic that needs no model; nothing here was run: no Swift
// toolchain exists where this was written, see ../../README.md).
import XCTest
@testable import GemBenchCore

final class GemBenchCoreTests: XCTestCase {
    func testTheAgentsFlagsParse() throws {
        let a = try BenchArguments.parse([
            "--artifact-dir", "Documents/gem-hil/abc", "--seq-len-tokens", "128", "--threads", "1",
            "--warmup-count", "10", "--min-count", "100", "--min-duration-s", "1.0",
            "--max-count", "2000", "--max-duration-s", "120.0", "--input-pool-size", "8",
            "--compute-units", "cpu_and_ne", "--record", "Documents/gem-hil/records/t.json",
            "--model-file", "model.mlmodelc",
        ])
        XCTAssertEqual(a.computeUnits, .cpuAndNE)
        XCTAssertEqual(a.minCount, 100)
        XCTAssertEqual(a.maxDurationS, 120.0)
        XCTAssertEqual(a.record, "Documents/gem-hil/records/t.json")
    }

    func testBadFlagsAreUsageErrors() {
        XCTAssertThrowsError(try BenchArguments.parse(["--artifact-dir", "x", "--record", "r",
                                                       "--compute-units", "ane"]))
        XCTAssertThrowsError(try BenchArguments.parse(["--record", "r"]))
        XCTAssertThrowsError(try BenchArguments.parse(["--artifact-dir", "x", "--record", "r",
                                                       "--min-count", "10", "--max-count", "5"]))
    }

    func testStopsWhenBothMinimumsAreMet() {
        var t: UInt64 = 0
        let run = Stopping.run(minCount: 5, minDurationS: 1.0, maxCount: 1000, maxDurationS: 10,
                               clock: { t }, call: { _ in t += 100_000_000 })  // 0.1 s each
        XCTAssertEqual(run.samplesNs.count, 10)  // 5 samples reach the count, 10 the duration
        XCTAssertEqual(run.stoppedBy, "min_reached")
        XCTAssertTrue(run.minCountMet && run.minDurationMet)
        XCTAssertEqual(Set(run.samplesNs), [100_000_000])
    }

    func testCapsStopTheRun() {
        var t: UInt64 = 0
        let byCount = Stopping.run(minCount: 5, minDurationS: 100, maxCount: 7, maxDurationS: 1000,
                                   clock: { t }, call: { _ in t += 1_000_000 })
        XCTAssertEqual(byCount.stoppedBy, "max_count")
        XCTAssertEqual(byCount.samplesNs.count, 7)
        XCTAssertFalse(byCount.minDurationMet)
        t = 0
        let byTime = Stopping.run(minCount: 1000, minDurationS: 0, maxCount: 10_000, maxDurationS: 0.5,
                                  clock: { t }, call: { _ in t += 100_000_000 })
        XCTAssertEqual(byTime.stoppedBy, "max_duration")
        XCTAssertEqual(byTime.samplesNs.count, 5)
    }

    func testInputsAreDeterministicBytesAfterBos() {
        let a = Inputs.tokens(length: 64, seed: 3, vocab: 260, bos: 1)
        XCTAssertEqual(a, Inputs.tokens(length: 64, seed: 3, vocab: 260, bos: 1))
        XCTAssertNotEqual(a, Inputs.tokens(length: 64, seed: 4, vocab: 260, bos: 1))
        XCTAssertEqual(a[0], 1)
        XCTAssertTrue(a.dropFirst().allSatisfy { (0..<256).contains(Int($0)) })
        XCTAssertEqual(Inputs.bucket(for: 100, buckets: [16, 32, 64, 128, 256]), 128)
        XCTAssertNil(Inputs.bucket(for: 300, buckets: [16, 128]))
        XCTAssertEqual(Inputs.padded([5, 6], to: 4, padID: 0), [5, 6, 0, 0])
    }
}
