import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

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
        return Self.isLoopbackLiteral(literal)
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
        guard let ip = address.ipAddress else { return false }
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }

    static func isLoopbackLiteral(_ address: SocketAddress) -> Bool { isLoopback(address) }
}

/// Failed token attempts per peer address: after `limit` failures within `window`, further
/// attempts from that peer are answered "retry later" without looking at the token.
final class AuthRateLimiter: Sendable {
    private struct Entry {
        var failures: [NIODeadline]
    }

    private let entries = NIOLockedValueBox<[String: Entry]>([:])
    let limit: Int
    let window: TimeAmount

    init(limit: Int = 5, window: TimeAmount = .seconds(60)) {
        self.limit = limit
        self.window = window
    }

    func recordFailure(peer: String) {
        let now = NIODeadline.now()
        entries.withLockedValue { entries in
            var entry = entries[peer] ?? Entry(failures: [])
            entry.failures = entry.failures.filter { now - $0 < window } + [now]
            entries[peer] = entry
            if entries.count > 10_000 {  // bounded memory under a spray of addresses
                entries = entries.filter { $0.value.failures.contains { now - $0 < window } }
            }
        }
    }

    /// Milliseconds until `peer` may try again; nil when it may try now.
    func retryAfterMs(peer: String) -> Int? {
        let now = NIODeadline.now()
        return entries.withLockedValue { entries in
            guard let failures = entries[peer]?.failures.filter({ now - $0 < window }), failures.count >= limit,
                let oldest = failures.first
            else { return nil }
            return Int(max(1, (window - (now - oldest)).nanoseconds / 1_000_000))
        }
    }
}
