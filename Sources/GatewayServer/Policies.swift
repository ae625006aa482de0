import CProcess
import IPRange
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#endif

/// Which browser pages may open the WebSocket. No Origin header (CLI and native clients): allowed.
/// An Origin: allowed when it is on the configured list, or is this gateway's own loopback origin
/// (http(s)://127.0.0.1:PORT, localhost:PORT, [::1]:PORT). Anything else — any other web page — is
/// refused before the upgrade.
struct OriginPolicy: Sendable {
    let allowed: Set<String>

    init(allowedOrigins: [String]) {
        allowed = Set(allowedOrigins.map { Self.normalize($0) })
    }

    func allows(_ head: HTTPRequestHead, localPort: Int?) -> Bool {
        guard let origin = head.headers.first(name: "origin") else { return true }
        let normalized = Self.normalize(origin)
        if allowed.contains(normalized) { return true }
        guard let localPort else { return false }
        for scheme in ["http", "https"] {
            for host in ["127.0.0.1", "localhost", "[::1]"] where normalized == "\(scheme)://\(host):\(localPort)" {
                return true
            }
        }
        return false
    }

    static func normalize(_ origin: String) -> String {
        var text = origin.lowercased()
        while text.hasSuffix("/") { text.removeLast() }
        return text
    }
}

/// Which `Host` a request may name, against DNS rebinding: a page on a foreign name whose DNS
/// later points at 127.0.0.1 sends that foreign name as its Host. Allowed: an IP literal (a
/// rebinding needs a name), `localhost`, or a host that `gateway.controlUi.allowedOrigins` names;
/// on a loopback connection an IP literal must be a loopback address too. A port, when given,
/// must be the port the connection came in on. No Host at all (HTTP/1.0) is allowed.
struct HostPolicy: Sendable {
    let configuredNames: Set<String>

    init(allowedOrigins: [String]) {
        configuredNames = Set(allowedOrigins.compactMap { origin in
            // scheme://host[:port] -> host
            let parts = origin.split(separator: "/", omittingEmptySubsequences: true)
            guard parts.count >= 2, parts[0].hasSuffix(":") else { return nil }
            return Self.split(String(parts[1]))?.host
        })
    }

    func allows(_ head: HTTPRequestHead, local: SocketAddress?) -> Bool {
        let hosts = head.headers["host"]
        guard let value = hosts.first else { return true }
        guard hosts.count == 1, let (host, port) = Self.split(value) else { return false }
        if let port, let localPort = local?.port, port != localPort { return false }
        if configuredNames.contains(host) { return true }
        if host == "localhost" { return true }
        guard let literal = Self.ipLiteral(host) else { return false }  // a name: only the ones above
        guard let local, Self.isLoopback(local) else { return true }
        return Self.isLoopback(literal)
    }

    /// "name:port", "[v6]:port", or without a port; lowercased. nil when it cannot be a Host.
    static func split(_ value: String) -> (host: String, port: Int?)? {
        let text = value.lowercased()
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[...close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return (host, nil) }
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()) else { return nil }
            return (host, port)
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let first = parts.first, !first.isEmpty else { return nil }
        if parts.count == 2 {
            guard let port = Int(parts[1]) else { return nil }
            return (String(first), port)
        }
        return (String(first), nil)
    }

    /// The address of an IPv4 literal or a bracketed IPv6 literal.
    static func ipLiteral(_ host: String) -> SocketAddress? {
        let bare = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        return try? SocketAddress(ipAddress: bare, port: 0)
    }

    static func isLoopback(_ address: SocketAddress) -> Bool {
        address.ipBytes.map(IPRange.isLoopback) ?? false
    }
}

extension SocketAddress {
    /// The address's bytes as `IPRange.bytes` gives them for its text (an IPv4-mapped IPv6
    /// address as its 4 IPv4 bytes); nil for a Unix socket. Read from the sockaddr itself:
    /// `ipAddress` formats a text that would only be parsed back (at every accept and for every
    /// session a restart carries on).
    var ipBytes: [UInt8]? {
        switch self {
        case .v4(let address):
            return withUnsafeBytes(of: address.address.sin_addr) { Array($0) }
        case .v6(let address):
            return IPRange.unmapped(withUnsafeBytes(of: address.address.sin6_addr) { Array($0) })
        case .unixDomainSocket:
            return nil
        }
    }
}

