#if canImport(Glibc)
import Glibc
#endif

/// An IP address or a CIDR range (`gateway.trustedProxies` entries: "127.0.0.1", "10.0.0.0/8",
/// "::1", "fd00::/8"). IPv4-mapped IPv6 addresses ("::ffff:10.1.2.3") count as the IPv4 address
/// they carry, on both sides, so a dual-stack socket's peer matches an IPv4 entry.
public struct IPRange: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6), network order, host bits cleared.
    public let network: [UInt8]
    public let prefixLength: Int

    /// nil when `text` is neither an address nor address/prefix with a prefix that fits.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let address = Self.bytes(String(parts[0])) else { return nil }
        // "::ffff:10.0.0.0/104" is "10.0.0.0/8".
        let mapped = parts[0].contains(":") && address.count == 4
        var prefix = address.count * 8
        if parts.count == 2 {
            guard parts[1].allSatisfy(\.isNumber), let given = Int(parts[1]),
                (mapped ? 96...128 : 0...prefix).contains(given)
            else { return nil }
            prefix = mapped ? given - 96 : given
        }
        network = Self.mask(address, prefix)
        prefixLength = prefix
    }

    /// Whether `address` (as `bytes(_:)` gives it) lies in this range.
    public func contains(_ address: [UInt8]) -> Bool {
        address.count == network.count && Self.mask(address, prefixLength) == network
    }

    /// Whether the textual address `ip` lies in this range (false when it is not an address).
    public func contains(_ ip: String) -> Bool {
        Self.bytes(ip).map(contains) ?? false
    }

    public var description: String {
        let text = Self.text(network)
        return prefixLength == network.count * 8 ? text : "\(text)/\(prefixLength)"
    }

    /// The bytes of an IPv4 or IPv6 address in text ("[::1]" with brackets too); an IPv4-mapped
    /// IPv6 address gives its 4 IPv4 bytes. nil when `ip` is not an address.
    public static func bytes(_ ip: String) -> [UInt8]? {
        var text = ip
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        if let percent = text.firstIndex(of: "%") { text = String(text[..<percent]) }  // fe80::1%eth0
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        return unmapped(withUnsafeBytes(of: &v6) { Array($0) })
    }

    /// The 16 bytes of an IPv6 address as `bytes(_:)` gives them: an IPv4-mapped address
    /// (::ffff:a.b.c.d) as its 4 IPv4 bytes, any other unchanged.
    public static func unmapped(_ v6: [UInt8]) -> [UInt8] {
        if v6.count == 16 && v6[0..<10].allSatisfy({ $0 == 0 }) && v6[10] == 0xff && v6[11] == 0xff {
            return Array(v6[12...])
        }
        return v6
    }

    /// Whether address bytes (as `bytes(_:)` gives them) are a loopback address: 127.0.0.0/8
    /// (also IPv4-mapped) or ::1.
    public static func isLoopback(_ bytes: [UInt8]) -> Bool {
        bytes.count == 4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// The canonical text of address bytes (as `bytes(_:)` gives them).
    public static func text(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func mask(_ address: [UInt8], _ prefix: Int) -> [UInt8] {
        address.enumerated().map { index, byte in
            let keep = max(0, min(8, prefix - index * 8))
            return keep == 8 ? byte : byte & ~(UInt8(0xff) >> keep)
        }
    }
}
