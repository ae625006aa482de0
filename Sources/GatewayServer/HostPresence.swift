import GatewayProtocol

#if canImport(Glibc)
import Glibc
#endif

extension PresenceEntry {
    /// The gateway's own presence entry on this host: its name, first non-loopback IPv4 address,
    /// kernel ("linux 6.1.0-…") and machine, as upstream's initSelfPresence reports them.
    public static func thisHost(version: String) -> PresenceEntry {
        var names = utsname()
        uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let host = field(names.nodename)
        let platform = "linux \(field(names.release))"
        let machine = field(names.machine)
        return .gateway(
            host: host.isEmpty ? "localhost" : host, ip: firstIPv4(), version: version, platform: platform,
            modelIdentifier: machine.isEmpty ? nil : machine)
    }

    private static func firstIPv4() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr, Int32(address.pointee.sa_family) == AF_INET,
                entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0
            else { continue }
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            let ok = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin -> Bool in
                var value = sin.pointee.sin_addr
                return inet_ntop(AF_INET, &value, &text, socklen_t(text.count)) != nil
            }
            if ok { return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        }
        return nil
    }
}
