import CProcess

#if canImport(Glibc)
import Glibc
#endif

/// The one socket in systemd's fd store that carries every session across a restart.
///
/// Fds sent with SCM_RIGHTS and not yet received stay open in the receiving socket's queue for as
/// long as that socket is open, even after the sender exits. So the stopping gateway sends its
/// sessions through one end of an `AF_UNIX` `SOCK_SEQPACKET` pair, stores the other end (`FDNAME=sessions`,
/// `FDPOLL=0`) and exits; the next one reads the messages back. One store entry instead of one per
/// session: systemd compares each new entry with every stored one, which made the cost grow with the
/// square of the sessions.
///
/// The messages, in order (SEQPACKET keeps their boundaries), each a line of text and its fds:
/// - `openclaw-gateway-carrier/1 state` with one fd, the memfd of the ``StateRecord``;
/// - `openclaw-gateway-carrier/1 sessions FIRST` with up to 253 session sockets, which are the
///   record's connections FIRST, FIRST+1, … in fd order.
/// The stream ends where the messages end (the sender has closed its end).
enum Carrier {
    /// Its name in the fd store.
    static let storeName = "sessions"
    static let format = "openclaw-gateway-carrier/1"
    static let fdsPerMessage = Int(OPENCLAW_MAX_FDS_PER_MESSAGE)

    enum Message: Equatable {
        case state(fd: Int32)
        case sessions(first: Int, fds: [Int32])

        var fds: [Int32] {
            switch self {
            case .state(let fd): [fd]
            case .sessions(_, let fds): fds
            }
        }

        var text: String {
            switch self {
            case .state: "\(Carrier.format) state"
            case .sessions(let first, _): "\(Carrier.format) sessions \(first)"
            }
        }

        init?(text: String, fds: [Int32]) {
            let words = text.split(separator: " ")
            guard words.first.map(String.init) == Carrier.format else { return nil }
            switch (words.dropFirst().first, words.count) {
            case ("state", 2) where fds.count == 1: self = .state(fd: fds[0])
            case ("sessions", 3):
                guard let first = Int(words[2]), first >= 0 else { return nil }
                self = .sessions(first: first, fds: fds)
            default: return nil
            }
        }
    }

    /// A new carrier: the end to send on and the end to store, both close-on-exec. The sending
    /// end gets the largest send buffer an unprivileged process may set, which bounds how many
    /// messages (about 400: 100,000 sessions) wait unread.
    static func makePair() throws(CarrierError) -> (sending: Int32, stored: Int32) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw CarrierError("socketpair: \(String(cString: strerror(errno)))")
        }
        var size: Int32 = 1 << 30  // capped by the kernel at net.core.wmem_max
        _ = setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // Never block: a full queue is an error the caller handles (it closes those sessions).
        _ = fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK)
        return (pair[0], pair[1])
    }

    /// Sends one message; the fds stay the caller's (the queue holds its own references).
    static func send(_ message: Message, on socket: Int32) throws(CarrierError) {
        try send(text: message.text, fds: message.fds, on: socket)
    }

    private static func send(text: String, fds: [Int32], on socket: Int32) throws(CarrierError) {
        let bytes = Array(text.utf8)
        let rc = bytes.withUnsafeBytes { raw in
            fds.withUnsafeBufferPointer { openclaw_send_with_fds(socket, raw.baseAddress, UInt(raw.count), $0.baseAddress, Int32($0.count)) }
        }
        if rc < 0 { throw CarrierError("sendmsg (\(fds.count) fds): \(String(cString: strerror(Int32(-rc))))") }
    }

    /// Every message the carrier holds, until its end. Each one is first sent on to `forward`,
    /// when given, so that it is never only in this process: should it die before the sessions
    /// are its own, the next start finds them in the forward carrier. What is not a message of
    /// ours is closed and named in `problems`.
    static func receiveAll(from socket: Int32, forwardingTo forward: Int32?) -> (messages: [Message], problems: [String]) {
        var messages: [Message] = []
        var problems: [String] = []
        var bytes = [UInt8](repeating: 0, count: 256)
        var fds = [Int32](repeating: -1, count: fdsPerMessage)
        while true {
            var count: Int32 = 0
            let rc = bytes.withUnsafeMutableBytes { raw in
                fds.withUnsafeMutableBufferPointer { openclaw_receive_with_fds(socket, raw.baseAddress, UInt(raw.count), $0.baseAddress, &count) }
            }
            if rc == 0 || rc == -Int(EAGAIN) { break }  // the end: the sender closed its end, or sends no more
            if rc < 0 {
                problems.append("recvmsg: \(String(cString: strerror(Int32(-rc))))")
                if rc == -Int(EMSGSIZE) { continue }  // that message is lost (its fds closed); the rest may not be
                break
            }
            let received = Array(fds.prefix(Int(count)))
            let text = String(decoding: bytes.prefix(rc), as: UTF8.self)
            guard let message = Message(text: text, fds: received) else {
                problems.append("not a carrier message (\(received.count) fd(s)): \(text.prefix(60))")
                for fd in received { close(fd) }
                continue
            }
            if let forward {
                do { try send(text: text, fds: received, on: forward) } catch { problems.append("forwarding: \(error)") }
            }
            messages.append(message)
        }
        return (messages, problems)
    }
}

struct CarrierError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
