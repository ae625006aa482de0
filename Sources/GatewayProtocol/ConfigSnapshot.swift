import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Any JSON value, for answering with a document the gateway does not model (the config file).
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            // Whole numbers as integers (a port is 18789, not 18789.0).
            if value.rounded() == value, abs(value) < 9.0e15 { try container.encode(Int64(value)) } else { try container.encode(value) }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

/// Upstream's answer to `config.get` (ConfigFileSnapshot, redacted by redactConfigSnapshot in
/// src/config/redact-snapshot.ts) for the file this gateway read: every string at a sensitive
/// path (a key ending in "token", or holding "password", "secret" or "api key") is replaced by
/// ``redacted``, in the parsed document and in the raw text alike, so no token or password leaves
/// the process. `hash` is the SHA-256 of the file as read (upstream's hashConfigRaw), hex.
public struct ConfigSnapshot: Encodable, Equatable, Sendable {
    public static let redacted = "__OPENCLAW_REDACTED__"

    public struct Issue: Encodable, Equatable, Sendable {
        public let path: String
        public let message: String
    }

    public let path: String
    public let exists: Bool
    public let raw: String?
    public let parsed: JSONValue
    public let resolved: JSONValue
    public let valid: Bool
    public let config: JSONValue
    public let hash: String
    public let issues: [Issue]
    public let warnings: [Issue]
    public let legacyIssues: [Issue]

    enum CodingKeys: String, CodingKey { case path, exists, raw, parsed, resolved, valid, config, hash, issues, warnings, legacyIssues }

    /// `raw` is null when the file does not exist: the key is always there.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(path, forKey: .path)
        try container.encode(exists, forKey: .exists)
        try container.encode(raw, forKey: .raw)
        try container.encode(parsed, forKey: .parsed)
        try container.encode(resolved, forKey: .resolved)
        try container.encode(valid, forKey: .valid)
        try container.encode(config, forKey: .config)
        try container.encode(hash, forKey: .hash)
        try container.encode(issues, forKey: .issues)
        try container.encode(warnings, forKey: .warnings)
        try container.encode(legacyIssues, forKey: .legacyIssues)
    }

    /// The snapshot of `path` whose bytes were `contents` (nil: the file does not exist). The
    /// gateway refuses to start on a file it cannot parse, so a snapshot it serves is valid.
    public init(path: String, contents: [UInt8]?) {
        self.path = path
        issues = []
        warnings = []
        legacyIssues = []
        hash = SHA256.hex(contents ?? [])
        guard let contents else {
            exists = false
            raw = nil
            parsed = .object([:])
            resolved = .object([:])
            config = .object([:])
            valid = true
            return
        }
        exists = true
        guard let document = try? JSONDecoder().decode(JSONValue.self, from: Data(contents)) else {
            // Upstream hands out nothing of a file it cannot parse: it could not redact it.
            raw = nil
            parsed = .null
            resolved = .object([:])
            config = .object([:])
            valid = false
            return
        }
        var secrets: [String] = []
        let redactedDocument = Self.redact(document, path: "", secrets: &secrets)
        parsed = redactedDocument
        resolved = redactedDocument
        config = redactedDocument
        valid = true
        raw = Self.redactRaw(String(decoding: contents, as: UTF8.self), secrets: secrets, fallback: redactedDocument)
    }

    // MARK: - redaction (upstream's isSensitiveConfigPath and redactObjectGuessing)

    static let notSensitiveSuffixes = [
        "maxtokens", "maxoutputtokens", "maxinputtokens", "maxcompletiontokens", "contexttokens",
        "totaltokens", "tokencount", "tokenlimit", "tokenbudget", "passwordfile",
    ]

    static func isSensitive(_ path: String) -> Bool {
        let lower = path.lowercased()
        if notSensitiveSuffixes.contains(where: { lower.hasSuffix($0) }) { return false }
        if lower.hasSuffix("token") || lower.contains("password") || lower.contains("secret") { return true }
        if lower.hasSuffix("serviceaccount") || lower.hasSuffix("serviceaccountref") { return true }
        // /api.?key/i: "api", at most one character, "key".
        let bytes = Array(lower.utf8)
        for start in bytes.indices where bytes[start...].starts(with: Array("api".utf8)) {
            let rest = bytes[(start + 3)...]
            if rest.starts(with: Array("key".utf8)) || rest.dropFirst().starts(with: Array("key".utf8)) { return true }
        }
        return false
    }

    /// A `${VAR}` reference is not a secret: upstream leaves it in place.
    static func isEnvironmentReference(_ value: String) -> Bool {
        let text = String(String(value.drop { $0.isWhitespace }.reversed()).drop { $0.isWhitespace }.reversed())
        return text.hasPrefix("${") && text.hasSuffix("}") && !text.dropFirst(2).dropLast().contains("}")
    }

    static func redact(_ value: JSONValue, path: String, secrets: inout [String]) -> JSONValue {
        switch value {
        case .object(let members):
            var out: [String: JSONValue] = [:]
            for (key, member) in members {
                let memberPath = path.isEmpty ? key : "\(path).\(key)"
                if case .string(let text) = member, isSensitive(memberPath), !isEnvironmentReference(text) {
                    secrets.append(text)
                    out[key] = .string(redacted)
                } else if case .object = member, isSensitive(memberPath),
                    memberPath.lowercased().hasSuffix("serviceaccount") || memberPath.lowercased().hasSuffix("serviceaccountref")
                {
                    collectStrings(member, into: &secrets)
                    out[key] = .string(redacted)
                } else {
                    out[key] = redact(member, path: memberPath, secrets: &secrets)
                }
            }
            return .object(out)
        case .array(let items):
            let itemPath = "\(path)[]"
            return .array(items.map { item in
                if case .string(let text) = item, isSensitive(itemPath), !isEnvironmentReference(text) {
                    secrets.append(text)
                    return .string(redacted)
                }
                return redact(item, path: itemPath, secrets: &secrets)
            })
        default:
            return value
        }
    }

    private static func collectStrings(_ value: JSONValue, into strings: inout [String]) {
        switch value {
        case .string(let text) where !isEnvironmentReference(text): strings.append(text)
        case .array(let items): for item in items { collectStrings(item, into: &strings) }
        case .object(let members): for member in members.values { collectStrings(member, into: &strings) }
        default: break
        }
    }

    /// The file's text with every secret replaced, longest first, in the forms a JSON file can
    /// spell it. If any secret could still be in it (an unusual escape), the redacted document
    /// itself is the raw text, as upstream falls back to.
    static func redactRaw(_ raw: String, secrets: [String], fallback: JSONValue) -> String {
        let values = Set(secrets.filter { !$0.isEmpty }).sorted { $0.count > $1.count }
        var text = raw
        for secret in values {
            for spelling in Set([secret, jsonEscaped(secret)]) {
                text = text.replacing(spelling, with: redacted)
            }
        }
        let leaked = values.contains { secret in
            text.contains(secret) || (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))).map { containsString(secret, in: $0) } ?? true
        }
        guard leaked else { return text }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(fallback)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    private static func jsonEscaped(_ text: String) -> String {
        guard let data = try? JSONEncoder().encode(text) else { return text }
        let quoted = String(decoding: data, as: UTF8.self)
        return String(quoted.dropFirst().dropLast())
    }

    private static func containsString(_ secret: String, in value: JSONValue) -> Bool {
        switch value {
        case .string(let text): return text.contains(secret)
        case .array(let items): return items.contains { containsString(secret, in: $0) }
        case .object(let members): return members.contains { $0.key.contains(secret) || containsString(secret, in: $0.value) }
        default: return false
        }
    }
}

