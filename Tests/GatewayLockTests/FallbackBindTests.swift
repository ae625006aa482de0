import Logging
import TestSupport
import Testing

@testable import GatewayLock

#if canImport(Glibc)
import Glibc
#endif

/// A port nothing listens on right now (bound to 0 and released).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return localAddress(of: fd)!.1
}

let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}()

func closeAll(_ acquired: GatewayLock.Acquired) {
    for listener in acquired.listeners { close(listener.fd) }
}

@Suite struct FallbackBindTests {
    @Test func bindsLoopbackAndIPv6LoopbackOnTheRequestedPort() throws {
        let port = freePort()
        let acquired = try GatewayLock.acquire(.init(address: .loopback, port: port), activation: .notForUs(detail: nil), logger: quietLogger)
        defer { closeAll(acquired) }
        #expect(acquired.source == .bound)
        #expect(acquired.urls.first == "ws://127.0.0.1:\(port)")
        // [::1] is best-effort: present wherever the host has IPv6 loopback.
        if acquired.listeners.count == 2 {
            #expect(acquired.urls[1] == "ws://[::1]:\(port)")
        }
        for listener in acquired.listeners {
            #expect(socketOption(listener.fd, SOL_SOCKET, SO_ACCEPTCONN) == 1)
            #expect(socketOption(listener.fd, SOL_SOCKET, SO_REUSEADDR) == 1)
            #expect(socketOption(listener.fd, SOL_SOCKET, SO_REUSEPORT) == 0)
            #expect(fcntl(listener.fd, F_GETFD) & FD_CLOEXEC != 0)
        }
    }

    @Test func secondAcquireOnTheSamePortFailsWithTheDuplicateError() throws {
        let port = freePort()
        let first = try GatewayLock.acquire(.init(address: .loopback, port: port), activation: .notForUs(detail: nil), logger: quietLogger)
        defer { closeAll(first) }
        #expect(throws: GatewayLockError.alreadyListening(on: "ws://127.0.0.1:\(port)")) {
            try GatewayLock.acquire(.init(address: .loopback, port: port), activation: .notForUs(detail: nil), logger: quietLogger)
        }
    }

    @Test func duplicateErrorTextIsTheContract() {
        let error = GatewayLockError.alreadyListening(on: "ws://127.0.0.1:18789")
        #expect(error.description == "GatewayLockError: another gateway instance is already listening on ws://127.0.0.1:18789")
        let other = GatewayLockError.bindFailed(on: "ws://[::1]:18789", reason: "bind(): Permission denied")
        #expect(other.description == "GatewayLockError: failed to bind gateway socket on ws://[::1]:18789: bind(): Permission denied")
        #expect(GatewayLockError.exitStatus == 78)
    }

    @Test func anAddressThisHostDoesNotHaveIsABindFailure() {
        let port = freePort()
        let request = GatewayLock.Request(address: BindAddress(literal: "192.0.2.1")!, port: port)
        #expect(throws: GatewayLockError.bindFailed(
            on: "ws://192.0.2.1:\(port)", reason: "bind(): Cannot assign requested address", systemError: EADDRNOTAVAIL)) {
            try GatewayLock.acquire(request, activation: .notForUs(detail: nil), logger: quietLogger)
        }
    }

    @Test func aPortHeldByATimeWaitFreeListenerCanBeRetakenAtOnce() throws {
        // Bind, accept a connection, close the listener first (as a crash would leave it): the
        // leftover connection must not block the next bind thanks to SO_REUSEADDR.
        let port = freePort()
        let first = try GatewayLock.acquire(.init(address: .loopback, port: port), activation: .notForUs(detail: nil), logger: quietLogger)
        let client = Loopback.client(port: port)
        let accepted = accept(first.listeners[0].fd, nil, nil)
        closeAll(first)
        close(accepted)  // server side closes first: TIME_WAIT on the gateway's port
        defer { close(client) }
        let second = try GatewayLock.acquire(.init(address: .loopback, port: port), activation: .notForUs(detail: nil), logger: quietLogger)
        closeAll(second)
    }

    @Test func aRaceOfManyBindersLeavesExactlyOneHolder() async throws {
        for _ in 0..<5 {
            let port = freePort()
            let results = await withTaskGroup(of: Result<GatewayLock.Acquired, GatewayLockError>.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        Result { () throws(GatewayLockError) in
                            try GatewayLock.acquire(.init(address: .loopback, port: port), activation: .notForUs(detail: nil), logger: quietLogger)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let winners = results.compactMap { try? $0.get() }
            #expect(winners.count == 1)
            for result in results {
                if case .failure(let error) = result {
                    #expect(error == .alreadyListening(on: "ws://127.0.0.1:\(port)"))
                }
            }
            winners.forEach(closeAll)
        }
    }
}

