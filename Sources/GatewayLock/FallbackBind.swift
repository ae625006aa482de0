#if canImport(Glibc)
import Glibc
#endif

/// The listener this process binds itself when systemd passed none: plain system calls, so that a
/// duplicate is refused before any event loop, thread pool or Foundation work exists.
///
/// SO_REUSEADDR is set so that a crash's TIME_WAIT/FIN_WAIT leftovers never block a restart; that
/// does not let a second listener in (Linux refuses a bind on a port with a listener, and a second
/// `listen()` on a port where two sockets raced to bind). SO_REUSEPORT is never set: with it two
/// listeners would share the port and the lock would be gone.
enum FallbackBind {
    struct Failure: Error {
        let errno: Int32
        let step: String

        var isAddressInUse: Bool { errno == EADDRINUSE }
        var reason: String { "\(step): \(errnoText(errno))" }
    }

    /// A bound, listening, close-on-exec TCP socket on address:port.
    static func listen(on address: BindAddress, port: Int, ipv6Only: Bool = false) throws(Failure) -> Int32 {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(errno: errno, step: "socket()") }
        do throws(Failure) {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, step: "setsockopt(SO_REUSEADDR)")
            if ipv6Only {
                try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, step: "setsockopt(IPV6_V6ONLY)")
            }
            try bind(fd, address: address, port: port)
            if Glibc.listen(fd, listenBacklog) != 0 {
                // Two sockets with SO_REUSEADDR can both bind before either listens; the second
                // listen() then fails with EADDRINUSE: the same duplicate, seen a moment later.
                throw Failure(errno: errno, step: "listen()")
            }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    private static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, step: String) throws(Failure) {
        var value = value
        if setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw Failure(errno: errno, step: step)
        }
    }

    private static func bind(_ fd: Int32, address: BindAddress, port: Int) throws(Failure) {
        let rc = address.withSocketAddress(port: port) { Glibc.bind(fd, $0, $1) }
        if rc != 0 { throw Failure(errno: errno, step: "bind()") }
    }
}
