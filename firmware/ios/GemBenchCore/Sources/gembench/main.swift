// The macOS twin of the iOS app: the same benchmark on the Mac itself, with the same
// flags, paths relative to the current folder (for parity on macOS, and for trying a
// compiled model before it goes to the phone).
import Foundation
import GemBenchCore

let home = URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
let semaphore = DispatchSemaphore(value: 0)
var code: Int32 = 0
Task {
    code = await GemBenchMain.run(arguments: Array(CommandLine.arguments.dropFirst()), home: home)
    semaphore.signal()
}
semaphore.wait()
exit(code)
