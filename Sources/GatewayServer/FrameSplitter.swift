import NIOCore

/// Sits in front of NIO's WebSocket frame decoder and hands it whole frames only, so that every
/// byte read from the client but not yet acted on is in one place: this handler's buffer, plus
/// the raw frames of a fragmented message still being put together. At a restart handover those
/// bytes go to the next process with the socket (``undecodedBytes``), which feeds them to a fresh
/// pipeline: a request cut in half by the restart is still answered, once.
///
/// It reads frame headers only (RFC 6455, 5.2); the decoder behind it still judges everything. A
/// frame announcing more than `maxFrameSize` is passed through at once, so the decoder refuses it
/// as before instead of this handler buffering it.
final class FrameSplitter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let maxFrameSize: Int
    private var buffer: ByteBuffer?
    /// Raw frames of a data message whose final fragment has not come yet.
    private var messageFrames: ByteBuffer?
    private var passThrough = false

    init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    /// What was read but not yet decoded into a whole message, in the order it came.
    var undecodedBytes: [UInt8] {
        var bytes: [UInt8] = []
        if let messageFrames { bytes += messageFrames.readableBytesView }
        if let buffer { bytes += buffer.readableBytesView }
        return bytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if passThrough {
            return context.fireChannelRead(data)
        }
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        while var pending = buffer, let length = Self.frameLength(pending), length <= pending.readableBytes {
            let frame = pending.readSlice(length: length)!
            buffer = pending
            track(frame)
            context.fireChannelRead(wrapInboundOut(frame))
        }
        if let pending = buffer, let length = Self.frameLength(pending), length > maxFrameSize + 14 {
            // Too large to hold: the decoder will refuse it (1009).
            passThrough = true
            buffer = nil
            context.fireChannelRead(wrapInboundOut(pending))
        }
    }

    private func track(_ frame: ByteBuffer) {
        let first = frame.getInteger(at: frame.readerIndex, as: UInt8.self) ?? 0
        let opcode = first & 0x0F
        guard opcode < 8 else { return }  // control frames interleave; they are acted on at once
        if first & 0x80 != 0 {
            messageFrames = nil  // the message is complete
        } else if messageFrames == nil {
            messageFrames = frame
        } else {
            var copy = frame
            messageFrames!.writeBuffer(&copy)
        }
    }

    /// The whole length of the frame at the front of `buffer` (header, mask key and payload), or
    /// nil when its header is not complete yet.
    static func frameLength(_ buffer: ByteBuffer) -> Int? {
        let start = buffer.readerIndex
        guard buffer.readableBytes >= 2, let second = buffer.getInteger(at: start + 1, as: UInt8.self) else { return nil }
        var header = 2
        var payload = UInt64(second & 0x7F)
        if payload == 126 {
            guard let extended = buffer.getInteger(at: start + 2, as: UInt16.self) else { return nil }
            payload = UInt64(extended)
            header += 2
        } else if payload == 127 {
            guard let extended = buffer.getInteger(at: start + 2, as: UInt64.self) else { return nil }
            payload = extended
            header += 8
        }
        if second & 0x80 != 0 { header += 4 }
        guard payload <= UInt64(Int.max / 2) else { return Int.max / 2 }
        return header + Int(payload)
    }
}
