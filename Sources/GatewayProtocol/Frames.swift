#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The OpenClaw gateway protocol v4 frames this gateway speaks (JSON text frames). Outbound frames
/// are closed objects: upstream clients reject extra keys, so every type here encodes exactly the
/// keys of `shared/spec/protocol-v4.schema.json`, and optional values are omitted, never null.
public enum Protocol {
    public static let version = 4
}

// MARK: - inbound

/// Just enough of a client frame to answer it, read without building the whole tree: each field
/// is nil when absent or of another type (an id of 7 is as unreadable as no id).
struct FrameHead: Decodable, Equatable {
    let type: String?
    let id: String?
    let method: String?

    enum CodingKeys: String, CodingKey { case type, id, method }

    init(type: String?, id: String?, method: String?) {
        self.type = type
        self.id = id
        self.method = method
    }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)  // throws unless an object
        type = try? container.decodeIfPresent(String.self, forKey: .type)
        id = try? container.decodeIfPresent(String.self, forKey: .id)
        method = try? container.decodeIfPresent(String.self, forKey: .method)
    }
}

struct ConnectRequest: Decodable {
    struct Params: Decodable {
        struct Client: Decodable {
            let id: String
            let version: String
            let platform: String
            let mode: String
            let displayName: String?
            let deviceFamily: String?
            let modelIdentifier: String?
            let instanceId: String?
        }

        struct Auth: Decodable {
            let token: String?
            let password: String?
        }

        let minProtocol: Int
        let maxProtocol: Int
        let client: Client
        let auth: Auth?
        /// `operator` (the default) or `node`.
        let role: String?
        /// The operator scopes the client asks for.
        let scopes: [String]?
    }

    let params: Params
}

// MARK: - outbound

/// Upstream's ErrorCodes (packages/gateway-protocol schema/error-codes.ts): the only top-level codes.
public enum ErrorCode: String, Encodable, Sendable {
    case notLinked = "NOT_LINKED"
    case notPaired = "NOT_PAIRED"
    case agentTimeout = "AGENT_TIMEOUT"
    case invalidRequest = "INVALID_REQUEST"
    case approvalNotFound = "APPROVAL_NOT_FOUND"
    case unavailable = "UNAVAILABLE"
}

/// Upstream's connect-error details (connect-error-details.ts): a detail code, and for a protocol
/// mismatch the numbers its client formats ("protocol mismatch: Control UI v3, Gateway v4, …").
public struct ErrorDetails: Encodable, Equatable, Sendable {
    public var code: String
    public var authReason: String?
    public var canRetryWithDeviceToken: Bool?
    public var recommendedNextStep: String?
    public var expectedProtocol: Int?
    public var clientMinProtocol: Int?
    public var clientMaxProtocol: Int?
    public var minimumProbeProtocol: Int?

    public init(code: String) {
        self.code = code
    }
}

public struct ErrorShape: Encodable, Equatable, Sendable {
    public let code: ErrorCode
    public let message: String
    public var details: ErrorDetails?
    public var retryable: Bool?
    public var retryAfterMs: Int?
}

struct ResponseFrame<Payload: Encodable>: Encodable {
    let type = "res"
    let id: String
    let ok: Bool
    let payload: Payload?
    let error: ErrorShape?

    enum CodingKeys: String, CodingKey { case type, id, ok, payload, error }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        try container.encode(id, forKey: .id)
        try container.encode(ok, forKey: .ok)
        try container.encodeIfPresent(payload, forKey: .payload)
        try container.encodeIfPresent(error, forKey: .error)
    }
}

struct EventFrame<Payload: Encodable>: Encodable {
    let type = "event"
    let event: String
    let payload: Payload
    let seq: Int?

    enum CodingKeys: String, CodingKey { case type, event, payload, seq }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        try container.encode(event, forKey: .event)
        try container.encode(payload, forKey: .payload)
        try container.encodeIfPresent(seq, forKey: .seq)
    }
}

struct ChallengePayload: Encodable {
    let nonce: String
    let ts: Int
}

struct TickPayload: Encodable {
    let ts: Int
}

struct ShutdownPayload: Encodable {
    let reason: String
    let restartExpectedMs: Int?

    enum CodingKeys: String, CodingKey { case reason, restartExpectedMs }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(reason, forKey: .reason)
        try container.encodeIfPresent(restartExpectedMs, forKey: .restartExpectedMs)
    }
}

