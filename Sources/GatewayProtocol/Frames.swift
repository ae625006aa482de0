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
struct FrameHead: Decodable {
    let type: String?
    let id: String?
    let method: String?

    enum CodingKeys: String, CodingKey { case type, id, method }

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
        }

        struct Auth: Decodable {
            let token: String?
        }

        let minProtocol: Int
        let maxProtocol: Int
        let client: Client
        let auth: Auth?
    }

    let params: Params
}

// MARK: - outbound

public struct ErrorShape: Encodable, Equatable, Sendable {
    public let code: String
    public let message: String
    public var details: [String: String]?
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

/// An entry of snapshot.presence; this gateway tracks no presence, so the list is always empty.
struct PresenceEntry: Encodable {
    let ts: Int
}

struct StateVersion: Encodable {
    let presence: Int
    let health: Int
}

struct HealthPayload: Encodable {
    let ok: Bool
    let status: String
    let uptimeMs: Int
    let connections: Int
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
        let authMode: String
    }

    struct Policy: Encodable {
        let maxPayload: Int
        let maxBufferedBytes: Int
        let tickIntervalMs: Int
    }

    let type = "hello-ok"
    let `protocol`: Int
    let server: Server
    let features: Features
    let snapshot: Snapshot
    let policy: Policy
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

    enum CodingKeys: String, CodingKey { case pid, urls, connections, profile, uptimeMs, listener, connId }

    /// `profile` is a string or null: the key is always there.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(pid, forKey: .pid)
        try container.encode(urls, forKey: .urls)
        try container.encode(connections, forKey: .connections)
        try container.encode(profile, forKey: .profile)
        try container.encode(uptimeMs, forKey: .uptimeMs)
        try container.encode(listener, forKey: .listener)
        try container.encode(connId, forKey: .connId)
    }
}