/// Upstream's `gateway.auth.rateLimit`: after `maxAttempts` failed tokens within `windowMs`, a
/// client must wait `lockoutMs`. Direct loopback clients are exempt unless `exemptLoopback` is
/// false, so no other process on the host can lock the owner's CLI out.
public struct AuthRateLimit: Sendable, Equatable {
    public var maxAttempts: Int
    public var windowMs: Int
    public var lockoutMs: Int
    public var exemptLoopback: Bool

    public static let upstreamDefaults = AuthRateLimit(maxAttempts: 10, windowMs: 60_000, lockoutMs: 300_000, exemptLoopback: true)

    public init(maxAttempts: Int, windowMs: Int, lockoutMs: Int, exemptLoopback: Bool) {
        self.maxAttempts = maxAttempts
        self.windowMs = windowMs
        self.lockoutMs = lockoutMs
        self.exemptLoopback = exemptLoopback
    }

    /// Whose failures count together; nil: not limited. The key must be one a client without the
    /// secret cannot take on, or its failures would lock out the client that has the secret:
    /// - through a proxy listed in `gateway.trustedProxies`: the client the proxy names (the
    ///   rightmost X-Forwarded-For entry that is not itself a trusted proxy, else X-Real-IP, else
    ///   Forwarded for=), with the page's Origin when there is one; a loopback client named by a
    ///   trusted proxy is exempt as a direct one is;
    /// - on loopback, where every client shares one address: the user owning the client's socket
    ///   (asked of the kernel), which no process of another user can forge. A browser page (an
    ///   Origin header) counts per origin and user; forwarding headers from a proxy not listed
    ///   in `trustedProxies` are limited per user, their content ignored; a direct client is
    ///   exempt unless `exemptLoopback` is false;
    /// - any other client: per address (with the Origin, for a page).
    func key(for client: LimiterClient, trustedProxies: [IPRange]) -> String? {
        let peerIP = client.peer?.ipBytes
        let origin = client.origin.map(OriginPolicy.normalize)
        if let peerIP, trustedProxies.contains(where: { $0.contains(peerIP) }),
            let named = client.forwarding.client(trusting: trustedProxies)
        {
            if let origin { return "origin \(origin) proxied \(named)" }
            if exemptLoopback, let bytes = IPRange.bytes(named), IPRange.isLoopback(bytes) { return nil }
            return "proxied \(named)"
        }
        let address = peerIP.map(IPRange.text) ?? "?"
        guard let peerIP, IPRange.isLoopback(peerIP) else {
            return origin.map { "origin \($0) from \(address)" } ?? "address \(address)"
        }
        if origin == nil && !client.forwarding.present && exemptLoopback { return nil }
        // Asked only now: a direct loopback client (the common case) costs no lookup.
        let user = client.owner().map { "uid \($0)" } ?? "address \(address)"
        if let origin { return "origin \(origin) loopback \(user)" }
        if client.forwarding.present { return "loopback \(user) untrusted forwarding headers" }
        return "loopback \(user)"
    }
}

/// What the limiter knows of a client: its socket's peer, the Origin and forwarding headers of
/// its upgrade request (none for a session carried across a restart), and how to ask who owns
/// its socket.
struct LimiterClient {
    let peer: SocketAddress?
    let origin: String?
    let forwarding: ForwardingHeaders
    /// The uid owning the client's end of the connection (loopback only); nil when unknown.
    let owner: () -> UInt32?

    init(peer: SocketAddress?, origin: String? = nil, forwarding: ForwardingHeaders = ForwardingHeaders(), owner: @escaping () -> UInt32? = { nil }) {
        self.peer = peer
        self.origin = origin
        self.forwarding = forwarding
        self.owner = owner
    }

    /// The client of an upgrade request on `channel`.
    init(channel: Channel, head: HTTPRequestHead?) {
        let peer = channel.remoteAddress
        let local = channel.localAddress
        self.init(
            peer: peer, origin: head?.headers.first(name: "origin"),
            forwarding: head.map { ForwardingHeaders($0.headers) } ?? ForwardingHeaders(),
            owner: { peer.flatMap { peer in local.flatMap { SocketOwner.uid(client: peer, server: $0) } } })
    }
}

