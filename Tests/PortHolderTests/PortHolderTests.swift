import Testing

@testable import PortHolder

#if canImport(Glibc)
import Glibc
#endif

func listener() -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    listen(fd, 1)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return (fd, Int(UInt16(bigEndian: sin.sin_port)))
}

@Suite struct PortHolderTests {
    @Test func findsThisProcessHoldingAListener() {
        let (fd, port) = listener()
        defer { close(fd) }
        guard case .held(let processes) = PortHolder.lookup(port: port) else {
            Issue.record("expected a holder for port \(port)")
            return
        }
        #expect(processes.map(\.pid) == [getpid()])
        #expect(processes[0].executable != nil)
        #expect(!processes[0].isGateway)
        #expect(!processes[0].isSystemd)
    }

    @Test func aClosedPortIsFree() {
        let (fd, port) = listener()
        close(fd)
        #expect(PortHolder.lookup(port: port) == .free)
    }

    @Test func aConnectedSocketOnThePortIsNotAListener() {
        let (fd, port) = listener()
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(port).bigEndian
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(fd)
        defer { close(client) }
        #expect(PortHolder.lookup(port: port) == .free)
    }

    @Test func aGatewayIsToldApartByItsExecutableNotItsTruncatedName() {
        let gateway = PortHolder.Process(pid: 42, name: "openclaw-gatewa", executable: "/usr/bin/openclaw-gateway")
        #expect(gateway.isGateway)
        #expect(gateway.description == "pid 42 (openclaw-gateway)")
        let upgraded = PortHolder.Process(pid: 42, name: "openclaw-gatewa", executable: "/usr/bin/openclaw-gateway (deleted)")
        #expect(upgraded.isGateway)
        let impostor = PortHolder.Process(pid: 43, name: "openclaw-gatewa", executable: "/usr/bin/python3.11")
        #expect(!impostor.isGateway)
        #expect(impostor.description == "pid 43 (python3.11)")
    }
}

@Suite struct ListenerTableTests {
    @Test func netlinkAndProcAgreeOnAListener() {
        let (fd, port) = listener()
        defer { close(fd) }
        let viaNetlink = PortHolder.listeningSockets(port: port)
        let viaProc = PortHolder.listeningSocketsFromProc(port: port)
        #expect(viaNetlink.count == 1)
        #expect(viaNetlink == viaProc)
    }
}
