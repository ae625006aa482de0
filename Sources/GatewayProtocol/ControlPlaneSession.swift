#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// Limits and identity of the control plane; every limit has a default and is configurable.
public struct ControlPlaneConfiguration: Sendable {
    public var serverVersion: String
    /// The shared token; nil = no auth (authMode "none").
    public var token: String?
    /// Largest client frame after hello-ok (policy.maxPayload), bytes.
    public var maxPayload: Int = 1 << 20
    /// Largest client frame before hello-ok, bytes.
    public var preHandshakeMaxPayload: Int = 64 * 1024
    /// Outbound bytes queued for one client before it is dropped (policy.maxBufferedBytes).
    public var maxBufferedBytes: Int = 4 << 20
    public var tickIntervalMs: Int = 15_000
    /// Time a client has to send `connect`.
    public var handshakeTimeoutMs: Int = 10_000

    public init(serverVersion: String, token: String?) {
        self.serverVersion = serverVersion
        self.token = token
    }
}

/// What `status` reports about the process; given by whoever runs the server.
public struct ServerInfo: Sendable {
    public var pid: Int
    public var urls: [String]
    public var profile: String?
    public var listenerSource: String
    public var listenerNames: [String]
    /// Monotonic start time, milliseconds.
    public var startedAtMs: Int

    public init(pid: Int, urls: [String], profile: String?, listenerSource: String, listenerNames: [String], startedAtMs: Int) {
        self.pid = pid
        self.urls = urls
        self.profile = profile
        self.listenerSource = listenerSource
        self.listenerNames = listenerNames
        self.startedAtMs = startedAtMs
    }
}

/// What the transport should do after the session looked at something.
public enum SessionAction: Equatable, Sendable {
    /// Send one text frame.
    case send(String)
    /// Send a close frame with this code and reason, then close.
    case close(code: UInt16, reason: String)
    /// A wrong token was presented (for the per-peer rate limit).
    case authenticationFailed
}

/// One client's view of the control plane: challenge, connect, hello-ok, then requests. Pure
/// logic on text in and actions out — no I/O — so it can be tested and fuzzed on its own.
public final class ControlPlaneSession {
    public static let methods = ["health", "status"]
    public static let events = ["connect.challenge", "tick", "shutdown"]

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
    private let encoder = JSONEncoder()
    private let decoder = JSONDecoder()
    private var seq = 0

    public init(
        configuration: ControlPlaneConfiguration, info: ServerInfo, connId: String = ControlPlaneSession.randomID(),
        connectionCount: @escaping () -> Int, retryAfterMs: @escaping () -> Int? = { nil }
    ) {
        self.configuration = configuration
        self.info = info
        self.connId = connId
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

        public init(connId: String, connected: Bool, seq: Int) {
            self.connId = connId
            self.connected = connected
            self.seq = seq
        }
    }

    /// nil once the session is closed: a closed session is not carried on.
    public var snapshot: Snapshot? {
        state == .closed ? nil : Snapshot(connId: connId, connected: state == .connected, seq: seq)
    }

    /// A session carried on from an earlier process: same connId, state and sequence; no new
    /// challenge is sent (do not call ``open()``).
    public convenience init(
        restoring snapshot: Snapshot, configuration: ControlPlaneConfiguration, info: ServerInfo,
        connectionCount: @escaping () -> Int, retryAfterMs: @escaping () -> Int? = { nil }
    ) {
        self.init(configuration: configuration, info: info, connId: snapshot.connId,
                  connectionCount: connectionCount, retryAfterMs: retryAfterMs)
        state = snapshot.connected ? .connected : .awaitingConnect
        seq = snapshot.seq
    }

    /// The largest frame accepted in the current state.
    public var maxFrameSize: Int {
        state == .connected ? configuration.maxPayload : configuration.preHandshakeMaxPayload
    }

    /// On open: the challenge.
    public func open() -> [SessionAction] {
        [.send(event("connect.challenge", ChallengePayload(nonce: Self.randomID(bytes: 16), ts: Self.nowMs())))]
    }

