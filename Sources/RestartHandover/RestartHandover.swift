import CProcess
import Dispatch
import GatewayProtocol
import GatewayServer
import Logging
import Synchronization
import Systemd

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// Zero-disconnect restarts under systemd: live WebSocket sessions cross a restart in the
/// service's file descriptor store, all of them in one entry, the ``Carrier``.
///
/// At SIGTERM, ``decide(store:)`` asks systemd whether a restart is pending. Only then are the
/// sessions handed over: their sockets and their state go into the carrier, and the carrier into
/// the store as `sessions`. On a stop (or when systemd cannot be asked, or keeps no store) clients
/// are closed as always: `shutdown` event and 1012. At start, ``takeBack(_:server:store:secret:logger:)``
/// carries on what the store passed back, closes cleanly what it cannot carry on, and empties the
/// store — before READY=1. It also reads what 0.1.0 stored: one entry per session (`conn-<connId>`)
/// and their state as a memfd (`state`).
public enum RestartHandover {
    public enum Decision: Sendable, Equatable {
        /// Hand the connections over.
        case handOver
        /// Close every client, with why (for the log).
        case closeClients(reason: String)
    }

    /// Names of the fds a gateway leaves in systemd's fd store: the carrier, and what 0.1.0 left
    /// (`state`, `conn-<id>`).
    static func isStoreName(_ name: String) -> Bool {
        name == Carrier.storeName || Legacy.isStoreName(name)
    }

    /// Takes what a gateway left in systemd's fd store out of what systemd passed: those fds come
    /// back in LISTEN_FDS beside the listeners, in no fixed order. The activation left over is the
    /// lock's (`GatewayLock.acquire`); `stored` goes to
    /// ``takeBack(_:server:store:secret:logger:)``, or to ``closeStored(_:)`` when the gateway
    /// cannot start. Each stored fd gets FD_CLOEXEC.
    public static func separateStored(
        _ activation: SystemdActivation
    ) -> (listeners: SystemdActivation, stored: [SystemdActivation.PassedSocket]) {
        guard case .passed(let sockets) = activation else { return (activation, []) }
        let stored = sockets.filter { isStoreName($0.name) }
        for socket in stored { _ = fcntl(socket.fd, F_SETFD, fcntl(socket.fd, F_GETFD) | FD_CLOEXEC) }
        return (.passed(sockets.filter { !isStoreName($0.name) }), stored)
    }

    /// The formats this binary reads, which `openclaw-gateway handover-formats` prints: a gateway
    /// hands its sessions only to a binary that lists the carrier (a downgrade may not).
    public static var formats: [String] { Successor.formats }

    /// The policy: hand over only when systemd has a restart of this service pending, to a binary
    /// that reads the carrier. Its D-Bus
    /// calls block up to about a second each, so they run on a thread of their own, never on
    /// Swift's cooperative pool.
    public static func decide(store: FileDescriptorStore, cause: StopCause = .signal) async -> Decision {
        await offThePool { decideBlocking(store: store, cause: cause) }
    }

    /// The exit status of a gateway that stops so that systemd starts it again with a new
    /// configuration (a reload in hybrid or restart mode): EX_TEMPFAIL, which the units list in
    /// `RestartForceExitStatus=`.
    public static let restartExitStatus: Int32 = 75

    /// Why the gateway stops.
    public enum StopCause: Sendable, Equatable {
        /// SIGTERM or SIGINT: systemd's job (restart or stop) decides, or a person does.
        case signal
        /// A reload whose changes only a new process takes up: the gateway exits with
        /// ``restartExitStatus`` and systemd starts it again.
        case restartForConfiguration
    }

    /// Nil when the gateway may stop for systemd to start it again (``StopCause/restartForConfiguration``):
    /// a service manager runs it, and its unit restarts it after ``restartExitStatus``
    /// whatever `Restart=` says. Otherwise why not, for the log.
    public static func selfRestartRefusal() async -> String? {
        await offThePool { () -> String? in
            guard FileDescriptorStore().isAvailable else { return "not run by a service manager (no NOTIFY_SOCKET)" }
            switch ServiceManager.stateOfThisService() {
            case .failure(let error):
                return "cannot ask systemd about this unit: \(error)"
            case .success(let state) where !state.restartForceExitStatuses.contains(restartExitStatus):
                return "\(state.unit) would not be started again after exit \(restartExitStatus) (RestartForceExitStatus=\(restartExitStatus) is not set)"
            case .success:
                return nil
            }
        }
    }

