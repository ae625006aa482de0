import CProcess
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// SIGHUP, caught by a handler that passes its sender on through a pipe, so that each one says who
/// sent it. A reload asked with
/// ``ReloadRequest`` (sigqueue with ``replyRequest``) is answered when it is done: SIGUSR1 back to
/// the sender, its value the result (0 in force, 78 refused). A plain `kill -HUP` gets no answer.
public enum Hangups {
    public struct Hangup: Sendable {
        public let sender: Int32
        public let wantsReply: Bool
    }

    /// The sigqueue value that asks for an answer.
    static let replyRequest: Int32 = 0x4f43  // "OC"
    static let replySignal = SIGUSR1

    /// First thing in main: SIGHUP caught from here on (see openclaw_install_hangups), so that one
    /// sent during start-up waits for ``events()`` instead of ending the process.
    public static func installEarly() {
        _ = openclaw_install_hangups()
    }

    /// Every SIGHUP from now on (and those already caught); nil with the reason when the handler
    /// could not be installed.
    public static func events() -> (AsyncStream<Hangup>?, String?) {
        let fd = openclaw_install_hangups()
        guard fd >= 0 else { return (nil, "sigaction: \(String(cString: strerror(-fd)))") }
        let reader = Reader(fd: fd)
        let stream = AsyncStream<Hangup> { continuation in
            reader.start { continuation.yield($0) }
            continuation.onTermination = { _ in reader.cancel() }
        }
        return (stream, nil)
    }

    /// Tells the sender of `hangup` how the reload ended, when it asked.
    public static func answer(_ hangup: Hangup, status: Int32) {
        guard hangup.wantsReply else { return }
        _ = openclaw_queue_signal(hangup.sender, replySignal, status)
    }

    /// Returns once the sender of an answered `hangup` has exited (at most `timeoutMs`): under
    /// systemd it is `ExecReload=`, and the reload job ends with it. A gateway that stops right
    /// after a reload waits for that, or systemd would see the service exit during its reload.
    public static func senderExited(_ hangup: Hangup, timeoutMs: Int32 = 2000) async {
        guard hangup.wantsReply else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                let pidfd = openclaw_pidfd_open(hangup.sender)
                if pidfd >= 0 {
                    var poller = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                    while poll(&poller, 1, timeoutMs) < 0 && errno == EINTR {}
                    close(pidfd)
                }
                continuation.resume()
            }
        }
    }
}

/// The pipe's Dispatch read source; touched only on its queue. The pipe stays open (the handler
/// writes into it for the life of the process).
private final class Reader: @unchecked Sendable {
    let fd: Int32
    let queue = DispatchQueue(label: "openclaw-gateway.hangups")
    private var source: DispatchSourceRead?

    init(fd: Int32) {
        self.fd = fd
    }

    func start(_ yield: @escaping @Sendable (Hangups.Hangup) -> Void) {
        queue.async { [self] in
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [fd] in
                var pid: Int32 = 0
                var code: Int32 = 0
                var value: Int32 = 0
                while openclaw_read_hangup(fd, &pid, &code, &value) == 1 {
                    yield(Hangups.Hangup(sender: pid, wantsReply: code == SI_QUEUE && value == Hangups.replyRequest))
                }
            }
            self.source = source
            source.resume()
        }
    }

    func cancel() {
        queue.async { [self] in
            source?.cancel()
            source = nil
        }
    }
}

/// The asking side (`openclaw-gateway reload`): SIGHUP with a request for an answer, then the
/// answer, waited for as a signal (no polling).
public enum ReloadRequest {
    public enum Result: Sendable, Equatable {
        /// The new configuration is in force (or nothing changed).
        case done
        /// The gateway refused the new configuration (its log says why).
        case refused
        /// No answer in time: a gateway that predates answers, or one that is stuck.
        case noAnswer
        /// No such process, or not ours to signal.
        case cannotSignal(String)
    }

    public static func send(to pid: Int32, timeoutMs: Int32) -> Result {
        _ = openclaw_block_signal(Hangups.replySignal)  // before asking: the answer must wait for us
        let sent = openclaw_queue_signal(pid, SIGHUP, Hangups.replyRequest)
        guard sent == 0 else { return .cannotSignal(String(cString: strerror(-sent))) }
        var value: Int32 = 0
        switch openclaw_wait_signal_from(Hangups.replySignal, pid, timeoutMs, &value) {
        case 0: return value == 0 ? .done : .refused
        case -ETIMEDOUT: return .noAnswer
        case let error: return .cannotSignal(String(cString: strerror(-error)))
        }
    }
}
