#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// The shared secret a client must present in `connect.params.auth`, as upstream's
/// `gateway.auth.mode` has it.
public enum SharedSecret: Sendable, Equatable {
    /// No auth (hello-ok's authMode "none"; loopback only).
    case none
    case token(String)
    case password(String)

    /// hello-ok's `snapshot.authMode`.
    public var mode: String {
        switch self {
        case .none: "none"
        case .token: "token"
        case .password: "password"
        }
    }
}

/// Limits and identity of the control plane; every limit has a default and is configurable.
public struct ControlPlaneConfiguration: Sendable {
    public var serverVersion: String
    /// What a client must present.
    public var secret: SharedSecret
    /// Largest client frame after hello-ok (policy.maxPayload), bytes.
    public var maxPayload: Int = 1 << 20
    /// Largest client frame before hello-ok, bytes.
    public var preHandshakeMaxPayload: Int = 64 * 1024
    /// Outbound bytes queued for one client before it is dropped (policy.maxBufferedBytes).
    public var maxBufferedBytes: Int = 4 << 20
    public var tickIntervalMs: Int = 15_000
    /// Time a client has to send `connect`.
    public var handshakeTimeoutMs: Int = 10_000

    public init(serverVersion: String, secret: SharedSecret) {
        self.serverVersion = serverVersion
        self.secret = secret
    }

    /// Every limit at its default: the one place the numbers are written (`run`'s flags and
    /// their help read them from here).
    public static let defaults = ControlPlaneConfiguration(serverVersion: "", secret: .none)

    /// With a token, or no auth when it is nil.
    public init(serverVersion: String, token: String?) {
        self.init(serverVersion: serverVersion, secret: token.map(SharedSecret.token) ?? .none)
    }
}

/// What `status`, `system-presence` and `config.get` report about the process; given by whoever
/// runs the server.
public struct ServerInfo: Sendable {
    public var pid: Int
    public var urls: [String]
    public var profile: String?
    public var listenerSource: String
    public var listenerNames: [String]
    /// Monotonic start time, milliseconds.
    public var startedAtMs: Int
    /// Who is connected, shared by every session of the server.
    public var presence: PresenceBoard
    /// `config.get`'s answer: the config file as the gateway read it, redacted when asked for.
    public var configFile: ConfigFileSource?
    /// The state directory (hello-ok's snapshot.stateDir), when known.
    public var stateDirectory: String?
    /// Which configuration is in force: 1 at start, one more for each reload that changed it.
    public var configGeneration = 1
    /// How the last reload ended: none (no reload yet), applied, unchanged or rejected.
    public var lastReload = "none"

    public init(
        pid: Int, urls: [String], profile: String?, listenerSource: String, listenerNames: [String], startedAtMs: Int,
        presence: PresenceBoard = PresenceBoard(), configFile: ConfigFileSource? = nil, stateDirectory: String? = nil
    ) {
        self.pid = pid
        self.urls = urls
        self.profile = profile
        self.listenerSource = listenerSource
        self.listenerNames = listenerNames
        self.startedAtMs = startedAtMs
        self.presence = presence
        self.configFile = configFile
        self.stateDirectory = stateDirectory
    }
}

/// What the transport should do after the session looked at something.
public enum SessionAction: Equatable, Sendable {
    /// Send one text frame.
    case send(String)
    /// Send a close frame with this code and reason, then close.
    case close(code: UInt16, reason: String)
    /// A wrong token was presented (for the per-client rate limit).
    case authenticationFailed
    /// The connect was refused for its credentials, with upstream's detail code (for the log).
    case refused(code: String)
}

/// One client's view of the control plane: challenge, connect, hello-ok, then requests. Pure
/// logic on text in and actions out — no I/O — so it can be tested and fuzzed on its own.
public final class ControlPlaneSession {
    /// What this gateway serves, each with the operator scope upstream requires for it
    /// (src/gateway/method-scopes.ts): all four are read methods, and `health` is open to any role.
    public static let methods = ["health", "status", "system-presence", "config.get"]
    public static let events = ["connect.challenge", "tick", "shutdown", "presence"]

