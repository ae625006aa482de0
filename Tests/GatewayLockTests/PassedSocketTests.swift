import Systemd
import TestSupport
import Testing

@testable import GatewayLock

#if canImport(Glibc)
import Glibc
#endif

/// The sockets systemd may pass, judged the way `acquire` judges them (fds made here, real kernel
/// objects; the environment side is covered by the integration tests with a real exec).
@Suite struct PassedSocketTests {
    let request = GatewayLock.Request(address: .loopback, port: 18789)

    func passed(_ fds: [(Int32, String)]) -> SystemdActivation {
        .passed(fds.map { SystemdActivation.PassedSocket(fd: $0.0, name: $0.1) })
    }

    func listener(port: Int) -> Int32 {
        try! FallbackBind.listen(on: .loopback, port: port)
    }

    @Test func aListeningTCPSocketIsAdoptedWithItsOwnAddress() throws {
        let port = freePort()
        let fd = listener(port: port)
        defer { close(fd) }
        let acquired = try GatewayLock.acquire(request, activation: passed([(fd, "gateway")]), logger: quietLogger)
        #expect(acquired.source == .systemd)
        #expect(acquired.urls == ["ws://127.0.0.1:\(port)"])  // from getsockname, not the request
        #expect(acquired.listeners[0].name == "gateway")
    }

    @Test func socketsNamedGatewayAreChosenAndTheOthersClosed() throws {
        let gateway = listener(port: freePort())
        let otherPort = freePort()
        let other = listener(port: otherPort)
        defer { close(gateway) }
        let acquired = try GatewayLock.acquire(request, activation: passed([(other, "metrics"), (gateway, "gateway")]), logger: quietLogger)
        #expect(acquired.listeners.map(\.fd) == [gateway])
        #expect(acquired.closedFDs == [other])
        // Closed: its port takes a new listener. (Asking fcntl about the fd number would race
        // with the tests running alongside, which may be handed the same number.)
        close(try FallbackBind.listen(on: .loopback, port: otherPort))
    }

    @Test func nothingLeftToAdoptIsAServiceWithoutASocketUnitWhichBindsItsOwn() throws {
        // A restart of a service that binds its own port passes only what it stored, which the
        // handover has taken out before the lock sees the rest.
        let acquired = try GatewayLock.acquire(
            GatewayLock.Request(address: .loopback, port: 0), activation: .passed([]), logger: quietLogger)
        defer { for listener in acquired.listeners { close(listener.fd) } }
        #expect(acquired.source == .bound && !acquired.listeners.isEmpty && acquired.listeners.allSatisfy { $0.port > 0 })
    }

    @Test func anFdStoreEntryLeftAmongTheListenersFailsTheStart() throws {
        // Whatever is passed is judged as a listener: a unix socketpair named "sessions" is refused.
        let gateway = listener(port: freePort())
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(gateway); close(pair[0]); close(pair[1]) }
        #expect(throws: GatewayLockError.self) {
            try GatewayLock.acquire(
                request, activation: passed([(pair[0], "sessions"), (gateway, "openclaw-gateway.socket")]), logger: quietLogger)
        }
    }

    @Test func withoutAGatewayNameEverySocketIsServed() throws {
        let a = listener(port: freePort())
        let b = listener(port: freePort())
        defer { close(a); close(b) }
        let acquired = try GatewayLock.acquire(request, activation: passed([(a, "openclaw-gateway.socket"), (b, "openclaw-gateway.socket")]), logger: quietLogger)
        #expect(acquired.listeners.map(\.fd) == [a, b])
    }

    @Test func aUDPSocketIsRefused() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        let error = #expect(throws: GatewayLockError.self) {
            try GatewayLock.acquire(request, activation: passed([(fd, "gateway")]), logger: quietLogger)
        }
        #expect(error?.kind == .bindFailed)
        #expect(error?.message.hasPrefix("failed to bind gateway socket on ws://127.0.0.1:18789: passed fd \(fd) (gateway) is a datagram (UDP) socket") == true)
    }

    @Test func aRegularFileIsRefused() throws {
        let fd = open("/proc/self/status", O_RDONLY)
        defer { close(fd) }
        let error = #expect(throws: GatewayLockError.self) {
            try GatewayLock.acquire(request, activation: passed([(fd, "gateway")]), logger: quietLogger)
        }
        #expect(error?.message.contains("is not a socket (a regular file)") == true)
    }

    @Test func aConnectedTCPSocketIsRefused() throws {
        let port = freePort()
        let server = listener(port: port)
        let client = Loopback.client(port: port)
        defer { close(server); close(client) }
        let error = #expect(throws: GatewayLockError.self) {
            try GatewayLock.acquire(request, activation: passed([(client, "gateway")]), logger: quietLogger)
        }
        #expect(error?.message.contains("is a TCP socket that is not listening") == true)
    }

    @Test func aUnixListenerIsRefused() throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = "/tmp/openclaw-gateway-test-\(getpid()).sock"
        unlink(path)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            path.utf8CString.withUnsafeBytes { raw.copyBytes(from: $0) }
        }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        listen(fd, 8)
        defer { close(fd); unlink(path) }
        let error = #expect(throws: GatewayLockError.self) {
            try GatewayLock.acquire(request, activation: passed([(fd, "gateway")]), logger: quietLogger)
        }
        #expect(error?.message.contains("is a unix socket") == true)
    }

    @Test func brokenActivationIsAnErrorNeverAFallbackBind() throws {
        let port = freePort()
        let request = GatewayLock.Request(address: .loopback, port: port)
        #expect(throws: GatewayLockError.bindFailed(on: "ws://127.0.0.1:\(port)", reason: "LISTEN_FDS=abc is not a number of sockets (1 or more)")) {
            try GatewayLock.acquire(request, activation: .invalid(reason: "LISTEN_FDS=abc is not a number of sockets (1 or more)"), logger: quietLogger)
        }
        // Nothing was bound: the port is still free for us.
        let fd = listener(port: port)
        close(fd)
    }
}

@Suite struct BindAddressTests {
    @Test func parsesLiteralsAndFormatsURLs() {
        #expect(BindAddress(literal: "127.0.0.1")?.webSocketURL(port: 1) == "ws://127.0.0.1:1")
        #expect(BindAddress(literal: "::1")?.webSocketURL(port: 18789) == "ws://[::1]:18789")
        #expect(BindAddress(literal: "[::1]") == BindAddress.ipv6Loopback)
        #expect(BindAddress(literal: "localhost") == nil)
        #expect(BindAddress(literal: "256.1.1.1") == nil)
    }

    @Test func knowsLoopback() {
        #expect(BindAddress(literal: "127.0.0.2")!.isLoopback)
        #expect(BindAddress.ipv6Loopback.isLoopback)
        #expect(!BindAddress.anyIPv4.isLoopback)
        #expect(!BindAddress(literal: "::")!.isLoopback)
    }
}