    /// D-Bus calls block up to about a second each: on a thread of their own, never on Swift's
    /// cooperative pool.
    private static func offThePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: body()) }
        }
    }

    static func decideBlocking(store: FileDescriptorStore, cause: StopCause = .signal) -> Decision {
        guard store.isAvailable else {
            return .closeClients(reason: "not run by a service manager (no NOTIFY_SOCKET)")
        }
        let state: ServiceManagerState
        switch ServiceManager.stateOfThisService() {
        case .success(let answer): state = answer
        case .failure(let error): return .closeClients(reason: "cannot ask systemd whether this is a restart: \(error)")
        }
        guard state.fdStoreMax > 0 else {
            return .closeClients(reason: "\(state.unit) keeps no fd store (FileDescriptorStoreMax=\(state.fdStoreMax))")
        }
        switch cause {
        case .signal:
            guard state.restartPending else {
                return .closeClients(reason: "\(state.unit) is stopping, not restarting (job: \(state.jobType ?? "none"))")
            }
        case .restartForConfiguration:
            guard state.jobType == nil || state.restartPending else {
                return .closeClients(reason: "\(state.unit) is stopping (job: \(state.jobType ?? "none"))")
            }
            guard state.restartForceExitStatuses.contains(restartExitStatus) else {
                return .closeClients(reason: "\(state.unit) would not be started again after exit \(restartExitStatus)")
            }
        }
        if let refusal = Successor.refusal() { return .closeClients(reason: refusal) }
        return .handOver
    }

    /// Sends the handed-over connections and their state through a new carrier and puts the
    /// carrier into the store. Returns how many went: the first that many of `connections`, in
    /// order (all, as a rule; none when the carrier could not be stored). The fds are only
    /// borrowed: they stay open, and the server closes the ones that did not go as at a stop
    /// (``GatewayServer/finishHandOver(_:sent:)``).
    @discardableResult
    public static func store(
        _ connections: [HandedOverConnection], in store: FileDescriptorStore, secret: SharedSecret, logger: Logger
    ) -> Int {
        guard !connections.isEmpty else { return 0 }
        var phases = PhaseClock()
        let record = StateRecord(
            pid: Int(getpid()), protocolVersion: GatewayProtocol.Protocol.version,
            tokenDigest: Self.digest(secret), connections: connections.map(ConnectionRecord.init))
        var sent = 0
        do {
            let (sending, stored) = try Carrier.makePair()
            defer {
                close(sending)
                close(stored)
            }
            let stateFd = try StateFile.write(record)
            defer { close(stateFd) }
            phases.lap("state")
            try Carrier.send(.state(fd: stateFd), on: sending)
            do {
                for first in stride(from: 0, to: connections.count, by: Carrier.fdsPerMessage) {
                    let batch = connections[first..<min(first + Carrier.fdsPerMessage, connections.count)]
                    try Carrier.send(.sessions(first: first, fds: batch.map(\.fd)), on: sending)
                    sent = batch.endIndex
                }
            } catch {
                logger.warning("the carrier took \(sent) of \(connections.count) connection(s) (\(error)); closing the others")
            }
            phases.lap("carrier")
            do {
                try store.store(stored, name: Carrier.storeName, poll: false)
                try store.barrier()
                phases.lap("fd store")
            } catch {
                // Nothing is in the store: what is in the carrier dies with it. Close it all cleanly.
                logger.warning("\(error); closing the connections instead")
                sent = 0
            }
        } catch {
            logger.warning("cannot hand the connections over (\(error)); closing them instead")
            sent = 0
        }
        logger.debug("storing \(connections.count) connection(s): \(phases)")
        return sent
    }

    /// What the store passed back at start: carries on each session it can and closes the rest
    /// cleanly; then removes every one of them from the store, so that a client that leaves later
    /// really is disconnected. Returns how many sessions were carried on.
    ///
    /// Until the sessions are this process's own, they are in the store too: what the carrier
    /// held is forwarded into a new carrier stored beside it, and no session reads before the
    /// store is emptied. A process killed in between leaves both carriers, and the next start
    /// carries the sessions on from them.
    @discardableResult
    public static func takeBack(
        _ passed: [SystemdActivation.PassedSocket], server: GatewayServer, store: FileDescriptorStore, secret: SharedSecret,
        logger: Logger
    ) async -> Int {
        guard !passed.isEmpty else { return 0 }
        let started = ContinuousClock.now
        var phases = PhaseClock()
        var stored = StoredSessions.collect(passed, keepingIn: store, logger: logger)
        phases.lap("read store")
        let sessionCount = stored.sockets.count + stored.unmatched.count

        var carried: [GatewayServer.Restored] = []
        var from = ""
        if let record = stored.record {
            from = " from pid \(record.pid)"
            var restorable: [HandedOverConnection] = []
            // The same for every authenticated session of the record: worked out once, not per session.
            let refusalIfConnected = refusal(ofConnectedIn: record, secret: secret)
            let fds = record.connections.map { stored.sockets.removeValue(forKey: $0.connId) }
            let isConnectedTCP = connectedTCP(fds)
            for (index, entry) in record.connections.enumerated() {
                guard let fd = fds[index] else {
                    logger.notice("connection \(entry.connId) is in the state but its socket did not come back")
                    continue
                }
                guard isConnectedTCP[index] else {
                    logger.warning("stored fd for \(entry.connId) is not a connected TCP socket; closing it")
                    close(fd)
                    continue
                }
                if entry.connected, let reason = refusalIfConnected {
                    logger.notice("connection \(entry.connId) is not carried on: \(reason)")
                    GatewayServer.closeHandedOver(fd: fd, session: entry.state.session, reason: reason)
                    continue
                }
                restorable.append(HandedOverConnection(fd: fd, state: entry.state))
            }
            phases.lap("check")
            for (connection, result) in zip(restorable, await server.restore(restorable)) {
                switch result {
                case .success(let restored):
                    carried.append(restored)
                case .failure(let error):
                    logger.warning("connection \(connection.state.session.connId) cannot be carried on (\(error)); closing it")
                    GatewayServer.closeHandedOver(fd: connection.fd, session: connection.state.session, reason: "gateway restarted")
                }
            }
        }
        stored.closeRemaining(reason: "gateway restarted")
        phases.lap("adopt")
        FaultInjection.killIfAsked(at: .takeBackAdopted)

        // The sessions are ours: out of the store with them, then they may read.
        for error in stored.release(from: store) { logger.warning("\(error)") }
        phases.lap("empty store")
        await server.resume(carried)
        phases.lap("resume")
        logger.debug("taking back \(sessionCount) connection(s): \(phases)")
        let closed = sessionCount - carried.count
        let closedText = closed > 0 ? "; closed \(closed)" : ""
        logger.info("carried on \(carried.count) connection(s)\(from) across the restart\(closedText) (\(milliseconds(since: started)) ms)")
        return carried.count
    }

    /// Whether each fd is a connected TCP socket (nil: false). sd_is_socket_inet(3) makes four
    /// system calls a fd, 41 ms for 10,000 sessions on one thread while the clients wait, so the
    /// fds are checked in contiguous shares, one per core. `shares`: how many instead (`make
    /// bench-adopt` times one against the default; `package`, not `public`, for that alone).
    package static func connectedTCP(_ fds: [Int32?], shares: Int? = nil) -> [Bool] {
        // A few hundred fds take under a millisecond: those stay on this thread.
        let shares = max(1, shares ?? min(ProcessInfo.processInfo.activeProcessorCount, fds.count / 256))
        let perShare = (fds.count + shares - 1) / shares
        let answers = Mutex([[Bool]](repeating: [], count: shares))
        DispatchQueue.concurrentPerform(iterations: shares) { share in
            let range = share * perShare..<min(fds.count, (share + 1) * perShare)
            let checked = range.map { index in
                fds[index].map { SystemdActivation.isInetSocket($0, type: Int32(SOCK_STREAM.rawValue), listening: 0) > 0 } ?? false
            }
            answers.withLock { $0[share] = checked }
        }
        return answers.withLock { $0.flatMap { $0 } }
    }

    /// When the gateway cannot start (a bad flag or config after an upgrade, a listener problem):
    /// closes the sessions a restart handed over (``separateStored(_:)``) the way a stop would —
    /// `shutdown` event and 1012 — instead of leaving systemd to drop them without a word, and
    /// empties the store.
    public static func closeStored(_ passed: [SystemdActivation.PassedSocket]) {
        guard !passed.isEmpty else { return }
        let store = FileDescriptorStore()
        var stored = StoredSessions.collect(passed, keepingIn: nil, logger: nil)
        let reason = "gateway failed to start"
        for entry in stored.record?.connections ?? [] {
            if let fd = stored.sockets.removeValue(forKey: entry.connId) {
                GatewayServer.closeHandedOver(fd: fd, session: entry.state.session, reason: reason)
            }
        }
        stored.closeRemaining(reason: reason)
        _ = stored.release(from: store)
    }

    /// Why a stored session must not carry on in this process, if it must not: it speaks another
    /// protocol, or it authenticated under a secret this process does not have (a token or
    /// password added or changed across the restart). Such a client is closed and reconnects afresh.
    static func refusal(of entry: ConnectionRecord, in record: StateRecord, secret: SharedSecret) -> String? {
        guard entry.connected else { return nil }  // it will authenticate here
        return refusal(ofConnectedIn: record, secret: secret)
    }

    /// ``refusal(of:in:secret:)`` for any session of `record` that had authenticated.
    static func refusal(ofConnectedIn record: StateRecord, secret: SharedSecret) -> String? {
        if record.protocolVersion != GatewayProtocol.Protocol.version {
            return "it speaks protocol \(record.protocolVersion)"
        }
        guard let expected = digest(secret) else { return nil }  // no auth needed now
        guard let digest = record.tokenDigest, ControlPlaneSession.constantTimeEquals(digest, expected) else {
            return "gateway \(secret.mode) changed"
        }
        return nil
    }

    /// ``digest(_:)-(String)`` of the secret's text; a password is marked so that a token and a
    /// password of the same text differ. nil without a secret.
    static func digest(_ secret: SharedSecret) -> String? {
        switch secret {
        case .none: nil
        case .token(let token): digest(token)
        case .password(let password): digest("password:" + password)
        }
    }

    /// Tells whether the secret changed across a restart without putting it into the store:
    /// FNV-1a (64 bit) over a fixed salt and the text. Not a secret-keeping hash; the memfd is
    /// readable only by root and the service, which have the configuration anyway.
    static func digest(_ token: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in Array("openclaw-gateway-handover/1:".utf8) + Array(token.utf8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return String(hash, radix: 16)
    }

    public static func milliseconds(since start: ContinuousClock.Instant) -> Int {
        let elapsed = ContinuousClock.now - start
        return Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
    }
}