struct StateVersion: Encodable {
    let presence: Int
    let health: Int
}

/// `health`: upstream's HealthSummary keys its clients read (`ok`, `ts`, `durationMs`), and ours.
struct HealthPayload: Encodable {
    let ok: Bool
    let status: String
    let ts: Int
    let durationMs: Int
    let uptimeMs: Int
    let connections: Int

    /// The whole response frame to request `id`, written directly: the answer to `health` is the
    /// hot path (load balancers and clients poll it), and JSONEncoder spends about 3,000
    /// instructions on each key. A test holds it equal, parsed, to what JSONEncoder writes for
    /// `ResponseFrame(id:ok:payload:)`, for ids of every kind.
    func responseFrame(id: String) -> String {
        // At most: the fixed text (about 110 bytes), four integers of 20 characters each, and
        // every byte of the two strings escaped as \u00XX.
        let capacity = 224 + 6 * (id.utf8.count + status.utf8.count)
        return String(unsafeUninitializedCapacity: capacity) { buffer in
            var out = JSONText(into: buffer)
            out.append(#"{"type":"res","id":"#)
            out.appendString(id)
            out.append(#","ok":true,"payload":{"ok":"#)
            out.append(ok ? "true" : "false")
            out.append(#","status":"#)
            out.appendString(status)
            out.append(#","ts":"#)
            out.append(ts)
            out.append(#","durationMs":"#)
            out.append(durationMs)
            out.append(#","uptimeMs":"#)
            out.append(uptimeMs)
            out.append(#","connections":"#)
            out.append(connections)
            out.append("}}")
            return out.count
        }
    }
}

/// JSON text written by hand, straight into a String's own storage, where JSONEncoder is too slow
/// (see HealthPayload.responseFrame): one allocation, no growth, no interpolation. The caller
/// gives room enough.
struct JSONText {
    private let buffer: UnsafeMutableBufferPointer<UInt8>
    private(set) var count = 0

    init(into buffer: UnsafeMutableBufferPointer<UInt8>) {
        self.buffer = buffer
    }

    mutating func append(_ literal: StaticString) {
        literal.withUTF8Buffer { append(bytes: UnsafeRawBufferPointer($0)) }
    }

    private mutating func append(bytes: UnsafeRawBufferPointer) {
        precondition(count + bytes.count <= buffer.count, "JSONText: no room")
        UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[count...])).copyMemory(from: bytes)
        count += bytes.count
    }

    private mutating func append(byte: UInt8) {
        precondition(count < buffer.count, "JSONText: no room")
        buffer[count] = byte
        count += 1
    }

    /// In decimal, as JSONEncoder writes an Int.
    mutating func append(_ value: Int) {
        if value < 0 { append(byte: UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for 20 digits, written from the end
        withUnsafeMutableBytes(of: &digits) { scratch in
            var at = scratch.count
            repeat {
                at -= 1
                scratch[at] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            append(bytes: UnsafeRawBufferPointer(rebasing: scratch[at...]))
        }
    }

    /// `text` as a JSON string literal (RFC 8259, 7): quotes, backslash and control characters
    /// escaped, everything else as it is (UTF-8, and "/" unescaped as the encoder is configured).
    mutating func appendString(_ text: String) {
        var text = text
        append(byte: UInt8(ascii: "\""))
        text.withUTF8 { utf8 in
            guard utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) else {
                return append(bytes: UnsafeRawBufferPointer(utf8))
            }
            let hex = Array("0123456789abcdef".utf8)
            for byte in utf8 {
                switch byte {
                case 0x22: append("\\\"")
                case 0x5C: append("\\\\")
                case 0x0A: append("\\n")
                case 0x0D: append("\\r")
                case 0x09: append("\\t")
                case 0x08: append("\\b")
                case 0x0C: append("\\f")
                case 0..<0x20:
                    append("\\u00")
                    append(byte: hex[Int(byte >> 4)])
                    append(byte: hex[Int(byte & 0xF)])
                default: append(byte: byte)
                }
            }
        }
        append(byte: UInt8(ascii: "\""))
    }
}

struct HelloOk: Encodable {
    struct Server: Encodable {
        let version: String
        let connId: String
    }

    struct Features: Encodable {
        let methods: [String]
        let events: [String]
    }

    struct Snapshot: Encodable {
        let presence: [PresenceEntry]
        let health: HealthPayload
        let stateVersion: StateVersion
        let uptimeMs: Int
        let configPath: String?
        let stateDir: String?
        let authMode: String

        enum CodingKeys: String, CodingKey { case presence, health, stateVersion, uptimeMs, configPath, stateDir, authMode }

        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(presence, forKey: .presence)
            try container.encode(health, forKey: .health)
            try container.encode(stateVersion, forKey: .stateVersion)
            try container.encode(uptimeMs, forKey: .uptimeMs)
            try container.encodeIfPresent(configPath.flatMap { $0.isEmpty ? nil : $0 }, forKey: .configPath)
            try container.encodeIfPresent(stateDir.flatMap { $0.isEmpty ? nil : $0 }, forKey: .stateDir)
            try container.encode(authMode, forKey: .authMode)
        }
    }

    struct Policy: Encodable {
        let maxPayload: Int
        let maxBufferedBytes: Int
        let tickIntervalMs: Int
    }

    /// The role and scopes granted; no device token (this gateway issues none).
    struct Auth: Encodable {
        let role: String
        let scopes: [String]
    }

    let type = "hello-ok"
    let `protocol`: Int
    let server: Server
    let features: Features
    let snapshot: Snapshot
    let auth: Auth
    let policy: Policy

    enum CodingKeys: String, CodingKey { case type, `protocol`, server, features, snapshot, auth, policy }
}

public struct StatusPayload: Encodable, Sendable {
    public struct Listener: Encodable, Sendable {
        public let source: String
        public let names: [String]
    }

    public let pid: Int
    public let urls: [String]
    public let connections: Int
    public let profile: String?
    public let uptimeMs: Int
    public let listener: Listener
    public let connId: String
    /// The gateway's version (upstream's StatusSummary.runtimeVersion).
    public let runtimeVersion: String

    enum CodingKeys: String, CodingKey {
        case pid, urls, connections, profile, uptimeMs, listener, connId
        case runtimeVersion, heartbeat, channelSummary, queuedSystemEvents, sessions
    }

    /// `profile` is a string or null: the key is always there. Upstream's StatusSummary keys follow,
    /// empty: this gateway runs no agents, channels, heartbeats or sessions.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(pid, forKey: .pid)
        try container.encode(urls, forKey: .urls)
        try container.encode(connections, forKey: .connections)
        try container.encode(profile, forKey: .profile)
        try container.encode(uptimeMs, forKey: .uptimeMs)
        try container.encode(listener, forKey: .listener)
        try container.encode(connId, forKey: .connId)
        try container.encode(runtimeVersion, forKey: .runtimeVersion)
        try container.encode(EmptyStatusSummary.heartbeat, forKey: .heartbeat)
        try container.encode([String](), forKey: .channelSummary)
        try container.encode([String](), forKey: .queuedSystemEvents)
        try container.encode(EmptyStatusSummary.sessions, forKey: .sessions)
    }
}

/// The parts of upstream's StatusSummary (src/commands/status.types.ts) a gateway without agents
/// has: nothing, in upstream's shapes. `defaultAgentId` is upstream's default agent id, which
/// upstream reports even when no agent is configured.
enum EmptyStatusSummary {
    struct Heartbeat: Encodable {
        let defaultAgentId = "main"
        let agents: [String] = []
    }

    struct Sessions: Encodable {
        struct Defaults: Encodable {
            let model: String? = nil
            let contextTokens: Int? = nil

            enum CodingKeys: String, CodingKey { case model, contextTokens }

            func encode(to encoder: Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encodeNil(forKey: .model)
                try container.encodeNil(forKey: .contextTokens)
            }
        }

        struct Overview: Encodable {
            struct Activity: Encodable {
                let last60m = 0
                let last24h = 0
                let last7d = 0
            }

            let recentActivity = Activity()
            let topModels: [String] = []
            let topAgents: [String] = []
            let kinds: [String] = []
        }

        let paths: [String] = []
        let count = 0
        let defaults = Defaults()
        let overview = Overview()
        let recent: [String] = []
        let byAgent: [String] = []
    }

    static let heartbeat = Heartbeat()
    static let sessions = Sessions()
}
