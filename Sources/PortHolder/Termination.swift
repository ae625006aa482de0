import CProcess

#if canImport(Glibc)
import Glibc
#endif

/// Ends another process: SIGTERM, then SIGKILL when it has not exited within the grace period.
/// Waits on a pidfd, so the exit is an event, not something polled for.
public enum Termination {
    public enum Outcome: Equatable, Sendable {
        case exited
        case killed
        /// Not ours to signal (another user's process, without privilege).
        case notPermitted
        case failed(String)
    }

    public static func terminate(pid: Int32, grace: Int32 = 5000) -> Outcome {
        let pidfd = openclaw_pidfd_open(pid)
        guard pidfd >= 0 else {
            return errno == ESRCH ? .exited : .failed("pidfd_open: \(String(cString: strerror(errno)))")
        }
        defer { close(pidfd) }
        if kill(pid, SIGTERM) != 0 {
            if errno == ESRCH { return .exited }
            return errno == EPERM ? .notPermitted : .failed("kill: \(String(cString: strerror(errno)))")
        }
        if waitForExit(pidfd, milliseconds: grace) { return .exited }
        kill(pid, SIGKILL)
        return waitForExit(pidfd, milliseconds: 5000) ? .killed : .failed("pid \(pid) did not exit after SIGKILL")
    }

    /// Whether this process may signal `pid` (same user, or privileged).
    public static func maySignal(pid: Int32) -> Bool {
        kill(pid, 0) == 0
    }

    private static func waitForExit(_ pidfd: Int32, milliseconds: Int32) -> Bool {
        var poller = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        while true {
            let rc = poll(&poller, 1, milliseconds)
            if rc > 0 { return true }
            if rc == 0 { return false }
            if errno != EINTR { return false }
        }
    }
}
