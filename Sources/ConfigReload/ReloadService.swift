import GatewayConfig
import Logging
import ServiceLifecycle

/// What asks for a reload while the gateway runs: SIGHUP (a manual launch, and the units'
/// `ExecReload=`), and a change to the config file unless `gateway.reload.mode` is `off` (read
/// at each change, so a reload can turn the watch off and on). Ends at graceful shutdown.
///
/// After a reload that changed something, `followUp` says whether the gateway must restart to
/// take it up (``ReloadFollowUp``); then this service ends, and with it the gateway's service
/// group, gracefully.
public struct ReloadService: Service {
    let reloader: ConfigurationReloader
    let logger: Logger
    let followUp: @Sendable (ConfigurationChanges, GatewayConfiguration) async -> ReloadFollowUp

    /// SIGHUP must be blocked since the start of main (``Hangups/blockEarly()``): a reload asked
    /// before this service runs then waits for it.
    public init(
        reloader: ConfigurationReloader, logger: Logger,
        followUp: @escaping @Sendable (ConfigurationChanges, GatewayConfiguration) async -> ReloadFollowUp = { _, _ in .carryOn }
    ) {
        self.reloader = reloader
        self.logger = logger
        self.followUp = followUp
    }

    /// What a reload's changes call for.
    private func needsRestart(_ outcome: ConfigurationReloader.Outcome) async -> Bool {
        guard case .applied(_, let changes) = outcome else { return false }
        return await followUp(changes, reloader.current) == .restart
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
        // Each source ends when the gateway shuts down, or when a reload calls for a restart:
        // then the group ends the other one and this service returns. Graceful shutdown cancels
        // the sources, whose streams then end (AsyncStream ends for a cancelled task), rather
        // than `cancelOnGracefulShutdown()`: its merged sequences are generic types that the
        // runtime checks on first use. Without them, 48 conformance scans before READY=1
        // instead of 85, and 12.2M instructions instead of 13.5M (callgrind).
        await withTaskGroup(of: SourceEnd.self) { group in
            if let hangups {
                group.addTask {
                    for await hangup in hangups {
                        let outcome = await reloader.reload(trigger: "SIGHUP")
                        if case .rejected = outcome {
                            Hangups.answer(hangup, status: 78)
                        } else {
                            Hangups.answer(hangup, status: 0)
                        }
                        if await needsRestart(outcome) {
                            await Hangups.senderExited(hangup)
                            return .restart
                        }
                    }
                    return .ended
                }
            }
            if let changes {
                group.addTask {
                    for await _ in changes {
                        guard await reloader.current.reload.mode != .off else { continue }
                        if await needsRestart(reloader.reload(trigger: "file changed")) { return .restart }
                    }
                    return .ended
                }
            }
            guard hangups != nil || changes != nil else { return }
            group.addTask {
                // Throws only when cancelled: a source asked for a restart, or none is left.
                try? await gracefulShutdown()
                return .shutdown
            }
            var sources = (hangups == nil ? 0 : 1) + (changes == nil ? 0 : 1)
            while let end = await group.next() {
                switch end {
                case .restart, .shutdown:
                    group.cancelAll()
                    return
                case .ended:
                    // A source gave out on its own; the other serves on, and with none left the
                    // service ends as it did without the shutdown watch.
                    sources -= 1
                    if sources == 0 {
                        group.cancelAll()
                        return
                    }
                }
            }
        }
    }

    /// How one of ``run()``'s tasks ended.
    private enum SourceEnd: Sendable {
        /// Its stream ended (or the group was cancelled).
        case ended
        /// A reload calls for a restart.
        case restart
        /// Graceful shutdown began.
        case shutdown
    }
}

/// What a reload calls for once it has applied what a running gateway takes up.
public enum ReloadFollowUp: Sendable, Equatable {
    /// Serve on.
    case carryOn
    /// Stop, so that the service manager starts the gateway again with the new configuration
    /// (the caller has arranged that, and that the sessions are handed over).
    case restart
}
