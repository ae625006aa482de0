import CSystemd  // libsystemd's constants (SD_LISTEN_FDS_START); its calls go through the loader
import CSystemdLoader

#if canImport(Glibc)
import Glibc
#endif

/// What systemd passed this process through `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`
/// (sd_listen_fds(3)), read once with ``takeFromEnvironment()``.
///
/// Reading has to happen at the very top of `main`, before any thread exists: it unsets the
/// variables (so children never see them) and `unsetenv` is not thread-safe. Judging what was passed
/// needs the resolved port for its error message, so that happens later, in ``GatewayLock``.
public enum SystemdActivation: Sendable, Equatable {
    /// A socket passed by systemd: its fd (3, 4, …) and its FileDescriptorName= (or the unit's name).
    public struct PassedSocket: Sendable, Equatable {
        public let fd: Int32
        public let name: String

        public init(fd: Int32, name: String) {
            self.fd = fd
            self.name = name
        }
    }

    /// No `LISTEN_PID`, or one naming another process (or unparsable): the variables are not for
    /// us. `detail` says which, for a debug log line.
    case notForUs(detail: String?)
    /// `LISTEN_PID` is this process and every passed fd is open.
    case passed([PassedSocket])
    /// `LISTEN_PID` is this process but the rest is broken. Never a silent fallback bind: the
    /// gateway refuses to start with this reason.
    case invalid(reason: String)

    /// Reads and unsets the `LISTEN_*` variables; sets FD_CLOEXEC on every passed fd.
    public static func takeFromEnvironment() -> SystemdActivation {
        let pidText = environment("LISTEN_PID")
        let fdsText = environment("LISTEN_FDS")
        let namesText = environment("LISTEN_FDNAMES")

        guard let pidText else {
            unsetListenEnvironment()
            return .notForUs(detail: nil)
        }
        guard let pid = Int32(pidText), pid > 0 else {
            unsetListenEnvironment()
            return .notForUs(detail: "LISTEN_PID=\(pidText) is not a process id; ignoring LISTEN_*")
        }
        guard pid == getpid() else {
            unsetListenEnvironment()
            return .notForUs(detail: "LISTEN_PID=\(pid) is another process; ignoring LISTEN_*")
        }

        // For us. Judge LISTEN_FDS ourselves first, so the reason names what is wrong, then let
        // libsystemd do the reading (CLOEXEC, names, unsetting) the way every daemon does.
        guard let fdsText else {
            unsetListenEnvironment()
            return .invalid(reason: "LISTEN_PID is this process but LISTEN_FDS is not set")
        }
        guard let count = Int32(fdsText), count >= 1 else {
            unsetListenEnvironment()
            return .invalid(reason: "LISTEN_FDS=\(fdsText) is not a number of sockets (1 or more)")
        }
        guard count <= 65536 else {
            unsetListenEnvironment()
            return .invalid(reason: "LISTEN_FDS=\(fdsText) is more sockets than a process can hold")
        }
        let first = SD_LISTEN_FDS_START
        for fd in first..<(first + count) where fcntl(fd, F_GETFD) < 0 {
            unsetListenEnvironment()
            return .invalid(reason: "LISTEN_FDS=\(count) but fd \(fd) is not open")
        }
        if let namesText {
            let nameCount = namesText.split(separator: ":", omittingEmptySubsequences: false).count
            if nameCount != Int(count) {
                unsetListenEnvironment()
                return .invalid(
                    reason: "LISTEN_FDNAMES names \(nameCount) sockets but LISTEN_FDS=\(count)")
            }
        }

        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        let n = openclaw_sd_listen_fds_with_names(1, &names)
        defer {
            if let names {
                for i in 0..<Int(max(n, 0)) { free(names[i]) }
                free(names)
            }
        }
        guard n > 0 else {
            let why = n == -ENOSYS ? openclaw_libsystemd_error().map { String(cString: $0) } ?? errnoText(-n)
                : n < 0 ? errnoText(-n) : "no sockets"
            return .invalid(reason: "systemd's LISTEN_FDS=\(fdsText) could not be read: \(why)")
        }
        var sockets: [PassedSocket] = []
        for i in 0..<Int(n) {
            let name = names?[i].map { String(cString: $0) } ?? "unknown"
            sockets.append(PassedSocket(fd: first + Int32(i), name: name))
        }
        return .passed(sockets)
    }

    /// sd_is_socket(3): 1 when `fd` is a socket of `type` (SOCK_STREAM, …) of any family, listening
    /// when `listening` is 1 (0: not listening, -1: either way); 0 when it is not; a negative errno
    /// when it cannot tell.
    public static func isSocket(_ fd: Int32, type: Int32, listening: Int32) -> Int32 {
        openclaw_sd_is_socket(fd, AF_UNSPEC, type, listening)
    }

    /// sd_is_socket_inet(3): the same, for an AF_INET or AF_INET6 socket (any port).
    public static func isInetSocket(_ fd: Int32, type: Int32, listening: Int32) -> Int32 {
        openclaw_sd_is_socket_inet(fd, AF_UNSPEC, type, listening, 0)
    }

    private static func errnoText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    private static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    private static func unsetListenEnvironment() {
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"] {
            unsetenv(name)
        }
    }
}
