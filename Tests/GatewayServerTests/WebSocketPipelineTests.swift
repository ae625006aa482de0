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
            return validator.feed(bytes) && validator.isComplete
        }
        #expect(valid(Array("κόσμε €𝄞".utf8)))
        for bad: [UInt8] in [[0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF5], [0x80], [0xE2, 0x82]] {
            #expect(!valid(bad), "\(bad)")
        }
        var split = UTF8Validator()
        #expect(split.feed([0xF0, 0x9D]) && !split.isComplete && split.feed([0x84, 0x9E]) && split.isComplete)
    }
}
