import ArgumentParser
import RestartHandover
import GatewayConfig
import GatewayLock
import GatewayProtocol
import GatewayServer
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `openclaw-gateway [run] [options]` — `run` is the default subcommand.
struct OpenclawGateway: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openclaw-gateway",
        abstract: "The OpenClaw Gateway: one WebSocket control plane per port, with its listener as the lock.",
        discussion: """
            Exit statuses: 0 clean shutdown; 64 usage error (bad flag, port or profile); 75 stopped \
            for systemd to start it again with a changed configuration; 78 the listener could not \
            be had (GatewayLockError) or the configuration is wrong.
            """,
        version: GatewayVersion.current,
        subcommands: [RunCommand.self, StatusCommand.self, ReloadCommand.self, HandoverFormatsCommand.self],
        defaultSubcommand: RunCommand.self
    )
}

/// What a restart may hand this binary (one format per line): asked by a running gateway of the
/// binary that replaced it, before it hands over its sessions. Not for people.
struct HandoverFormatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handover-formats", abstract: "Print the restart handover formats this binary reads.",
        shouldDisplay: false)

    func run() {
        print(RestartHandover.formats.joined(separator: "\n"))
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Serve the gateway (the default command).",
        discussion: """
            The listening socket comes from systemd (socket activation: LISTEN_FDS, fds named \
            'gateway' preferred) or, without it, from a bind of --bind:--port by this process. A \
            second gateway on the same port exits at once with status 78:
              GatewayLockError: another gateway instance is already listening on ws://127.0.0.1:<port>

            Exit statuses: 0 clean shutdown (SIGTERM or SIGINT); 64 usage error (bad flag, port,             profile or bind); 75 stopped for systemd to start it again with a changed configuration             (gateway.reload.mode restart or hybrid); 78 the listener could not be had             (GatewayLockError) or the configuration is wrong.
            """
    )

    @Option(name: .long, help: ArgumentHelp(
        "Port to listen on (1-65535). Precedence: --port, OPENCLAW_GATEWAY_PORT, config gateway.port, 18789 (19001 for --dev).",
        valueName: "port"))
    var port: String?

    @Option(name: .long, help: ArgumentHelp(
        "Isolated profile: state directory ~/.openclaw-<name> with its own openclaw.json.", valueName: "name"))
    var profile: String?

    @Flag(name: .long, help: "The 'dev' profile (default port 19001). Cannot be combined with --profile.")
    var dev = false

    @Option(name: .long, help: ArgumentHelp(
        "Address to listen on: loopback (127.0.0.1, plus [::1] best-effort), lan (0.0.0.0) or an IP address. Beyond loopback a token or password (OPENCLAW_GATEWAY_PASSWORD, gateway.auth.password) is required.",
        valueName: "loopback|lan|ip"))
    var bind: String?

    @Option(name: .long, help: ArgumentHelp(
        "Shared token clients must present (also OPENCLAW_GATEWAY_TOKEN or config gateway.auth.token). Prefer the environment: flags are visible in ps.",
        valueName: "token"))
    var token: String?

    @Option(name: .long, help: ArgumentHelp(
        "trace, debug, info, notice, warning, error or critical (also OPENCLAW_LOG_LEVEL, then config logging.level). Default: info.",
        valueName: "level"))
    var logLevel: String?

    @Flag(name: .long, help: "If another openclaw-gateway holds the port, stop it (SIGTERM, SIGKILL after 5 s) and take the port. Never touches anything else.")
    var force = false

    @Option(name: .long, help: Limits.Key.maxConnections.help)
    var maxConnections: Int?

    @Option(name: .long, help: Limits.Key.maxPayload.help)
    var maxPayload: Int?

    @Option(name: .long, help: Limits.Key.maxBufferedBytes.help)
    var maxBufferedBytes: Int?

    @Option(name: .long, help: Limits.Key.handshakeTimeoutMs.help)
    var handshakeTimeoutMs: Int?

    @Option(name: .long, help: Limits.Key.tickIntervalMs.help)
    var tickIntervalMs: Int?

    @Option(name: .long, help: Limits.Key.headerTimeoutMs.help)
    var headerTimeoutMs: Int?

    @Option(name: .long, help: Limits.Key.maxHeaderBytes.help)
    var maxHeaderBytes: Int?

    /// The limit flags given, by key.
    var limits: [Limits.Key: Int] {
        let given: [(Limits.Key, Int?)] = [
            (.maxConnections, maxConnections), (.maxPayload, maxPayload), (.maxBufferedBytes, maxBufferedBytes),
            (.handshakeTimeoutMs, handshakeTimeoutMs), (.tickIntervalMs, tickIntervalMs),
            (.headerTimeoutMs, headerTimeoutMs), (.maxHeaderBytes, maxHeaderBytes),
        ]
        return Dictionary(uniqueKeysWithValues: given.compactMap { key, value in value.map { (key, $0) } })
    }

    var options: CommandLineOptions {
        CommandLineOptions(port: port, profile: profile, dev: dev, bind: bind, token: token, limits: limits)
    }

    var settings: RunSettings {
        RunSettings(options: options, logLevel: logLevel, force: force)
    }

    func validate() throws {
        for (key, value) in limits.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where value < 1 {
            throw ValidationError("invalid \(key.flag) \(value): expected a positive number")
        }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("invalid --log-level '\(logLevel)': expected trace, debug, info, notice, warning, error or critical")
        }
    }
}

enum GatewayVersion {
    static let current = "0.2.0"
}