    public enum State: Equatable {
        case awaitingConnect
        case connected
        case closed
    }

    public private(set) var state: State = .awaitingConnect
    public let connId: String
    private let configuration: ControlPlaneConfiguration
    private let info: ServerInfo
    private let connectionCount: () -> Int
    /// Milliseconds until this peer may try a token again, when it is rate limited.
    private let retryAfterMs: () -> Int?
    /// The client's address, for its presence entry (left out for loopback, as upstream does).
    private let peer: String
    private let encoder = JSONEncoder()
    private let decoder = JSONDecoder()
    private var seq = 0
    /// Granted at connect.
    private var grant = Grant(role: "operator", scopes: [])
    /// This client's presence entry, once connected.
    private var presence: PresenceEntry?

    public init(
        configuration: ControlPlaneConfiguration, info: ServerInfo, connId: String = ControlPlaneSession.randomID(),
        peer: String = "", connectionCount: @escaping () -> Int, retryAfterMs: @escaping () -> Int? = { nil }
    ) {
        self.configuration = configuration
        self.info = info
        self.connId = connId
        self.peer = peer
        self.connectionCount = connectionCount
        self.retryAfterMs = retryAfterMs
        encoder.outputFormatting = [.withoutEscapingSlashes]
    }

    /// What a later process needs to carry this session on (restart handover): who the client is
    /// to us and where its event sequence stands.
    public struct Snapshot: Codable, Sendable, Equatable {
        public var connId: String
        /// Past hello-ok (false: the challenge was sent, connect not yet).
        public var connected: Bool
        /// The last event sequence number sent.
        public var seq: Int
        /// The role and scopes granted at connect; nil from a version that granted none.
        public var role: String?
        public var scopes: [String]?
        /// The client's presence entry.
        public var presence: PresenceEntry?

        public init(connId: String, connected: Bool, seq: Int, role: String? = nil, scopes: [String]? = nil, presence: PresenceEntry? = nil) {
            self.connId = connId
            self.connected = connected
            self.seq = seq
            self.role = role
            self.scopes = scopes
            self.presence = presence
        }
    }

    /// nil once the session is closed: a closed session is not carried on.
    public var snapshot: Snapshot? {
        guard state != .closed else { return nil }
        guard state == .connected else { return Snapshot(connId: connId, connected: false, seq: seq) }
        return Snapshot(connId: connId, connected: true, seq: seq, role: grant.role, scopes: grant.scopes, presence: presence)
    }

    /// A session carried on from an earlier process: same connId, state, grant and sequence; no
    /// new challenge is sent (do not call ``open()``). A session from a version that recorded no
    /// grant served only read methods, and carries on with read access.
    public convenience init(
        restoring snapshot: Snapshot, configuration: ControlPlaneConfiguration, info: ServerInfo, peer: String = "",
        connectionCount: @escaping () -> Int, retryAfterMs: @escaping () -> Int? = { nil }
    ) {
        self.init(configuration: configuration, info: info, connId: snapshot.connId, peer: peer,
                  connectionCount: connectionCount, retryAfterMs: retryAfterMs)
        seq = snapshot.seq
        guard snapshot.connected else { return }
        state = .connected
        grant = Grant(role: snapshot.role ?? "operator", scopes: snapshot.scopes ?? [Grant.readScope])
        presence = snapshot.presence ?? PresenceEntry(reason: "connect", text: "Node: \(snapshot.connId)", ts: Self.nowMs())
        info.presence.join(connId: connId, presence!, quietly: true)
    }

    /// The largest frame accepted in the current state.
    public var maxFrameSize: Int {
        state == .connected ? configuration.maxPayload : configuration.preHandshakeMaxPayload
    }