/// What the state memfd holds, versioned by `format`: ``BinaryState`` (`/2`) as written since
/// 0.2.0, or the JSON of `/1` that 0.1.0 writes.
struct StateRecord: Codable, Equatable {
    static let currentFormat = BinaryState.format
    static let jsonFormat = "openclaw-gateway-handover/1"
    /// The formats ``StateFile/read(_:)`` reads.
    static let formatsRead = [currentFormat, jsonFormat]
    var format = StateRecord.currentFormat
    var pid: Int
    /// The protocol the sessions spoke (hello-ok's `protocol`).
    var protocolVersion: Int = GatewayProtocol.Protocol.version
    /// ``RestartHandover/digest(_:)-(SharedSecret)`` of the secret the connected sessions
    /// authenticated with (the key keeps its first name); nil when none was required.
    var tokenDigest: String?
    var connections: [ConnectionRecord]
}

struct ConnectionRecord: Codable, Equatable {
    var connId: String
    var connected: Bool
    var seq: Int
    var peer: String
    /// Base64 of the bytes read but not yet acted on.
    var undecoded: Data
    /// The grant and the client of a connected session. Absent in the records of 0.1.0, which
    /// granted nothing; a newer field is ignored by an older reader.
    var role: String?
    var scopes: [String]?
    var client: ClientRecord?
}

