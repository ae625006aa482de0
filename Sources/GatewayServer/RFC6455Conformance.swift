import NIOCore
import NIOWebSocket

/// A client broke a rule of RFC 6455 that requires the server to fail the connection: the close
/// code to send, and why. Raised through the pipeline to ``WebSocketHandler``, which sends the
/// close frame and closes.
struct WebSocketViolation: Error, Equatable {
    let code: Int
    let reason: String
}

/// The rules of RFC 6455 that NIO's frame decoder leaves to the server, checked on every frame
/// between the decoder and the aggregator. NIO already refuses a control frame over 125 bytes
/// (5.5) and a fragmented control frame (5.4) with 1002, and a frame over the size limit with
/// 1009 (``WebSocketProtocolErrorHandler``); everything else is here. After a violation nothing
/// more is passed on.
///
/// Work on a fragmented message is bounded by bytes (the aggregator's size limit) and by time
/// (``messageTimeout``), not by how many fragments it comes in.
final class RFC6455Conformance: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    private enum Message {
        /// Between messages.
        case none
        /// A text or binary message whose final fragment has not come yet; its UTF-8 so far.
        case open(UTF8Validator)
    }

    private var message = Message.none
    private var failed = false
    private let messageTimeout: TimeAmount
    private var messageTimer: Scheduled<Void>?

    init(messageTimeout: TimeAmount) {
        self.messageTimeout = messageTimeout
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        messageTimer?.cancel()
    }

    /// Passes each frame on unmasked (once, here), so no handler behind unmasks it again.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let masked = unwrapInboundIn(data)
        // 5.1: "The server MUST close the connection upon receiving a frame that is not masked."
        guard masked.maskKey != nil else {
            return fail(WebSocketViolation(code: 1002, reason: "client frames must be masked"), context: context)
        }
        let frame = WebSocketFrame(
            fin: masked.fin, rsv1: masked.rsv1, rsv2: masked.rsv2, rsv3: masked.rsv3, opcode: masked.opcode,
            maskKey: nil, data: Self.unmaskedData(of: masked))
        if let violation = check(frame, context: context) {
            return fail(violation, context: context)
        }
        context.fireChannelRead(wrapInboundOut(frame))
    }

    /// The frame's payload unmasked (RFC 6455, 5.3), as `WebSocketFrame.unmaskedData` gives it,
    /// eight bytes at a time rather than one.
    static func unmaskedData(of frame: WebSocketFrame) -> ByteBuffer {
        guard let key = frame.maskKey else { return frame.data }
        var word: UInt64 = 0
        withUnsafeMutableBytes(of: &word) { bytes in
            for index in 0..<8 { bytes[index] = key[index % 4] }
        }
        var data = frame.data
        data.withUnsafeMutableReadableBytes { bytes in
            var at = 0
            while at + 8 <= bytes.count {
                bytes.storeBytes(of: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self) ^ word, toByteOffset: at, as: UInt64.self)
                at += 8
            }
            while at < bytes.count {
                bytes[at] ^= key[at % 4]
                at += 1
            }
        }
        return data
    }

    /// `frame` is unmasked.
    private func check(_ frame: WebSocketFrame, context: ChannelHandlerContext) -> WebSocketViolation? {
        // 5.2: RSV1-3 "MUST be 0 unless an extension is negotiated"; none is.
        guard !frame.rsv1 && !frame.rsv2 && !frame.rsv3 else {
            return WebSocketViolation(code: 1002, reason: "reserved bits set without an extension")
        }
        switch frame.opcode {
        case .text, .binary:
            // 5.4: a new data frame while a fragmented message is open is out of order.
            guard case .none = message else {
                return WebSocketViolation(code: 1002, reason: "a new message before the last one was finished")
            }
            var validator = UTF8Validator()
            // 8.1: text is UTF-8; our binary messages carry JSON, which is UTF-8 too. Fail as soon
            // as the bytes cannot be UTF-8, even mid-message.
            guard validator.feed(frame.data) else {
                return WebSocketViolation(code: 1007, reason: "message is not valid UTF-8")
            }
            if frame.fin {
                guard validator.isComplete else { return WebSocketViolation(code: 1007, reason: "message is not valid UTF-8") }
            } else {
                message = .open(validator)
                startMessageTimer(context: context)
            }
        case .continuation:
            // 5.4: a continuation frame belongs to an open message.
            guard case .open(var validator) = message else {
                return WebSocketViolation(code: 1002, reason: "a continuation frame with no message open")
            }
            guard validator.feed(frame.data) else {
                return WebSocketViolation(code: 1007, reason: "message is not valid UTF-8")
            }
            if frame.fin {
                guard validator.isComplete else { return WebSocketViolation(code: 1007, reason: "message is not valid UTF-8") }
                message = .none
                messageTimer?.cancel()
                messageTimer = nil
            } else {
                message = .open(validator)
            }
        case .connectionClose:
            return checkClose(frame)
        case .ping, .pong:
            break  // 5.5.2: a ping is answered with its payload, even inside a fragmented message
        default:
            // 5.2: opcodes 3-7 and 11-15 are reserved: "the receiving endpoint MUST _Fail the
            // WebSocket Connection_".
            return WebSocketViolation(code: 1002, reason: "reserved opcode \(UInt8(webSocketOpcode: frame.opcode))")
        }
        return nil
    }

    /// 5.5.1 and 7.4: a close frame's body is empty, or a code that may be sent plus a UTF-8 reason.
    private func checkClose(_ frame: WebSocketFrame) -> WebSocketViolation? {
        var payload = frame.data
        guard payload.readableBytes != 0 else { return nil }
        guard let code = payload.readInteger(as: UInt16.self) else {
            return WebSocketViolation(code: 1002, reason: "a close frame body of one byte")
        }
        guard Self.mayBeSent(code) else { return WebSocketViolation(code: 1002, reason: "close code \(code) may not be sent") }
        var reason = UTF8Validator()
        guard reason.feed(payload), reason.isComplete else {
            return WebSocketViolation(code: 1007, reason: "close reason is not valid UTF-8")
        }
        return nil
    }

    /// 7.4.1, 7.4.2: the defined codes an endpoint may send (1000-1003, 1007-1011, and the
    /// registered 1012-1014), and the ranges for libraries (3000-3999) and applications (4000-4999).
    /// Never 0-999, 1004 (reserved), 1005 and 1006 (not for the wire), 1015, 1016-2999 or 5000+.
    static func mayBeSent(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }

    private func startMessageTimer(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        messageTimer = context.eventLoop.scheduleTask(in: messageTimeout) {
            let (handler, context) = bound.value
            handler.fail(WebSocketViolation(code: 1008, reason: "message not finished in time"), context: context)
        }
    }

    private func fail(_ violation: WebSocketViolation, context: ChannelHandlerContext) {
        guard !failed else { return }
        failed = true
        messageTimer?.cancel()
        message = .none
        context.fireErrorCaught(violation)
    }
}

