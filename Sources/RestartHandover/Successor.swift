import CProcess

#if canImport(Glibc)
import Glibc
#endif

/// The binary systemd starts after a restart: this one, unless a package replaced it. A
/// downgrade replaces it with one that may not read the carrier (0.1.0 closes an fd it does not
/// know, and the sessions in it would hang in the store until a stop), so a replaced binary is
/// asked first: `openclaw-gateway handover-formats` prints the formats it reads.
enum Successor {
    static let question = "handover-formats"
    /// What this binary reads, one per line; `handover-formats` prints it.
    static let formats = [Carrier.format] + StateRecord.formatsRead
    /// What the next binary must read for this one to hand over: the carrier and the state as
    /// this one writes them.
    static let written = [Carrier.format, StateRecord.currentFormat]

    /// nil when the next binary reads the carrier; why not, otherwise. Blocks (a spawn, at most
    /// `timeoutMs`): call it off Swift's thread pool.
    static func refusal(timeoutMs: Int32 = 3000) -> String? {
        guard let path = replacedExecutable() else { return nil }
        var output = [CChar](repeating: 0, count: 512)
        let status = openclaw_run_for_output(path, question, &output, Int32(output.count), timeoutMs)
        let text = String(decoding: output.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if status < 0 { return "cannot ask the new \(path) what it reads: \(String(cString: strerror(-status)))" }
        guard status == 0 else {
            return "the new \(path) does not read \(Carrier.format) (an older version: `\(question)` exited \(status))"
        }
        return refusal(ofReading: text.split(separator: "\n").map(String.init), path: path)
    }

    /// nil when a binary that reads `formats` reads what this one writes; why not, otherwise.
    static func refusal(ofReading formats: [String], path: String) -> String? {
        let missing = written.filter { !formats.contains($0) }
        guard missing.isEmpty else {
            return "the new \(path) does not read \(missing.joined(separator: " or ")) (it reads \(formats.joined(separator: ", ")))"
        }
        return nil
    }

    /// The path of this process's executable when the file there is no longer the one it runs
    /// (the kernel marks it "(deleted)"); nil when it is still the same.
    static func replacedExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let link = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let marker = " (deleted)"
        guard link.hasSuffix(marker) else { return nil }
        return String(link.dropLast(marker.count))
    }
}
