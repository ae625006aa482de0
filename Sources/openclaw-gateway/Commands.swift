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

    @Option(name: .long, help: ArgumentHelp("Open connections at most; beyond, HTTP 503. Default \(RunSettings.defaults.maxConnections).", valueName: "n"))
    var maxConnections: Int = RunSettings.defaults.maxConnections

    @Option(name: .long, help: ArgumentHelp("Largest client frame after hello-ok, bytes (policy.maxPayload). Default \(RunSettings.defaults.maxPayload).", valueName: "bytes"))
    var maxPayload: Int = RunSettings.defaults.maxPayload

    @Option(name: .long, help: ArgumentHelp("Outbound bytes queued for one client before it is dropped (policy.maxBufferedBytes). Default \(RunSettings.defaults.maxBufferedBytes).", valueName: "bytes"))
    var maxBufferedBytes: Int = RunSettings.defaults.maxBufferedBytes

    @Option(name: .long, help: ArgumentHelp("Time a client has to send connect, ms. Default \(RunSettings.defaults.handshakeTimeoutMs).", valueName: "ms"))
    var handshakeTimeoutMs: Int = RunSettings.defaults.handshakeTimeoutMs

    @Option(name: .long, help: ArgumentHelp("Interval of tick events, ms (policy.tickIntervalMs). Default \(RunSettings.defaults.tickIntervalMs).", valueName: "ms"))
    var tickIntervalMs: Int = RunSettings.defaults.tickIntervalMs

    @Option(name: .long, help: ArgumentHelp("Time for a request's headers to arrive, ms. Default \(RunSettings.defaults.headerTimeoutMs).", valueName: "ms"))
    var headerTimeoutMs: Int = RunSettings.defaults.headerTimeoutMs

    @Option(name: .long, help: ArgumentHelp("Header bytes per HTTP request at most. Default \(RunSettings.defaults.maxHeaderBytes).", valueName: "bytes"))
    var maxHeaderBytes: Int = RunSettings.defaults.maxHeaderBytes

    var options: CommandLineOptions {
        CommandLineOptions(port: port, profile: profile, dev: dev, bind: bind, token: token)
    }

    var settings: RunSettings {
        RunSettings(
            options: options, logLevel: logLevel, force: force, maxConnections: maxConnections,
            maxPayload: maxPayload, maxBufferedBytes: maxBufferedBytes, handshakeTimeoutMs: handshakeTimeoutMs,
            tickIntervalMs: tickIntervalMs, headerTimeoutMs: headerTimeoutMs, maxHeaderBytes: maxHeaderBytes)
    }

    func validate() throws {
        for (name, value) in [("--max-connections", maxConnections), ("--max-payload", maxPayload),
                              ("--max-buffered-bytes", maxBufferedBytes), ("--handshake-timeout-ms", handshakeTimeoutMs),
                              ("--tick-interval-ms", tickIntervalMs), ("--header-timeout-ms", headerTimeoutMs),
                              ("--max-header-bytes", maxHeaderBytes)] where value < 1 {
            throw ValidationError("invalid \(name) \(value): expected a positive number")
        }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("invalid --log-level '\(logLevel)': expected trace, debug, info, notice, warning, error or critical")
        }
    }
}

enum GatewayVersion {
    static let current = "0.2.0"
}

/// What `run` takes from its command line. Its defaults are the server's and the control plane's
/// own (written once, there); RunCommand's options and their help text read them from here.
struct RunSettings: Equatable {
    static let defaults = RunSettings()

    var options = CommandLineOptions()
    var logLevel: String? = nil
    var force = false
    var maxConnections = ServerConfiguration.defaultMaxConnections
    var maxPayload = ControlPlaneConfiguration.defaults.maxPayload
    var maxBufferedBytes = ControlPlaneConfiguration.defaults.maxBufferedBytes
    var handshakeTimeoutMs = ControlPlaneConfiguration.defaults.handshakeTimeoutMs
    var tickIntervalMs = ControlPlaneConfiguration.defaults.tickIntervalMs
    var headerTimeoutMs = ServerConfiguration.defaultHeaderReadTimeoutMs
    var maxHeaderBytes = ServerConfiguration.defaultMaxHeaderBytes
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
