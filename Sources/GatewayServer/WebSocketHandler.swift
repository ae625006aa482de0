import GatewayProtocol
import NIOCore
import NIOWebSocket

/// One upgraded WebSocket connection running the control plane: sends the challenge, feeds text
/// frames to its ``ControlPlaneSession`` and carries out what it answers, sends ticks, enforces the
/// frame limits and the handshake timeout, and at shutdown (ChannelShouldQuiesceEvent) sends the
/// `shutdown` event and closes with 1012 "service restart".
final class WebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let session: ControlPlaneSession
    private let configuration: ControlPlaneConfiguration
    private let closeHandshakeTimeout: TimeAmount
    private let rateLimiter: AuthRateLimiter
    private let refusals: RefusalLog
    /// Whose failed tokens this connection's count with (nil: not limited).
    private let limiterKey: String?
    /// Carried on from an earlier process: no challenge is sent on open.
    private let restored: Bool
    private var closeSent = false
    /// Handed to the next process: nothing more is read, sent or closed from here.
    private var frozen = false
    /// Both are ``LazyTimer``s: a cancel must not cost O(sessions).
    private var handshakeTimer = LazyTimer()
    private var ticker = LazyTimer()

    init(session: ControlPlaneSession, configuration: ControlPlaneConfiguration, closeHandshakeTimeout: TimeAmount,
         rateLimiter: AuthRateLimiter, refusals: RefusalLog, limiterKey: String?, restored: Bool = false) {
        self.session = session
        self.configuration = configuration
        self.closeHandshakeTimeout = closeHandshakeTimeout
        self.rateLimiter = rateLimiter
        self.refusals = refusals
        self.limiterKey = limiterKey
        self.restored = restored
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if restored {
            if session.state == .connected {
                return startTicks(context: context)
            }
        } else {
            perform(session.open(), context: context)
        }
        startHandshakeTimer(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        handshakeTimer.cancel()
        ticker.cancel()
        session.disconnected()
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.disconnected()
        context.fireChannelInactive()
    }

    /// Stops this connection for a handover: no more ticks, timers or sends. Returns the session
    /// to carry on; nil when the connection is closing anyway.
    func freeze(context: ChannelHandlerContext) -> ControlPlaneSession.Snapshot? {
        guard !closeSent, !frozen, let snapshot = session.snapshot else { return nil }
        frozen = true
        handshakeTimer.cancel()
        ticker.cancel()
        context.flush()
        return snapshot
    }

    /// Undoes ``freeze(context:)`` for a connection that could not be handed over after all (its
    /// client did not read what was queued in time, say): it serves on, ticks included, and hears
    /// the shutdown that follows like any other. A handshake still pending gets its time again.
    func thaw(context: ChannelHandlerContext) {
        guard frozen else { return }
        frozen = false
        if session.state == .connected {
            startTicks(context: context)
        } else {
            startHandshakeTimer(context: context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !frozen else { return }
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            // Both carry JSON: upstream's apps send every request as a binary message.
            guard frame.length <= session.maxFrameSize else {
                return sendClose(context: context, code: 1009, reason: "frame too large", thenCloseAfter: .zero)
            }
            // Unmasked by RFC6455Conformance already (then this is no copy); a String straight
            // from the buffer's bytes.
            guard let text = frame.unmaskedData.withUnsafeReadableBytes({ String(validating: $0, as: UTF8.self) }) else {
                return sendClose(context: context, code: 1007, reason: "message is not valid UTF-8", thenCloseAfter: .zero)
            }
            let wasConnected = session.state == .connected
            perform(session.receive(text), context: context)
            if !wasConnected && session.state == .connected {
                handshakeTimer.cancel()
                startTicks(context: context)
            }
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
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let violation = error as? WebSocketViolation {
            // RFC6455Conformance: fail the connection with the code the RFC names.
            return sendClose(context: context, code: violation.code, reason: violation.reason, thenCloseAfter: .zero)
        }
        if error is NIOWebSocketFrameAggregator.Error {
            // A fragmented message grew past the limit.
            return sendClose(context: context, code: 1009, reason: "message too large", thenCloseAfter: .zero)
        }
        // WebSocketProtocolErrorHandler has sent the close frame for a protocol error; finish.
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // More than maxBufferedBytes queued for a client that does not read: drop it, so memory
        // stays bounded.
        if !context.channel.isWritable && !frozen {
            context.close(promise: nil)
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let change = event as? PresenceChanged {
            guard !frozen else { return }
            // Upstream's dropIfSlow: a client whose queued output is over the high-water mark does
            // not get it, and the sequence number is used up, so its gap detection sees the miss.
            guard context.channel.isWritable else { return session.skipEvent() }
            perform(session.presenceEvent(payload: change.payload, presenceVersion: change.version), context: context)
        } else if event is ChannelShouldQuiesceEvent {
            guard !frozen else { return }
            ticker.cancel()
            perform(session.shutdown(reason: "gateway stopping", restartExpectedMs: nil), context: context)
        } else if event is CredentialsChanged {
            guard !frozen else { return }
            ticker.cancel()
            perform(session.credentialsChanged(), context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func startHandshakeTimer(context: ChannelHandlerContext) {
        let handler = Weak(self)
        let weakContext = Weak(context)
        handshakeTimer.schedule(in: .milliseconds(Int64(configuration.handshakeTimeoutMs)), on: context.eventLoop) {
            guard let self = handler.value, let context = weakContext.value, context.channel.isActive else { return }
            self.perform(self.session.handshakeTimedOut(), context: context)
        }
    }

    /// A `tick` event every tickIntervalMs, as a repeated task would send it, but cheap to cancel:
    /// each tick schedules the next before it is sent, so a cancel while sending stops both.
    private func startTicks(context: ChannelHandlerContext) {
        let handler = Weak(self)
        let weakContext = Weak(context)
        ticker.schedule(in: .milliseconds(Int64(configuration.tickIntervalMs)), on: context.eventLoop) {
            guard let self = handler.value, let context = weakContext.value else { return }
            self.startTicks(context: context)
            self.perform(self.session.tick(), context: context)
        }
    }

    /// The longest header of a frame the server sends (RFC 6455, 5.2: no mask, a 64-bit length).
    private static let headerRoom = 10

    private func perform(_ actions: [SessionAction], context: ChannelHandlerContext) {
        guard !frozen else { return }
        var wrote = false
        for action in actions {
            switch action {
            case .send(let text):
                guard !closeSent else { continue }
                // Room in front for the frame header, which the encoder then writes in place:
                // one buffer per frame on the wire instead of two (and no copy of its shared
                // header buffer while writes are queued).
                var buffer = context.channel.allocator.buffer(capacity: Self.headerRoom + text.utf8.count)
                buffer.writeRepeatingByte(0, count: Self.headerRoom)
                buffer.moveReaderIndex(forwardBy: Self.headerRoom)
                buffer.writeString(text)
                context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
                wrote = true
            case .close(let code, let reason):
                sendClose(context: context, code: WebSocketErrorCode(codeNumber: Int(code)), reason: reason,
                          thenCloseAfter: code == 1012 ? closeHandshakeTimeout : .zero)
                wrote = false
            case .authenticationFailed:
                rateLimiter.recordFailure(key: limiterKey)
            case .refused(let code):
                let reason =
                    code == "AUTH_RATE_LIMITED"
                    ? "too many failed tokens" : code.hasPrefix("AUTH_PASSWORD") ? "wrong or missing password" : "wrong or missing token"
                refusals.refused(
                    code == "AUTH_RATE_LIMITED" ? .lockout : .auth, peer: context.channel.remoteAddress, reason: reason,
                    detail: ("code", code))
            }
        }
        if wrote { context.flush() }
    }

    private func sendClose(context: ChannelHandlerContext, code: Int, reason: String, thenCloseAfter wait: TimeAmount) {
        sendClose(context: context, code: WebSocketErrorCode(codeNumber: code), reason: reason, thenCloseAfter: wait)
    }

    private func sendClose(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String?, thenCloseAfter wait: TimeAmount) {
        // A frozen connection's socket may be the next process's now: nothing is written to it.
        guard !closeSent, !frozen else { return }
        closeSent = true
        ticker.cancel()
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

/// The presence list changed: one `presence` event for each connected session, its payload encoded
/// once for all.
/// A reload changed the gateway's secret: every session ends with 4001 "gateway auth changed".
struct CredentialsChanged: Sendable {}

struct PresenceChanged: Sendable {
    let payload: String
    let version: Int
}