    /// One text frame from the client.
    public func receive(_ text: String) -> [SessionAction] {
        guard state != .closed else { return [] }
        let data = Data(text.utf8)
        let head: FrameHead
        do {
            head = try decoder.decode(FrameHead.self, from: data)
        } catch DecodingError.dataCorrupted {
            return close(1007, "invalid JSON")
        } catch {
            return close(1007, "a request needs a non-empty string id")  // valid JSON, not an object
        }
        guard let id = head.id, !id.isEmpty else {
            return close(1007, "a request needs a non-empty string id")
        }
        guard head.type == "req", let method = head.method else {
            if state == .awaitingConnect { return [fail(id, "INVALID_REQUEST", "the first frame must be a connect request")] + close(1008, "connect first") }
            return [fail(id, "INVALID_REQUEST", "expected {\"type\":\"req\",\"id\":…,\"method\":…}")]
        }
        switch state {
        case .awaitingConnect:
            guard method == "connect" else {
                return [fail(id, "INVALID_REQUEST", "the first request must be connect, not \(method)")] + close(1008, "connect first")
            }
            return connect(id: id, data: data)
        case .connected:
            switch method {
            case "health":
                return [respond(id, health())]
            case "status":
                return [respond(id, status())]
            case "connect":
                return [fail(id, "INVALID_REQUEST", "already connected")]
            default:
                return [fail(id, "INVALID_REQUEST", "unknown method \(method)")]
            }
        case .closed:
            return []
        }
    }

    public func tick() -> [SessionAction] {
        guard state == .connected else { return [] }
        return [.send(event("tick", TickPayload(ts: Self.nowMs())))]
    }

    /// Shutdown: the event to a connected client, then close 1012 "service restart".
    public func shutdown(reason: String, restartExpectedMs: Int?) -> [SessionAction] {
        guard state != .closed else { return [] }
        var actions: [SessionAction] = []
        if state == .connected {
            actions.append(.send(event("shutdown", ShutdownPayload(reason: reason, restartExpectedMs: restartExpectedMs))))
        }
        return actions + close(1012, "service restart")
    }

    public func handshakeTimedOut() -> [SessionAction] {
        state == .awaitingConnect ? close(1008, "no connect within the handshake timeout") : []
    }

    // MARK: - connect

    private func connect(id: String, data: Data) -> [SessionAction] {
        let request: ConnectRequest
        do {
            request = try decoder.decode(ConnectRequest.self, from: data)
        } catch {
            return [fail(id, "INVALID_REQUEST", "invalid connect params: \(Self.describe(error))")] + close(1008, "invalid connect")
        }
        let params = request.params
        guard params.minProtocol <= Protocol.version && Protocol.version <= params.maxProtocol else {
            return [
                fail(id, "INVALID_REQUEST", "protocol mismatch: this gateway speaks \(Protocol.version)",
                     details: ["expectedProtocol": String(Protocol.version)])
            ] + close(1002, "protocol mismatch")
        }
        if let expected = configuration.token {
            if let wait = retryAfterMs() {
                var error = ErrorShape(code: "UNAUTHORIZED", message: "too many failed attempts; retry later",
                                       details: ["code": "AUTH_RATE_LIMITED"])
                error.retryable = true
                error.retryAfterMs = wait
                return [.send(encode(ResponseFrame<HealthPayload>(id: id, ok: false, payload: nil, error: error)))]
                    + close(1008, "rate limited")
            }
            guard Self.constantTimeEquals(params.auth?.token ?? "", expected) else {
                return [.authenticationFailed,
                        fail(id, "UNAUTHORIZED", "gateway token mismatch", details: ["code": "AUTH_TOKEN_MISMATCH"])]
                    + close(1008, "unauthorized")
            }
        }
        state = .connected
        let uptime = uptimeMs()
        let hello = HelloOk(
            protocol: Protocol.version,
            server: .init(version: configuration.serverVersion, connId: connId),
            features: .init(methods: Self.methods, events: Self.events),
            snapshot: .init(
                presence: [], health: health(), stateVersion: StateVersion(presence: 0, health: 0),
                uptimeMs: uptime, authMode: configuration.token == nil ? "none" : "token"),
            policy: .init(
                maxPayload: configuration.maxPayload, maxBufferedBytes: configuration.maxBufferedBytes,
                tickIntervalMs: configuration.tickIntervalMs))
        return [respond(id, hello)]
    }

    // MARK: - payloads

    private func health() -> HealthPayload {
        HealthPayload(ok: true, status: "live", uptimeMs: uptimeMs(), connections: connectionCount())
    }

    private func status() -> StatusPayload {
        StatusPayload(
            pid: info.pid, urls: info.urls, connections: connectionCount(), profile: info.profile,
            uptimeMs: uptimeMs(), listener: .init(source: info.listenerSource, names: info.listenerNames), connId: connId)
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

    private func fail(_ id: String, _ code: String, _ message: String, details: [String: String]? = nil) -> SessionAction {
        .send(encode(ResponseFrame<HealthPayload>(id: id, ok: false, payload: nil, error: ErrorShape(code: code, message: message, details: details))))
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
