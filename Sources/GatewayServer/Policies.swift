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