/// The config file the gateway read at start, and its ``ConfigSnapshot``, made the first time
/// `config.get` asks for it (parsing, redacting and hashing the file is no work for a start,
/// which reads only the keys it needs).
public final class ConfigFileSource: Sendable {
    public let path: String
    private let contents: [UInt8]?
    private let made = Mutex<ConfigSnapshot?>(nil)

    /// `contents`: the file's bytes as read; nil when it does not exist.
    public init(path: String, contents: [UInt8]?) {
        self.path = path
        self.contents = contents
    }

    public var snapshot: ConfigSnapshot {
        made.withLock { made in
            if let made { return made }
            let snapshot = ConfigSnapshot(path: path, contents: contents)
            made = snapshot
            return snapshot
        }
    }
}

/// SHA-256 (FIPS 180-4), for the config snapshot's `hash`; nothing here needs it to be fast.
enum SHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hex(_ message: [UInt8]) -> String {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var padded = message + [0x80]
        while padded.count % 64 != 56 { padded.append(0) }
        let bits = UInt64(message.count) &* 8
        for shift in stride(from: 56, through: 0, by: -8) { padded.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for block in stride(from: 0, to: padded.count, by: 64) {
            for i in 0..<16 {
                let j = block + i * 4
                w[i] = UInt32(padded[j]) << 24 | UInt32(padded[j + 1]) << 16 | UInt32(padded[j + 2]) << 8 | UInt32(padded[j + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            for (i, value) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ value }
        }
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for word in h {
            for shift in stride(from: 28, through: 0, by: -4) { out.append(digits[Int((word >> UInt32(shift)) & 0xF)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
