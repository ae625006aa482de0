import CSystemdLoader

#if canImport(Glibc)
import Glibc
#endif

/// Structured entries in systemd's journal (sd_journal_sendv(3)): a message with fields an admin
/// can match on (`journalctl MESSAGE_ID=…`, fail2ban's journal backend), where a line on stderr
/// would carry only text.
public enum Journal {
    /// Sends one entry; false when libsystemd cannot be loaded or the journal refuses it (the
    /// caller then writes the line to stderr instead). Field names are upper case, values one line.
    public static func send(message: String, priority: Int, fields: [(String, String)]) -> Bool {
        var all = ["MESSAGE=\(message)", "PRIORITY=\(priority)", "SYSLOG_IDENTIFIER=openclaw-gateway"]
        for (name, value) in fields.prefix(28) where Self.isFieldName(name) {
            all.append("\(name)=\(value.filter { $0 != "\n" })")
        }
        let strings = all.compactMap { strdup($0) }
        defer { strings.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = strings.map { UnsafePointer($0) }
        return pointers.withUnsafeBufferPointer { buffer in
            openclaw_sd_journal_send_fields(buffer.baseAddress, Int32(buffer.count)) >= 0
        }
    }

    /// journald's rule for a field name: upper case letters, digits and underscores, not starting
    /// with an underscore or a digit.
    static func isFieldName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first != "_", !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}
