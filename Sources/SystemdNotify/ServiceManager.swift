import CSystemdLoader

#if canImport(Glibc)
import Glibc
#endif

/// What systemd says about the unit this process runs in, asked over the system bus.
public struct ServiceManagerState: Sendable, Equatable {
    /// e.g. `openclaw-gateway.service`.
    public var unit: String
    /// The job pending on the unit while it stops: `restart` for `systemctl restart`,
    /// `try-restart` and a package upgrade's restart; `stop` for `systemctl stop` and shutdown; nil
    /// when there is none (a plain `kill`).
    public var jobType: String?
    /// FileDescriptorStoreMax= (0: the unit keeps no fds for us).
    public var fdStoreMax: Int

    /// RestartForceExitStatus=: the exit statuses after which systemd starts the service again.
    public var restartForceExitStatuses: Set<Int32>

    public init(unit: String, jobType: String?, fdStoreMax: Int, restartForceExitStatuses: Set<Int32> = []) {
        self.unit = unit
        self.jobType = jobType
        self.fdStoreMax = fdStoreMax
        self.restartForceExitStatuses = restartForceExitStatuses
    }

    /// True when systemd will start the service again right after this process exits.
    public var restartPending: Bool { jobType == "restart" }
}

public enum ServiceManager {
    /// Asks PID 1 about the unit of this process; each bus call waits at most `timeoutMs`. Blocks
    /// the calling thread: call it where blocking is fine (shutdown, off the event loops).
    public static func stateOfThisService(timeoutMs: Int = 1000) -> Result<ServiceManagerState, ServiceManagerError> {
        var state = openclaw_service_state()
        var error = [CChar](repeating: 0, count: 512)
        let rc = openclaw_service_state_of(UInt32(getpid()), UInt64(timeoutMs) * 1000, &state, &error, error.count)
        guard rc >= 0 else {
            return .failure(ServiceManagerError(description: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
        }
        let unit = withUnsafeBytes(of: state.unit) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let job = withUnsafeBytes(of: state.job_type) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let forced = withUnsafeBytes(of: state.restart_force_status) { bits in
            Set((0..<256).filter { bits[$0 / 8] & (1 << ($0 % 8)) != 0 }.map(Int32.init))
        }
        return .success(
            ServiceManagerState(
                unit: unit, jobType: job.isEmpty ? nil : job, fdStoreMax: Int(state.fd_store_max),
                restartForceExitStatuses: forced))
    }
}

public struct ServiceManagerError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

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
