import CSystemdLoader

#if canImport(Glibc)
import Glibc
#endif

/// The service's file descriptor store (FileDescriptorStoreMax=, sd_pid_notify_with_fds(3)): fds
/// systemd keeps while the service restarts and passes to the next process in LISTEN_FDS, named.
public struct FileDescriptorStore: Sendable {
    public init() {}

    /// True when a service manager listens (NOTIFY_SOCKET is set).
    public var isAvailable: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Stores `fd` under `name` (FDSTORE=1, FDNAME=name); the store gets its own copy, so the
    /// caller still owns and closes `fd`. Throws with the reason when the message cannot be sent.
    /// With `poll` false (FDPOLL=0, systemd 246 and later) systemd does not watch the fd, so it
    /// keeps a socket whose peer has closed (POLLHUP) instead of dropping it.
    public func store(_ fd: Int32, name: String, poll: Bool = true) throws(ServiceManagerError) {
        var descriptor = fd
        let message = "FDSTORE=1\nFDNAME=\(name)" + (poll ? "" : "\nFDPOLL=0")
        let rc = openclaw_sd_pid_notify_with_fds(0, 0, message, &descriptor, 1)
        if rc <= 0 {
            let why = rc == 0 ? "NOTIFY_SOCKET is not set" : String(cString: strerror(-rc))
            throw ServiceManagerError(description: "cannot store fd \(fd) (\(name)): \(why)")
        }
    }

    /// Drops every stored fd called `name` (FDSTOREREMOVE=1): systemd closes its copies.
    public func remove(name: String) throws(ServiceManagerError) {
        let rc = openclaw_sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=\(name)")
        if rc < 0 {
            throw ServiceManagerError(description: "cannot remove \(name) from the fd store: \(String(cString: strerror(-rc)))")
        }
    }

    /// Returns once systemd has acted on every message sent before (sd_notify_barrier(3)): after
    /// it, a stored fd is in the store even if this process dies the next instant.
    public func barrier(timeoutMs: Int = 5000) throws(ServiceManagerError) {
        let rc = openclaw_sd_notify_barrier(UInt64(timeoutMs) * 1000)
        if rc < 0 {
            throw ServiceManagerError(description: "the service manager did not confirm the fd store: \(String(cString: strerror(-rc)))")
        }
    }
}
