#if canImport(Glibc)
import Glibc
#endif

/// The unit systemd runs this process in, from /proc/self/cgroup; only trusted when INVOCATION_ID
/// says a service manager started us.
public enum SystemdUnit {
    /// `openclaw-gateway.socket` for `openclaw-gateway.service` (and `@PORT` instances alike): the
    /// socket unit that activates a service by default has the service's name.
    public static func socketUnit() -> String? {
        guard getenv("INVOCATION_ID") != nil, let service = serviceUnit() else { return nil }
        return String(service.dropLast(".service".count)) + ".socket"
    }

    public static func serviceUnit() -> String? {
        guard let file = fopen("/proc/self/cgroup", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // "0::/system.slice/openclaw-gateway.service" (v2) or "1:name=systemd:/…" (v1)
            if let last = text.split(separator: "/").last, last.hasSuffix(".service") {
                return String(last)
            }
        }
        return nil
    }
}