/// X-Forwarded-For, X-Real-IP and Forwarded (RFC 7239) as a request has them.
struct ForwardingHeaders: Equatable {
    /// Every X-Forwarded-For entry, in order (all the header's lines joined), or when there is
    /// none, every Forwarded for= value.
    var chain: [String] = []
    var realIP: String?
    var present: Bool { !chain.isEmpty || realIP != nil }

    init(chain: [String] = [], realIP: String? = nil) {
        self.chain = chain
        self.realIP = realIP
    }

    init(_ headers: HTTPHeaders) {
        chain = headers["x-forwarded-for"].flatMap { $0.split(separator: ",") }.map(Self.trim).filter { !$0.isEmpty }
        if chain.isEmpty {
            chain = headers["forwarded"].flatMap { $0.split(separator: ",") }.compactMap { element in
                element.split(separator: ";").map(Self.trim).first { $0.lowercased().hasPrefix("for=") }
                    .map { Self.unquote(String($0.dropFirst(4))) }
            }.filter { !$0.isEmpty }
        }
        realIP = headers.first(name: "x-real-ip").map(Self.trim).flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The client as proxies we trust name it: walking the chain from the right (the entry our
    /// peer appended), the first address that is not a trusted proxy; nil when no header names one.
    func client(trusting trusted: [IPRange]) -> String? {
        let addresses = chain.map(Self.address)
        if let named = addresses.last(where: { entry in
            guard let bytes = IPRange.bytes(entry) else { return true }  // "unknown", an obfuscated id
            return !trusted.contains { $0.contains(bytes) }
        }) {
            return named
        }
        return addresses.first ?? realIP.map(Self.address)
    }

    /// An entry without its port and brackets, canonical when it is an address.
    static func address(_ entry: String) -> String {
        var text = entry
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            text = String(text[text.index(after: text.startIndex)..<close])  // [v6]:port
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            text = String(text[..<colon])  // v4:port
        }
        return IPRange.bytes(text).map(IPRange.text) ?? entry
    }

    private static func trim<S: StringProtocol>(_ text: S) -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        return String(text.drop(while: blank).reversed().drop(while: blank).reversed())
    }

    private static func unquote(_ text: String) -> String {
        text.count >= 2 && text.hasPrefix("\"") && text.hasSuffix("\"") ? String(text.dropFirst().dropLast()) : text
    }
}

/// Who owns a TCP socket on this host, from the kernel (NETLINK_SOCK_DIAG).
enum SocketOwner {
    /// The uid owning the client end of the connection from `client` to our `server` address;
    /// nil when the kernel does not say (the client has gone, or the family is not IP).
    static func uid(client: SocketAddress, server: SocketAddress) -> UInt32? {
        guard let clientIP = client.ipBytes, let serverIP = server.ipBytes,
            clientIP.count == serverIP.count, let clientPort = client.port, let serverPort = server.port
        else { return nil }
        var uid: UInt32 = 0
        let family = clientIP.count == 4 ? AF_INET : AF_INET6
        let result = clientIP.withUnsafeBytes { source in
            serverIP.withUnsafeBytes { destination in
                openclaw_tcp_socket_uid(
                    family, source.baseAddress, Int32(clientPort), destination.baseAddress, Int32(serverPort), &uid)
            }
        }
        return result == 0 ? uid : nil
    }
}

/// Failed token attempts per client key (``AuthRateLimit/key(for:trustedProxies:)``): after
/// `maxAttempts` within the window the key is locked out; attempts from it are answered "retry
/// later" without looking at the token until the lockout has passed.
final class AuthRateLimiter: Sendable {
    private struct Entry {
        var failures: [NIODeadline] = []
        var lockedUntil: NIODeadline?
    }

    private let entries = NIOLockedValueBox<[String: Entry]>([:])
    private let currentLimit: NIOLockedValueBox<AuthRateLimit>

    init(_ limit: AuthRateLimit = .upstreamDefaults) {
        currentLimit = NIOLockedValueBox(limit)
    }

    /// The limit in force; a reload may change it (failures counted so far stay counted).
    var limit: AuthRateLimit {
        get { currentLimit.withLockedValue { $0 } }
        set { currentLimit.withLockedValue { $0 = newValue } }
    }

