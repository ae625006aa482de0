import Logging
import GatewayProtocol
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import GatewayServer

/// The pipeline of a session carried on from an earlier process is built by the same builder as an
/// upgraded one, so it fails the connection for the same RFC 6455 violations.
@Suite struct WebSocketPipelineTests {
    static func restoredChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        let info = ServerInfo(pid: 1, urls: [], profile: nil, listenerSource: "systemd", listenerNames: [], startedAtMs: 0)
        let configuration = ServerConfiguration(controlPlane: ControlPlaneConfiguration(serverVersion: "0", token: nil), info: info)
        let session = ControlPlaneSession(
            restoring: .init(connId: "r", connected: true, seq: 1, role: "operator", scopes: ["operator.read"]),
            configuration: configuration.controlPlane, info: info, connectionCount: { 1 })
        try GatewayServer.addWebSocketPipeline(
            channel: channel, session: session, restored: true, configuration: configuration,
            rateLimiter: AuthRateLimiter(), refusals: RefusalLog(logger: Logger(label: "test")), limiterKey: nil)
        return channel
    }

    /// The status code of the close frame the server wrote, if any.
    static func closeCode(_ channel: EmbeddedChannel) throws -> UInt16? {
        var written = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&chunk) }
        let bytes = Array(written.readableBytesView)
        var at = 0
        while at + 2 <= bytes.count {
            let opcode = bytes[at] & 0x0F
            let length = Int(bytes[at + 1] & 0x7F)  // server frames here are short
            if opcode == 8, length >= 2 { return UInt16(bytes[at + 2]) << 8 | UInt16(bytes[at + 3]) }
            at += 2 + length
        }
        return nil
    }

    static func clientFrame(_ firstByte: UInt8, _ payload: [UInt8], masked: Bool = true) -> ByteBuffer {
        let key: [UInt8] = [1, 2, 3, 4]
        var bytes: [UInt8] = [firstByte, (masked ? 0x80 : 0) | UInt8(payload.count)]
        if masked { bytes += key }
        bytes += payload.enumerated().map { masked ? $0.element ^ key[$0.offset % 4] : $0.element }
        return ByteBuffer(bytes: bytes)
    }

    /// Each violation, its first byte and payload, and the close code it must get.
    static let violations: [(name: String, firstByte: UInt8, payload: [UInt8], masked: Bool, code: UInt16)] = [
        ("unmasked", 0x81, Array(#"{"id":"x"}"#.utf8), false, 1002),
        ("RSV1", 0xC1, Array(#"{"id":"x"}"#.utf8), true, 1002),
        ("reserved opcode 3", 0x83, [0x20], true, 1002),
        ("continuation with no message open", 0x80, [0x20], true, 1002),
        ("not UTF-8", 0x81, [0x22, 0xFF, 0x22], true, 1007),
        ("one-byte close body", 0x88, [0x03], true, 1002),
        ("close code 1005", 0x88, [0x03, 0xED], true, 1002),
    ]

    @Test func aRestoredSessionFailsTheSameViolations() throws {
        for violation in Self.violations {
            let channel = try Self.restoredChannel()
            try channel.writeInbound(Self.clientFrame(violation.firstByte, violation.payload, masked: violation.masked))
            channel.embeddedEventLoop.run()
            #expect(try Self.closeCode(channel) == violation.code, "\(violation.name)")
            _ = try? channel.finish()
        }
    }

    @Test func aRestoredSessionAnswersAValidRequest() throws {
        let channel = try Self.restoredChannel()
        try channel.writeInbound(Self.clientFrame(0x82, Array(#"{"type":"req","id":"h","method":"health"}"#.utf8)))
        channel.embeddedEventLoop.run()
        var written = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&chunk) }
        #expect(String(decoding: written.readableBytesView, as: UTF8.self).contains(#""id":"h""#))
        #expect(try Self.closeCode(channel) == nil)
        _ = try? channel.finish()
    }

    @Test func utf8ValidatorFollowsTheWellFormedTable() {
        func valid(_ bytes: [UInt8]) -> Bool {
            var validator = UTF8Validator()
            return validator.feed(ByteBuffer(bytes: bytes)) && validator.isComplete
        }
        #expect(valid(Array("κόσμε €𝄞".utf8)))
        for bad: [UInt8] in [[0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF5], [0x80], [0xE2, 0x82]] {
            #expect(!valid(bad), "\(bad)")
        }
        var split = UTF8Validator()
        #expect(split.feed(ByteBuffer(bytes: [0xF0, 0x9D])) && !split.isComplete && split.feed(ByteBuffer(bytes: [0x84, 0x9E])) && split.isComplete)
    }

    @Test func unmaskingEightBytesAtATimeEqualsNIOs() {
        var state: UInt64 = 0xBEEF
        func next() -> UInt8 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        for length in 0..<70 {
            let key = WebSocketMaskingKey([next(), next(), next(), next()])!
            var buffer = ByteBuffer(bytes: (0..<length + 3).map { _ in next() })
            buffer.moveReaderIndex(forwardBy: 3)  // a payload that does not start at the buffer's start
            let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: buffer)
            #expect(RFC6455Conformance.unmaskedData(of: frame) == frame.unmaskedData, "length \(length)")
            #expect(frame.data == buffer)  // the frame's own bytes are left as they were
        }
    }

    /// It agrees with the standard library's validation on random text (long ASCII runs, to pass
    /// over eight bytes at a time, among multi-byte and broken sequences), fed whole and in two
    /// pieces split anywhere.
    @Test func utf8ValidatorAgreesWithTheStandardLibrary() {
        var state: UInt64 = 0xF00D
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        let pieces: [[UInt8]] = [
            Array("abcdefgh".utf8), Array(#"{"type":"req"}"#.utf8), [0x41], Array("é".utf8), Array("€".utf8), Array("𝄞".utf8),
            [0xC0], [0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90], [0xE2, 0x82], [0xFF],
        ]
        for _ in 0..<5000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int(next() % 12) {
                bytes += pieces[Int(next() % UInt64(pieces.count))]
                if next() % 3 == 0 { bytes += pieces[0] + pieces[1] }  // a long ASCII run
            }
            let expected = String(validating: bytes, as: UTF8.self) != nil
            var whole = UTF8Validator()
            #expect((whole.feed(ByteBuffer(bytes: bytes)) && whole.isComplete) == expected, "\(bytes)")
            let cut = bytes.isEmpty ? 0 : Int(next() % UInt64(bytes.count + 1))
            var split = UTF8Validator()
            let both = split.feed(ByteBuffer(bytes: bytes[..<cut])) && split.feed(ByteBuffer(bytes: bytes[cut...])) && split.isComplete
            #expect(both == expected, "\(bytes) cut at \(cut)")
        }
    }
}
