// What the harness copies into Documents/gem-hil/<sha16>/ (harness/platforms/ios.py):
// model.mlmodelc (compiled on the Mac), manifest.json and the reference file.
import Foundation

public struct BenchFailure: Error, CustomStringConvertible {
    public let kind: String  // the agent's error kinds: usage, artifact, model_load, parity, internal
    public let message: String
    public let exitCode: Int32
    public var description: String { "\(kind): \(message)" }

    public static func artifact(_ message: String) -> BenchFailure {
        BenchFailure(kind: "artifact", message: message, exitCode: 4)
    }
}

public struct Manifest: Decodable {
    public struct Tensor: Decodable {
        public let name: String
        public let dtype: String
    }

    public struct Reference: Decodable {
        public let file: String
        public let atol: Double?
    }

    public let format: String
    public let model: String?
    public let variant: String?
    public let inputs: [Tensor]
    public let outputs: [Tensor]
    public let reference: Reference
    public let seqBuckets: [Int]?
    public let padID: Int?
    public let bosID: Int?
    public let vocabSize: Int?
    public let maxLenTokens: Int?

    enum CodingKeys: String, CodingKey {
        case format, model, variant, inputs, outputs, reference
        case seqBuckets = "seq_buckets", padID = "pad_id", bosID = "bos_id"
        case vocabSize = "vocab_size", maxLenTokens = "max_len_tokens"
    }

    public static func load(_ dir: URL) throws -> Manifest {
        let url = dir.appendingPathComponent("manifest.json")
        guard let data = try? Data(contentsOf: url) else {
            throw BenchFailure.artifact("no manifest at \(url.path)")
        }
        let m: Manifest
        do {
            m = try JSONDecoder().decode(Manifest.self, from: data)
        } catch {
            throw BenchFailure.artifact("\(url.path) is not a manifest: \(error)")
        }
        guard m.format == "coreml" else {
            throw BenchFailure.artifact("\(url.path): format \(m.format), the bench app runs coreml")
        }
        guard m.inputs.first?.dtype == "int32" else {
            throw BenchFailure.artifact("the model's first input must be int32 token ids "
                + "(Core ML has no int64 inputs); got \(m.inputs.first?.dtype ?? "none")")
        }
        return m
    }
}

/// One reference case: input token ids by input name, expected outputs (flattened, with shape).
public struct ReferenceCase {
    public let inputs: [String: [Int32]]
    public let outputs: [String: (shape: [Int], values: [Float])]
}

public enum ReferenceFile {
    /// {"inputs": [{name: [[ids]]}, ...], "outputs": [{name: nested floats}, ...]}, equal length.
    public static func load(_ url: URL) throws -> [ReferenceCase] {
        guard let data = try? Data(contentsOf: url),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let ins = obj["inputs"] as? [[String: Any]], let outs = obj["outputs"] as? [[String: Any]],
              ins.count == outs.count
        else {
            throw BenchFailure.artifact("reference file \(url.lastPathComponent): expected "
                + "{\"inputs\": [...], \"outputs\": [...]} of equal length")
        }
        return try zip(ins, outs).map { inp, out in
            var ids: [String: [Int32]] = [:]
            for (name, value) in inp {
                let (_, flat) = try flatten(value)
                ids[name] = flat.map { Int32($0) }
            }
            var outputs: [String: (shape: [Int], values: [Float])] = [:]
            for (name, value) in out {
                let (shape, flat) = try flatten(value)
                outputs[name] = (shape, flat.map { Float($0) })
            }
            return ReferenceCase(inputs: ids, outputs: outputs)
        }
    }

    /// A nested JSON array as (shape, row-major values).
    static func flatten(_ value: Any) throws -> ([Int], [Double]) {
        if let n = value as? NSNumber { return ([], [n.doubleValue]) }
        guard let list = value as? [Any] else { throw BenchFailure.artifact("reference: not a number array") }
        var shape: [Int]? = nil
        var flat: [Double] = []
        for item in list {
            let (s, v) = try flatten(item)
            if let shape, shape != s { throw BenchFailure.artifact("reference: ragged array") }
            shape = s
            flat += v
        }
        return ([list.count] + (shape ?? []), flat)
    }
}
