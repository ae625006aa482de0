#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The text of an errno value, e.g. "Address already in use".
func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// The local address of a socket as (address, port), or nil when it is not an inet socket.
func localAddress(of fd: Int32) -> (BindAddress, Int)? {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let rc = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard rc == 0 else { return nil }
    switch Int32(storage.ss_family) {
    case AF_INET:
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                (.ipv4($0.pointee.sin_addr.s_addr), Int(UInt16(bigEndian: $0.pointee.sin_port)))
            }
        }
    case AF_INET6:
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                let bytes = withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) }
                return (.ipv6(bytes), Int(UInt16(bigEndian: $0.pointee.sin6_port)))
            }
        }
    default:
        return nil
    }
}

/// An integer socket option, or nil when getsockopt fails (e.g. not a socket).
func socketOption(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32? {
    var value: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    return getsockopt(fd, level, name, &value, &length) == 0 ? value : nil
}

/// The backlog the gateway listens with: 4096, what systemd's Backlog= asks for by default. The
/// kernel caps it at net.core.somaxconn. NIO lowers it to 128 when it adopts a socket, so the
/// server applies it again after adoption.
public let listenBacklog: Int32 = 4096
