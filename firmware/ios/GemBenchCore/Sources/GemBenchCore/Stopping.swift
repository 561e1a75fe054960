// The timed window, with the agent's stopping rule (firmware/agent/gem_agent.py
// timed_loop without a sequential rule): run until BOTH min_count samples and
// min_duration_s have passed, capped by max_count and max_duration_s. The clock wraps
// the model call alone; every raw sample is kept, in order.
import Foundation

public struct TimedRun {
    public var samplesNs: [UInt64]
    public var durationNs: UInt64
    public var stoppedBy: String
    public var minCountMet: Bool
    public var minDurationMet: Bool

    public var reason: String {
        switch stoppedBy {
        case "max_count": return "reached max_count"
        case "max_duration": return "reached max_duration_s"
        default: return "stopped once min_count and min_duration_s were met"
        }
    }
}

public enum Stopping {
    /// `call(i)` runs inference i (inputs cycle through the pool); `clock` is monotonic ns.
    public static func run(minCount: Int, minDurationS: Double, maxCount: Int, maxDurationS: Double,
                           clock: () -> UInt64, call: (Int) throws -> Void) rethrows -> TimedRun {
        let minNs = UInt64(minDurationS * 1e9)
        let maxNs = UInt64(maxDurationS * 1e9)
        var samples: [UInt64] = []
        samples.reserveCapacity(min(maxCount, 100_000))
        var stoppedBy = "min_reached"
        let start = clock()
        while true {
            let a = clock()
            try call(samples.count)
            let b = clock()
            samples.append(b &- a)
            let n = samples.count
            let elapsed = b &- start
            if n >= minCount && elapsed >= minNs { break }
            if n >= maxCount { stoppedBy = "max_count"; break }
            if elapsed >= maxNs { stoppedBy = "max_duration"; break }
        }
        let duration = clock() &- start
        return TimedRun(samplesNs: samples, durationNs: duration, stoppedBy: stoppedBy,
                        minCountMet: samples.count >= minCount, minDurationMet: duration >= minNs)
    }
}