extension ConnectionRecord {
    init(_ connection: HandedOverConnection) {
        let state = connection.state
        connId = state.session.connId
        connected = state.session.connected
        seq = state.session.seq
        peer = state.peer
        undecoded = Data(state.undecoded)
        role = state.session.role
        scopes = state.session.scopes
        client = state.session.presence.map(ClientRecord.init)
    }

    var state: ConnectionState {
        ConnectionState(
            session: .init(
                connId: connId, connected: connected, seq: seq, role: role, scopes: scopes,
                presence: client.map { $0.presence(role: role ?? "operator", scopes: scopes ?? []) }),
            undecoded: Array(undecoded), peer: peer)
    }
}

/// Who the client said it is at connect: its presence entry less what the grant or the entry's
/// other fields give back (its roles, scopes, reason and text). A restart with thousands of
/// sessions decodes this for every one before it is ready, so it carries no more than it must.
struct ClientRecord: Codable, Equatable {
    var host: String?
    var ip: String?
    var version: String?
    var platform: String?
    var deviceFamily: String?
    var modelIdentifier: String?
    var mode: String?
    var instanceId: String?
    var ts: Int
}

extension ClientRecord {
    init(_ entry: PresenceEntry) {
        host = entry.host
        ip = entry.ip
        version = entry.version
        platform = entry.platform
        deviceFamily = entry.deviceFamily
        modelIdentifier = entry.modelIdentifier
        mode = entry.mode
        instanceId = entry.instanceId
        ts = entry.ts
    }

