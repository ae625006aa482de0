import NIOCore
import NIOEmbedded
import Testing

@testable import GatewayServer

/// FrameSplitter on a real (embedded) pipeline: what reaches the decoder, and what it keeps.
@Suite struct FrameSplitterTests {
    /// A masked client frame (RFC 6455), as a browser sends it.
    func clientFrame(opcode: UInt8, fin: Bool = true, payload: [UInt8]) -> [UInt8] {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else {
            frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        }
        let mask: [UInt8] = [1, 2, 3, 4]
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return frame
    }

    func reads(_ channel: EmbeddedChannel) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) {
            out.append(Array(buffer.readableBytesView))
        }
        return out
    }

    @Test func wholeFramesPassOneByOneAndNothingIsKept() throws {
        let splitter = FrameSplitter(maxFrameSize: 1 << 20)
        let channel = EmbeddedChannel(handler: splitter)
        let a = clientFrame(opcode: 1, payload: Array("hello".utf8))
        let b = clientFrame(opcode: 1, payload: Array(repeating: 7, count: 300))
        try channel.writeInbound(channel.allocator.buffer(bytes: a + b))
        #expect(try reads(channel) == [a, b])
        #expect(splitter.undecodedBytes.isEmpty)
    }

    @Test func aFrameCutAnywhereIsHeldUntilItIsWhole() throws {
        let frame = clientFrame(opcode: 1, payload: Array(repeating: 65, count: 200))
        for cut in [1, 2, 3, 5, 8, 100, frame.count - 1] {
            let splitter = FrameSplitter(maxFrameSize: 1 << 20)
            let channel = EmbeddedChannel(handler: splitter)
            try channel.writeInbound(channel.allocator.buffer(bytes: frame[..<cut]))
            #expect(try reads(channel).isEmpty)
            #expect(splitter.undecodedBytes == Array(frame[..<cut]))
            try channel.writeInbound(channel.allocator.buffer(bytes: frame[cut...]))
            #expect(try reads(channel) == [frame])
            #expect(splitter.undecodedBytes.isEmpty)
        }
    }

    @Test func anUnfinishedFragmentedMessageIsKeptButInterleavedControlFramesAreNot() throws {
        let splitter = FrameSplitter(maxFrameSize: 1 << 20)
        let channel = EmbeddedChannel(handler: splitter)
        let first = clientFrame(opcode: 1, fin: false, payload: Array("{\"a\":".utf8))
        let ping = clientFrame(opcode: 9, payload: [])
        let half = Array(clientFrame(opcode: 0, fin: true, payload: Array("1}".utf8)).prefix(3))
        try channel.writeInbound(channel.allocator.buffer(bytes: first + ping + half))
        #expect(try reads(channel) == [first, ping])
        #expect(splitter.undecodedBytes == first + half)  // what a new pipeline needs, in order
        let last = clientFrame(opcode: 0, fin: true, payload: Array("1}".utf8))
        try channel.writeInbound(channel.allocator.buffer(bytes: Array(last.dropFirst(3))))
        #expect(try reads(channel) == [last])
        #expect(splitter.undecodedBytes.isEmpty)
    }

    @Test func aFrameLargerThanTheLimitIsPassedOnForTheDecoderToRefuse() throws {
        let splitter = FrameSplitter(maxFrameSize: 100)
        let channel = EmbeddedChannel(handler: splitter)
        let start = Array(clientFrame(opcode: 1, payload: Array(repeating: 1, count: 1000)).prefix(50))
        try channel.writeInbound(channel.allocator.buffer(bytes: start))
        #expect(try reads(channel) == [start])
    }

    @Test func aServerFrameIsWhatAClientExpects() {
        #expect(GatewayServer.rawFrame(opcode: 0x8, payload: [0x03, 0xF4]) == [0x88, 0x02, 0x03, 0xF4])
        let long = GatewayServer.rawFrame(opcode: 0x1, payload: Array(repeating: 0, count: 300))
        #expect(Array(long.prefix(4)) == [0x81, 126, 0x01, 0x2C])
        #expect(long.count == 304)
    }
}