    /// On open: the challenge.
    public func open() -> [SessionAction] {
        [.send(event("connect.challenge", ChallengePayload(nonce: Self.randomID(bytes: 16), ts: Self.nowMs())))]
    }

    /// One message from the client: the text of a text frame, or of a binary frame (upstream's
    /// apps send every request as binary JSON). The transport has checked that it is UTF-8.
    public func receive(_ text: String) -> [SessionAction] {
        guard state != .closed else { return [] }
        let head: FrameHead
        if let scanned = FrameHeadScanner.head(of: text) {
            head = scanned
        } else {
            do {
                head = try decoder.decode(FrameHead.self, from: Data(text.utf8))
            } catch DecodingError.dataCorrupted {
                return close(1007, "invalid JSON")
            } catch {
                return close(1007, "a request needs a non-empty string id")  // valid JSON, not an object
            }
        }
        guard let id = head.id, !id.isEmpty else {
            return close(1007, "a request needs a non-empty string id")
        }
        guard head.type == "req", let method = head.method else {
            if state == .awaitingConnect { return [fail(id, "the first frame must be a connect request")] + close(1008, "connect first") }
            return [fail(id, "expected {\"type\":\"req\",\"id\":…,\"method\":…}")]
        }
        switch state {
        case .awaitingConnect:
            guard method == "connect" else {
                return [fail(id, "the first request must be connect, not \(method)")] + close(1008, "connect first")
            }
            return connect(id: id, data: Data(text.utf8))
        case .connected:
            if method == "connect" { return [fail(id, "already connected")] }
            guard Self.methods.contains(method) else { return [fail(id, "unknown method \(method)")] }
            if let refusal = grant.refusal(for: method) { return [fail(id, refusal)] }
            switch method {
            case "health": return [.send(health().responseFrame(id: id))]
            case "status": return [respond(id, status())]
            case "system-presence": return [respond(id, info.presence.list(now: Self.nowMs()))]
            default: return [respond(id, configSnapshot())]
            }
        case .closed:
            return []
        }
    }

    public func tick() -> [SessionAction] {
        guard state == .connected else { return [] }
        return [.send(event("tick", TickPayload(ts: Self.nowMs())))]
    }

