import GatewayProtocol
import GatewayServer
import Logging
import NIOPosix
import RestartHandover
import ServiceLifecycle
import Synchronization
import Systemd
import TestSupport
import Testing

@testable import GatewayLifecycle

#if canImport(Glibc)
import Glibc
#endif

@Suite struct GatewayServiceTests {
    typealias State = GatewayService.State

    @Test func theStatesGoOnlyForwardAndHandingOverOnlyAfterDeciding() {
        let all: [State] = [.starting, .serving, .deciding, .handingOver, .closing(reason: "r"), .done]
        let edges = Set(all.flatMap { from in all.filter { from.allows($0) }.map { "\(from.name)->\($0.name)" } })
        #expect(
            edges == [
                "starting->serving", "starting->done", "serving->deciding", "deciding->handingOver", "deciding->closing",
                "handingOver->done", "closing->done",
            ])
    }

    /// A real server on a real loopback listener, run by a real ServiceGroup, without a service
    /// manager (no NOTIFY_SOCKET): graceful shutdown decides to close, the client hears the
    /// `shutdown` event and 1012, and the port is free once the service is done.
    @Test(.enabled(if: getenv("NOTIFY_SOCKET") == nil))
    func withoutAServiceManagerAShutdownClosesEveryClientWithTheEventAnd1012() async throws {
        let (listener, port) = Loopback.listener()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let logger = Logger(label: "test")
        let server = GatewayServer(
            group: group,
            configuration: ServerConfiguration(
                controlPlane: ControlPlaneConfiguration(serverVersion: "0", token: nil),
                info: ServerInfo(pid: 1, urls: [], profile: nil, listenerSource: "bound", listenerNames: [], startedAtMs: 0)),
            logger: logger)
        let (states, continuation) = AsyncStream.makeStream(of: State.self)
        let service = GatewayService(
            .init(
                server: server, adoption: server.adopt(listeningSockets: [listener]), stored: [],
                urls: ["ws://127.0.0.1:\(port)"], origin: "bound by this test", lockURL: "ws://127.0.0.1:\(port)",
                secret: .none, notifier: SystemdNotifier(logger: logger), stopCause: StopCauseRecord()),
            logger: logger,
            onStateChange: { state in
                continuation.yield(state)
                if state == .done { continuation.finish() }
            })
        let serviceGroup = ServiceGroup(
            configuration: .init(services: [.init(service: service)], gracefulShutdownSignals: [], logger: logger))

        var seen: [State] = []
        var client: Int32 = -1
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await serviceGroup.run() }
            for await state in states {
                seen.append(state)
                if state == .serving {
                    #expect(service.state == .serving)
                    client = Self.webSocketClient(port: port)
                    #expect(Self.handshake(client).contains(#""type":"hello-ok""#))
                    await serviceGroup.triggerGracefulShutdown()
                }
            }
            try await tasks.waitForAll()
        }
        #expect(seen == [.serving, .deciding, .closing(reason: "not run by a service manager (no NOTIFY_SOCKET)"), .done])
        #expect(service.state == .done)

        let frames = Self.frames(Loopback.readAll(client))
        close(client)
        #expect(frames.contains { $0.opcode == 1 && String(decoding: $0.payload, as: UTF8.self).contains("\"event\":\"shutdown\"") })
        #expect(frames.last.map { $0.opcode == 8 && Array($0.payload.prefix(2)) == [0x03, 0xF4] } == true)
        let (probe, refused) = Loopback.connect(port: port)
        close(probe)
        #expect(refused == ECONNREFUSED)
        try await group.shutdownGracefully()
    }

    /// A WebSocket client by hand: connected, upgraded (101 read), 10 s receive timeout.
    static func webSocketClient(port: Int) -> Int32 {
        let fd = Loopback.client(port: port, receiveTimeoutSeconds: 10)
        let request = Array(
            ("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var head: [UInt8] = []
        var byte: UInt8 = 0
        while !head.suffix(4).elementsEqual([13, 10, 13, 10]), recv(fd, &byte, 1, 0) == 1 { head.append(byte) }
        precondition(String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 101"), "no upgrade: \(head)")
        return fd
    }

    /// The protocol's handshake on an upgraded client: the challenge read, connect sent (masked,
    /// as a client must), the reply returned.
    static func handshake(_ fd: Int32) -> String {
        _ = readFrame(fd)  // connect.challenge
        let connect = Array(
            #"{"type":"req","id":"c","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"auth":{},"client":{"id":"t","version":"1","platform":"linux","mode":"cli"}}}"#
                .utf8)
        // FIN + text, masked with the key 0 (the payload as is), 16-bit length
        let frame: [UInt8] = [0x81, 0x80 | 126, UInt8(connect.count >> 8), UInt8(connect.count & 0xFF), 0, 0, 0, 0] + connect
        _ = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        return String(decoding: readFrame(fd)?.payload ?? [], as: UTF8.self)
    }

    /// One frame from the server, nil at EOF.
    static func readFrame(_ fd: Int32) -> (opcode: UInt8, payload: [UInt8])? {
        func exactly(_ count: Int) -> [UInt8]? {
            var bytes = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = bytes[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return nil }
                got += n
            }
            return bytes
        }
        guard let head = exactly(2) else { return nil }
        var length = Int(head[1] & 0x7F)
        if length == 126 {
            guard let extended = exactly(2) else { return nil }
            length = Int(extended[0]) << 8 | Int(extended[1])
        } else if length == 127 {
            guard let extended = exactly(8) else { return nil }
            length = extended.reduce(0) { $0 << 8 | Int($1) }
        }
        guard let payload = exactly(length) else { return nil }
        return (head[0] & 0x0F, payload)
    }

    /// The server's frames (unmasked, unfragmented) in `bytes`.
    static func frames(_ bytes: [UInt8]) -> [(opcode: UInt8, payload: [UInt8])] {
        var result: [(opcode: UInt8, payload: [UInt8])] = []
        var at = 0
        while at + 2 <= bytes.count {
            var length = Int(bytes[at + 1] & 0x7F)
            var start = at + 2
            if length == 126, start + 2 <= bytes.count {
                length = Int(bytes[start]) << 8 | Int(bytes[start + 1])
                start += 2
            } else if length == 127, start + 8 <= bytes.count {
                length = bytes[start..<start + 8].reduce(0) { $0 << 8 | Int($1) }
                start += 8
            }
            guard start + length <= bytes.count else { break }
            result.append((bytes[at] & 0x0F, Array(bytes[start..<start + length])))
            at = start + length
        }
        return result
    }
}

extension GatewayService.State {
    var name: String {
        switch self {
        case .starting: "starting"
        case .serving: "serving"
        case .deciding: "deciding"
        case .handingOver: "handingOver"
        case .closing: "closing"
        case .done: "done"
        }
    }
}
