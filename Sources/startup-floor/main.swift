// The floor under the gateway's start-up figures (bench only, not shipped): the least a server
// built on the parts the gateway must use can do. SwiftNIO's event loop group (as many loops as
// cores, as the gateway), libsystemd through the same loader (sd_listen_fds_with_names when
// LISTEN_FDS is set, sd_notify READY=1), a listener bound with plain system calls otherwise, and
// one HTTP handler that answers every request with 200 {"ok":true} and closes. No configuration, logging,
// Swift concurrency, service group, WebSocket or lock checks. `make bench` times it exactly as it
// times the gateway (exec -> READY=1; socket-activated connect -> first answer).
//
//   startup-floor --port PORT
import CSystemdLoader
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    _ = "startup-floor: \(message)\n".withCString { write(2, $0, strlen($0)) }
    exit(1)
}

/// The listener: the first fd systemd passed, else 127.0.0.1:PORT bound here.
func listener() -> Int32 {
    if getenv("LISTEN_FDS") != nil {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = openclaw_sd_listen_fds_with_names(1, &names)
        guard count >= 1 else { fail("LISTEN_FDS set, but libsystemd passes no fd (\(count))") }
        return 3  // SD_LISTEN_FDS_START
    }
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: "--port"), index + 1 < arguments.count,
        let port = UInt16(arguments[index + 1])
    else { fail("usage: startup-floor --port PORT") }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0, listen(fd, 4096) == 0 else { exit(78) }
    return fd
}

final class Answer: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        let body = context.channel.allocator.buffer(string: #"{"ok":true}"#)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

let fd = listener()
let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
do {
    _ = try ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                try channel.pipeline.syncOperations.addHandler(Answer())
            }
        }
        .withBoundSocket(fd).wait()
} catch {
    fail("cannot serve fd \(fd): \(error)")
}
_ = openclaw_sd_notify(0, "READY=1")
while true { pause() }