/// What `run` takes from its command line; the limit flags are in `options`
/// (``CommandLineOptions/limits``), resolved with the environment and the file at start and at
/// each reload.
struct RunSettings: Equatable {
    var options = CommandLineOptions()
    var logLevel: String? = nil
    var force = false
}

/// The limits' one table: what each is, its unit, and its default, which is the server's or the
/// control plane's own (written once, there). The help text and the server's settings read it.
extension Limits.Key {
    var defaultValue: Int {
        switch self {
        case .maxConnections: ServerConfiguration.defaultMaxConnections
        case .maxPayload: ControlPlaneConfiguration.defaults.maxPayload
        case .maxBufferedBytes: ControlPlaneConfiguration.defaults.maxBufferedBytes
        case .handshakeTimeoutMs: ControlPlaneConfiguration.defaults.handshakeTimeoutMs
        case .tickIntervalMs: ControlPlaneConfiguration.defaults.tickIntervalMs
        case .headerTimeoutMs: ServerConfiguration.defaultHeaderReadTimeoutMs
        case .maxHeaderBytes: ServerConfiguration.defaultMaxHeaderBytes
        }
    }

    private var meaning: (text: String, unit: String) {
        switch self {
        case .maxConnections: ("Open connections at most; beyond, HTTP 503.", "n")
        case .maxPayload: ("Largest client frame after hello-ok, bytes (policy.maxPayload).", "bytes")
        case .maxBufferedBytes: ("Outbound bytes queued for one client before it is dropped (policy.maxBufferedBytes).", "bytes")
        case .handshakeTimeoutMs: ("Time a client has to send connect, ms.", "ms")
        case .tickIntervalMs: ("Interval of tick events, ms (policy.tickIntervalMs).", "ms")
        case .headerTimeoutMs: ("Time for a request's headers to arrive, ms.", "ms")
        case .maxHeaderBytes: ("Header bytes per HTTP request at most.", "bytes")
        }
    }

    var help: ArgumentHelp {
        ArgumentHelp(
            "\(meaning.text) Also \(environmentName), then the config file's env.\(environmentName); a reload takes it up for new connections. Default \(defaultValue).",
            valueName: meaning.unit)
    }
}

enum GatewayCommandLine {
    /// The flags the lock depends on (--port, --profile, --dev, --bind, --token, as `--name value`
    /// or `--name=value`, after an optional `run`) when the command line has nothing else; nil for
    /// anything else — another command, --help, --force, any other option, a repeated flag, a
    /// missing value or one that looks like an option — which ArgumentParser parses, as always.
    /// What this accepts, ArgumentParser reads the same way: tests run the same command lines
    /// both ways (by adding a neutral `--log-level info`) and require the same outcome.
    static func lockFlags(_ arguments: [String]) -> CommandLineOptions? {
        var rest = arguments[...]
        if rest.first == "run" { rest = rest.dropFirst() }
        var options = CommandLineOptions()
        var seen: [String] = []
        while let argument = rest.popFirst() {
            guard argument.hasPrefix("--") else { return nil }
            var name = argument
            var value: String?
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                value = String(argument[argument.index(after: equals)...])
            }
            guard !seen.contains(name) else { return nil }
            seen.append(name)
            if name == "--dev" {
                guard value == nil else { return nil }
                options.dev = true
                continue
            }
            if value == nil { value = rest.popFirst() }
            guard let value, !value.isEmpty, !value.hasPrefix("-") else { return nil }
            switch name {
            case "--port": options.port = value
            case "--profile": options.profile = value
            case "--bind": options.bind = value
            case "--token": options.token = value
            default: return nil
            }
        }
        return options
    }

    /// Help and version print and exit 0; a usage error is one line on stderr (a daemon's errors
    /// end up in a journal, where ArgumentParser's usage block would be three lines of noise) and
    /// exit 64.
    static func exitForParseError(_ error: Error) -> Never {
        let code = OpenclawGateway.exitCode(for: error)
        guard code != .success else { OpenclawGateway.exit(withError: error) }
        let message = OpenclawGateway.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid command line"
        printError("openclaw-gateway: \(message) (see openclaw-gateway --help)")
        exit(code.rawValue)
    }

    /// Parses the command line and does everything that must happen on the main thread before any
    /// other thread exists; exits on a usage, configuration or lock error.
    static func prepare(arguments: [String], activation: SystemdActivation) -> PreparedGateway {
        // The lock first when the command line is only the lock's own flags: a duplicate is
        // refused, and a socket-activated start gets going, without ArgumentParser, whose parse
        // alone takes longer than a minimal bind-and-exit. Such a command line has nothing else
        // to parse: every other setting keeps its default.
        if let options = lockFlags(arguments), let early = GatewayRunner.lockEarly(options, activation: activation) {
            switch GatewayRunner.prepare(RunSettings(options: options), activation: activation, early: early) {
            case .success(let prepared):
                return prepared
            case .failure(let failure):
                RestartHandover.closeStored(activation)
                exit(failure.status)
            }
        }
        let command: ParsableCommand
        do {
            command = try OpenclawGateway.parseAsRoot(arguments)
        } catch {
            RestartHandover.closeStored(activation)
            exitForParseError(error)
        }
        guard let run = command as? RunCommand else {
            do {
                var other = command
                try other.run()
                exit(0)
            } catch {
                OpenclawGateway.exit(withError: error)
            }
        }
        switch GatewayRunner.prepare(run.settings, activation: activation) {
        case .success(let prepared):
            return prepared
        case .failure(let failure):
            RestartHandover.closeStored(activation)
            exit(failure.status)
        }
    }
}
