// The bench app: started by `xcrun devicectl device process launch --console ... --
// dev.gemhil.GemBench <the agent's flags>`, it runs one benchmark, writes its record
// into its Documents folder (where `devicectl device copy from` collects it), prints a
// few lines on the console and exits. Run by hand (no arguments) it says how it is used.
import GemBenchCore
import SwiftUI
import UIKit

@main
struct GemBenchApp: App {
    @State private var status = "GemBench: starting"

    var body: some Scene {
        WindowGroup {
            Text(status)
                .font(.system(.body, design: .monospaced))
                .padding()
                .task { await runAndExit() }
        }
    }

    @MainActor
    private func runAndExit() async {
        // a locked screen mid-run would suspend the app and end the timed window
        UIApplication.shared.isIdleTimerDisabled = true
        let arguments = Array(CommandLine.arguments.dropFirst())
        let home = URL(fileURLWithPath: NSHomeDirectory(), isDirectory: true)
        status = "GemBench: running"
        let code = await Task.detached(priority: .userInitiated) {
            await GemBenchMain.run(arguments: arguments, home: home)
        }.value
        UIApplication.shared.isIdleTimerDisabled = false
        status = "GemBench: done (exit code \(code))"
        if !arguments.isEmpty {
            exit(code)  // a run ends the process: devicectl --console returns with it
        }
    }
}
