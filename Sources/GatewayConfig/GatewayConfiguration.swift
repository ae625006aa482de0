import GatewayLock
import IPRange

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// What the command line said, before the environment and the config file are consulted.
public struct CommandLineOptions: Sendable, Equatable {
    public var port: String?
    public var profile: String?
    public var dev: Bool
    public var bind: String?
    public var token: String?
    /// `--max-connections` and the other ``Limits/Key`` flags given.
    public var limits: [Limits.Key: Int]

    public init(
        port: String? = nil, profile: String? = nil, dev: Bool = false, bind: String? = nil, token: String? = nil,
        limits: [Limits.Key: Int] = [:]
    ) {
        self.port = port
        self.profile = profile
        self.dev = dev
        self.bind = bind
        self.token = token
        self.limits = limits
    }
}

/// A configuration a person got wrong. `exitStatus` is 64 (EX_USAGE) for flags and environment,
/// 78 (EX_CONFIG) for the config file and for unsafe combinations.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public let exitStatus: Int32

    public static func usage(_ message: String) -> ConfigurationError {
        ConfigurationError(message: message, exitStatus: 64)
    }

    public static func config(_ message: String) -> ConfigurationError {
        ConfigurationError(message: message, exitStatus: 78)
    }

    public var description: String { message }
}

/// The environment variables ``GatewayConfiguration/resolve(_:environment:)`` reads, and only
/// those: a caller may pass just these (the early lock does, to skip reading the whole environ).
public let configurationEnvironmentNames = [
    "OPENCLAW_GATEWAY_PORT", "OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD", "OPENCLAW_STATE_DIR", "OPENCLAW_CONFIG_PATH", "STATE_DIRECTORY",
    "HOME",
] + Limits.Key.allCases.map(\.environmentName)

/// The gateway's settings after flags, environment and `<state dir>/openclaw.json` are combined.
public struct GatewayConfiguration: Sendable, Equatable {
    public enum PortOrigin: String, Sendable {
        case flag = "--port"
        case environment = "OPENCLAW_GATEWAY_PORT"
        case configFile = "gateway.port"
        case profileDefault = "profile default"
        case builtInDefault = "default"
    }

    public static let defaultPort = 18789
    public static let devPort = 19001

    public var port: Int
    public var portOrigin: PortOrigin
    /// nil for the default profile.
    public var profile: String?
    public var stateDirectory: String
    public var configFile: String
    /// Whether `configFile` existed and was read.
    public var configFileLoaded: Bool { configFileContents != nil }
    /// The bytes of `configFile` as read; nil when it does not exist.
    public var configFileContents: [UInt8]?
    public var bindAddress: BindAddress
    /// What clients must present (upstream's gateway.auth.mode with its token or password).
    public var auth: Auth
    /// The token, when the mode is token.
    public var token: String? {
        if case .token(let token) = auth { token } else { nil }
    }
    public var allowedOrigins: [String]
    /// `gateway.auth.rateLimit` as the file has it (unset keys keep upstream's defaults).
    public var rateLimit: RateLimitSettings = RateLimitSettings()
    /// `gateway.trustedProxies`: peers whose X-Forwarded-For / X-Real-IP / Forwarded headers are
    /// believed. Empty (the default): no forwarding header names a client.
    public var trustedProxies: [IPRange] = []
    /// `gateway.reload`: how a changed file is taken up.
    public var reload = ReloadSettings()
    /// The file's `logging.level`, as a swift-log level name (trace, debug, info, notice, warning,
    /// error, critical); nil when unset. `--log-level` and OPENCLAW_LOG_LEVEL come before it.
    public var fileLogLevel: String?
    /// The connection cap, payload caps, timeouts and tick interval that were set (by a flag,
    /// the environment or the file's `env` block); the others are the server's defaults.
    public var limits = Limits()

    public var lockRequest: GatewayLock.Request {
        GatewayLock.Request(address: bindAddress, port: port)
    }

