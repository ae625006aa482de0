import IPRange
import NIOCore
import NIOHTTP1
import Testing

@testable import GatewayServer

/// Whose failures count together: the keys a client cannot choose for itself.
@Suite struct AuthRateLimitKeyTests {
    let limit = AuthRateLimit.upstreamDefaults
    let proxies = [IPRange("127.0.0.1")!, IPRange("10.0.0.0/8")!]

    func client(_ peer: String, origin: String? = nil, _ headers: [(String, String)] = [], uid: UInt32? = 1000) -> LimiterClient {
        LimiterClient(
            peer: try! SocketAddress(ipAddress: peer, port: 40000), origin: origin,
            forwarding: ForwardingHeaders(HTTPHeaders(headers)), owner: { uid })
    }

    /// The limiter reads a peer's bytes from its sockaddr: they must be those of its text.
    @Test(arguments: ["127.0.0.1", "203.0.113.9", "0.0.0.0", "::1", "::", "2001:db8::7", "::ffff:127.0.0.1",
                      "::ffff:203.0.113.9", "fe80::1", "::127.0.0.1", "ff02::1:ff00:1"])
    func anAddressesBytesAreThoseOfItsText(_ text: String) throws {
        let address = try SocketAddress(ipAddress: text, port: 40000)
        #expect(address.ipBytes == IPRange.bytes(text))
        #expect(address.ipBytes == address.ipAddress.flatMap(IPRange.bytes))
    }

    @Test func aUnixSocketHasNoAddressBytes() throws {
        #expect(try SocketAddress(unixDomainSocketPath: "/tmp/gateway.sock").ipBytes == nil)
    }

    @Test func aDirectLoopbackClientIsExemptUnlessConfiguredAndThenCountsByUser() {
        #expect(limit.key(for: client("127.0.0.1"), trustedProxies: []) == nil)
        #expect(limit.key(for: client("::1"), trustedProxies: []) == nil)
        var strict = limit
        strict.exemptLoopback = false
        #expect(strict.key(for: client("127.0.0.1"), trustedProxies: []) == "loopback uid 1000")
        #expect(strict.key(for: client("::ffff:127.0.0.1", uid: 0), trustedProxies: []) == "loopback uid 0")
        // The owner unknown (the client has gone): its address, as before.
        #expect(strict.key(for: client("127.0.0.1", uid: nil), trustedProxies: []) == "loopback address 127.0.0.1")
    }

    @Test func onLoopbackWhatAClientWritesNeverChoosesItsKey() {
        let page = client("127.0.0.1", origin: "https://UI.example/", [("X-Forwarded-For", "203.0.113.10")])
        #expect(limit.key(for: page, trustedProxies: []) == "origin https://ui.example loopback uid 1000")
        let a = client("127.0.0.1", [("X-Forwarded-For", "203.0.113.9")])
        let b = client("127.0.0.1", [("X-Real-IP", "203.0.113.10")])
        let c = client("127.0.0.1", [("Forwarded", "for=203.0.113.11")])
        let keys = Set([a, b, c].map { limit.key(for: $0, trustedProxies: []) })
        #expect(keys == ["loopback uid 1000 untrusted forwarding headers"])
        #expect(limit.key(for: client("127.0.0.1", [("X-Forwarded-For", "1.2.3.4")], uid: 0), trustedProxies: [])
            == "loopback uid 0 untrusted forwarding headers")
    }

    @Test func aTrustedProxyNamesTheEntryItAppendedNotOneWrittenBeforeIt() {
        let forged = client("127.0.0.1", [("X-Forwarded-For", "203.0.113.10, 203.0.113.9")])
        #expect(limit.key(for: forged, trustedProxies: proxies) == "proxied 203.0.113.9")
        // Two header lines are one list; trusted hops are skipped from the right.
        let chain = client("10.1.1.1", [("X-Forwarded-For", "203.0.113.10"), ("X-Forwarded-For", "203.0.113.9, 10.2.2.2")])
        #expect(limit.key(for: chain, trustedProxies: proxies) == "proxied 203.0.113.9")
        let rfc7239 = client("127.0.0.1", [("Forwarded", #"for="[2001:DB8::1]:4711";proto=https, for=198.51.100.7:80"#)])
        #expect(limit.key(for: rfc7239, trustedProxies: proxies) == "proxied 198.51.100.7")
        #expect(limit.key(for: client("127.0.0.1", [("X-Real-IP", "198.51.100.8")]), trustedProxies: proxies) == "proxied 198.51.100.8")
        let page = client("127.0.0.1", origin: "https://ui.example", [("X-Forwarded-For", "198.51.100.9")])
        #expect(limit.key(for: page, trustedProxies: proxies) == "origin https://ui.example proxied 198.51.100.9")
        // A loopback client the proxy names is exempt as a direct one is.
        #expect(limit.key(for: client("127.0.0.1", [("X-Forwarded-For", "127.0.0.1")]), trustedProxies: proxies) == nil)
        // A trusted proxy without forwarding headers is a client like any other.
        #expect(limit.key(for: client("10.3.3.3"), trustedProxies: proxies) == "address 10.3.3.3")
    }

    @Test func forwardingHeadersFromAnUntrustedRemotePeerAreIgnored() {
        let remote = client("198.51.100.1", [("X-Forwarded-For", "203.0.113.10")])
        #expect(limit.key(for: remote, trustedProxies: proxies) == "address 198.51.100.1")
        #expect(limit.key(for: client("198.51.100.1", origin: "https://ui.example"), trustedProxies: [])
            == "origin https://ui.example from 198.51.100.1")
    }
}
