import ArgumentParser
import GatewayConfig

#if canImport(Glibc)
import Glibc
#endif

/// `openclaw-gateway reload --pid PID`: the units' `ExecReload=`. Resolves the configuration as
/// `run` would (same flags, environment and file); when it is invalid, says why in one line and
/// exits 78, so `systemctl reload` fails and the gateway is not asked. Otherwise sends the gateway
/// SIGHUP: it reloads and reports to systemd itself (RELOADING=1 … READY=1 with STATUS=).
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Check the configuration and ask a running gateway to reload it (ExecReload=).",
        discussion: """
            Exit statuses: 0 the configuration is valid and the gateway was asked (SIGHUP); 64 \
            usage; 69 no such gateway process; 78 the configuration is invalid (the gateway keeps \
            serving the last good one).
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
        guard kill(pid, SIGHUP) == 0 else {
            printError("openclaw-gateway: cannot signal gateway process \(pid): \(String(cString: strerror(errno)))")
            throw ExitCode(69)  // EX_UNAVAILABLE
        }
    }
}
