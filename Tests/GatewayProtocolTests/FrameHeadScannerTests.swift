import Testing

@testable import GatewayProtocol

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The scanner is a fast path in front of JSONDecoder: wherever it answers, its answer must be
/// JSONDecoder's, and it must answer for the requests clients really send.
@Suite struct FrameHeadScannerTests {
    private static func decoded(_ text: String) -> FrameHead? {
        try? JSONDecoder().decode(FrameHead.self, from: Data(text.utf8))
    }

    @Test(arguments: [
        (#"{"type":"req","id":"1","method":"health"}"#, FrameHead(type: "req", id: "1", method: "health")),
        (#"{"type":"req","id":"h-9","method":"health","params":{}}"#, FrameHead(type: "req", id: "h-9", method: "health")),
        (" \r\n\t{ \"method\" : \"status\" , \"id\":\"ä✓\", \"type\":\"req\" }\n", FrameHead(type: "req", id: "ä✓", method: "status")),
        (#"{"type":"req","id":"c","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1.2.3","platform":"linux","mode":"cli"},"role":"operator","scopes":["operator.read","operator.write"],"auth":{"token":"t\"k\u00e9"},"caps":[],"n":-0.5,"ok":true,"no":false,"none":null}}"#,
         FrameHead(type: "req", id: "c", method: "connect")),
        (#"{}"#, FrameHead(type: nil, id: nil, method: nil)),
        (#"{"type":1,"id":null,"method":["health"]}"#, FrameHead(type: nil, id: nil, method: nil)),
        (#"{"id":""}"#, FrameHead(type: nil, id: "", method: nil)),
    ])
    func requestsAsClientsSendThemAreScanned(text: String, head: FrameHead) {
        #expect(FrameHeadScanner.head(of: text) == head)
        #expect(Self.decoded(text) == head)
    }

    @Test(arguments: [
        #"{"type":"req","id":"a\"b","method":"health"}"#,  // an escape in a field: JSONDecoder decodes it
        #"{"type":"req","i\u0064":"1","method":"health"}"#,  // an escaped key could be one of the three
        #"{"id":"1","id":"2"}"#,  // which one wins is JSONDecoder's to say
        #"{"id":"1","x":1e5}"#,  // exponents are left to it
        #"{"id":"1","x":12345678901234567890123}"#,
        #"{"id":"1","x":"\ud800"}"#,  // a lone surrogate
        "\u{FEFF}{\"id\":\"1\"}",  // a byte-order mark
        String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
        #"{"id":"1","x":"#,
        #"{"id":"1",}"#,
        #"{"id":"1"} x"#,
        #"{"id":"1","x":01}"#,
        #"{"id":"1","x":tru}"#,
        #"{"id":"1","x":"a\qb"}"#,
        "{\"id\":\"a\u{01}b\"}",
        #"[{"id":"1"}]"#,
        #""id""#,
        "",
        "   ",
    ])
    func whatItCannotBeSureOfIsLeftToJSONDecoder(text: String) {
        #expect(FrameHeadScanner.head(of: text) == nil)
    }

    /// Thousands of generated documents, valid and broken: the scanner answers for many, and
    /// wherever it does, JSONDecoder decodes the same head.
    @Test func whereverItAnswersJSONDecoderAgrees() {
        var generator = DocumentGenerator(seed: 0x5EED)
        var answered = 0
        var valid = 0
        let count = 20_000
        for round in 0..<count {
            var text = generator.document()
            if round % 3 == 2 { text = generator.mutated(text) }
            let decoded = Self.decoded(text)
            if decoded != nil { valid += 1 }
            guard let scanned = FrameHeadScanner.head(of: text) else { continue }
            answered += 1
            #expect(decoded == scanned, "\(text)")
        }
        #expect(answered > count / 3, "the scanner answered for \(answered) of \(count) (\(valid) valid)")
    }
}

/// Random JSON objects of the shape requests have (the three fields, params, other keys; strings
/// with and without escapes, numbers, nesting) and random byte-level damage to them.
private struct DocumentGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {  // SplitMix64
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    private mutating func pick<T>(_ choices: [T]) -> T { choices[below(choices.count)] }

    private mutating func space() -> String { below(4) == 0 ? pick([" ", "\n", "\t ", "\r\n"]) : "" }

    private mutating func string() -> String {
        let pieces = ["a", "health", "req", "Ω", "✓", "😀", " ", "\\\"", "\\\\", "\\/", "\\n", "\\u00e9", "\\u0041", "\\ud83d\\ude00", "-", "1"]
        var out = "\""
        for _ in 0..<below(5) { out += pick(pieces) }
        return out + "\""
    }

    private mutating func number() -> String {
        pick(["0", "-0", "7", "42", "-13", "3.25", "0.5", "1e3", "2E-2", "123456789012", "-0.000001", "18446744073709551616"])
    }

    private mutating func value(depth: Int) -> String {
        switch below(depth > 3 ? 5 : 7) {
        case 0: return string()
        case 1: return number()
        case 2: return pick(["true", "false", "null"])
        case 3, 4: return string()
        case 5:
            let items = (0..<below(4)).map { _ in space() + value(depth: depth + 1) + space() }
            return "[" + items.joined(separator: ",") + "]"
        default: return object(depth: depth + 1, keys: ["a", "id", "type", "x\\u0079", "params", "ü"])
        }
    }

    private mutating func object(depth: Int, keys: [String]) -> String {
        let members = (0..<below(5)).map { _ in
            space() + "\"" + pick(keys) + "\"" + space() + ":" + space() + value(depth: depth) + space()
        }
        return "{" + members.joined(separator: ",") + "}"
    }

    mutating func document() -> String {
        var members: [String] = []
        for key in ["type", "id", "method", "params", "extra", "i\\u0064"].shuffled(using: &self)
        where key.hasPrefix("i\\") ? below(8) == 0 : below(3) != 0 {
            let value: String
            switch key {
            case "type": value = below(5) == 0 ? self.value(depth: 1) : "\"req\""
            case "id": value = below(4) == 0 ? self.value(depth: 1) : "\"" + String(below(1000)) + "\""
            case "method": value = below(5) == 0 ? self.value(depth: 1) : pick(["\"health\"", "\"status\"", "\"connect\""])
            default: value = self.value(depth: 1)
            }
            members.append(space() + "\"" + key + "\"" + space() + ":" + space() + value + space())
        }
        if below(8) == 0, let first = members.first { members.append(first) }  // a repeated key
        return space() + "{" + members.joined(separator: ",") + "}" + space()
    }

    mutating func mutated(_ text: String) -> String {
        var bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return text }
        for _ in 0..<(1 + below(2)) {
            let at = below(bytes.count)
            switch below(3) {
            case 0: bytes.remove(at: at)
            case 1: bytes.insert(pick(Array("{}[]\":,\\ 0e-.tn\"".utf8)), at: at)
            default: bytes[at] = pick(Array("{}[]\":,\\ 0e-.aU".utf8))
            }
            if bytes.isEmpty { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension DocumentGenerator: RandomNumberGenerator {}