    /// Resolves the configuration.
    ///
    /// - port: `--port` > `OPENCLAW_GATEWAY_PORT` > config `gateway.port` > profile default
    ///   (19001 for `dev`) > 18789.
    /// - state dir: `OPENCLAW_STATE_DIR` > `STATE_DIRECTORY` (systemd's StateDirectory=) >
    ///   `~/.openclaw-<profile>` > `~/.openclaw`.
    /// - config file: `OPENCLAW_CONFIG_PATH` > `<state dir>/openclaw.json`, read as JSON5.
    /// - bind: `--bind` > config `gateway.bind` > loopback; beyond loopback a token is required.
    public static func resolve(
        _ options: CommandLineOptions,
        environment: [String: String]
    ) throws(ConfigurationError) -> GatewayConfiguration {
        if options.dev && options.profile != nil {
            throw .usage("--dev and --profile cannot be combined (--dev is the profile \"dev\")")
        }
        let profile = options.dev ? "dev" : options.profile
        if let profile, !isValidProfileName(profile) {
            throw .usage("invalid profile name '\(profile)': use letters, digits, '.', '_' and '-'")
        }

        // Flags and environment are checked before the file is read: a usage error wins.
        let flagPort = try options.port.map { (text) throws(ConfigurationError) in
            try parsePort(text, what: "--port")
        }
        let envPort = try nonEmpty(read(environment, "OPENCLAW_GATEWAY_PORT")).map { (text) throws(ConfigurationError) in
            try parsePort(text, what: "OPENCLAW_GATEWAY_PORT")
        }
        let flagBind = try options.bind.map { (text) throws(ConfigurationError) in
            try parseBind(text, what: "--bind") { .usage($0) }
        }
        let environmentLimits = try Limits.fromEnvironment(environment)

        let stateDirectory = try stateDirectory(profile: profile, environment: environment)
        let configFile = try configPath(stateDirectory: stateDirectory, environment: environment)
        let file = try ConfigFile.load(path: configFile)

        var port = GatewayConfiguration.defaultPort
        var portOrigin = PortOrigin.builtInDefault
        if let flagPort {
            (port, portOrigin) = (flagPort, .flag)
        } else if let envPort {
            (port, portOrigin) = (envPort, .environment)
        } else if let filePort = file?.gateway?.port {
            guard (1...65535).contains(filePort) else {
                throw .config("invalid config \(configFile): gateway.port \(filePort) is not a port (1-65535)")
            }
            (port, portOrigin) = (filePort, .configFile)
        } else if profile == "dev" {
            (port, portOrigin) = (devPort, .profileDefault)
        }

        let bindAddress: BindAddress
        if let flagBind {
            bindAddress = flagBind
        } else if let fileBind = file?.gateway?.bind {
            bindAddress = try parseBind(fileBind, what: "gateway.bind in \(configFile)") { .config("invalid config \($0)") }
        } else {
            bindAddress = .loopback
        }

        let allowedOrigins = file?.gateway?.controlUi?.allowedOrigins ?? []
        if let index = allowedOrigins.firstIndex(where: { $0.trimmingASCIISpaces().lowercased() == "null" }) {
            // Every sandboxed iframe, data: URL and file:// page on the machine sends Origin: null.
            throw .config(
                "invalid config \(configFile): gateway.controlUi.allowedOrigins[\(index)] is \"null\", the origin every "
                    + "sandboxed, data: or file: page sends; list the page's real origin instead")
        }

        let rateLimit = try RateLimitSettings(file?.gateway?.auth?.rateLimit, configFile: configFile)
        var trustedProxies: [IPRange] = []
        for (index, entry) in (file?.gateway?.trustedProxies ?? []).enumerated() {
            guard let range = IPRange(entry.trimmingASCIISpaces()) else {
                throw .config(
                    "invalid config \(configFile): gateway.trustedProxies[\(index)] '\(entry)' is not an IP address "
                        + "or CIDR range (such as 127.0.0.1 or 10.0.0.0/8)")
            }
            trustedProxies.append(range)
        }

        let reload = try ReloadSettings(file?.gateway?.reload, configFile: configFile)
        let fileLogLevel = try file?.logging?.level.map { (text) throws(ConfigurationError) in
            guard let level = logLevelName(text) else {
                throw .config(
                    "invalid config \(configFile): logging.level \"\(text)\" is not one of "
                        + "trace, debug, info, notice, warn, warning, error, fatal, critical, silent")
            }
            return level
        }
        let limits = try Limits(
            flags: options.limits, environment: environmentLimits, file: file?.env?.values ?? [:], configFile: configFile)
        let auth = try Auth.resolve(
            file?.gateway?.auth, flagToken: options.token, environment: environment, configFile: configFile)
        if !bindAddress.isLoopback && auth == .none {
            throw .config(
                "refusing to listen on \(bindAddress.webSocketURL(port: port)) without a token or password: "
                    + "set --token, OPENCLAW_GATEWAY_TOKEN, gateway.auth.token or gateway.auth.password, or bind to loopback")
        }

        return GatewayConfiguration(
            port: port,
            portOrigin: portOrigin,
            profile: profile,
            stateDirectory: stateDirectory,
            configFile: configFile,
            configFileContents: file?.contents,
            bindAddress: bindAddress,
            auth: auth,
            allowedOrigins: allowedOrigins,
            rateLimit: rateLimit,
            trustedProxies: trustedProxies,
            reload: reload,
            fileLogLevel: fileLogLevel,
            limits: limits
        )
    }

