// Benchmark inputs: deterministic byte-token sequences, padded to the model's sequence
// bucket. The agent draws them with numpy's default_rng; Swift has no PCG64 of its own,
// so this uses SplitMix64: the same distribution (byte tokens after a bos), not the same
// tokens. Parity uses the artifact's reference inputs, identical on every runner.
import Foundation

public struct SplitMix64 {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<bound (rejection sampling: no modulo bias).
    public mutating func below(_ bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        let limit = UInt64.max - UInt64.max % bound
        while true {
            let x = next()
            if x < limit { return x % bound }
        }
    }
}

public enum Inputs {
    /// One sequence of `length` tokens for a seed: byte tokens, bos first.
    public static func tokens(length: Int, seed: UInt64, vocab: Int, bos: Int?) -> [Int32] {
        var rng = SplitMix64(seed: seed)
        let bound = UInt64(max(1, min(vocab, 256)))
        var ids = (0..<length).map { _ in Int32(rng.below(bound)) }
        if let bos, length > 1 { ids[0] = Int32(bos) }
        return ids
    }

    /// The smallest bucket that holds `tokens` (manifest seq_buckets); nil when none does.
    /// No buckets (a model with a fully flexible length): the length itself.
    public static func bucket(for tokens: Int, buckets: [Int]) -> Int? {
        if buckets.isEmpty { return tokens }
        return buckets.sorted().first { $0 >= tokens }
    }

    /// ids right-padded with padID to `bucket` tokens.
    public static func padded(_ ids: [Int32], to bucket: Int, padID: Int32) -> [Int32] {
        ids + Array(repeating: padID, count: max(0, bucket - ids.count))
    }
}
