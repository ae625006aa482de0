#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address the gateway binds to: an IPv4 or IPv6 literal, never a host name (a name could
/// resolve differently between two launches, and the lock must be the same socket every time).
public enum BindAddress: Sendable, Hashable, CustomStringConvertible {
    case ipv4(UInt32)  // network byte order, as in in_addr.s_addr
    case ipv6([UInt8])  // 16 bytes

    public static let loopback = BindAddress(literal: "127.0.0.1")!
    public static let ipv6Loopback = BindAddress(literal: "::1")!
    public static let anyIPv4 = BindAddress(literal: "0.0.0.0")!

    /// Parses an IP literal (`127.0.0.1`, `::1`, `[::1]`); nil for anything else.
    public init?(literal: String) {
        var text = literal
        if text.hasPrefix("[") && text.hasSuffix("]") {
            text = String(text.dropFirst().dropLast())
        }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self = .ipv4(v4.s_addr)
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            self = .ipv6(withUnsafeBytes(of: v6) { Array($0) })
            return
        }
        return nil
    }

    /// The canonical text form (`127.0.0.1`, `::1`).
    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch self {
        case .ipv4(let raw):
            var addr = in_addr(s_addr: raw)
            _ = inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count))
        case .ipv6(let bytes):
            var addr = in6_addr()
            withUnsafeMutableBytes(of: &addr) { $0.copyBytes(from: bytes) }
            _ = inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count))
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// True for 127.0.0.0/8 and ::1: addresses only this host can reach.
    public var isLoopback: Bool {
        switch self {
        case .ipv4(let raw):
            return UInt32(bigEndian: raw) >> 24 == 127
        case .ipv6(let bytes):
            return bytes == Array(repeating: 0, count: 15) + [1]
        }
    }

    public var isIPv6: Bool {
        if case .ipv6 = self { return true }
        return false
    }

    /// Calls `body` with this address and `port` as a `sockaddr` (for bind, connect).
    public func withSocketAddress<Result>(
        port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Result
    ) -> Result {
        switch self {
        case .ipv4(let raw):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = UInt16(port).bigEndian
            sin.sin_addr = in_addr(s_addr: raw)
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .ipv6(let bytes):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = UInt16(port).bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes) }
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }

    /// `ws://HOST:PORT`, with an IPv6 host in brackets.
    public func webSocketURL(port: Int) -> String {
        isIPv6 ? "ws://[\(self)]:\(port)" : "ws://\(self):\(port)"
    }
}