    static func parsePort(_ text: String, what: String) throws(ConfigurationError) -> Int {
        guard let port = Int(text), (1...65535).contains(port) else {
            throw .usage("invalid \(what) '\(text)': expected a port number from 1 to 65535")
        }
        return port
    }

    static func parseBind(
        _ text: String, what: String, error: (String) -> ConfigurationError
    ) throws(ConfigurationError) -> BindAddress {
        switch text {
        case "loopback": return .loopback
        case "lan": return .anyIPv4
        default:
            guard let address = BindAddress(literal: text) else {
                throw error("\(what) '\(text)': expected loopback, lan or an IP address")
            }
            return address
        }
    }

    static func isValidProfileName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first != "." && first != "-" else { return false }
        return name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII
                && (("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                    || scalar == "." || scalar == "_" || scalar == "-")
        }
    }

    static func stateDirectory(profile: String?, environment: [String: String]) throws(ConfigurationError) -> String {
        if let explicit = nonEmpty(read(environment, "OPENCLAW_STATE_DIR")) {
            return explicit
        }
        // systemd's StateDirectory= may list several directories, colon-separated: ours is first.
        if let systemd = nonEmpty(read(environment, "STATE_DIRECTORY")), let first = systemd.split(separator: ":").first {
            return String(first)
        }
        guard let home = nonEmpty(read(environment, "HOME")) ?? homeFromPasswd() else {
            throw .config("cannot find a state directory: HOME is not set; set OPENCLAW_STATE_DIR")
        }
        let base = home.hasSuffix("/") ? String(home.dropLast()) : home
        return profile.map { "\(base)/.openclaw-\($0)" } ?? "\(base)/.openclaw"
    }

    /// Upstream's rule: `OPENCLAW_CONFIG_PATH` names the file (a leading `~/` is the home
    /// directory); else it is `openclaw.json` in the state directory.
    static func configPath(stateDirectory: String, environment: [String: String]) throws(ConfigurationError) -> String {
        guard let explicit = nonEmpty(read(environment, "OPENCLAW_CONFIG_PATH")) else {
            return stateDirectory + "/openclaw.json"
        }
        guard explicit == "~" || explicit.hasPrefix("~/") else { return explicit }
        guard let home = nonEmpty(read(environment, "HOME")) ?? homeFromPasswd() else {
            throw .config("cannot expand OPENCLAW_CONFIG_PATH \(explicit): HOME is not set")
        }
        return (home.hasSuffix("/") ? String(home.dropLast()) : home) + explicit.dropFirst()
    }