    func presence(role: String, scopes: [String]) -> PresenceEntry {
        PresenceEntry(
            host: host, ip: ip, version: version, platform: platform, deviceFamily: deviceFamily,
            modelIdentifier: modelIdentifier, mode: mode, reason: "connect", roles: [role], scopes: scopes,
            instanceId: instanceId, text: PresenceEntry.clientText(host: host ?? "", mode: mode ?? ""), ts: ts)
    }
}

struct StateFileError: Error, CustomStringConvertible {
    let description: String
}

/// The state travels in a memfd: an anonymous file that lives as long as an fd refers to it.
enum StateFile {
    /// A memfd with `record` in ``BinaryState``, the current format, whatever `record.format` says.
    static func write(_ record: StateRecord) throws -> Int32 {
        try write(bytes: BinaryState.encode(record))
    }

    static func write(bytes: [UInt8]) throws -> Int32 {
        let fd = openclaw_memfd_create("openclaw-gateway-state")
        guard fd >= 0 else { throw StateFileError(description: "memfd_create: \(String(cString: strerror(errno)))") }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else {
                let error = StateFileError(description: "write: \(String(cString: strerror(errno)))")
                close(fd)
                throw error
            }
            offset += n
        }
        return fd
    }

    static func read(_ fd: Int32) throws -> StateRecord {
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw StateFileError(description: "fd \(fd) is not a file")
        }
        guard info.st_size <= 256 << 20 else { throw StateFileError(description: "\(info.st_size) bytes is too large") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            guard n > 0 else { throw StateFileError(description: "read: \(String(cString: strerror(errno)))") }
            offset += n
        }
        if BinaryState.isBinary(bytes) { return try BinaryState.decode(bytes) }
        let record: StateRecord
        do {
            record = try JSONDecoder().decode(StateRecord.self, from: Data(bytes))
        } catch {
            throw StateFileError(description: "neither \(BinaryState.format) nor the JSON of \(StateRecord.jsonFormat): \(error)")
        }
        guard record.format == StateRecord.jsonFormat else {
            throw StateFileError(description: "unknown format \(record.format)")
        }
        return record
    }
}

/// The gateway's ``RestartHandover/StopCause``, set before it stops, read as it stops.
public final class StopCauseRecord: Sendable {
    private let cause = Mutex(RestartHandover.StopCause.signal)

    public init() {}

    public var value: RestartHandover.StopCause {
        get { cause.withLock { $0 } }
        set { cause.withLock { $0 = newValue } }
    }
}
