import ArgumentParser
import RestartHandover
import GatewayConfig
import GatewayLock
import Systemd
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

/// `run` as ArgumentParser shows it: in the top-level help, `help run` and the shell completion
/// scripts. It never parses a command line: ``RunArguments`` is run's only parser, and every
/// option here takes its name and help from that table.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: RunArguments.abstract, discussion: RunArguments.discussion)

    private static func help(_ name: String) -> ArgumentHelp {
        let option = RunArguments.option(name)!
        return ArgumentHelp(option.help, valueName: option.valueName)
    }

    @Option(name: .long, help: help("--port")) var port: String?
    @Option(name: .long, help: help("--profile")) var profile: String?
    @Flag(name: .long, help: help("--dev")) var dev = false
    @Option(name: .long, help: help("--bind")) var bind: String?
    @Option(name: .long, help: help("--token")) var token: String?
    @Option(name: .long, help: help("--log-level")) var logLevel: String?
    @Flag(name: .long, help: help("--force")) var force = false
    @Option(name: .long, help: help(Limits.Key.maxConnections.flag)) var maxConnections: Int?
    @Option(name: .long, help: help(Limits.Key.maxPayload.flag)) var maxPayload: Int?
    @Option(name: .long, help: help(Limits.Key.maxBufferedBytes.flag)) var maxBufferedBytes: Int?
    @Option(name: .long, help: help(Limits.Key.handshakeTimeoutMs.flag)) var handshakeTimeoutMs: Int?
    @Option(name: .long, help: help(Limits.Key.tickIntervalMs.flag)) var tickIntervalMs: Int?
    @Option(name: .long, help: help(Limits.Key.headerTimeoutMs.flag)) var headerTimeoutMs: Int?
    @Option(name: .long, help: help(Limits.Key.maxHeaderBytes.flag)) var maxHeaderBytes: Int?
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

    var valueName: String { meaning.unit }

    var helpText: String {
        "\(meaning.text) Also \(environmentName), then the config file's env.\(environmentName); a reload takes it up for new connections. Default \(defaultValue)."
    }
}

enum GatewayCommandLine {
    /// What ArgumentParser reads: the other commands, and the top-level help, version and
    /// completion scripts. Everything else is `run` (the default command), read by
    /// ``RunArguments``.
    static func isForArgumentParser(_ arguments: [String]) -> Bool {
        guard let first = arguments.first else { return false }
        if first == "help" { return arguments.dropFirst().first != "run" }
        return argumentParserCommands.contains(first) || ["--help", "-h", "--version"].contains(first)
            || first.hasPrefix("--generate-completion-script") || first == "--experimental-dump-help"
    }

    /// ``OpenclawGateway``'s subcommands but `run`, by name: asking ArgumentParser for them would
    /// cost every start its type metadata (a test runs each of them).
    static let argumentParserCommands = ["status", "reload", "handover-formats"]

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
    /// other thread exists; exits on a usage, configuration or lock error, after closing the
    /// sessions a restart left in the fd store (`stored`) cleanly.
    static func prepare(arguments: [String], activation: SystemdActivation, stored: [SystemdActivation.PassedSocket]) -> PreparedGateway {
        guard !isForArgumentParser(arguments) else {
            RestartHandover.closeStored(stored)
            var command: ParsableCommand
            do {
                command = try OpenclawGateway.parseAsRoot(arguments)
            } catch {
                exitForParseError(error)
            }
            do {
                try command.run()
                exit(0)
            } catch {
                OpenclawGateway.exit(withError: error)
            }
        }
        let settings: RunSettings
        switch RunArguments.parse(arguments.first == "help" ? ["--help"] : arguments) {
        case .success(.run(let parsed)):
            settings = parsed
        case .success(.help):
            print(RunArguments.helpText, terminator: "")
            exit(0)
        case .success(.version):
            print(GatewayVersion.current)
            exit(0)
        case .failure(let error):
            RestartHandover.closeStored(stored)
            printError("openclaw-gateway: \(error.message) (see openclaw-gateway run --help)")
            exit(64)
        }
        // The lock first, with as little as it needs (the environment's few names, no other
        // setting): a duplicate is refused, and a socket-activated start gets going, at once.
        // --force goes the full way, which knows how to take the port over.
        let early = settings.force ? nil : GatewayRunner.lockEarly(
            settings.options, logLevel: settings.logLevel, activation: activation, stored: stored)
        switch GatewayRunner.prepare(settings, activation: activation, stored: stored, early: early) {
        case .success(let prepared):
            return prepared
        case .failure(let failure):
            RestartHandover.closeStored(stored)
            exit(failure.status)
        }
    }
}
