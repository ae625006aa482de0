import Logging
import Synchronization
import Systemd

#if canImport(Glibc)
import Glibc
#endif

/// Log lines on stderr, shaped for where they go: under systemd's journal (JOURNAL_STREAM names
/// our stderr) every line starts with the sd-daemon priority prefix (`<6>`) and carries no
/// timestamp of its own (the journal has one); elsewhere, `TIME LEVEL: message`.
struct GatewayLogHandler: LogHandler {
    enum Format: Sendable {
        case journal
        case terminal
    }

    let format: Format
    /// One level for every logger of the process, so that a reload can change it
    /// (``setLevel(_:)``).
    var logLevel: Logger.Level {
        get { Self.levels[Self.shared.load(ordering: .relaxed)] }
        set { Self.setLevel(newValue) }
    }
    var metadata: Logger.Metadata = [:]

    private static let levels = Logger.Level.allCases
    private static let shared = Atomic<Int>(Logger.Level.allCases.firstIndex(of: .info)!)

    static func setLevel(_ level: Logger.Level) {
        shared.store(levels.firstIndex(of: level)!, ordering: .relaxed)
    }

    /// Main thread only, before any other thread exists (as everything in `prepare`).
    nonisolated(unsafe) private static var bootstrapped = false

    /// Installs the handler; later calls change nothing (the early lock path may have done it).
    static func bootstrap(level: Logger.Level, environment: [String: String]) {
        guard !bootstrapped else { return }
        bootstrapped = true
        let format: Format = isJournal(environment["JOURNAL_STREAM"]) ? .journal : .terminal
        setLevel(level)
        LoggingSystem.bootstrap { _ in GatewayLogHandler(format: format) }
    }

    /// JOURNAL_STREAM is "DEVICE:INODE" of the journal's stream; it counts only when stderr still
    /// is that stream (a child with redirected stderr inherits the variable, not the stream).
    static func isJournal(_ value: String?) -> Bool {
        guard let value else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        // Upper-case metadata keys are journal fields (MESSAGE_ID, REMOTE_ADDR, …): under the
        // journal they go in as fields of a structured entry; on a terminal they are left out (the
        // message carries what a person reads).
        let fields = merged.filter { $0.key.first?.isUppercase == true }
        if format == .journal, !fields.isEmpty {
            let sent = Journal.send(
                message: "\(event.message)".split(separator: "\n", omittingEmptySubsequences: false).joined(separator: " "),
                priority: Self.priority(event.level), fields: fields.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value)") })
            if sent { return }
        }
        var line: String
        switch format {
        case .journal:
            line = "<\(Self.priority(event.level))>"
        case .terminal:
            line = "\(Self.timestamp()) \(event.level): "
        }
        line += "\(event.message)"
        let shown = merged.filter { $0.key.first?.isUppercase != true }
        if !shown.isEmpty {
            line += " " + shown.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        // One line per record: a message with a newline would break the journal's framing.
        line = line.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: " ")
        printError(line)
    }

    /// sd-daemon(3) priorities.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let millis = Int(now.tv_nsec / 1_000_000)
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(ms)Z"
    }
}
