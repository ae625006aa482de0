import Foundation  // JSONSerialization, to read answers the way an independent client would
import NIOCore
import NIOEmbedded
import Testing

@testable import GatewayServer

/// SplitMix64: the same inputs on every run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct WebSocketFuzzTests {
    /// One million inputs through the whole WebSocket pipeline (frame splitter, NIO's decoder,
    /// RFC6455Conformance, the aggregator, the control plane): mutated client frames of every
    /// opcode — text and binary requests, fragments, pings, closes, reserved opcodes and bits,
    /// unmasked frames — and purely random bytes. No input may crash it; every close the server
    /// sends carries a code it may send, and every text frame it sends is JSON.
    @Test func oneMillionFramesThroughThePipeline() throws {
        var rng = SeededGenerator(state: 0x6455_F0_22)
        let requests = [
            #"{"type":"req","id":"1","method":"health"}"#, #"{"type":"req","id":"2","method":"status"}"#,
            #"{"type":"req","id":"3","method":"system-presence"}"#, #"{"type":"req","id":"4","method":"config.get","params":{}}"#,
            #"{"type":"req","id":"κ","method":"nope"}"#,
        ].map { Array($0.utf8) }
        let allowedCloses: Set<UInt16> = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
        var channel = try WebSocketPipelineTests.restoredChannel()
        var inputs = 0, closes = 0, answers = 0
        var problems: [String] = []
        func frame(_ firstByte: UInt8, _ payload: [UInt8], masked: Bool) -> [UInt8] {
            Array(WebSocketPipelineTests.clientFrame(firstByte, payload, masked: masked).readableBytesView)
        }
        while inputs < 1_000_000 {
            var bytes: [UInt8]
            switch rng.next() % 8 {
            case 0:  // purely random bytes
                bytes = (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1:  // a request cut into fragments
                let request = requests[Int(rng.next() % UInt64(requests.count))]
                let cut = Int(rng.next() % UInt64(request.count))
                bytes = frame(rng.next() % 2 == 0 ? 0x01 : 0x02, Array(request[..<cut]), masked: true)
                    + frame(0x80, Array(request[cut...]), masked: true)
            case 2:  // a control frame: ping, pong or close with any code
                let opcode: UInt8 = [0x89, 0x8A, 0x88][Int(rng.next() % 3)]
                let payload = (0..<Int(rng.next() % 6)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                bytes = frame(opcode, payload, masked: true)
            default:  // a whole text or binary request, then mutated (header and payload alike)
                let request = requests[Int(rng.next() % UInt64(requests.count))]
                bytes = frame(rng.next() % 2 == 0 ? 0x81 : 0x82, request, masked: rng.next() % 16 != 0)
                for _ in 0..<Int(rng.next() % 3) {
                    let at = Int(rng.next() % UInt64(bytes.count))
                    bytes[at] ^= UInt8(truncatingIfNeeded: 1 << (rng.next() % 8))
                }
            }
            inputs += 1
            _ = try? channel.writeInbound(ByteBuffer(bytes: bytes))
            channel.embeddedEventLoop.run()
            var written = ByteBuffer()
            while var chunk = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&chunk) }
            var view = written
            var closed = false
            while view.readableBytes >= 2, let first = view.readInteger(as: UInt8.self), let second = view.readInteger(as: UInt8.self) {
                var length = Int(second & 0x7F)
                if length == 126 { length = Int(view.readInteger(as: UInt16.self) ?? 0) }
                guard let payload = view.readBytes(length: length) else { break }
                switch first & 0x0F {
                case 0x1:
                    answers += 1
                    if (try? JSONSerialization.jsonObject(with: Data(payload))) == nil {
                        problems.append("not JSON: \(String(decoding: payload, as: UTF8.self))")
                    }
                case 0x8:
                    closes += 1
                    closed = true
                    let code = payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : 0
                    if !allowedCloses.contains(code) && !RFC6455Conformance.mayBeSent(code) { problems.append("close \(code)") }
                case 0x2, 0x9: problems.append("server sent opcode \(first & 0x0F)")
                default: break
                }
            }
            if closed || !channel.isActive {
                _ = try? channel.finish()
                channel = try WebSocketPipelineTests.restoredChannel()
            }
        }
        #expect(problems.isEmpty, "\(problems.prefix(5))")
        // The inputs reached both ends: answers were sent, and connections were failed.
        #expect(answers > 100_000 && closes > 100_000, "answers \(answers), closes \(closes)")
    }
}