    func recordFailure(key: String?) {
        guard let key else { return }
        let now = NIODeadline.now()
        let limit = self.limit
        let window = TimeAmount.milliseconds(Int64(limit.windowMs))
        entries.withLockedValue { entries in
            var entry = entries[key] ?? Entry()
            entry.failures = entry.failures.filter { now - $0 < window } + [now]
            if entry.failures.count >= limit.maxAttempts {
                entry.lockedUntil = now + .milliseconds(Int64(limit.lockoutMs))
                entry.failures = []
            }
            entries[key] = entry
            if entries.count > 10_000 {  // bounded memory under a spray of keys
                entries = entries.filter { !$0.value.failures.isEmpty || ($0.value.lockedUntil.map { $0 > now } ?? false) }
            }
        }
    }

    /// Milliseconds until `key` may try again; nil when it may try now.
    func retryAfterMs(key: String?) -> Int? {
        guard let key else { return nil }
        let now = NIODeadline.now()
        return entries.withLockedValue { entries in
            guard let until = entries[key]?.lockedUntil, until > now else { return nil }
            return Int(max(1, (until - now).nanoseconds / 1_000_000))
        }
    }
}

/// One log line for every refusal (origin, Host, auth, lockout, connection cap), in one stable
/// shape an admin can grep or hand to fail2ban:
///
///     refused KIND peer=ADDRESS:PORT reason="…" [DETAIL=VALUE]
///
/// with the fields `MESSAGE_ID` (``messageID``, the same for every refusal), `REMOTE_ADDR`,
/// `REMOTE_PORT`, `OPENCLAW_REFUSAL` (the kind) and `OPENCLAW_DETAIL` as log metadata, which the
/// journal receives as fields. The lines themselves are rate limited (a burst of ``burst``, then
/// ``perSecond``), so a flood cannot fill the journal; the next line that goes out says how many
/// were left out.
final class RefusalLog: Sendable {
    /// journalctl MESSAGE_ID=… finds every refusal.
    static let messageID = "5c2d1f8a0b7e4e4c9a3e6f1d2b8c7a90"
    static let burst = 20.0
    static let perSecond = 10.0

    enum Kind: String {
        case origin, host, auth, lockout, cap
    }

    private struct Bucket {
        var tokens = RefusalLog.burst
        var refilled = NIODeadline.now()
        var suppressed = 0
    }

    private let bucket = NIOLockedValueBox(Bucket())
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func refused(_ kind: Kind, peer: SocketAddress?, reason: String, detail: (name: String, value: String)? = nil) {
        let suppressed: Int? = bucket.withLockedValue { bucket in
            let now = NIODeadline.now()
            let seconds = Double((now - bucket.refilled).nanoseconds) / 1e9
            bucket.tokens = min(Self.burst, bucket.tokens + seconds * Self.perSecond)
            bucket.refilled = now
            guard bucket.tokens >= 1 else {
                bucket.suppressed += 1
                return nil
            }
            bucket.tokens -= 1
            defer { bucket.suppressed = 0 }
            return bucket.suppressed
        }
        guard let suppressed else { return }
        let address = peer?.ipAddress ?? "?"
        let port = peer?.port.map(String.init) ?? "?"
        var line = "refused \(kind.rawValue) peer=\(address.contains(":") ? "[\(address)]" : address):\(port) reason=\"\(reason)\""
        var metadata: Logger.Metadata = [
            "MESSAGE_ID": "\(Self.messageID)", "REMOTE_ADDR": "\(address)", "REMOTE_PORT": "\(port)",
            "OPENCLAW_REFUSAL": "\(kind.rawValue)",
        ]
        if let detail {
            let value = String(detail.value.prefix(200).filter { $0 != "\n" && $0 != "\r" && $0 != " " })
            line += " \(detail.name)=\(value)"
            metadata["OPENCLAW_DETAIL"] = "\(value)"
        }
        if suppressed > 0 { line += " (\(suppressed) earlier refusals not logged: rate limit)" }
        switch kind {
        case .lockout, .cap: logger.warning("\(line)", metadata: metadata)
        case .origin, .host, .auth: logger.notice("\(line)", metadata: metadata)
        }
    }
}
