import NIOCore
import NIOWebSocket

/// One upgraded WebSocket connection: answers pings, completes the close handshake, and at
/// shutdown (ChannelShouldQuiesceEvent) closes with 1012 "service restart".
final class WebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    static let serviceRestart = WebSocketErrorCode(codeNumber: 1012)

    private let closeHandshakeTimeout: TimeAmount
    private var closeSent = false

    init(closeHandshakeTimeout: TimeAmount) {
        self.closeHandshakeTimeout = closeHandshakeTimeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .connectionClose:
            if closeSent {
                context.close(promise: nil)  // the client answered our close
            } else {
                // Echo the client's status code, then close (RFC 6455, 5.5.1).
                var payload = frame.unmaskedData
                let code = payload.readWebSocketErrorCode() ?? .normalClosure
                sendClose(context: context, code: code, reason: nil, thenCloseAfter: .zero)
            }
        case .ping:
            var payload = frame.unmaskedData
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: payload.readSlice(length: payload.readableBytes) ?? ByteBuffer())
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        default:
            break  // the control-plane protocol reads text frames; nothing else to do yet
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // WebSocketProtocolErrorHandler has sent the close frame for a protocol error; finish.
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            sendClose(context: context, code: Self.serviceRestart, reason: "service restart", thenCloseAfter: closeHandshakeTimeout)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func sendClose(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String?, thenCloseAfter wait: TimeAmount) {
        guard !closeSent else { return }
        closeSent = true
        var buffer = context.channel.allocator.buffer(capacity: 2 + (reason?.utf8.count ?? 0))
        buffer.write(webSocketErrorCode: code)
        if let reason { buffer.writeString(reason) }
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)
        let channel = context.channel
        let written = context.writeAndFlush(wrapOutboundOut(frame))
        if wait == .zero {
            written.whenComplete { _ in channel.close(promise: nil) }
        } else {
            // The client should answer with its own close frame; do not wait for ever.
            context.eventLoop.scheduleTask(in: wait) { channel.close(promise: nil) }
        }
    }
}
