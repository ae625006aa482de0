import CProcess
import GatewayServer
import Systemd
import Testing

@testable import RestartHandover

#if canImport(Glibc)
import Glibc
#endif

/// The carrier through real kernel sockets: an AF_UNIX SOCK_SEQPACKET pair with SCM_RIGHTS.
@Suite struct CarrierTests {
    init() {
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        if getrlimit(resource, &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            setrlimit(resource, &limit)
        }
    }

    /// 300 TCP sockets and a state: more than one message's worth of fds (253).
    static let count = 300

    func sockets(_ count: Int) -> [Int32] {
        (0..<count).map { _ in socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
    }

    func inode(_ fd: Int32) -> UInt {
        var info = stat()
        return fstat(fd, &info) == 0 ? UInt(info.st_ino) : 0
    }

    func record(_ count: Int) -> StateRecord {
        StateRecord(
            pid: 7,
            connections: (0..<count).map { index in
                ConnectionRecord(HandedOverConnection(
                    fd: -1, state: ConnectionState(session: .init(connId: "c\(index)", connected: true, seq: index), undecoded: [], peer: "127.0.0.1")))
            })
    }

    /// Sends `fds` and `record` the way ``RestartHandover/store(_:in:secret:logger:)`` does and
    /// returns the stored end, the sending end closed (as the stopping process exits).
    func carry(_ fds: [Int32], record: StateRecord) throws -> Int32 {
        let (sending, stored) = try Carrier.makePair()
        defer { close(sending) }
        let state = try StateFile.write(record)
        defer { close(state) }
        try Carrier.send(.state(fd: state), on: sending)
        for first in stride(from: 0, to: fds.count, by: Carrier.fdsPerMessage) {
            try Carrier.send(.sessions(first: first, fds: Array(fds[first..<min(first + Carrier.fdsPerMessage, fds.count)])), on: sending)
        }
        return stored
    }

    @Test func everySocketComesBackInOrderAfterTheSenderClosedItsCopies() throws {
        let originals = sockets(Self.count)
        let inodes = originals.map(inode)
        let stored = try carry(originals, record: record(Self.count))
        for fd in originals { close(fd) }  // only the carrier's queue holds them now

        let (messages, problems) = Carrier.receiveAll(from: stored, forwardingTo: nil)
        close(stored)
        #expect(problems.isEmpty)
        #expect(messages.count == 3)  // the state, 253 sockets, 47 sockets
        guard case .state(let stateFd) = messages.first else {
            Issue.record("the state comes first")
            return
        }
        #expect(try StateFile.read(stateFd).connections.count == Self.count)
        close(stateFd)
        let received = messages.dropFirst().flatMap(\.fds)
        #expect(received.map(inode) == inodes)
        #expect(received.allSatisfy { fcntl($0, F_GETFD) & FD_CLOEXEC != 0 })
        for fd in received { close(fd) }
    }

    @Test func whatIsReadIsForwardedSoThatACrashLosesNothing() throws {
        let originals = sockets(Self.count)
        let inodes = originals.map(inode)
        let stored = try carry(originals, record: record(Self.count))
        for fd in originals { close(fd) }

        let forward = try Carrier.makePair()
        let (messages, problems) = Carrier.receiveAll(from: stored, forwardingTo: forward.sending)
        close(stored)
        #expect(problems.isEmpty)
        // This process "dies" with what it read: the forward carrier still holds every socket.
        for message in messages { for fd in message.fds { close(fd) } }
        close(forward.sending)
        let again = Carrier.receiveAll(from: forward.stored, forwardingTo: nil)
        close(forward.stored)
        #expect(again.problems.isEmpty)
        #expect(again.messages.count == 3)
        #expect(again.messages.dropFirst().flatMap(\.fds).map(inode) == inodes)
        for message in again.messages { for fd in message.fds { close(fd) } }
    }

    @Test func storedSessionsMatchEachSocketToItsConnIdAcrossMessagesAndFormats() throws {
        let originals = sockets(Self.count)
        let inodes = originals.map(inode)
        let carrier = try carry(originals, record: record(Self.count))
        for fd in originals { close(fd) }
        var stored = StoredSessions.collect(
            [SystemdActivation.PassedSocket(fd: carrier, name: Carrier.storeName)], keepingIn: nil, logger: nil)
        #expect(stored.record?.pid == 7)
        #expect(stored.unmatched.isEmpty)
        #expect(stored.sockets.count == Self.count)
        #expect((0..<Self.count).allSatisfy { inode(stored.sockets["c\($0)"] ?? -1) == inodes[$0] })
        #expect(stored.names == [Carrier.storeName])
        for fd in stored.sockets.values { close(fd) }
        stored.sockets = [:]
    }

    @Test func whatZeroPointOneStoredIsReadToo() throws {
        let originals = sockets(2)
        let state = try StateFile.write(record(2))
        let passed = [
            SystemdActivation.PassedSocket(fd: originals[1], name: "conn-c1"),
            SystemdActivation.PassedSocket(fd: state, name: "state"),
            SystemdActivation.PassedSocket(fd: originals[0], name: "conn-c0"),
        ]
        let stored = StoredSessions.collect(passed, keepingIn: nil, logger: nil)
        #expect(stored.sockets == ["c0": originals[0], "c1": originals[1]])
        #expect(stored.names == ["conn-c0", "conn-c1", "state"])
        for fd in originals { close(fd) }
    }

    @Test func aMessageThatIsNotOursIsClosedAndNamed() throws {
        let (sending, stored) = try Carrier.makePair()
        let stray = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var fd = stray
        let text = Array("hello".utf8)
        #expect(text.withUnsafeBytes { openclaw_send_with_fds(sending, $0.baseAddress, UInt($0.count), &fd, 1) } > 0)
        close(sending)
        close(stray)
        let (messages, problems) = Carrier.receiveAll(from: stored, forwardingTo: nil)
        close(stored)
        #expect(messages.isEmpty)
        #expect(problems.count == 1 && problems[0].contains("not a carrier message (1 fd(s)): hello"))
    }
}

/// How a gateway asks the binary that replaced it what it reads: a real child process.
@Suite struct SuccessorQuestionTests {
    func run(_ path: String, _ argument: String, timeoutMs: Int32 = 5000) -> (Int32, String) {
        var output = [CChar](repeating: 0, count: 64)
        let status = openclaw_run_for_output(path, argument, &output, Int32(output.count), timeoutMs)
        return (status, String(decoding: output.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    @Test func theAnswerAndTheExitStatusComeBack() {
        #expect(run("/bin/echo", Carrier.format) == (0, Carrier.format + "\n"))
        #expect(run("/bin/false", "handover-formats").0 == 1)
        #expect(run("/nonexistent/openclaw-gateway", "handover-formats").0 == -ENOENT)
    }

    @Test func aBinaryThatDoesNotAnswerIsKilledInTime() {
        let started = ContinuousClock.now
        #expect(run("/bin/sleep", "30", timeoutMs: 200).0 == -ETIMEDOUT)
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func aBinaryThatDoesNotReadTheStateThisOneWritesIsRefused() {
        // what this binary answers: it may hand over to itself
        #expect(Successor.refusal(ofReading: Successor.formats, path: "/usr/bin/openclaw-gateway") == nil)
        // a build that read the carrier but only the JSON state
        let older = Successor.refusal(
            ofReading: ["openclaw-gateway-carrier/1", "openclaw-gateway-handover/1"], path: "/usr/bin/openclaw-gateway")
        #expect(older?.contains("does not read openclaw-gateway-handover/2") == true)
        #expect(Successor.refusal(ofReading: [], path: "/x")?.contains("carrier/1 or openclaw-gateway-handover/2") == true)
    }

    @Test func thisProcessRunsTheBinaryOnDiskSoNothingIsAsked() {
        #expect(Successor.replacedExecutable() == nil)
        #expect(Successor.refusal() == nil)
    }
}
