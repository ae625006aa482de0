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
