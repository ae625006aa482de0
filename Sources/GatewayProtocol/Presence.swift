#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// One entry of upstream's system presence (src/infra/system-presence.ts; PresenceEntrySchema):
/// the gateway itself, or a connected client as its connect params describe it. Optional values
/// are omitted, never null.
public struct PresenceEntry: Codable, Equatable, Sendable {
    public var host: String?
    public var ip: String?
    public var version: String?
    public var platform: String?
    public var deviceFamily: String?
    public var modelIdentifier: String?
    public var mode: String?
    public var reason: String?
    public var roles: [String]?
    public var scopes: [String]?
    public var instanceId: String?
    public var text: String
    /// When the entry was made (the client connected; the gateway: now), epoch milliseconds.
    public var ts: Int

    public init(
        host: String? = nil, ip: String? = nil, version: String? = nil, platform: String? = nil,
        deviceFamily: String? = nil, modelIdentifier: String? = nil, mode: String? = nil, reason: String? = nil,
        roles: [String]? = nil, scopes: [String]? = nil, instanceId: String? = nil, text: String, ts: Int
    ) {
        self.host = host
        self.ip = ip
        self.version = version
        self.platform = platform
        self.deviceFamily = deviceFamily
        self.modelIdentifier = modelIdentifier
        self.mode = mode
        self.reason = reason
        self.roles = roles
        self.scopes = scopes
        self.instanceId = instanceId
        self.text = text
        self.ts = ts
    }

    /// The gateway's own entry, as upstream words it ("Gateway: host (ip) · app v · mode gateway ·
    /// reason self").
    public static func gateway(host: String, ip: String?, version: String, platform: String, modelIdentifier: String?) -> PresenceEntry {
        let address = ip.map { " (\($0))" } ?? ""
        return PresenceEntry(
            host: host, ip: ip, version: version, platform: platform, deviceFamily: "Linux",
            modelIdentifier: modelIdentifier, mode: "gateway", reason: "self",
            text: "Gateway: \(host)\(address) · app \(version) · mode gateway · reason self", ts: 0)
    }

    /// A client's text, as upstream's upsertPresence words it.
    public static func clientText(host: String, mode: String) -> String {
        "Node: \(host) · mode \(mode)"
    }

    /// Text fields must be non-empty where upstream's schema says so: an empty value is left out.
    func withoutEmptyStrings() -> PresenceEntry {
        func keep(_ value: String?) -> String? { value.flatMap { $0.isEmpty ? nil : $0 } }
        var entry = self
        entry.host = keep(host)
        entry.ip = keep(ip)
        entry.version = keep(version)
        entry.platform = keep(platform)
        entry.deviceFamily = keep(deviceFamily)
        entry.modelIdentifier = keep(modelIdentifier)
        entry.mode = keep(mode)
        entry.reason = keep(reason)
        entry.instanceId = keep(instanceId)
        entry.roles = roles?.filter { !$0.isEmpty }
        entry.scopes = scopes?.filter { !$0.isEmpty }
        return entry
    }
}

/// Who is here: the gateway's own entry and one per connected client, shared by every session of
/// a server. `version` counts changes (hello-ok's `stateVersion.presence`).
public final class PresenceBoard: Sendable {
    private struct State {
        /// Each client's entry and the order it joined in (ties of `ts` go to the later one).
        var clients: [String: (entry: PresenceEntry, order: Int)] = [:]
        var joined = 0
        var version = 0
        var observer: (@Sendable () -> Void)?
    }

    /// Upstream keeps at most this many entries, the newest.
    public static let maxEntries = 200

    private let state = Mutex(State())
    private let gateway: PresenceEntry

    public init(gateway: PresenceEntry) {
        self.gateway = gateway
    }

    /// A board with a bare gateway entry (tests, and closing a handed-over session).
    public convenience init() {
        self.init(gateway: PresenceEntry(mode: "gateway", reason: "self", text: "Gateway", ts: 0))
    }

    /// Called (outside the lock) after every change: who broadcasts `presence` events.
    public func observe(_ observer: @escaping @Sendable () -> Void) {
        state.withLock { $0.observer = observer }
    }

    /// A client connected. `quietly`: a session carried across a restart, which every client
    /// already saw arrive; the list changes for nobody, so no `presence` event is sent.
    func join(connId: String, _ entry: PresenceEntry, quietly: Bool = false) {
        let observer = state.withLock { state in
            state.joined += 1
            state.clients[connId] = (entry, state.joined)
            state.version += 1
            return state.observer
        }
        if !quietly { observer?() }
    }

    /// Room for `count` more clients: a restart carries thousands of sessions on at once, and
    /// the dictionary would otherwise grow and rehash a dozen times under the lock that every
    /// event loop adopting them waits on.
    public func reserveCapacity(forMore count: Int) {
        state.withLock { $0.clients.reserveCapacity($0.clients.count + count) }
    }

    /// The client of `connId` is gone.
    public func leave(connId: String) {
        let observer = state.withLock { state -> (@Sendable () -> Void)? in
            guard state.clients.removeValue(forKey: connId) != nil else { return nil }
            state.version += 1
            return state.observer
        }
        observer?()
    }

    /// The `presence` event's payload (`{"presence":[…]}`) encoded once for every session, and
    /// the version it shows.
    public func eventPayload(now: Int) -> (json: String, version: Int) {
        let version = self.version
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let data = (try? encoder.encode(["presence": list(now: now)])) ?? Data(#"{"presence":[]}"#.utf8)
        return (String(decoding: data, as: UTF8.self), version)
    }

    public var version: Int { state.withLock { $0.version } }

    /// The gateway first (stamped now), then the clients, newest first, at most ``maxEntries``.
    public func list(now: Int) -> [PresenceEntry] {
        var me = gateway
        me.ts = now
        let clients = state.withLock { Array($0.clients.values) }
        let newestFirst = clients.sorted { ($0.entry.ts, $0.order) > ($1.entry.ts, $1.order) }
        return [me] + newestFirst.prefix(Self.maxEntries - 1).map(\.entry)
    }
}