    /// A `presence` event (upstream's broadcastPresenceSnapshot: the whole list and the state
    /// versions) to a connected client; `payload` is ``PresenceBoard/eventPayload(now:)``, encoded
    /// once for every session.
    public func presenceEvent(payload: String, presenceVersion: Int) -> [SessionAction] {
        guard state == .connected, wantsPresence else { return [] }
        seq += 1
        return [.send(#"{"type":"event","event":"presence","payload":"# + payload
            + #","seq":\#(seq),"stateVersion":{"presence":\#(presenceVersion),"health":0}}"#)]
    }

    /// An event this client does not get (it is not reading): its sequence number is used up.
    public func skipEvent() {
        if state == .connected && wantsPresence { seq += 1 }
    }

    /// Client modes that get `presence` events: not a node (upstream sends nodes none), and not a
    /// command-line run or a probe, which read presence with `system-presence` when they want it.
    /// Every event carries the whole list (up to 200 entries), so sending it to every connection
    /// would cost the clients' count times the list for each change.
    static let presenceQuietModes: Set<String> = ["cli", "probe"]

    private var wantsPresence: Bool {
        grant.role == "operator" && !(presence?.mode.map(Self.presenceQuietModes.contains) ?? false)
    }

    /// Shutdown: the event to a connected client, then close 1012 "service restart".
    public func shutdown(reason: String, restartExpectedMs: Int?) -> [SessionAction] {
        end(reason: reason, restartExpectedMs: restartExpectedMs, closeCode: 1012, closeReason: "service restart")
    }

    /// The gateway's token or password changed (a reload): the secret this session presented, or
    /// the lack of one, no longer holds. The `shutdown` event, then upstream's close for it, 4001
    /// "gateway auth changed"; the client reconnects with the new secret.
    public func credentialsChanged() -> [SessionAction] {
        end(reason: Self.credentialsChangedReason, restartExpectedMs: nil, closeCode: 4001, closeReason: Self.credentialsChangedReason)
    }

    static let credentialsChangedReason = "gateway auth changed"

    private func end(reason: String, restartExpectedMs: Int?, closeCode: UInt16, closeReason: String) -> [SessionAction] {
        guard state != .closed else { return [] }
        var actions: [SessionAction] = []
        if state == .connected {
            actions.append(.send(event("shutdown", ShutdownPayload(reason: reason, restartExpectedMs: restartExpectedMs))))
        }
        return actions + close(closeCode, closeReason)
    }

    public func handshakeTimedOut() -> [SessionAction] {
        state == .awaitingConnect ? close(1008, "no connect within the handshake timeout") : []
    }

    /// The connection is gone (closed, or handed to the next process): the client leaves the
    /// presence list.
    public func disconnected() {
        if presence != nil { info.presence.leave(connId: connId) }
        presence = nil
    }

    // MARK: - connect

    private func connect(id: String, data: Data) -> [SessionAction] {
        let request: ConnectRequest
        do {
            request = try decoder.decode(ConnectRequest.self, from: data)
        } catch {
            return [fail(id, "invalid connect params: \(Self.describe(error))")] + close(1008, "invalid connect")
        }
        let params = request.params
        guard params.minProtocol <= Protocol.version && Protocol.version <= params.maxProtocol else {
            var details = ErrorDetails(code: "PROTOCOL_MISMATCH")
            details.expectedProtocol = Protocol.version
            details.clientMinProtocol = params.minProtocol
            details.clientMaxProtocol = params.maxProtocol
            details.minimumProbeProtocol = Protocol.version
            return [fail(id, "protocol mismatch", details: details)] + close(1002, "protocol mismatch")
        }
        let role = params.role ?? "operator"
        guard Grant.roles.contains(role) else {
            return [fail(id, "invalid role: \(role) (expected operator or node)")] + close(1008, "invalid role")
        }
        if let failure = authenticate(params) {
            state = .closed
            return failure.actions(id: id, client: params.client, encode: encodeError)
        }
        state = .connected
        grant = Grant(role: role, requested: params.scopes ?? [])
        let client = params.client
        let host = client.displayName ?? client.id
        let entry = PresenceEntry(
            host: host, ip: Self.isLoopback(peer) ? nil : peer, version: client.version, platform: client.platform,
            deviceFamily: client.deviceFamily, modelIdentifier: client.modelIdentifier, mode: client.mode,
            reason: "connect", roles: [role], scopes: grant.scopes, instanceId: client.instanceId,
            text: PresenceEntry.clientText(host: host, mode: client.mode), ts: Self.nowMs()
        ).withoutEmptyStrings()
        presence = entry
        info.presence.join(connId: connId, entry)
        let uptime = uptimeMs()
        let hello = HelloOk(
            protocol: Protocol.version,
            server: .init(version: configuration.serverVersion, connId: connId),
            features: .init(methods: Self.methods, events: Self.events),
            snapshot: .init(
                presence: info.presence.list(now: Self.nowMs()), health: health(),
                stateVersion: StateVersion(presence: info.presence.version, health: 0),
                uptimeMs: uptime, configPath: info.configFile?.path, stateDir: info.stateDirectory,
                authMode: configuration.secret.mode),
            auth: .init(role: grant.role, scopes: grant.scopes),
            policy: .init(
                maxPayload: configuration.maxPayload, maxBufferedBytes: configuration.maxBufferedBytes,
                tickIntervalMs: configuration.tickIntervalMs))
        return [respond(id, hello)]
    }

    /// nil when the secret is right (or none is needed); otherwise why not, in upstream's words.
    /// Only the secret of the configured mode counts: a right token does not pass a password gateway.
    private func authenticate(_ params: ConnectRequest.Params) -> AuthFailure? {
        let (presented, expected, missing, mismatch): (String?, String, AuthFailure, AuthFailure)
        switch configuration.secret {
        case .none: return nil
        case .token(let token): (presented, expected, missing, mismatch) = (params.auth?.token, token, .tokenMissing, .tokenMismatch)
        case .password(let password):
            (presented, expected, missing, mismatch) = (params.auth?.password, password, .passwordMissing, .passwordMismatch)
        }
        if let wait = retryAfterMs() { return .rateLimited(retryAfterMs: wait) }
        guard let presented, !presented.isEmpty else { return missing }
        return Self.constantTimeEquals(presented, expected) ? nil : mismatch
    }

    // MARK: - payloads

    private func health() -> HealthPayload {
        HealthPayload(ok: true, status: "live", ts: Self.nowMs(), durationMs: 0, uptimeMs: uptimeMs(), connections: connectionCount())
    }

    private func status() -> StatusPayload {
        StatusPayload(
            pid: info.pid, urls: info.urls, connections: connectionCount(), profile: info.profile,
            uptimeMs: uptimeMs(), listener: .init(source: info.listenerSource, names: info.listenerNames), connId: connId,
            runtimeVersion: configuration.serverVersion)
    }

    private func configSnapshot() -> ConfigSnapshot {
        info.configFile?.snapshot ?? ConfigSnapshot(path: "", contents: nil)
    }

    private func uptimeMs() -> Int { max(0, Self.monotonicMs() - info.startedAtMs) }

    // MARK: - frames

    private func close(_ code: UInt16, _ reason: String) -> [SessionAction] {
        state = .closed
        return [.close(code: code, reason: reason)]
    }

    private func respond<Payload: Encodable>(_ id: String, _ payload: Payload) -> SessionAction {
        .send(encode(ResponseFrame(id: id, ok: true, payload: payload, error: nil)))
    }

    /// An error response; every code this gateway sends is upstream's INVALID_REQUEST.
    private func fail(_ id: String, _ message: String, details: ErrorDetails? = nil) -> SessionAction {
        encodeError(id, ErrorShape(code: .invalidRequest, message: message, details: details))
    }

    private func encodeError(_ id: String, _ error: ErrorShape) -> SessionAction {
        .send(encode(ResponseFrame<HealthPayload>(id: id, ok: false, payload: nil, error: error)))
    }

    private func event<Payload: Encodable>(_ name: String, _ payload: Payload) -> String {
        seq += 1
        return encode(EventFrame(event: name, payload: payload, seq: seq))
    }

    private func encode<Frame: Encodable>(_ frame: Frame) -> String {
        // Our own types always encode; a failure here is a programming error worth a loud message.
        guard let data = try? encoder.encode(frame) else {
            return #"{"type":"event","event":"error","payload":{}}"#
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func isLoopback(_ address: String) -> Bool {
        address.isEmpty || address == "?" || address.hasPrefix("127.") || address == "::1" || address.hasPrefix("::ffff:127.")
    }

    // MARK: - helpers

    /// Compares without an early exit, so the time taken does not tell how much of a guess was right.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        let length = max(x.count, y.count)
        for i in 0..<length {
            let p = i < x.count ? x[i] : 0
            let q = i < y.count ? y[i] : 0
            difference |= p ^ q
        }
        return difference == 0
    }

    public static func randomID(bytes: Int = 8) -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for _ in 0..<bytes {
            let byte = UInt8.random(in: 0...255, using: &generator)
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func nowMs() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int(now.tv_sec) * 1000 + Int(now.tv_nsec) / 1_000_000
    }

    public static func monotonicMs() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int(now.tv_sec) * 1000 + Int(now.tv_nsec) / 1_000_000
    }

    static func describe(_ error: Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing \((context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: "."))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "bad \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        @unknown default:
            return "invalid"
        }
    }
}
