// Core ML: load the compiled model with the requested compute units, build inputs,
// predict, compare with the reference, and ask MLComputePlan where each op runs.
import CoreML
import Foundation

public final class CoreMLRunner {
    public let model: MLModel
    public let configuration: MLModelConfiguration
    public let modelURL: URL
    public let manifest: Manifest
    let inputName: String
    let outputNames: [String]
    public private(set) var lastBucket: Int?
    public private(set) var lastTokens: Int?

    public static func computeUnits(_ choice: ComputeUnitsChoice) -> MLComputeUnits {
        switch choice {
        case .all: return .all
        case .cpuAndNE: return .cpuAndNeuralEngine
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuOnly: return .cpuOnly
        }
    }

    public init(modelURL: URL, manifest: Manifest, units: ComputeUnitsChoice) throws {
        let config = MLModelConfiguration()
        config.computeUnits = Self.computeUnits(units)
        do {
            model = try MLModel(contentsOf: modelURL, configuration: config)
        } catch {
            throw BenchFailure(kind: "model_load", message: "Core ML could not load "
                + "\(modelURL.lastPathComponent) with compute units \(units.rawValue): "
                + "\(error.localizedDescription)", exitCode: 4)
        }
        configuration = config
        self.modelURL = modelURL
        self.manifest = manifest
        inputName = manifest.inputs[0].name
        outputNames = manifest.outputs.map(\.name)
    }

    /// A feature provider for ids, padded to the smallest bucket that holds them.
    public func prepare(_ ids: [Int32]) throws -> MLFeatureProvider {
        guard let bucket = Inputs.bucket(for: ids.count, buckets: manifest.seqBuckets ?? []) else {
            throw BenchFailure(kind: "usage", message: "\(ids.count) tokens exceed the largest "
                + "sequence bucket \(manifest.seqBuckets?.max() ?? 0) of this artifact", exitCode: 2)
        }
        let padded = Inputs.padded(ids, to: bucket, padID: Int32(manifest.padID ?? 0))
        let array = try MLMultiArray(shape: [1, NSNumber(value: bucket)], dataType: .int32)
        let ptr = array.dataPointer.bindMemory(to: Int32.self, capacity: bucket)
        for (i, v) in padded.enumerated() { ptr[i] = v }
        lastBucket = bucket
        lastTokens = ids.count
        return try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: array)])
    }

    @discardableResult
    public func predict(_ input: MLFeatureProvider) throws -> MLFeatureProvider {
        try model.prediction(from: input)
    }

    static func floats(_ array: MLMultiArray) -> [Float] {
        (0..<array.count).map { array[$0].floatValue }
    }

    /// Every reference case through the model, compared with the host's outputs: the
    /// agent's check_parity (fails closed on a missing output, a shape or a NaN).
    public func parity(_ cases: [ReferenceCase], atol: Double) throws -> [String: Any] {
        var maxDiff: Float = 0
        var agree = 0
        var total = 0
        for (i, c) in cases.enumerated() {
            guard let ids = c.inputs[inputName] else {
                throw BenchFailure(kind: "parity", message: "reference \(i) has no input \(inputName)", exitCode: 4)
            }
            let out = try predict(try prepare(ids))
            guard Set(c.outputs.keys) == Set(outputNames) else {
                throw BenchFailure(kind: "parity", message: "reference \(i): outputs "
                    + "\(c.outputs.keys.sorted()) != the model's \(outputNames.sorted())", exitCode: 4)
            }
            for name in outputNames {
                guard let got = out.featureValue(for: name)?.multiArrayValue, let want = c.outputs[name] else {
                    throw BenchFailure(kind: "parity", message: "the model gave no output \(name)", exitCode: 4)
                }
                let shape = got.shape.map(\.intValue)
                guard shape == want.shape else {
                    throw BenchFailure(kind: "parity", message: "output \(name) shape \(shape) != "
                        + "reference \(want.shape)", exitCode: 4)
                }
                let values = Self.floats(got)
                if values.contains(where: { !$0.isFinite }) || want.values.contains(where: { !$0.isFinite }) {
                    throw BenchFailure(kind: "parity", message: "reference \(i): output \(name) "
                        + "has NaN/inf values", exitCode: 4)
                }
                for (g, w) in zip(values, want.values) { maxDiff = max(maxDiff, abs(g - w)) }
                let width = shape.last ?? 1
                for row in 0..<(values.count / max(1, width)) {
                    let r = row * width..<(row + 1) * width
                    let gArg = values[r].indices.max { values[$0] < values[$1] }
                    let wArg = want.values[r].indices.max { want.values[$0] < want.values[$1] }
                    agree += gArg == wArg ? 1 : 0
                    total += 1
                }
            }
        }
        let top1 = total > 0 ? Double(agree) / Double(total) : 0
        return ["max_abs_diff": Double(maxDiff), "top1_agreement": top1, "atol": atol,
                "n_reference": cases.count,
                "passed": total > 0 && Double(maxDiff) <= atol && top1 == 1.0]
    }

    /// Where the work runs: MLComputePlan's preferred device per MIL operation (iOS 17.4+).
    /// An op preferred on the CPU while an accelerator was allowed is a fallback.
    public func opPlacement(units: ComputeUnitsChoice) async -> [String: Any] {
        let accelerator: Any = units.accelerator.map { $0 as Any } ?? NSNull()
        func record(_ total: Any, _ onAccel: Any, _ cpu: Any, _ fallback: [String]?, _ note: String) -> [String: Any] {
            ["accelerator": accelerator, "delegate": "Core ML (MLComputePlan)",
             "delegated_partitions": NSNull(), "ops_total": total, "ops_accelerator": onAccel,
             "ops_cpu": cpu, "cpu_fallback_ops": fallback.map { $0.count as Any } ?? NSNull(),
             "fallback_op_names": fallback.map { Array(Set($0)).sorted() as Any } ?? NSNull(),
             "note": note]
        }
        guard #available(iOS 17.4, macOS 14.4, *) else {
            return record(NSNull(), NSNull(), NSNull(), nil, "MLComputePlan needs iOS 17.4: "
                + "where the ops ran is not known on this OS")
        }
        do {
            let plan = try await MLComputePlan.load(contentsOf: modelURL, configuration: configuration)
            guard case let .program(program) = plan.modelStructure,
                  let main = program.functions["main"]
            else {
                return record(NSNull(), NSNull(), NSNull(), nil, "not an ML program: no per-op plan")
            }
            var total = 0
            var onAccel = 0
            var fallback: [String] = []
            func walk(_ block: MLModelStructure.Program.Block) {
                for op in block.operations {
                    for inner in op.blocks { walk(inner) }
                    guard op.operatorName != "const", let usage = plan.deviceUsage(for: op) else { continue }
                    total += 1
                    switch usage.preferred {
                    case .cpu:
                        if units != .cpuOnly { fallback.append(op.operatorName) }
                    case .gpu, .neuralEngine:
                        onAccel += 1
                    @unknown default:
                        break
                    }
                }
            }
            walk(main.block)
            return record(total, onAccel, total - onAccel, fallback,
                          "preferred compute device per MIL operation from MLComputePlan (const ops "
                          + "not counted); an op preferred on the CPU while the Neural Engine or GPU "
                          + "was allowed is a fallback")
        } catch {
            return record(NSNull(), NSNull(), NSNull(), nil, "MLComputePlan failed: \(error.localizedDescription)")
        }
    }
}
