import GatewayConfig
import Logging
import ServiceLifecycle
import UnixSignals

/// What asks for a reload while the gateway runs: SIGHUP (a manual launch, and the units'
/// `ExecReload=`), and a change to the config file unless `gateway.reload.mode` is `off` (read
/// at each change, so a reload can turn the watch off and on). Ends at graceful shutdown.
public struct ReloadService: Service {
    let reloader: ConfigurationReloader
    let hangups: UnixSignalsSequence
    let logger: Logger

    /// `hangups` must trap SIGHUP before the gateway reports READY=1: a reload asked for at once
    /// must not find SIGHUP's default action, which ends the process.
    public init(reloader: ConfigurationReloader, hangups: UnixSignalsSequence, logger: Logger) {
        self.reloader = reloader
        self.hangups = hangups
        self.logger = logger
    }

    public func run() async throws {
        let start = await reloader.current
        let (changes, failure) = ConfigFileWatcher.changes(of: start.configFile, debounceMs: start.reload.debounceMs)
        if let failure {
            logger.notice("config file not watched (\(failure)); SIGHUP still reloads")
        }
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await _ in hangups.cancelOnGracefulShutdown() {
                    await reloader.reload(trigger: "SIGHUP")
                }
            }
            if let changes {
                group.addTask {
                    for await _ in changes.cancelOnGracefulShutdown() {
                        guard await reloader.current.reload.mode != .off else { continue }
                        await reloader.reload(trigger: "file changed")
                    }
                }
            }
        }
    }
}
