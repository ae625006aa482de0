import CProcess
import GatewayProtocol
import GatewayServer
import Logging
import NIOPosix
import Systemd
import TestSupport
import Testing

@testable import RestartHandover

#if canImport(Glibc)
import Glibc
#endif

import Foundation  // JSONSerialization, to read frames the way a client would

@Suite struct RestartHandoverTests {
    @Test func whatTheFdStoreKeptIsTakenOutOfWhatSystemdPassedAndTheRestIsTheLocks() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pair) == 0)
        let state = openclaw_memfd_create("test-state")
        let legacy = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { for fd in [listener, pair[0], pair[1], state, legacy] { close(fd) } }
        for fd in [pair[0], state, legacy] { _ = fcntl(fd, F_SETFD, 0) }
        let passed: [SystemdActivation.PassedSocket] = [
            .init(fd: pair[0], name: "sessions"), .init(fd: listener, name: "gateway"),
            .init(fd: state, name: "state"), .init(fd: legacy, name: "conn-0123"),
        ]
        let (listeners, stored) = RestartHandover.separateStored(.passed(passed))
        #expect(listeners == .passed([.init(fd: listener, name: "gateway")]))
        #expect(stored.map(\.name) == ["sessions", "state", "conn-0123"])
        #expect(stored.allSatisfy { fcntl($0.fd, F_GETFD) == FD_CLOEXEC })

        // A service without a socket unit: only what it stored comes back, nothing for the lock.
        let (none, onlyStored) = RestartHandover.separateStored(.passed([passed[0]]))
        #expect(none == .passed([]) && onlyStored.map(\.name) == ["sessions"])
        // Without systemd there is nothing to separate.
        let (notForUs, nothing) = RestartHandover.separateStored(.notForUs(detail: nil))
        #expect(notForUs == .notForUs(detail: nil) && nothing.isEmpty)
    }

    /// The take-back's check, on one thread for a few fds and in shares on every core for many:
    /// the same answers in the same order either way.
    @Test(arguments: [7, 2_000])
    func onlyConnectedTCPSocketsPassTheCheckInTheirOrder(count: Int) throws {
        let listener = Loopback.listener()
        let client = Loopback.client(port: listener.port)
        let accepted = accept(listener.fd, nil, nil)
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var pipeEnds: [Int32] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        var unixPair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &unixPair) == 0)
        defer { for fd in [listener.fd, client, accepted, udp, pipeEnds[0], pipeEnds[1], unixPair[0], unixPair[1]] { close(fd) } }
        #expect(accepted >= 0)
        let kinds: [(fd: Int32?, connectedTCP: Bool)] = [
            (client, true), (listener.fd, false), (udp, false), (pipeEnds[0], false), (nil, false),
            (accepted, true), (unixPair[0], false),
        ]
        let fds = (0..<count).map { kinds[$0 % kinds.count] }
        #expect(RestartHandover.connectedTCP(fds.map(\.fd)) == fds.map(\.connectedTCP))
        #expect(RestartHandover.connectedTCP([]) == [])
    }

    @Test func theStateSurvivesAMemfdRoundTrip() throws {
        let connection = HandedOverConnection(
            fd: -1,
            state: ConnectionState(
                session: .init(connId: "0123456789abcdef", connected: true, seq: 41),
                undecoded: [0x81, 0x85, 0, 1, 2], peer: "::1"))
        let record = StateRecord(pid: 99, connections: [ConnectionRecord(connection)])
        let fd = try StateFile.write(record)
        defer { close(fd) }
        #expect(try StateFile.read(fd) == record)
        #expect(try StateFile.read(fd).connections[0].state == connection.state)
    }

    @Test func aSessionsGrantAndPresenceSurviveTheRoundTripWithoutBeingStoredTwice() throws {
        let presence = PresenceEntry(
            host: "mac", version: "2026.11", platform: "macos 15", deviceFamily: "Mac", mode: "ui", reason: "connect",
            roles: ["operator"], scopes: ["operator.admin"], instanceId: "i-1",
            text: PresenceEntry.clientText(host: "mac", mode: "ui"), ts: 1_795_000_000_000)
        let connection = HandedOverConnection(
            fd: -1,
            state: ConnectionState(
                session: .init(connId: "c", connected: true, seq: 3, role: "operator", scopes: ["operator.admin"], presence: presence),
                undecoded: [], peer: "127.0.0.1"))
        let record = StateRecord(pid: 99, connections: [ConnectionRecord(connection)])
        let fd = try StateFile.write(record)
        defer { close(fd) }
        #expect(try StateFile.read(fd).connections[0].state == connection.state)
        // The roles, scopes and text are given back by the grant, not stored again with the client.
        let stored = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(record.connections[0])) as? [String: Any]
        #expect((stored?["client"] as? [String: Any]).map { Set($0.keys) } == ["host", "version", "platform", "deviceFamily", "mode", "instanceId", "ts"])
    }

    @Test func aFileThatIsNotOurStateIsRefused() throws {
        let json = Array(try JSONEncoder().encode(StateRecord(format: "something-else/9", pid: 1, connections: [])))
        for bytes in [json, Array("openclaw-gateway-handover/3\n".utf8), [0xff, 0x00]] {
            let fd = try StateFile.write(bytes: bytes)
            defer { close(fd) }
            #expect(throws: StateFileError.self) { try StateFile.read(fd) }
        }
    }

    /// Every field a session carries, with the values that make an encoding slip: empty and
    /// non-ASCII strings, absent and empty optionals, bytes of every value, negative and large integers.
    static let varied = StateRecord(
        pid: 4_194_304, tokenDigest: "sha256:ab", connections: [
            ConnectionRecord(
                connId: "0123456789abcdef", connected: true, seq: Int(Int32.max) + 7, peer: "::ffff:127.0.0.1",
                undecoded: Data((0...255).map(UInt8.init)), role: "operator", scopes: ["operator.admin", "operator.read"],
                client: ClientRecord(
                    host: "Jürgen's Mac", ip: nil, version: "2026.11.30", platform: "", deviceFamily: "Mac",
                    modelIdentifier: nil, mode: "ui", instanceId: "i-1", ts: -1)),
            ConnectionRecord(
                connId: "", connected: false, seq: 0, peer: "?", undecoded: Data(), role: nil, scopes: [], client: nil),
            ConnectionRecord(
                connId: "c", connected: true, seq: 1, peer: "127.0.0.1", undecoded: Data([0x81]), role: "node",
                scopes: nil, client: ClientRecord(ts: Int.max)),
        ])

    @Test func theBinaryStateKeepsEveryField() throws {
        let bytes = BinaryState.encode(Self.varied)
        #expect(bytes.starts(with: Array("openclaw-gateway-handover/2\n".utf8)))
        #expect(try BinaryState.decode(bytes) == Self.varied)
        let fd = try StateFile.write(Self.varied)
        defer { close(fd) }
        #expect(try StateFile.read(fd) == Self.varied)
    }

    @Test func aCutOrLengthenedBinaryStateIsRefusedNeverMisread() throws {
        let bytes = BinaryState.encode(Self.varied)
        for length in BinaryState.magic.count..<bytes.count {
            #expect(throws: StateFileError.self) { try BinaryState.decode(Array(bytes.prefix(length))) }
        }
        #expect(throws: StateFileError.self) { try BinaryState.decode(bytes + [0]) }
        // A count larger than the file is refused before anything is allocated for it.
        var huge = BinaryState.Writer()
        huge.bytes = BinaryState.magic
        for field in [1, 4] { huge.int(field) }
        huge.bool(false)
        huge.unsigned(UInt64.max)
        #expect(throws: StateFileError.self) { try BinaryState.decode(huge.bytes) }
    }

    /// What 0.1.0 hands over is JSON in `openclaw-gateway-handover/1`: an upgrade from it reads that.
    @Test func theJSONStateOf010IsStillRead() throws {
        var record = Self.varied
        record.format = StateRecord.jsonFormat
        let fd = try StateFile.write(bytes: Array(try JSONEncoder().encode(record)))
        defer { close(fd) }
        #expect(try StateFile.read(fd) == record)
    }

    @Test func aConnectionThatCannotBeCarriedOnGetsTheShutdownEventAnd1012() throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[1]) }
        GatewayServer.closeHandedOver(
            fd: pair[0], session: .init(connId: "c1", connected: true, seq: 7), reason: "gateway restarted")
        let bytes = Loopback.readAll(pair[1])
        // text frame: the shutdown event with the next sequence number
        #expect(bytes[0] == 0x81)
        let length = Int(bytes[1])
        let event = try JSONSerialization.jsonObject(with: Data(bytes[2..<(2 + length)])) as? [String: Any]
        #expect(event?["event"] as? String == "shutdown")
        #expect(event?["seq"] as? Int == 8)
        // then close 1012 "service restart"
        let close = Array(bytes[(2 + length)...])
        #expect(close.prefix(4) == [0x88, 17, 0x03, 0xF4])
        #expect(String(decoding: close.dropFirst(4), as: UTF8.self) == "service restart")
    }

    @Test func storedConnectionsWithoutTheirStateAreClosedCleanly() async throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[1]) }
        var before = stat()
        #expect(fstat(pair[0], &before) == 0)
        let ours = before.st_ino
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = GatewayServer(
            group: group,
            configuration: ServerConfiguration(
                controlPlane: ControlPlaneConfiguration(serverVersion: "0", token: nil),
                info: ServerInfo(pid: 1, urls: [], profile: nil, listenerSource: "systemd", listenerNames: [], startedAtMs: 0)),
            logger: Logger(label: "test"))
        let carried = await RestartHandover.takeBack(
            [SystemdActivation.PassedSocket(fd: pair[0], name: "conn-abc")], server: server,
            store: FileDescriptorStore(), secret: .none, logger: Logger(label: "test"))
        #expect(carried == 0)
        #expect(Loopback.readAll(pair[1]).prefix(4) == [0x88, 17, 0x03, 0xF4])
        // Ours is closed: its number names nothing, or another socket that a test running
        // alongside was handed since (so the check is by inode, not by number).
        var now = stat()
        #expect(fstat(pair[0], &now) != 0 || now.st_ino != ours)
        try await group.shutdownGracefully()
    }

    @Test func aSessionCarriesOnOnlyUnderTheSecretItAuthenticatedWith() {
        func entry(connected: Bool) -> ConnectionRecord {
            ConnectionRecord(HandedOverConnection(
                fd: -1, state: ConnectionState(session: .init(connId: "c", connected: connected, seq: 1), undecoded: [], peer: "")))
        }
        let open = StateRecord(pid: 1, tokenDigest: nil, connections: [])
        let secured = StateRecord(pid: 1, tokenDigest: RestartHandover.digest("s3cret"), connections: [])
        #expect(RestartHandover.refusal(of: entry(connected: true), in: open, secret: .none) == nil)
        #expect(RestartHandover.refusal(of: entry(connected: true), in: secured, secret: .none) == nil)  // auth dropped
        #expect(RestartHandover.refusal(of: entry(connected: true), in: secured, secret: .token("s3cret")) == nil)
        #expect(RestartHandover.refusal(of: entry(connected: true), in: open, secret: .token("s3cret")) == "gateway token changed")
        #expect(RestartHandover.refusal(of: entry(connected: true), in: secured, secret: .token("other")) == "gateway token changed")
        #expect(RestartHandover.refusal(of: entry(connected: false), in: open, secret: .token("s3cret")) == nil)  // not yet authenticated
        var older = secured
        older.protocolVersion = 3
        #expect(RestartHandover.refusal(of: entry(connected: true), in: older, secret: .token("s3cret")) == "it speaks protocol 3")
        #expect(RestartHandover.digest("s3cret") != RestartHandover.digest("s3creu"))
        // A password of the same text is another secret.
        #expect(RestartHandover.refusal(of: entry(connected: true), in: secured, secret: .password("s3cret")) == "gateway password changed")
        let passworded = StateRecord(pid: 1, tokenDigest: RestartHandover.digest(.password("s3cret")), connections: [])
        #expect(RestartHandover.refusal(of: entry(connected: true), in: passworded, secret: .password("s3cret")) == nil)
    }

}
