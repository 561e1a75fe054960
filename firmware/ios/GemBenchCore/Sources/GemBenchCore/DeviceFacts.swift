// What the app reads of the phone itself, for the record's host facts, memory and
// contention fields (the agent reads /proc on Linux; these are the Darwin equivalents).
import Foundation
#if canImport(UIKit)
import UIKit
#endif

public enum DeviceFacts {
    /// Monotonic nanoseconds (does not advance while the device sleeps; the app keeps it awake).
    public static func nowNs() -> UInt64 { clock_gettime_nsec_np(CLOCK_UPTIME_RAW) }

    static func utsField<T>(_ value: inout T) -> String {
        withUnsafePointer(to: &value) {
            $0.withMemoryRebound(to: CChar.self, capacity: MemoryLayout<T>.size) { String(cString: $0) }
        }
    }

    static func sysctlString(_ name: String) -> String? {
        var size = 0
        guard sysctlbyname(name, nil, &size, nil, 0) == 0, size > 0 else { return nil }
        var buf = [CChar](repeating: 0, count: size)
        guard sysctlbyname(name, &buf, &size, nil, 0) == 0 else { return nil }
        return String(cString: buf)
    }

    static func thermalState() -> String {
        switch ProcessInfo.processInfo.thermalState {
        case .nominal: return "nominal"
        case .fair: return "fair"
        case .serious: return "serious"
        case .critical: return "critical"
        @unknown default: return "unknown"
        }
    }

    public static func osName() -> String {
        let v = ProcessInfo.processInfo.operatingSystemVersion
        let patch = v.patchVersion > 0 ? ".\(v.patchVersion)" : ""
        #if os(iOS)
        return "iOS \(v.majorVersion).\(v.minorVersion)\(patch)"
        #else
        return "macOS \(v.majorVersion).\(v.minorVersion)\(patch)"
        #endif
    }

    /// The record's "host": os, kernel, machine (iPhone14,5), cpu_count, boot id, thermal state.
    public static func host(thermalStart: String) -> [String: Any] {
        var u = utsname()
        uname(&u)
        let machine = sysctlString("hw.machine") ?? utsField(&u.machine)
        var lowPower: Any = NSNull()
        #if os(iOS)
        lowPower = ProcessInfo.processInfo.isLowPowerModeEnabled
        #endif
        return [
            "os": osName(),
            "kernel": "\(utsField(&u.sysname)) \(utsField(&u.release))",
            "machine": machine,
            "cpu_model": NSNull(),  // Apple publishes no CPU name to apps; [hardware] soc has it
            "cpu_count": ProcessInfo.processInfo.activeProcessorCount,
            "python": NSNull(),
            "boot_id": sysctlString("kern.bootsessionuuid").map { $0 as Any } ?? NSNull(),
            "thermal_state_start": thermalStart,
            "thermal_state_end": thermalState(),
            "low_power_mode": lowPower,
            "physical_memory_mb": Int(ProcessInfo.processInfo.physicalMemory / (1 << 20)),
        ]
    }

    /// The process's phys_footprint high-water mark in kB (what iOS's memory limit counts).
    public static func peakFootprintKB() -> Int? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        guard kr == KERN_SUCCESS else { return nil }
        let peak = info.ledger_phys_footprint_peak > 0 ? UInt64(info.ledger_phys_footprint_peak)
            : info.phys_footprint
        return Int(peak / 1024)
    }

    /// (busy, total) CPU ticks of all cores, from host_processor_info.
    static func cpuTicks() -> (UInt64, UInt64)? {
        var cpus: natural_t = 0
        var info: processor_info_array_t?
        var count: mach_msg_type_number_t = 0
        guard host_processor_info(mach_host_self(), PROCESSOR_CPU_LOAD_INFO, &cpus, &info, &count)
            == KERN_SUCCESS, let info
        else { return nil }
        defer {
            vm_deallocate(mach_task_self_, vm_address_t(bitPattern: info),
                          vm_size_t(Int(count) * MemoryLayout<integer_t>.stride))
        }
        var busy: UInt64 = 0
        var total: UInt64 = 0
        for cpu in 0..<Int(cpus) {
            let base = cpu * Int(CPU_STATE_MAX)
            let user = UInt64(UInt32(bitPattern: info[base + Int(CPU_STATE_USER)]))
            let system = UInt64(UInt32(bitPattern: info[base + Int(CPU_STATE_SYSTEM)]))
            let nice = UInt64(UInt32(bitPattern: info[base + Int(CPU_STATE_NICE)]))
            let idle = UInt64(UInt32(bitPattern: info[base + Int(CPU_STATE_IDLE)]))
            busy += user + system + nice
            total += user + system + nice + idle
        }
        return (busy, total)
    }

    public struct Snapshot {
        let tNs: UInt64
        let ticks: (UInt64, UInt64)?
        let ownS: Double
        let nivcsw: Int
    }

    public static func snapshot() -> Snapshot {
        var ru = rusage()
        getrusage(RUSAGE_SELF, &ru)
        let own = Double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
            + Double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6
        return Snapshot(tNs: nowNs(), ticks: cpuTicks(), ownS: own, nivcsw: Int(ru.ru_nivcsw))
    }

    /// The agent's "contention": other processes' CPU time during the window, in cores.
    public static func contention(_ a: Snapshot, _ b: Snapshot) -> [String: Any] {
        let window = Double(b.tNs &- a.tNs) / 1e9
        var background: Any = NSNull()
        if let t0 = a.ticks, let t1 = b.ticks, t1.1 > t0.1, window > 0 {
            let ncpu = Double(ProcessInfo.processInfo.activeProcessorCount)
            let busyCores = Double(t1.0 - t0.0) / Double(t1.1 - t0.1) * ncpu
            let ownCores = (b.ownS - a.ownS) / window
            background = max(0.0, busyCores - ownCores)
        }
        return ["background_cpu_cores": background,
                "involuntary_context_switches": b.nivcsw - a.nivcsw, "window_s": window]
    }
}
