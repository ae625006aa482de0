import NIOCore
import NIOHTTP1

/// Plain HTTP on the gateway's port: liveness and readiness probes. Everything else is 404, a
/// wrong method on a probe 405, and `/` without a WebSocket upgrade 426.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let origins: OriginPolicy
    private let hosts: HostPolicy
    private let refusals: RefusalLog
    private var request: HTTPRequestHead?

    /// Sent with every probe answer: which configuration is in force (`openclaw-gateway status`
    /// shows it).
    private let probeHeaders: [(String, String)]

    init(origins: OriginPolicy, hosts: HostPolicy, refusals: RefusalLog, probeHeaders: [(String, String)] = []) {
        self.origins = origins
        self.hosts = hosts
        self.refusals = refusals
        self.probeHeaders = probeHeaders
    }

    static let liveBody = #"{"ok":true,"status":"live"}"#
    static let readyBody = #"{"ok":true,"status":"ready"}"#

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break  // probes carry no body; whatever comes is drained
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)  // no complete request within the header timeout
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A parser error is fatal: NIO's HTTPServerProtocolErrorHandler has already answered 400
        // and leaves closing to us. Other errors come from a refused WebSocket upgrade, whose
        // request still reaches channelRead and gets its answer there.
        if error is HTTPParserError {
            context.close(promise: nil)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard hosts.allows(head, local: context.channel.localAddress) else {
            refusals.refused(.host, peer: context.channel.remoteAddress, reason: "host not allowed",
                             detail: ("host", head.headers["host"].joined(separator: ",")))
            // A foreign name for this address: a page after DNS rebinding. 421, as Jupyter and
            // other local servers answer it, and nothing of the gateway's.
            return send(.misdirectedRequest, body: #"{"ok":false,"error":"host not allowed"}"#, head: head,
                        extra: [("Connection", "close")], context: context)
        }
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
        let isGetOrHead = head.method == .GET || head.method == .HEAD
        switch path {
        case "/healthz", "/health", "/readyz", "/ready":
            guard isGetOrHead else {
                return send(.methodNotAllowed, body: #"{"ok":false,"error":"method not allowed"}"#, head: head,
                            extra: [("Allow", "GET, HEAD")], context: context)
            }
            let body = path.hasPrefix("/ready") ? Self.readyBody : Self.liveBody
            send(.ok, body: body, head: head, extra: probeHeaders, context: context)
        case "/" where !origins.allows(head, localPort: context.channel.localAddress?.port):
            // A web page on another origin never gets a socket (cross-site WebSocket hijacking).
            refusals.refused(.origin, peer: context.channel.remoteAddress, reason: "origin not allowed",
                             detail: ("origin", head.headers.first(name: "origin") ?? ""))
            send(.forbidden, body: #"{"ok":false,"error":"origin not allowed"}"#, head: head,
                 extra: [("Connection", "close")], context: context)
        case "/" where head.headers[canonicalForm: "upgrade"].contains { $0.lowercased() == "websocket" }:
            // NIO's upgrader passes on a WebSocket request it refused (no key, another version),
            // and so does shouldUpgrade (a key that is not base64 of 16 bytes).
            let versions = head.headers["sec-websocket-version"]
            if !versions.isEmpty && versions != ["13"] {
                // RFC 6455, 4.2.2: another version gets 426 and the version this server speaks.
                return send(.upgradeRequired, body: #"{"ok":false,"error":"unsupported WebSocket version (this server speaks 13)"}"#,
                            head: head, extra: [("Sec-WebSocket-Version", "13"), ("Connection", "close")], context: context)
            }
            send(.badRequest, body: #"{"ok":false,"error":"invalid WebSocket handshake (RFC 6455, version 13)"}"#, head: head,
                 extra: [("Sec-WebSocket-Version", "13"), ("Connection", "close")], context: context)
        case "/":
            send(.upgradeRequired, body: #"{"ok":false,"error":"this endpoint speaks WebSocket"}"#, head: head,
                 extra: [("Upgrade", "websocket"), ("Connection", "Upgrade")], context: context)
        default:
            send(.notFound, body: #"{"ok":false,"error":"not found"}"#, head: head, context: context)
        }
    }

    /// RFC 6455, 4.2.1: the key "MUST be a nonce consisting of a randomly selected 16-byte value
    /// that has been base64-encoded": 22 base64 digits and "==".
    static func isValidWebSocketKey(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else { return false }
        return bytes[..<22].allSatisfy { byte in
            (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/")
        }
    }

    private func send(
        _ status: HTTPResponseStatus, body: String, head: HTTPRequestHead,
        extra: [(String, String)] = [], context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Cache-Control", value: "no-store")
        for (name, value) in extra { headers.add(name: name, value: value) }
        let asksToClose = extra.contains { $0.0 == "Connection" && $0.1 == "close" }
        let keepAlive = head.isKeepAlive && status != .badRequest && status != .forbidden && !asksToClose
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }

        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
