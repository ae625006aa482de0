import CProcess

#if canImport(Glibc)
import Glibc
#endif

/// Who holds a TCP port on this host: the answer to an operator's first question when the gateway
/// cannot get its listener. Read from /proc (the listening socket's inode in /proc/net/tcp{,6},
/// then the process whose fd links to it). Never throws: what cannot be read (another user's
/// process) degrades to "another process".
public enum PortHolder {
    /// One process that has the listening socket open.
    public struct Process: Sendable, Equatable {
        public let pid: Int32
        /// /proc/PID/comm (Linux truncates it to 15 characters: `openclaw-gatewa`).
        public let name: String
        /// /proc/PID/exe, when readable.
        public let executable: String?

        public var isSystemd: Bool { pid == 1 }

        /// Told apart by the executable's name, not the truncated process name.
        public var isGateway: Bool {
            guard var path = executable else { return false }
            if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }  // upgraded in place
            return path.split(separator: "/").last == "openclaw-gateway"
        }

        /// `pid 1234 (openclaw-gateway)`.
        public var description: String {
            let shown = isGateway ? "openclaw-gateway" : (executable.map { String($0.split(separator: "/").last ?? "") } ?? name)
            return "pid \(pid) (\(shown.isEmpty ? name : shown))"
        }
    }

    public enum Lookup: Sendable, Equatable {
        /// Nothing listens on the port.
        case free
        /// Something listens, but no process we can inspect holds it; `uid` owns the socket.
        case hidden(uid: UInt32?)
        /// These processes have the listening socket open (systemd and the service it started,
        /// for example).
        case held([Process])
    }

    /// Looks up who listens on `port` (any local address, IPv4 or IPv6). `firstHolderOnly`: the
    /// newest process holding it (plus PID 1 when systemd holds it too) instead of every one — what
    /// the hint of a refused start names, found without reading every fd of every process.
    public static func lookup(port: Int, firstHolderOnly: Bool = false) -> Lookup {
        let sockets = listeningSockets(port: port)
        guard !sockets.isEmpty else { return .free }
        let holders = processes(holding: sockets.map(\.inode), firstOnly: firstHolderOnly)
        if holders.isEmpty { return .hidden(uid: sockets.first?.uid) }
        return .held(holders)
    }

    struct ListeningSocket: Equatable {
        let inode: UInt64
        let uid: UInt32
    }

    /// LISTEN sockets on `port`: from the kernel's sock_diag (it walks only listeners), or from
    /// /proc/net/tcp{,6} where netlink is not allowed (a hardened unit's RestrictAddressFamilies=).
    static func listeningSockets(port: Int) -> [ListeningSocket] {
        var inodes = [UInt64](repeating: 0, count: 64)
        var uids = [UInt32](repeating: 0, count: 64)
        let n = openclaw_tcp_listeners(Int32(port), &inodes, &uids, 64)
        if n >= 0 {
            return (0..<Int(n)).map { ListeningSocket(inode: inodes[$0], uid: uids[$0]) }
        }
        return listeningSocketsFromProc(port: port)
    }

    static func listeningSocketsFromProc(port: Int) -> [ListeningSocket] {
        var found: [ListeningSocket] = []
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = readSmallFile(table) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                guard fields.count > 9, fields[3] == "0A",  // TCP_LISTEN
                    let colon = fields[1].lastIndex(of: ":"),
                    let localPort = Int(fields[1][fields[1].index(after: colon)...], radix: 16), localPort == port,
                    let uid = UInt32(fields[7]), let inode = UInt64(fields[9]),
                    // The kernel reads the table out in chunks while it changes: a socket can be
                    // listed twice.
                    !found.contains(where: { $0.inode == inode })
                else { continue }
                found.append(ListeningSocket(inode: inode, uid: uid))
            }
        }
        return found
    }

    /// Processes with an fd on one of `inodes`, in pid order; unreadable processes are skipped.
    static func processes(holding inodes: [UInt64], firstOnly: Bool = false) -> [Process] {
        let wanted = Array(inodes.prefix(64))
        var pids = [Int32](repeating: 0, count: 64)
        let n = openclaw_socket_holders(wanted, Int32(wanted.count), &pids, Int32(pids.count), firstOnly ? 1 : 0)
        guard n > 0 else { return [] }
        return pids[0..<Int(n)].sorted().map { pid in
            let name = readSmallFile("/proc/\(pid)/comm").map { String($0.prefix { $0 != "\n" }) } ?? "?"
            return Process(pid: pid, name: name, executable: readLink("/proc/\(pid)/exe"))
        }
    }

    // MARK: - small file system helpers (no Foundation: this runs on the error path of start-up)

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
