import CSystemdLoader
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Tells the service manager how the gateway is doing (sd_notify(3)): READY=1 with a STATUS once
/// every listener serves, STOPPING=1 when shutdown begins, WATCHDOG=1 while it lives.
///
/// Without NOTIFY_SOCKET every call is a no-op; an unreachable socket is ignored (logged at debug),
/// never a crash or a delay.
public struct SystemdNotifier: Sendable {
    let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    public func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    public func stopping(status: String) { send("STOPPING=1\nSTATUS=\(status)") }
    /// A reload begins: RELOADING=1 with the CLOCK_MONOTONIC time (MONOTONIC_USEC=, which systemd
    /// 253 and later require to match a reload to its start; 252 ignores it). READY=1 ends it.
    public func reloading(status: String) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let usec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        send("RELOADING=1\nMONOTONIC_USEC=\(usec)\nSTATUS=\(status)")
    }

    /// Sends one sd_notify message (sd_notifyf is variadic and cannot be called from Swift, so the
    /// text is built here).
    public func send(_ message: String) {
        let rc = openclaw_sd_notify(0, message)
        if rc < 0 {
            logger.debug("sd_notify failed: \(String(cString: strerror(-rc)))")
        }
    }
}
