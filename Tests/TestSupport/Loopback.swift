#if canImport(Glibc)
import Glibc
#endif

/// Real sockets on 127.0.0.1 for the tests: a listener on a free port, a client, and reading one
/// until the other side closes.
public enum Loopback {
    /// A listening TCP socket on 127.0.0.1 and the port the kernel chose.
    public static func listener(backlog: Int32 = 128) -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = address(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address -> Int32 in
                precondition(bind(fd, address, length) == 0 && listen(fd, backlog) == 0)
                return getsockname(fd, address, &length)
            }
        }
        return (fd, Int(UInt16(bigEndian: sin.sin_port)))
    }

    /// A socket connect(2)ed to 127.0.0.1:`port` and connect's errno (0 when it connected).
    public static func connect(port: Int) -> (fd: Int32, error: Int32) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = address(port: port)
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return (fd, rc == 0 ? 0 : errno)
    }

    /// A client connected to `port` (the test stops if it cannot connect), with a receive timeout
    /// when `receiveTimeoutSeconds` is given.
    public static func client(port: Int, receiveTimeoutSeconds: Int? = nil) -> Int32 {
        let (fd, error) = connect(port: port)
        precondition(error == 0, "connect failed: \(error)")
        if let receiveTimeoutSeconds {
            var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        return fd
    }

    /// Everything until EOF (the other side closed), an error or the receive timeout.
    public static func readAll(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return out }
            out += buffer[..<n]
        }
    }

    private static func address(port: Int) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(port).bigEndian
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        return sin
    }
}
