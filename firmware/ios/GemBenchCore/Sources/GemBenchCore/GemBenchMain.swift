// One benchmark, start to record: the agent's run_benchmark (firmware/agent/gem_agent.py)
// for Core ML. Whatever happens, one JSON record is written to --record (a result, or an
// error record with the reason), so the harness never guesses from a missing file.
import Foundation

public enum GemBenchMain {
    public static let version = "1.0"

    /// Run with the launch command's arguments; paths are relative to `home` (the app's
    /// data container on iOS). Returns the process exit code (the agent's codes).
    public static func run(arguments: [String], home: URL) async -> Int32 {
        let args: BenchArguments
        do {
            args = try BenchArguments.parse(arguments)
        } catch {
            print("GemBench \(version): usage: GemBench --artifact-dir DIR --record FILE "
                + "[--compute-units all|cpu_and_ne|cpu_and_gpu|cpu_only] [the agent's flags]: \(error)")
            return 2
        }
        let recordURL = home.appendingPathComponent(args.record)
        do {
            let record = try await benchmark(args, home: home)
            try write(record, to: recordURL)
            print("GemBench: record written to \(args.record)")
            return 0
        } catch let failure as BenchFailure {
            print("GemBench: failed (\(failure.kind)): \(failure.message)")
            try? write(errorRecord(failure.kind, failure.message), to: recordURL)
            return failure.exitCode
        } catch {
            print("GemBench: failed (internal): \(error)")
            try? write(errorRecord("internal", "\(error)"), to: recordURL)
            return 5
        }
    }

    static func errorRecord(_ kind: String, _ message: String) -> [String: Any] {
        ["ok": false, "agent_version": 1, "runner": "ios-bench-app",
         "error": ["kind": kind, "message": message, "traceback_tail": ""]]
    }

    static func write(_ record: [String: Any], to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(),
                                                withIntermediateDirectories: true)
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        try data.write(to: url, options: .atomic)
    }

    static func ms(_ ns: UInt64) -> Double { Double(ns) / 1e6 }

    public static func benchmark(_ args: BenchArguments, home: URL) async throws -> [String: Any] {
        let thermal0 = DeviceFacts.thermalState()
        let dir = home.appendingPathComponent(args.artifactDir, isDirectory: true)
        let manifest = try Manifest.load(dir)
        if let maxLen = manifest.maxLenTokens, args.seqLenTokens > maxLen {
            throw BenchFailure(kind: "usage", message: "seq_len_tokens \(args.seqLenTokens) exceeds "
                + "the model's max_len_tokens \(maxLen)", exitCode: 2)
        }
        print("GemBench \(version): artifact \(args.artifactDir), compute units \(args.computeUnits.rawValue)")
        let vocab = manifest.vocabSize ?? 260
        let idsPool = (0..<args.inputPoolSize).map {
            Inputs.tokens(length: args.seqLenTokens, seed: args.seed &+ UInt64($0), vocab: vocab,
                          bos: manifest.bosID)
        }

        let t0 = DeviceFacts.nowNs()
        let runner = try CoreMLRunner(modelURL: dir.appendingPathComponent(args.modelFile),
                                      manifest: manifest, units: args.computeUnits)
        var pool = try idsPool.map { try runner.prepare($0) }  // padding is set-up, not inference
        let t1 = DeviceFacts.nowNs()
        try runner.predict(pool[0])
        let t2 = DeviceFacts.nowNs()
        print(String(format: "GemBench: loaded %@ in %.1f ms (first inference %.1f ms)",
                     args.modelFile, ms(t1 - t0), ms(t2 - t1)))

        let cases = try ReferenceFile.load(dir.appendingPathComponent(manifest.reference.file))
        let parity = try runner.parity(cases, atol: manifest.reference.atol ?? 1e-4)
        print("GemBench: parity \(cases.count) reference(s): passed \(parity["passed"] ?? false)")
        pool = try idsPool.map { try runner.prepare($0) }  // the benchmark's bucket again

        var warm: [UInt64] = []
        for i in 0..<args.warmupCount {
            try autoreleasepool {
                let a = DeviceFacts.nowNs()
                try runner.predict(pool[i % pool.count])
                warm.append(DeviceFacts.nowNs() &- a)
            }
        }
        let before = DeviceFacts.snapshot()
        let w0 = DeviceFacts.nowNs()
        let timed = try Stopping.run(minCount: args.minCount, minDurationS: args.minDurationS,
                                     maxCount: args.maxCount, maxDurationS: args.maxDurationS,
                                     clock: DeviceFacts.nowNs) { i in
            try autoreleasepool { try runner.predict(pool[i % pool.count]) }
        }
        let w1 = DeviceFacts.nowNs()
        let after = DeviceFacts.snapshot()
        print(String(format: "GemBench: %d warmup + %d timed inferences in %.2f s (%@)",
                     warm.count, timed.samplesNs.count, Double(timed.durationNs) / 1e9, timed.stoppedBy))
        let placement = await runner.opPlacement(units: args.computeUnits)

        var runtime: [String: Any] = [
            "name": "coreml", "version": DeviceFacts.osName(),
            "api": "MLModel.prediction(from:)", "compute_units": args.computeUnits.rawValue,
            "model_file": args.modelFile, "seq_buckets": manifest.seqBuckets ?? [],
        ]
        if let bucket = runner.lastBucket, let tokens = runner.lastTokens {
            runtime["bucket"] = ["seq_len_tokens": bucket, "requested_tokens": tokens,
                                 "padded_tokens": bucket - tokens]
        }
        return [
            "ok": true,
            "agent_version": 1,
            "runner": "ios-bench-app",
            "runner_version": version,
            "runtime": runtime,
            "op_placement": placement,
            "latency_samples_ns": timed.samplesNs.map { Int($0) },
            "warmup_samples_ns": warm.map { Int($0) },
            "cold_start": ["session_create_ms": ms(t1 - t0), "first_inference_ms": ms(t2 - t1)],
            "peak_rss_kb": DeviceFacts.peakFootprintKB().map { $0 as Any } ?? NSNull(),
            "peak_rss_source": "task_vm_info ledger_phys_footprint_peak (iOS phys_footprint high-water mark)",
            "parity": parity,
            "run": ["count": timed.samplesNs.count, "duration_s": Double(timed.durationNs) / 1e9,
                    "min_count_met": timed.minCountMet, "min_duration_met": timed.minDurationMet,
                    "stopped_by": timed.stoppedBy, "input_pool_size": pool.count, "gc_disabled": NSNull()],
            "stopping": ["rule": NSNull(), "stopped_by": timed.stoppedBy, "reason": timed.reason,
                         "looks": [Any]()],
            "contention": DeviceFacts.contention(before, after),
            "window_monotonic_ns": [Int(w0), Int(w1)],
            "host": DeviceFacts.host(thermalStart: thermal0),
            "sysfs_samples": [String: Any](),
            "sample_interval_ms": NSNull(),
            "generation": NSNull(),
        ]
    }
}
