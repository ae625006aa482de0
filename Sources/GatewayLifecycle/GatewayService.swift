import GatewayLock
import GatewayProtocol
import GatewayServer
import Logging
import NIOCore
import RestartHandover
import ServiceLifecycle
import Synchronization
import Systemd

/// The gateway's life as one swift-service-lifecycle service: it starts serving, and at graceful
/// shutdown (SIGTERM, SIGINT, a reload that needs a restart) decides how to stop and stops that
/// way. Each step moves the ``State`` on, and only along this graph:
///
///     starting ─→ serving ─→ deciding ─→ handingOver ─→ done
///        │                       └────→ closing ─────↗
///        └─────────────────────────────────────────────↗  (the listeners cannot be served)
///
/// - **starting**: the event loops adopt the listeners; the sessions a restart left in the fd store
///   are taken back (``RestartHandover/takeBack(_:server:store:secret:logger:)``); READY=1.
/// - **serving**: until graceful shutdown.
/// - **deciding**: STOPPING=1; systemd is asked whether a restart is pending
///   (``RestartHandover/decide(store:cause:)``, whose D-Bus calls run on a thread of their own,
///   never on Swift's cooperative pool); then the listeners close, so the port is free at once.
/// - **handingOver**: the connections freeze, their sockets and state go through the carrier into
///   the fd store; whatever cannot go is closed as on a stop.
/// - **closing**: every client gets the `shutdown` event and 1012 within ``gracePeriod``; the kernel
///   never closes a session under a client.
public final class GatewayService: Service, Sendable {
    public enum State: Sendable, Equatable {
        case starting
        case serving
        case deciding
        case handingOver
        /// With why the clients are closed rather than handed over (for the log).
        case closing(reason: String)
        case done

        /// Whether a gateway in this state may move to `next`: the graph above.
        public func allows(_ next: State) -> Bool {
            switch (self, next) {
            case (.starting, .serving), (.starting, .done): true
            case (.serving, .deciding): true
            case (.deciding, .handingOver), (.deciding, .closing): true
            case (.handingOver, .done), (.closing, .done): true
            default: false
            }
        }
    }

    /// What the service serves and where it reports: everything the runner decided before.
    public struct Configuration: Sendable {
        public var server: GatewayServer
        /// Succeeds once every listener serves (``GatewayServer/adopt(listeningSockets:)``).
        public var adoption: EventLoopFuture<Void>
        /// What a restart left in systemd's fd store (``RestartHandover/separateStored(_:)``).
        public var stored: [SystemdActivation.PassedSocket]
        /// The listeners' URLs, and where they came from, for the log and systemd's STATUS.
        public var urls: [String]
        public var origin: String
        /// The URL the lock's error names when the listeners cannot be served.
        public var lockURL: String
        public var secret: SharedSecret
        public var notifier: SystemdNotifier
        public var stopCause: StopCauseRecord

        public init(
            server: GatewayServer, adoption: EventLoopFuture<Void>, stored: [SystemdActivation.PassedSocket],
            urls: [String], origin: String, lockURL: String, secret: SharedSecret, notifier: SystemdNotifier,
            stopCause: StopCauseRecord
        ) {
            self.server = server
            self.adoption = adoption
            self.stored = stored
            self.urls = urls
            self.origin = origin
            self.lockURL = lockURL
            self.secret = secret
            self.notifier = notifier
            self.stopCause = stopCause
        }
    }

    /// How long connections get to close at shutdown; systemd's default stop timeout is 90 s and
    /// the contract asks for an exit within 10 s.
    public static let gracePeriod: TimeAmount = .seconds(8)
    /// How long a session being handed over may take to send what it already queued; one whose
    /// client reads slower than that is closed instead.
    public static let handOverFlushTimeout: TimeAmount = .seconds(2)

    private let configuration: Configuration
    private let logger: Logger
    private let current = Mutex(State.starting)
    private let onStateChange: @Sendable (State) -> Void

    /// `onStateChange` hears each state as it is entered, after ``state`` has it.
    public init(_ configuration: Configuration, logger: Logger, onStateChange: @escaping @Sendable (State) -> Void = { _ in }) {
        self.configuration = configuration
        self.logger = logger
        self.onStateChange = onStateChange
    }

    /// The state the gateway is in now.
    public var state: State { current.withLock { $0 } }

    public func run() async throws {
        var state = State.starting
        while true {
            let next: State
            switch state {
            case .starting: next = try await start()
            case .serving: next = await serve()
            case .deciding: next = await decide()
            case .handingOver: next = await handOver()
            case .closing(let reason): next = await close(reason: reason)
            case .done: return
            }
            enter(next, from: state)
            state = next
        }
    }

    private func enter(_ next: State, from state: State) {
        precondition(state.allows(next), "the gateway cannot go from \(state) to \(next)")
        current.withLock { $0 = next }
        logger.debug("gateway: \(state) -> \(next)")
        onStateChange(next)
    }

    private func start() async throws -> State {
        let server = configuration.server
        do {
            try await configuration.adoption.get()
        } catch {
            RestartHandover.closeStored(configuration.stored)
            enter(.done, from: .starting)
            throw GatewayLockError.bindFailed(on: configuration.lockURL, reason: "cannot serve the listening socket: \(error)")
        }
        // Sessions a restart handed over are carried on before READY=1.
        await RestartHandover.takeBack(
            configuration.stored, server: server, store: FileDescriptorStore(), secret: configuration.secret, logger: logger)
        let urls = configuration.urls.joined(separator: ", ")
        logger.info("listening on \(urls) (\(configuration.origin))")
        configuration.notifier.ready(status: "Listening on \(urls) (\(configuration.origin))")
        return .serving
    }

    private func serve() async -> State {
        try? await gracefulShutdown()
        return .deciding
    }

    private func decide() async -> State {
        configuration.notifier.stopping(status: "Stopping: closing listeners and connections")
        let decision = await RestartHandover.decide(store: FileDescriptorStore(), cause: configuration.stopCause.value)
        await configuration.server.closeListeners()
        logger.info("stopped listening on \(configuration.urls.joined(separator: ", "))")
        switch decision {
        case .handOver: return .handingOver
        case .closeClients(let reason): return .closing(reason: reason)
        }
    }

    private func handOver() async -> State {
        let server = configuration.server
        let started = ContinuousClock.now
        let handed = await server.handOver(flushTimeout: Self.handOverFlushTimeout)
        let stored = RestartHandover.store(
            handed, in: FileDescriptorStore(), secret: server.configuration.controlPlane.secret, logger: logger)
        await server.finishHandOver(handed, sent: stored)
        let elapsed = RestartHandover.milliseconds(since: started)
        logger.info(
            "restart: handed \(stored) connection(s) to the next gateway through the carrier in systemd's fd store (\(elapsed) ms)")
        // Only what could not be handed over is left (none, as a rule).
        await server.closeConnections(gracePeriod: Self.gracePeriod)
        logger.info("shut down")
        return .done
    }

    private func close(reason: String) async -> State {
        let server = configuration.server
        if server.connectionCount > 0 { logger.info("closing clients: \(reason)") }
        await server.closeConnections(gracePeriod: Self.gracePeriod)
        logger.info("shut down")
        return .done
    }
}
