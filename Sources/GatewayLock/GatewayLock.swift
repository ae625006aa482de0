import Logging
import Systemd

#if canImport(Glibc)
import Glibc
#endif

/// The single-instance lock of the gateway, which is its listening socket.
///
/// ``acquire(_:activation:logger:)`` is the one entry point. It returns ready, listening fds — the
/// ones systemd passed, or ones this process bound — or throws ``GatewayLockError``. No lock file, no
/// PID file: the kernel releases the port on any exit, SIGKILL included.
public enum GatewayLock {
    /// Where the gateway wants to listen when systemd passes nothing.
    public struct Request: Sendable, Equatable {
        public var address: BindAddress
        public var port: Int

        public init(address: BindAddress, port: Int) {
            self.address = address
            self.port = port
        }

        /// The URL the error lines name: the bind address and the resolved port.
        public var url: String { address.webSocketURL(port: port) }
    }

    public enum Source: String, Sendable {
        /// Passed by systemd (socket activation).
        case systemd
        /// Bound by this process.
        case bound
    }

    /// One listening socket, owned by whoever holds this value until it hands the fd on.
    public struct Listener: Sendable, Equatable {
        public let fd: Int32
        public let address: BindAddress
        public let port: Int
        /// The FileDescriptorName= systemd gave it; nil for a socket this process bound.
        public let name: String?

        public var url: String { address.webSocketURL(port: port) }
    }

    public struct Acquired: Sendable, Equatable {
        public let source: Source
        public let listeners: [Listener]
        /// Passed fds that were not selected (other names) and were closed.
        public let closedFDs: [Int32]

        public var urls: [String] { listeners.map(\.url) }
    }

    /// The name the socket unit gives the gateway's listeners (FileDescriptorName=gateway).
    public static let socketName = "gateway"

    /// Gets the listeners: systemd's when they are passed to this process, else a bind of
    /// `request` (plus [::1] best-effort when the address is 127.0.0.1). Every passed fd is taken
    /// for a listener: whoever passed others (what a service left in its fd store) takes them out
    /// first. When that leaves none, the service has no socket unit and binds `request` as without
    /// systemd.
    public static func acquire(
        _ request: Request,
        activation: SystemdActivation,
        logger: Logger
    ) throws(GatewayLockError) -> Acquired {
        switch activation {
        case .passed(let sockets) where sockets.isEmpty:
            logger.info("systemd passed no listening socket: binding \(request.url)")
            return try bind(request, logger: logger)
        case .passed(let sockets):
            return try adopt(sockets, request: request)
        case .invalid(let reason):
            throw .bindFailed(on: request.url, reason: reason)
        case .notForUs(let detail):
            if let detail { logger.debug("\(detail)") }
            return try bind(request, logger: logger)
        }
    }

    /// Selects the passed sockets named `gateway` (all of them when none carries that name) and
    /// checks each one; any that cannot serve fails the whole start, and nothing is bound instead.
    static func adopt(_ sockets: [SystemdActivation.PassedSocket], request: Request) throws(GatewayLockError) -> Acquired {
        let named = sockets.filter { $0.name == socketName }
        let selected = named.isEmpty ? sockets : named
        let unselected = sockets.filter { socket in !selected.contains(socket) }

        var listeners: [Listener] = []
        for socket in selected {
            if let problem = PassedSocketCheck.problem(with: socket.fd, name: socket.name) {
                throw .bindFailed(on: request.url, reason: problem)
            }
            guard let (address, port) = localAddress(of: socket.fd) else {
                throw .bindFailed(on: request.url, reason: "passed fd \(socket.fd) (\(socket.name)) has no local address: \(errnoText(errno))")
            }
            _ = fcntl(socket.fd, F_SETFD, fcntl(socket.fd, F_GETFD) | FD_CLOEXEC)
            listeners.append(Listener(fd: socket.fd, address: address, port: port, name: socket.name))
        }
        for socket in unselected { close(socket.fd) }
        return Acquired(source: .systemd, listeners: listeners, closedFDs: unselected.map(\.fd))
    }

    /// The fallback: bind `request` ourselves. 127.0.0.1 is the lock; [::1] on the same port is
    /// added best-effort (a failure there is logged, never fatal).
    static func bind(_ request: Request, logger: Logger) throws(GatewayLockError) -> Acquired {
        let primary: Int32
        do {
            primary = try FallbackBind.listen(on: request.address, port: request.port)
        } catch {
            if error.isAddressInUse { throw .alreadyListening(on: request.url) }
            throw .bindFailed(on: request.url, reason: error.reason, systemError: error.errno)
        }
        guard let (address, port) = localAddress(of: primary) else {
            let reason = "getsockname(): \(errnoText(errno))"
            close(primary)
            throw .bindFailed(on: request.url, reason: reason)
        }
        var listeners = [Listener(fd: primary, address: address, port: port, name: nil)]

        if request.address == .loopback {
            let alias = BindAddress.ipv6Loopback
            do {
                let fd = try FallbackBind.listen(on: alias, port: port, ipv6Only: true)
                listeners.append(Listener(fd: fd, address: alias, port: port, name: nil))
            } catch {
                logger.notice("not listening on \(alias.webSocketURL(port: port)) as well: \(error.reason)")
            }
        }
        return Acquired(source: .bound, listeners: listeners, closedFDs: [])
    }
}
