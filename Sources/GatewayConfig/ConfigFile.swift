#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// The parts of OpenClaw's `openclaw.json` the gateway reads. Every other key is left alone: the
/// file is shared with the rest of OpenClaw.
struct ConfigFile: Decodable, Equatable {
    struct Gateway: Decodable, Equatable {
        struct Auth: Decodable, Equatable {
            /// Upstream's gateway.auth.rateLimit.
            struct RateLimit: Decodable, Equatable, Sendable {
                var maxAttempts: Int?
                var windowMs: Int?
                var lockoutMs: Int?
                var exemptLoopback: Bool?
            }

            var mode: String?
            var token: String?
            var password: String?
            var rateLimit: RateLimit?
        }

        struct ControlUI: Decodable, Equatable {
            var allowedOrigins: [String]?
        }

        var port: Int?
        var bind: String?
        var auth: Auth?
        var controlUi: ControlUI?
        /// Upstream's gateway.trustedProxies: the proxies whose forwarding headers name the client.
        var trustedProxies: [String]?

        /// Upstream's gateway.reload.
        struct Reload: Decodable, Equatable {
            var mode: String?
            var debounceMs: Int?
        }

        var reload: Reload?
    }

    /// Upstream's top-level logging section; the gateway reads its level.
    struct Logging: Decodable, Equatable {
        var level: String?
    }

    /// Upstream's top-level `env` block: environment variables for OpenClaw's processes, as
    /// `env.NAME` or `env.vars.NAME`, applied only where the process environment lacks them. The
    /// gateway reads its limits from it (``Limits``); other entries (`shellEnv`, values that are
    /// not strings or numbers) are left alone.
    struct Environment: Decodable, Equatable {
        var values: [String: String] = [:]

        private struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            // env.vars.NAME first, so that env.NAME wins over it as the later of the two
            if let vars = try? container.nestedContainer(keyedBy: Key.self, forKey: Key(stringValue: "vars")) {
                for key in vars.allKeys { values[key.stringValue] = Self.text(vars, key) }
            }
            for key in container.allKeys where key.stringValue != "vars" {
                if let text = Self.text(container, key) { values[key.stringValue] = text }
            }
        }

        private static func text(_ container: KeyedDecodingContainer<Key>, _ key: Key) -> String? {
            if let text = try? container.decode(String.self, forKey: key) { return text }
            if let number = try? container.decode(Int.self, forKey: key) { return String(number) }
            return nil
        }
    }

    var gateway: Gateway?
    var logging: Logging?
    var env: Environment?
    /// The file's bytes as read (for `config.get`'s raw text and hash).
    var contents: [UInt8] = []

    enum CodingKeys: String, CodingKey { case gateway, logging, env }

    /// The parsed file; nil when it does not exist. Any other problem is a config error (exit 78)
    /// that names the file and what is wrong in it.
    static func load(path: String) throws(ConfigurationError) -> ConfigFile? {
        let data: Data
        switch readFile(path) {
        case .missing:
            return nil
        case .failed(let reason):
            throw .config("cannot read config \(path): \(reason)")
        case .read(let bytes):
            data = bytes
        }
        do {
            // JSON5, as upstream reads the file: comments, trailing commas, unquoted keys, single
            // quotes, hexadecimal numbers.
            let decoder = JSONDecoder()
            decoder.allowsJSON5 = true
            var file = try decoder.decode(ConfigFile.self, from: data)
            file.contents = Array(data)
            return file
        } catch let error as DecodingError {
            throw .config("invalid config \(path): \(describe(error))")
        } catch {
            throw .config("invalid config \(path): \(error)")
        }
    }

    private enum ReadResult {
        case missing
        case failed(String)
        case read(Data)
    }

    private static func readFile(_ path: String) -> ReadResult {
        guard let file = fopen(path, "r") else {
            return errno == ENOENT ? .missing : .failed(String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            bytes.append(contentsOf: chunk[0..<n])
            if n < chunk.count {
                if ferror(file) != 0 { return .failed(String(cString: strerror(errno))) }
                break
            }
            if bytes.count > 16 * 1024 * 1024 { return .failed("larger than 16 MiB") }
        }
        return .read(Data(bytes))
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "the top level" : keys.joined(separator: ".")
        }
        switch error {
        case .dataCorrupted(let context):
            let underlying = context.underlyingError.map { " (\($0))" } ?? ""
            return "not valid JSON5: \(context.debugDescription)\(underlying)"
        case .typeMismatch(let type, let context):
            return "\(path(context)) has the wrong type (expected \(friendlyName(type)))"
        case .valueNotFound(let type, let context):
            return "\(path(context)) is null (expected \(friendlyName(type)))"
        case .keyNotFound(let key, let context):
            return "\(path(context)) lacks \(key.stringValue)"
        @unknown default:
            return "\(error)"
        }
    }

    private static func friendlyName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: return "an integer"
        case is String.Type: return "a string"
        case is [String].Type: return "an array of strings"
        default: return "an object"
        }
    }
}