    private static func homeFromPasswd() -> String? {
        guard let entry = getpwuid(getuid()), let dir = entry.pointee.pw_dir else { return nil }
        return nonEmpty(String(cString: dir))
    }
}

func nonEmpty(_ text: String?) -> String? {
    guard let text, !text.isEmpty else { return nil }
    return text
}

/// One variable of `environment`; it must be one of ``configurationEnvironmentNames`` (checked in
/// debug builds, so the tests catch a new variable that was not added there).
private func read(_ environment: [String: String], _ name: String) -> String? {
    assert(configurationEnvironmentNames.contains(name), "\(name) is not in configurationEnvironmentNames")
    return environment[name]
}

extension String {
    func trimmingASCIISpaces() -> String {
        String(String(drop { $0 == " " || $0 == "\t" }.reversed()).drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

extension GatewayConfiguration {
    /// Upstream's `gateway.auth`: the mode and its secret.
    public enum Auth: Sendable, Equatable {
        /// No auth: loopback only.
        case none
        case token(String)
        case password(String)

        /// - token: `--token` > `OPENCLAW_GATEWAY_TOKEN` > `gateway.auth.token`;
        /// - password: `OPENCLAW_GATEWAY_PASSWORD` > `gateway.auth.password`;
        /// - mode: `gateway.auth.mode`, else upstream's inference: password when one is set,
        ///   else token when one is set, else none. A mode without its secret is a config error,
        ///   as upstream refuses it too.
        static func resolve(
            _ file: ConfigFile.Gateway.Auth?, flagToken: String?, environment: [String: String], configFile: String
        ) throws(ConfigurationError) -> Auth {
            let token = nonEmpty(flagToken) ?? nonEmpty(read(environment, "OPENCLAW_GATEWAY_TOKEN")) ?? nonEmpty(file?.token)
            let password = nonEmpty(read(environment, "OPENCLAW_GATEWAY_PASSWORD")) ?? nonEmpty(file?.password)
            switch file?.mode {
            case nil:
                if let password { return .password(password) }
                return token.map(Auth.token) ?? .none
            case "token":
                guard let token else {
                    throw .config(
                        "invalid config \(configFile): gateway.auth.mode is \"token\" but no token is set "
                            + "(--token, OPENCLAW_GATEWAY_TOKEN or gateway.auth.token)")
                }
                return .token(token)
            case "password":
                guard let password else {
                    throw .config(
                        "invalid config \(configFile): gateway.auth.mode is \"password\" but no password is set "
                            + "(OPENCLAW_GATEWAY_PASSWORD or gateway.auth.password)")
                }
                return .password(password)
            case "none":
                return .none
            case let other?:
                throw .config(
                    "invalid config \(configFile): gateway.auth.mode \"\(other)\" is not served by this gateway "
                        + "(token, password or none)")
            }
        }
    }
}

/// `gateway.auth.rateLimit` (upstream's keys): failed tokens before a client waits. nil keeps
/// upstream's default (10 attempts in 60,000 ms, then 300,000 ms; loopback exempt).
public struct RateLimitSettings: Sendable, Equatable {
    public var maxAttempts: Int?
    public var windowMs: Int?
    public var lockoutMs: Int?
    public var exemptLoopback: Bool?

    public init() {}

    init(_ file: ConfigFile.Gateway.Auth.RateLimit?, configFile: String) throws(ConfigurationError) {
        guard let file else { return }
        for (name, value) in [("maxAttempts", file.maxAttempts), ("windowMs", file.windowMs), ("lockoutMs", file.lockoutMs)] {
            if let value, value < 1 {
                throw .config("invalid config \(configFile): gateway.auth.rateLimit.\(name) \(value) is not a positive number")
            }
        }
        maxAttempts = file.maxAttempts
        windowMs = file.windowMs
        lockoutMs = file.lockoutMs
        exemptLoopback = file.exemptLoopback
    }
}

/// Upstream's `gateway.reload`: `mode` off | hot | restart | hybrid (the default), and how long
/// the file must stay unchanged before it is read (`debounceMs`, editors write and rename in
/// several steps).
public struct ReloadSettings: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable {
        /// No watch on the file; SIGHUP and `systemctl reload` still reload.
        case off
        /// Live changes applied; a change that needs a restart is logged, not acted on.
        case hot
        /// Any change restarts the gateway (under systemd; otherwise as hot).
        case restart
        /// Live changes applied; a change that needs a restart restarts (under systemd).
        case hybrid
    }

    public var mode: Mode = .hybrid
    public var debounceMs: Int = 300

    public init() {}

    /// The keys of `changes` this mode restarts the gateway for: in hybrid mode those only a new
    /// process takes up (the listener's), in restart mode every one, in hot and off mode none.
    public func restartKeys(_ changes: ConfigurationChanges) -> [String] {
        switch mode {
        case .hybrid: changes.needRestart
        case .restart: changes.needRestart + changes.live
        case .hot, .off: []
        }
    }

    init(_ file: ConfigFile.Gateway.Reload?, configFile: String) throws(ConfigurationError) {
        guard let file else { return }
        if let text = file.mode {
            guard let mode = Mode(rawValue: text) else {
                throw .config(
                    "invalid config \(configFile): gateway.reload.mode \"\(text)\" is not one of "
                        + Mode.allCases.map(\.rawValue).joined(separator: ", "))
            }
            self.mode = mode
        }
        if let debounce = file.debounceMs {
            guard (0...60_000).contains(debounce) else {
                throw .config("invalid config \(configFile): gateway.reload.debounceMs \(debounce) is not 0 to 60000")
            }
            debounceMs = debounce
        }
    }
}

/// What a reload found changed between the configuration in force and a new one.
public struct ConfigurationChanges: Sendable, Equatable {
    /// Keys a running gateway takes up at once.
    public var live: [String] = []
    /// Keys only a new listener can take up: the port, the address.
    public var needRestart: [String] = []
    public var isEmpty: Bool { live.isEmpty && needRestart.isEmpty }

    public init(live: [String] = [], needRestart: [String] = []) {
        self.live = live
        self.needRestart = needRestart
    }
}

extension GatewayConfiguration {
    /// What changed from this configuration to `new`, by the key an admin edits (secrets are
    /// named, never shown).
    public func changes(to new: GatewayConfiguration) -> ConfigurationChanges {
        var changes = ConfigurationChanges()
        if port != new.port { changes.needRestart.append("gateway.port") }
        if bindAddress != new.bindAddress { changes.needRestart.append("gateway.bind") }
        if auth != new.auth { changes.live.append("gateway.auth") }
        if allowedOrigins != new.allowedOrigins { changes.live.append("gateway.controlUi.allowedOrigins") }
        if rateLimit != new.rateLimit { changes.live.append("gateway.auth.rateLimit") }
        if trustedProxies != new.trustedProxies { changes.live.append("gateway.trustedProxies") }
        if reload != new.reload { changes.live.append("gateway.reload") }
        if fileLogLevel != new.fileLogLevel { changes.live.append("logging.level") }
        for key in Limits.Key.allCases where limits[key] != new.limits[key] {
            changes.live.append("env." + key.environmentName)
        }
        return changes
    }

    /// `new` as a running gateway can take it up: its listener (port, address) stays this one's.
    public func takingUp(_ new: GatewayConfiguration) -> GatewayConfiguration {
        var taken = new
        taken.port = port
        taken.portOrigin = portOrigin
        taken.bindAddress = bindAddress
        return taken
    }
}

/// A log level as upstream's `logging.level` or swift-log names it, as swift-log's name.
func logLevelName(_ text: String) -> String? {
    switch text.lowercased() {
    case "trace", "debug", "info", "notice", "warning", "error", "critical": text.lowercased()
    case "warn": "warning"
    case "fatal", "silent": "critical"  // swift-log has nothing quieter than critical
    default: nil
    }
}

/// The connection cap, payload caps, timeouts and tick interval. Each is `--<flag>` > its
/// environment variable > the same name in the config file's `env` block > the server's default
/// (nil here). The file's `env` block is upstream's own place for environment variables
/// (`env.NAME` or `env.vars.NAME`), so a file that sets them stays valid for the rest of
/// OpenClaw, whose schema refuses keys it does not know. A reload reads them again, and new
/// connections get the new values.
public struct Limits: Sendable, Equatable {
    public enum Key: String, CaseIterable, Sendable {
        case maxConnections = "max-connections"
        case maxPayload = "max-payload"
        case maxBufferedBytes = "max-buffered-bytes"
        case handshakeTimeoutMs = "handshake-timeout-ms"
        case tickIntervalMs = "tick-interval-ms"
        case headerTimeoutMs = "header-timeout-ms"
        case maxHeaderBytes = "max-header-bytes"

        /// `--max-connections`.
        public var flag: String { "--" + rawValue }
        /// `OPENCLAW_GATEWAY_MAX_CONNECTIONS`: the flag's name in upper case (written out: the
        /// lock reads these at every start, and upper-casing costs more than the rest of it).
        public var environmentName: String {
            switch self {
            case .maxConnections: "OPENCLAW_GATEWAY_MAX_CONNECTIONS"
            case .maxPayload: "OPENCLAW_GATEWAY_MAX_PAYLOAD"
            case .maxBufferedBytes: "OPENCLAW_GATEWAY_MAX_BUFFERED_BYTES"
            case .handshakeTimeoutMs: "OPENCLAW_GATEWAY_HANDSHAKE_TIMEOUT_MS"
            case .tickIntervalMs: "OPENCLAW_GATEWAY_TICK_INTERVAL_MS"
            case .headerTimeoutMs: "OPENCLAW_GATEWAY_HEADER_TIMEOUT_MS"
            case .maxHeaderBytes: "OPENCLAW_GATEWAY_MAX_HEADER_BYTES"
            }
        }
    }

    public private(set) var values: [Key: Int] = [:]

    public init(_ values: [Key: Int] = [:]) {
        self.values = values
    }

    public subscript(key: Key) -> Int? { values[key] }

    /// The limits the environment sets; a value that is not a whole number of 1 or more is a
    /// usage error (64) naming the variable.
    static func fromEnvironment(_ environment: [String: String]) throws(ConfigurationError) -> [Key: Int] {
        var found: [Key: Int] = [:]
        for key in Key.allCases {
            guard let text = environment[key.environmentName]?.trimmingASCIISpaces(), !text.isEmpty else { continue }
            guard let value = Int(text), value >= 1 else {
                throw .usage("invalid \(key.environmentName) '\(text)': expected a whole number of 1 or more")
            }
            found[key] = value
        }
        return found
    }

    init(flags: [Key: Int], environment: [Key: Int], file: [String: String], configFile: String) throws(ConfigurationError) {
        for key in Key.allCases {
            if let value = flags[key] ?? environment[key] {
                values[key] = value
            } else if let text = file[key.environmentName]?.trimmingASCIISpaces() {
                guard let value = Int(text), value >= 1 else {
                    throw .config(
                        "invalid config \(configFile): env.\(key.environmentName) '\(text)' is not a whole number of 1 or more")
                }
                values[key] = value
            }
        }
    }
}
