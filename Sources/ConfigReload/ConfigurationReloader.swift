import GatewayConfig
import Logging
import Systemd

/// Reloads the configuration while the gateway runs (SIGHUP, `systemctl reload`, a changed
/// file): resolves it again exactly as at start, keeps the last good one when the new one is
/// invalid, hands what a running gateway can take up to `apply`, and says what happened in one
/// line: in the log, and to systemd (RELOADING=1 … READY=1 with a STATUS=).
///
/// A reload never touches the listener: a changed port or address is reported as needing a
/// restart, and the configuration in force keeps the old ones.
public actor ConfigurationReloader {
    /// How one reload ended.
    public enum Outcome: Sendable, Equatable {
        /// applied, unchanged or rejected.
        public var name: String {
            switch self {
            case .applied: "applied"
            case .unchanged: "unchanged"
            case .rejected: "rejected"
            }
        }

        /// The generation in force after it.
        public var generation: Int {
            switch self {
            case .applied(let generation, _), .unchanged(let generation), .rejected(let generation, _): generation
            }
        }

        /// The new configuration is in force as `generation`.
        case applied(generation: Int, changes: ConfigurationChanges)
        /// The file resolves to what is in force already.
        case unchanged(generation: Int)
        /// The new configuration is invalid; `generation` still serves.
        case rejected(generation: Int, reason: String)
    }

    /// The configuration in force.
    public private(set) var current: GatewayConfiguration
    /// 1 at start; each reload that changed something adds one.
    public private(set) var generation = 1

    private let resolve: @Sendable () throws(ConfigurationError) -> GatewayConfiguration
    private let apply: @Sendable (GatewayConfiguration, Outcome) -> Void
    private let notifier: SystemdNotifier
    private let logger: Logger

    /// - resolve: the start's own resolution (flags, environment, file, defaults).
    /// - apply: takes up the configuration in force after each reload, and how the reload ended
    ///   (the server's live settings, what its probes report).
    public init(
        current: GatewayConfiguration, notifier: SystemdNotifier, logger: Logger,
        resolve: @escaping @Sendable () throws(ConfigurationError) -> GatewayConfiguration,
        apply: @escaping @Sendable (GatewayConfiguration, Outcome) -> Void
    ) {
        self.current = current
        self.notifier = notifier
        self.logger = logger
        self.resolve = resolve
        self.apply = apply
    }

    /// One reload, from start to READY=1. `trigger` says what asked for it ("SIGHUP", …).
    @discardableResult
    public func reload(trigger: String) -> Outcome {
        notifier.reloading(status: "Reloading \(current.configFile) (\(trigger))")
        let outcome: Outcome
        let line: String
        do throws(ConfigurationError) {
            let resolved = try resolve()
            let new = current.takingUp(resolved)
            let changes = current.changes(to: resolved)
            if changes.isEmpty && new == current {
                outcome = .unchanged(generation: generation)
                line = "config reload (\(trigger)): no change, generation \(generation)"
            } else {
                generation += 1
                current = new
                outcome = .applied(generation: generation, changes: changes)
                line = Self.describe(changes, generation: generation, trigger: trigger)
            }
            if changes.needRestart.isEmpty {
                logger.info("\(line)")
            } else {
                logger.warning("\(line)")
            }
        } catch {
            outcome = .rejected(generation: generation, reason: error.message)
            line = "config reload skipped (invalid config), still serving generation \(generation): \(error.message)"
            logger.warning("\(line)")
        }
        apply(current, outcome)
        notifier.ready(status: line)
        return outcome
    }

    static func describe(_ changes: ConfigurationChanges, generation: Int, trigger: String) -> String {
        var parts: [String] = []
        parts.append(changes.live.isEmpty ? "no gateway setting changed" : "applied " + changes.live.joined(separator: ", "))
        if !changes.needRestart.isEmpty {
            parts.append(
                "restart needed for " + changes.needRestart.joined(separator: ", ") + " (the listener stays as it is)")
        }
        return "config reload (\(trigger)): generation \(generation): " + parts.joined(separator: "; ")
    }
}
