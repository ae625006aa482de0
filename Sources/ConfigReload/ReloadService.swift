import GatewayConfig
import Logging
import ServiceLifecycle

/// What asks for a reload while the gateway runs: SIGHUP (a manual launch, and the units'
/// `ExecReload=`), and a change to the config file unless `gateway.reload.mode` is `off` (read
/// at each change, so a reload can turn the watch off and on). Ends at graceful shutdown.
public struct ReloadService: Service {
    let reloader: ConfigurationReloader
    let logger: Logger

    /// SIGHUP must be blocked since the start of main (``Hangups/blockEarly()``): a reload asked
    /// before this service runs then waits for it.
    public init(reloader: ConfigurationReloader, logger: Logger) {
        self.reloader = reloader
        self.logger = logger
    }

    public func run() async throws {
        let start = await reloader.current
        let (changes, failure) = ConfigFileWatcher.changes(of: start.configFile, debounceMs: start.reload.debounceMs)
        if let failure {
            logger.notice("config file not watched (\(failure)); SIGHUP still reloads")
        }
        let (hangups, hangupFailure) = Hangups.events()
        if let hangupFailure {
            logger.warning("SIGHUP cannot reload (\(hangupFailure))")
        }
        await withDiscardingTaskGroup { group in
            if let hangups {
                group.addTask {
                    for await hangup in hangups.cancelOnGracefulShutdown() {
                        let outcome = await reloader.reload(trigger: "SIGHUP")
                        if case .rejected = outcome {
                            Hangups.answer(hangup, status: 78)
                        } else {
                            Hangups.answer(hangup, status: 0)
                        }
                    }
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
