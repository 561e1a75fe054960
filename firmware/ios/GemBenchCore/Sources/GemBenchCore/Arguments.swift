// The app's arguments: the on-device agent's flags (firmware/agent/gem_agent.py,
// harness/bench.py agent_args), same names and meaning, plus where the record goes,
// the compiled model's name and the Core ML compute units.
import Foundation

public enum ComputeUnitsChoice: String, CaseIterable {
    case all
    case cpuAndNE = "cpu_and_ne"
    case cpuAndGPU = "cpu_and_gpu"
    case cpuOnly = "cpu_only"

    /// What MLComputePlan calls the accelerator these units allow (nil: CPU only).
    public var accelerator: String? {
        switch self {
        case .all: return "neural_engine+gpu"
        case .cpuAndNE: return "neural_engine"
        case .cpuAndGPU: return "gpu"
        case .cpuOnly: return nil
        }
    }
}

public struct UsageError: Error, CustomStringConvertible {
    public let description: String
}

public struct BenchArguments: Equatable {
    public var artifactDir = ""
    public var record = ""
    public var modelFile = "model.mlmodelc"
    public var computeUnits = ComputeUnitsChoice.all
    public var seqLenTokens = 64
    public var threads = 1  // recorded only: Core ML schedules its own threads
    public var warmupCount = 5
    public var minCount = 50
    public var minDurationS = 1.0
    public var maxCount = 2000
    public var maxDurationS = 30.0
    public var inputPoolSize = 8
    public var seed: UInt64 = 0

    public init() {}

    /// Parse `--flag value` pairs; every flag takes a value, unknown flags are errors.
    public static func parse(_ argv: [String]) throws -> BenchArguments {
        var a = BenchArguments()
        var i = 0
        func value(_ flag: String) throws -> String {
            guard i + 1 < argv.count else { throw UsageError(description: "\(flag) needs a value") }
            i += 1
            return argv[i]
        }
        func int(_ flag: String) throws -> Int {
            let text = try value(flag)
            guard let n = Int(text) else { throw UsageError(description: "\(flag): \(text) is not an integer") }
            return n
        }
        func double(_ flag: String) throws -> Double {
            let text = try value(flag)
            guard let x = Double(text), x.isFinite else {
                throw UsageError(description: "\(flag): \(text) is not a number")
            }
            return x
        }
        while i < argv.count {
            let flag = argv[i]
            switch flag {
            case "--artifact-dir": a.artifactDir = try value(flag)
            case "--record": a.record = try value(flag)
            case "--model-file": a.modelFile = try value(flag)
            case "--compute-units":
                let text = try value(flag)
                guard let cu = ComputeUnitsChoice(rawValue: text) else {
                    let known = ComputeUnitsChoice.allCases.map(\.rawValue).joined(separator: ", ")
                    throw UsageError(description: "--compute-units \(text): expected one of \(known)")
                }
                a.computeUnits = cu
            case "--seq-len-tokens": a.seqLenTokens = try int(flag)
            case "--threads": a.threads = try int(flag)
            case "--warmup-count": a.warmupCount = try int(flag)
            case "--min-count": a.minCount = try int(flag)
            case "--min-duration-s": a.minDurationS = try double(flag)
            case "--max-count": a.maxCount = try int(flag)
            case "--max-duration-s": a.maxDurationS = try double(flag)
            case "--input-pool-size": a.inputPoolSize = try int(flag)
            case "--seed":
                let n = try int(flag)
                a.seed = UInt64(bitPattern: Int64(n))
            default:
                throw UsageError(description: "unknown argument \(flag)")
            }
            i += 1
        }
        guard !a.artifactDir.isEmpty else { throw UsageError(description: "--artifact-dir is required") }
        guard !a.record.isEmpty else { throw UsageError(description: "--record is required") }
        guard a.seqLenTokens >= 1, a.minCount >= 1, a.maxCount >= a.minCount, a.warmupCount >= 0,
              a.inputPoolSize >= 1, a.minDurationS >= 0, a.maxDurationS >= a.minDurationS
        else {
            throw UsageError(description: "need seq_len >= 1, 1 <= min_count <= max_count, "
                + "warmup >= 0, pool >= 1, 0 <= min_duration_s <= max_duration_s")
        }
        return a
    }
}