/// An incremental UTF-8 validator (RFC 3629, Unicode's table 3-7 of well-formed sequences): bytes
/// can be fed in pieces, and it says no at the first byte that cannot continue a valid sequence.
struct UTF8Validator {
    /// Continuation bytes still expected for the current sequence.
    private var pending = 0
    /// The range the next continuation byte must fall in (narrower right after some lead bytes).
    private var low: UInt8 = 0x80
    private var high: UInt8 = 0xBF

    var isComplete: Bool { pending == 0 }

    /// The readable bytes of `buffer`, next in the message. ASCII, most of any JSON, is passed
    /// over eight bytes at a time.
    mutating func feed(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            var at = 0
            while at < bytes.count {
                if pending == 0 {
                    while at + 8 <= bytes.count, bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                        at += 8
                    }
                    while at < bytes.count, bytes[at] < 0x80 { at += 1 }
                    guard at < bytes.count else { break }
                }
                guard feed(byte: bytes[at]) else { return false }
                at += 1
            }
            return true
        }
    }

    private mutating func feed(byte: UInt8) -> Bool {
        if pending > 0 {
            guard byte >= low && byte <= high else { return false }
            pending -= 1
            (low, high) = (0x80, 0xBF)
            return true
        }
        switch byte {
        case 0x00...0x7F: break
        case 0xC2...0xDF: pending = 1
        case 0xE0: (pending, low) = (2, 0xA0)
        case 0xE1...0xEC, 0xEE...0xEF: pending = 2
        case 0xED: (pending, high) = (2, 0x9F)  // no surrogates
        case 0xF0: (pending, low) = (3, 0x90)
        case 0xF1...0xF3: pending = 3
        case 0xF4: (pending, high) = (3, 0x8F)  // nothing above U+10FFFF
        default: return false  // 0x80-0xC1 cannot start a sequence; 0xF5-0xFF never occur
        }
        return true
    }
}
