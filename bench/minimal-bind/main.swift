// The floor for "a duplicate is refused": a static Swift program that binds 127.0.0.1:PORT with
// SO_REUSEADDR, and exits 78 on EADDRINUSE. Built by bench/benchlib.py with -static-stdlib.
#if canImport(Glibc)
import Glibc
#endif

let port = UInt16(CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "18789") ?? 18789
let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
var one: Int32 = 1
setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
var sin = sockaddr_in()
sin.sin_family = sa_family_t(AF_INET)
sin.sin_port = port.bigEndian
sin.sin_addr.s_addr = inet_addr("127.0.0.1")
let rc = withUnsafePointer(to: &sin) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
}
if rc != 0 || listen(fd, 128) != 0 {
    let message = "GatewayLockError: another gateway instance is already listening on ws://127.0.0.1:\(port)\n"
    _ = message.withCString { write(2, $0, strlen($0)) }
    exit(78)
}
exit(0)
