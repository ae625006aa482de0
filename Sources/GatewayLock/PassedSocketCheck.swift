import Systemd

#if canImport(Glibc)
import Glibc
#endif

/// Checks that a socket systemd passed can serve the gateway: a listening SOCK_STREAM socket of
/// family AF_INET or AF_INET6. `Accept=yes` units pass connected sockets, a misconfigured unit may
/// pass a datagram or unix socket or even a file; each gets a reason a person can act on.
enum PassedSocketCheck {
    /// nil when the fd can serve; otherwise why not.
    static func problem(with fd: Int32, name: String) -> String? {
        let which = "passed fd \(fd) (\(name))"
        let isListeningStream = SystemdActivation.isSocket(fd, type: Int32(SOCK_STREAM.rawValue), listening: 1)
        let isListeningInet = SystemdActivation.isInetSocket(fd, type: Int32(SOCK_STREAM.rawValue), listening: 1)
        if isListeningStream > 0 && isListeningInet > 0 {
            return nil
        }
        if isListeningStream < 0 || isListeningInet < 0 {
            let code = isListeningStream < 0 ? -isListeningStream : -isListeningInet
            return "\(which) cannot be inspected: \(errnoText(code))"
        }
        var info = stat()
        if fstat(fd, &info) == 0 && (info.st_mode & S_IFMT) != S_IFSOCK {
            return "\(which) is not a socket (\(fileKind(info.st_mode))); expected a listening TCP socket"
        }
        let type = socketOption(fd, SOL_SOCKET, SO_TYPE)
        if type != Int32(SOCK_STREAM.rawValue) {
            let kind = type == Int32(SOCK_DGRAM.rawValue) ? "a datagram (UDP) socket" : "not a stream socket"
            return "\(which) is \(kind); expected a listening TCP socket (ListenStream=)"
        }
        let family = socketOption(fd, SOL_SOCKET, SO_DOMAIN)
        if family != AF_INET && family != AF_INET6 {
            let kind = family == AF_UNIX ? "a unix socket" : "not an IPv4/IPv6 socket"
            return "\(which) is \(kind); expected a listening TCP socket on an IP address"
        }
        return "\(which) is a TCP socket that is not listening (a connected socket, as Accept=yes passes); expected a listening socket"
    }

    private static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a pipe"
        case S_IFCHR: return "a character device"
        default: return "not a socket"
        }
    }
}
