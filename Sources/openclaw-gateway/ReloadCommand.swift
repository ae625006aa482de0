import ArgumentParser
import ConfigReload
import GatewayConfig

#if canImport(Glibc)
import Glibc
#endif

/// `openclaw-gateway reload --pid PID`: the units' `ExecReload=`. Resolves the configuration as
/// `run` would (same flags, environment and file); when it is invalid, says why in one line and
/// exits 78, so `systemctl reload` fails and the gateway is not asked. Otherwise asks the gateway
/// (SIGHUP by sigqueue) and returns once it answers that the reload is done, so the reload job
/// ends when the new configuration is in force, on systemd 252 as on 257; the gateway also reports
/// to systemd itself (RELOADING=1 … READY=1 with STATUS=).
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Check the configuration and ask a running gateway to reload it (ExecReload=).",
        discussion: """
            Exit statuses: 0 the new configuration is in force (the gateway answered); 1 the \
            gateway did not answer within 30 s; 64 usage; 69 no such gateway process; 78 the \
            configuration is invalid (the gateway keeps serving the last good one).
            """
    )

    @Option(name: .long, help: ArgumentHelp("The gateway's process ($MAINPID under systemd).", valueName: "pid"))
    var pid: Int32

    @Option(name: .long, help: ArgumentHelp("As for run.", valueName: "port"))
    var port: String?

    @Option(name: .long, help: ArgumentHelp("As for run.", valueName: "name"))
    var profile: String?

    @Flag(name: .long, help: "As for run.")
    var dev = false

    @Option(name: .long, help: ArgumentHelp("As for run.", valueName: "loopback|lan|ip"))
    var bind: String?

    /// How long the gateway has to answer (it takes about a millisecond).
    static let answerTimeoutMs: Int32 = 30_000

    func validate() throws {
        if pid < 2 { throw ValidationError("invalid --pid \(pid): expected the gateway's process id") }
    }

    func run() throws {
        let options = CommandLineOptions(port: port, profile: profile, dev: dev, bind: bind)
        do {
            _ = try GatewayConfiguration.resolve(options, environment: processEnvironment())
        } catch {
            printError("openclaw-gateway: reload refused: \(error.message)")
            throw ExitCode(error.exitStatus)
        }
        switch ReloadRequest.send(to: pid, timeoutMs: Self.answerTimeoutMs) {
        case .done:
            return
        case .refused:
            printError("openclaw-gateway: reload refused by gateway process \(pid): its log says why; it serves the last good config")
            throw ExitCode(78)
        case .noAnswer:
            printError("openclaw-gateway: gateway process \(pid) did not answer the reload within \(Self.answerTimeoutMs / 1000) s")
            throw ExitCode(1)
        case .cannotSignal(let reason):
            printError("openclaw-gateway: cannot signal gateway process \(pid): \(reason)")
            throw ExitCode(69)  // EX_UNAVAILABLE
        }
    }
}
