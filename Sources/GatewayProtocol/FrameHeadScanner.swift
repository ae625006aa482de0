#if canImport(Glibc)
import Glibc
#endif

/// A request's head (``FrameHead``: `type`, `id`, `method`) read straight from the UTF-8 of its
/// text, without JSONDecoder, which took over a quarter of a `health` request's instructions
/// (callgrind, bench/RESULTS.md).
///
/// A fast path, never a second opinion: it answers only for a document it reads with certainty,
/// a JSON object (RFC 8259) whose three fields, if present, are strings without escapes, none of
/// them twice, and every key at the top without escapes. For anything else (invalid JSON,
/// nesting deeper than ``maxDepth``, an escape it would have to decode, a number with an
/// exponent or over 20 characters, a surrogate `\u` escape, a byte-order mark) it answers nil,
/// and the caller asks JSONDecoder, so every request is read as JSONDecoder reads it.
struct FrameHeadScanner {
    static let maxDepth = 32

    /// The head of `text`, or nil when only JSONDecoder may say.
    static func head(of text: String) -> FrameHead? {
        var text = text
        return text.withUTF8 { bytes in
            var scanner = FrameHeadScanner(bytes: bytes)
            return scanner.scanDocument()
        }
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var at = 0

    private init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    private enum Field { case type, id, method }

    private mutating func scanDocument() -> FrameHead? {
        skipWhitespace()
        guard next == UInt8(ascii: "{") else { return nil }
        at += 1
        var type: String?
        var id: String?
        var method: String?
        var seen: (type: Bool, id: Bool, method: Bool) = (false, false, false)
        skipWhitespace()
        if next == UInt8(ascii: "}") {
            at += 1
        } else {
            while true {
                guard next == UInt8(ascii: "\""), let key = scanPlainString() else { return nil }
                skipWhitespace()
                guard next == UInt8(ascii: ":") else { return nil }
                at += 1
                skipWhitespace()
                let field: Field? =
                    if Self.equal(key, "type") {
                        .type
                    } else if Self.equal(key, "id") {
                        .id
                    } else if Self.equal(key, "method") {
                        .method
                    } else {
                        nil
                    }
                if let field {
                    // A string without escapes is the field's value; anything else that is valid
                    // JSON leaves it nil, as `try? decodeIfPresent(String.self, …)` does.
                    var value: String?
                    if next == UInt8(ascii: "\"") {
                        guard let plain = scanPlainString() else { return nil }
                        value = String(decoding: plain, as: UTF8.self)
                    } else {
                        guard skipValue(depth: 1) else { return nil }
                    }
                    switch field {
                    case .type:
                        guard !seen.type else { return nil }
                        (seen.type, type) = (true, value)
                    case .id:
                        guard !seen.id else { return nil }
                        (seen.id, id) = (true, value)
                    case .method:
                        guard !seen.method else { return nil }
                        (seen.method, method) = (true, value)
                    }
                } else {
                    guard skipValue(depth: 1) else { return nil }
                }
                skipWhitespace()
                guard let separator = next else { return nil }
                at += 1
                if separator == UInt8(ascii: "}") { break }
                guard separator == UInt8(ascii: ",") else { return nil }
                skipWhitespace()
            }
        }
        skipWhitespace()
        guard at == bytes.count else { return nil }
        return FrameHead(type: type, id: id, method: method)
    }

    private static func equal(_ bytes: UnsafeBufferPointer<UInt8>.SubSequence, _ literal: StaticString) -> Bool {
        bytes.count == literal.utf8CodeUnitCount
            && memcmp(bytes.base.baseAddress! + bytes.startIndex, literal.utf8Start, bytes.count) == 0
    }

    private var next: UInt8? { at < bytes.count ? bytes[at] : nil }

    private mutating func skipWhitespace() {
        while at < bytes.count {
            switch bytes[at] {
            case 0x20, 0x09, 0x0A, 0x0D: at += 1
            default: return
            }
        }
    }

    /// At a `"`: the bytes of a string with no escapes and no control characters, after it.
    private mutating func scanPlainString() -> UnsafeBufferPointer<UInt8>.SubSequence? {
        let start = at + 1
        var end = start
        while end < bytes.count {
            let byte = bytes[end]
            if byte == UInt8(ascii: "\"") {
                at = end + 1
                return bytes[start..<end]
            }
            guard byte >= 0x20, byte != UInt8(ascii: "\\") else { return nil }
            end += 1
        }
        return nil
    }

    /// At a `"`: past a string, escapes checked (RFC 8259, 7), surrogate escapes refused.
    private mutating func skipString() -> Bool {
        at += 1
        while at < bytes.count {
            let byte = bytes[at]
            at += 1
            switch byte {
            case UInt8(ascii: "\""):
                return true
            case UInt8(ascii: "\\"):
                guard let escaped = next else { return false }
                at += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    continue
                case UInt8(ascii: "u"):
                    guard at + 4 <= bytes.count else { return false }
                    var scalar: UInt32 = 0
                    for _ in 0..<4 {
                        guard let digit = Self.hexValue(bytes[at]) else { return false }
                        scalar = scalar << 4 | digit
                        at += 1
                    }
                    guard !(0xD800...0xDFFF).contains(scalar) else { return false }
                default:
                    return false
                }
            case 0..<0x20:
                return false
            default:
                continue
            }
        }
        return false
    }

    private static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// Past one value of any kind; `depth` is the nesting of the object or array it is in.
    private mutating func skipValue(depth: Int) -> Bool {
        guard let byte = next else { return false }
        switch byte {
        case UInt8(ascii: "\""):
            return skipString()
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard depth < Self.maxDepth else { return false }
            let isObject = byte == UInt8(ascii: "{")
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            at += 1
            skipWhitespace()
            if next == close {
                at += 1
                return true
            }
            while true {
                if isObject {
                    guard next == UInt8(ascii: "\""), skipString() else { return false }
                    skipWhitespace()
                    guard next == UInt8(ascii: ":") else { return false }
                    at += 1
                    skipWhitespace()
                }
                guard skipValue(depth: depth + 1) else { return false }
                skipWhitespace()
                guard let separator = next else { return false }
                at += 1
                if separator == close { return true }
                guard separator == UInt8(ascii: ",") else { return false }
                skipWhitespace()
            }
        case UInt8(ascii: "t"):
            return skipLiteral("true")
        case UInt8(ascii: "f"):
            return skipLiteral("false")
        case UInt8(ascii: "n"):
            return skipLiteral("null")
        default:
            return skipNumber()
        }
    }

    private mutating func skipLiteral(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard at + count <= bytes.count else { return false }
        let matches = Self.equal(bytes[at..<at + count], literal)
        at += count
        return matches
    }

    /// `-? (0 | [1-9][0-9]*) (.[0-9]+)?`, at most 20 characters; an exponent is left to JSONDecoder.
    private mutating func skipNumber() -> Bool {
        let start = at
        if next == UInt8(ascii: "-") { at += 1 }
        guard let first = next, Self.isDigit(first) else { return false }
        at += 1
        if first != UInt8(ascii: "0") {
            while let byte = next, Self.isDigit(byte) { at += 1 }
        }
        if next == UInt8(ascii: ".") {
            at += 1
            guard let byte = next, Self.isDigit(byte) else { return false }
            while let byte = next, Self.isDigit(byte) { at += 1 }
        }
        if next == UInt8(ascii: "e") || next == UInt8(ascii: "E") { return false }
        return at - start <= 20
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }
}
