import CSystemdLoader
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

extension SystemdNotifier {
    public func watchdogPing() { send("WATCHDOG=1") }

    /// The watchdog interval systemd asks for (WatchdogSec=), in microseconds; nil when off or
    /// when WATCHDOG_PID names another process.
    public func watchdogInterval() -> UInt64? {
        var usec: UInt64 = 0
        return openclaw_sd_watchdog_enabled(0, &usec) > 0 && usec > 0 ? usec : nil
    }
}

/// Pings the watchdog at half the interval systemd asks for, until graceful shutdown ends its
/// sleep at once (ServiceGroup stops services one after the other: a sleeping watchdog would hold
/// up everything behind it).
public struct WatchdogService: Service {
    let notifier: SystemdNotifier
    let intervalMicroseconds: UInt64

    public init(notifier: SystemdNotifier, intervalMicroseconds: UInt64) {
        self.notifier = notifier
        self.intervalMicroseconds = intervalMicroseconds
    }

    public func run() async throws {
        let period = Duration.microseconds(Int64(intervalMicroseconds / 2))
        notifier.logger.debug("watchdog on: pinging every \(period)")
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                notifier.watchdogPing()
                try await Task.sleep(for: period)
            }
        }
    }
}
