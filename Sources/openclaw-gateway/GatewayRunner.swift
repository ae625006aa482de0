import ConfigReload
import GatewayLifecycle
import GatewayConfig
import GatewayLock
import GatewayProtocol
import GatewayServer
import Logging
import NIOCore
import NIOPosix
import PortHolder
import RestartHandover
import ServiceLifecycle
import Systemd

#if canImport(Glibc)
import Glibc
#endif

/// A failure already reported on stderr, with the exit status it calls for.
struct StartFailure: Error {
    let status: Int32
}

/// `openclaw-gateway run`: configuration -> lock (listener) -> server -> READY, in that order. The
/// first two happen in ``GatewayRunner/prepare(_:activation:stored:early:)`` on the main thread alone.
enum GatewayRunner {
    /// The lock taken without ArgumentParser, for a command line of lock flags only (see
    /// ``lockEarly(_:logLevel:activation:stored:)``).
    struct EarlyLock {
        let configuration: GatewayConfiguration
        let acquired: GatewayLock.Acquired
    }

    /// Configuration and lock for `run`, reading only the environment names configuration and
    /// logging need. A duplicate is refused here, exactly as ``prepare(_:activation:stored:early:)``
    /// would refuse it. Anything else — a configuration error, another bind failure, a bad
    /// LISTEN_* — returns nil and goes the full way, which reports it.
    static func lockEarly(
        _ options: CommandLineOptions, logLevel: String?, activation: SystemdActivation, stored: [SystemdActivation.PassedSocket]
    ) -> EarlyLock? {
        // Only what configuration and logging read: cheaper than the whole environ, and this path
        // is timed.
        let names = configurationEnvironmentNames + ["OPENCLAW_LOG_LEVEL", "JOURNAL_STREAM"]
        var environment: [String: String] = Dictionary(minimumCapacity: names.count)
        for name in names {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        bootstrapLogging(flag: logLevel, environment: environment)
        guard let configuration = try? GatewayConfiguration.resolve(options, environment: environment) else { return nil }
        let logger = Logger(label: "openclaw-gateway")
        do {
            let acquired = try GatewayLock.acquire(
                configuration.lockRequest, activation: activation, logger: logger)
            return EarlyLock(configuration: configuration, acquired: acquired)
        } catch where error.kind == .alreadyListening {
            reportConflict(error, port: configuration.port, forceRefused: false)
            RestartHandover.closeStored(stored)
            exit(GatewayLockError.exitStatus)
        } catch {
            return nil
        }
    }

    static func prepare(
        _ command: RunSettings, activation: SystemdActivation, stored: [SystemdActivation.PassedSocket], early: EarlyLock? = nil
    ) -> Result<PreparedGateway, StartFailure> {
        let configuration: GatewayConfiguration
        let acquired: GatewayLock.Acquired
        let logger: Logger
        if let early {
            // Configuration, listeners and logging from the early lock (a command line of lock
            // flags only): the environment has been read.
            configuration = early.configuration
            acquired = early.acquired
            logger = Logger(label: "openclaw-gateway")
        } else {
            let environment = processEnvironment()
            bootstrapLogging(flag: command.logLevel, environment: environment)
            logger = Logger(label: "openclaw-gateway")
            // 1. Configuration: cheap, and every mistake is reported before the port is touched.
            do {
                configuration = try GatewayConfiguration.resolve(command.options, environment: environment)
            } catch {
                printError("openclaw-gateway: \(error.message)")
                return .failure(StartFailure(status: error.exitStatus))
            }
            // 2. The lock: the listener, from systemd or bound here.
            do {
                acquired = try acquireLock(configuration, activation: activation, force: command.force, logger: logger)
            } catch {
                return .failure(StartFailure(status: GatewayLockError.exitStatus))
            }
        }
        GatewayLogHandler.setLevel(logLevel(flag: command.logLevel, configuration: configuration))
        if configuration.configFileLoaded {
            logger.debug("read config \(configuration.configFile)")
        }
        logIgnoredPort(configuration, acquired: acquired, logger: logger)
        let controlPlane = ControlPlaneConfiguration(serverVersion: GatewayVersion.current, secret: .none)  // take() sets it
        let info = ServerInfo(
            pid: Int(getpid()), urls: acquired.urls, profile: configuration.profile,
            listenerSource: acquired.source.rawValue, listenerNames: acquired.listeners.compactMap(\.name),
            startedAtMs: ControlPlaneSession.monotonicMs(),
            presence: PresenceBoard(gateway: .thisHost(version: GatewayVersion.current)),
            stateDirectory: configuration.stateDirectory)
        var server = ServerConfiguration(controlPlane: controlPlane, info: info)
        server.take(configuration)
        return .success(
            PreparedGateway(
                acquired: acquired, stored: stored, configuration: configuration, options: command.options,
                logLevelFlag: command.logLevel,
                server: server, logger: logger))
    }

    /// The lock, with `--force` when asked. On a conflict, the contract's error line and then the
    /// hints that name the holder; the error is reported here.
    private static func acquireLock(
        _ configuration: GatewayConfiguration, activation: SystemdActivation, force: Bool, logger: Logger
    ) throws(GatewayLockError) -> GatewayLock.Acquired {
        let request = configuration.lockRequest
        do {
            return try GatewayLock.acquire(request, activation: activation, logger: logger)
        } catch where error.kind == .alreadyListening {
            var forceRefused = false
            if force {
                switch ForcedTakeover.release(port: request.port, logger: logger) {
                case .portReleased:
                    do {
                        return try GatewayLock.acquire(request, activation: activation, logger: logger)
                    } catch {
                        printError(error.description)
                        throw error
                    }
                case .refused:
                    forceRefused = true
                }
            }
            reportConflict(error, port: request.port, forceRefused: forceRefused)
            throw error
        } catch {
            printError(error.description)
            for line in BindHints.lines(error, address: request.address.description, port: request.port) { printError(line) }
            throw error
        }
    }

    /// The contract's error line, then the hints that name the holder.
    private static func reportConflict(_ error: GatewayLockError, port: Int, forceRefused: Bool) {
        printError(error.description)
        let lookup = PortHolder.lookup(port: port, firstHolderOnly: true)
        for line in ConflictHints.lines(port: port, lookup: lookup, forceRefused: forceRefused) {
            printError(line)
        }
    }

    /// Logging, once: the level from --log-level, else OPENCLAW_LOG_LEVEL, else info.
    /// `--log-level` > OPENCLAW_LOG_LEVEL > the file's `logging.level` > info; at start and at
    /// each reload.
    static func logLevel(flag: String?, configuration: GatewayConfiguration) -> Logger.Level {
        flag.flatMap(Logger.Level.init(rawValue:))
            ?? getenv("OPENCLAW_LOG_LEVEL").flatMap { Logger.Level(rawValue: String(cString: $0)) }
            ?? configuration.fileLogLevel.flatMap(Logger.Level.init(rawValue:)) ?? .info
    }

    private static func bootstrapLogging(flag: String?, environment: [String: String]) {
        let level = flag.flatMap(Logger.Level.init(rawValue:))
            ?? environment["OPENCLAW_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        GatewayLogHandler.bootstrap(level: level, environment: environment)
    }

    /// A passed socket wins over --port / OPENCLAW_GATEWAY_PORT; say so when they differ.
    private static func logIgnoredPort(_ configuration: GatewayConfiguration, acquired: GatewayLock.Acquired, logger: Logger) {
        guard acquired.source == .systemd,
            configuration.portOrigin == .flag || configuration.portOrigin == .environment,
            let passedPort = acquired.listeners.first?.port, passedPort != configuration.port
        else { return }
        logger.notice(
            "\(configuration.portOrigin.rawValue) \(configuration.port) ignored: serving the socket passed by systemd on port \(passedPort)")
    }
}

/// The gateway once it holds its listeners: what is left is to serve them.
struct PreparedGateway: Sendable {
    let acquired: GatewayLock.Acquired
    /// What a restart left in the fd store, for the handover to take back.
    let stored: [SystemdActivation.PassedSocket]
    let configuration: GatewayConfiguration
    /// The command line's part of the configuration, resolved again at each reload.
    let options: CommandLineOptions
    let logLevelFlag: String?
    let server: ServerConfiguration
    let logger: Logger

    /// 3. The server, on the fds the lock handed over. On the main thread, before Swift
    /// concurrency starts: the event loops take the listeners at once, so a connection already
    /// waiting (the one that made systemd start us) is answered while the lifecycle gets going
    /// (its thread pool, signal handlers and service group take about 0.6 ms here).
    func serve() -> ServingGateway {
        raiseFileLimit()
        // Room for every connection and, at a restart, its duplicate and its successor's copy.
        reserveFileTable(fds: 2 * self.server.maxConnections + 64, using: acquired.listeners.first?.fd)
        // The loops' threads take no process signal: they start from the main thread, whose mask
        // they would inherit, and SIGTERM/SIGINT belong to ServiceLifecycle's handler (Dispatch's
        // own threads block them the same way).
        let group = withProcessSignalsBlocked { MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount) }
        let server = GatewayServer(group: group, configuration: self.server, logger: logger)
        let adoption = server.adopt(listeningSockets: acquired.listeners.map(\.fd))
        return ServingGateway(prepared: self, group: group, server: server, adoption: adoption)
    }
}

/// The gateway while its event loops serve: 4. the lifecycle (READY once every listener serves,
/// the watchdog, graceful shutdown on SIGTERM/SIGINT).
struct ServingGateway: Sendable {
    let prepared: PreparedGateway
    let group: MultiThreadedEventLoopGroup
    let server: GatewayServer
    /// Succeeds once every listener serves (``GatewayServer/adopt(listeningSockets:)``).
    let adoption: EventLoopFuture<Void>

    /// Runs until shutdown; returns the exit status.
    func run() async -> Int32 {
        let logger = prepared.logger
        let notifier = SystemdNotifier(logger: logger)
        // ServiceGroup shuts services down in reverse order: the gateway first, the watchdog last.
        // Each gets a name: without one ServiceLifecycle names it "\(service)", which reflects the
        // whole service (server, group, logger) through runtime conformance scans, about 0.5 ms of
        // every start.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let interval = notifier.watchdogInterval() {
            services.append(
                .init(
                    service: WatchdogService(notifier: notifier, intervalMicroseconds: interval),
                    successTerminationBehavior: .gracefullyShutdownGroup,
                    serviceName: "watchdog"))
        }
        let server = self.server
        let options = prepared.options
        let logLevelFlag = prepared.logLevelFlag
        let reloader = ConfigurationReloader(
            current: prepared.configuration, notifier: notifier, logger: logger,
            resolve: { () throws(ConfigurationError) in
                try GatewayConfiguration.resolve(options, environment: processEnvironment())
            },
            apply: { configuration, outcome in
                GatewayLogHandler.setLevel(
                    GatewayRunner.logLevel(flag: logLevelFlag, configuration: configuration))
                var live = server.configuration
                live.take(configuration)
                live.info.configGeneration = outcome.generation
                live.info.lastReload = outcome.name
                let ended = server.reconfigure(live)
                if ended > 0 { logger.info("gateway auth changed: \(ended) connection(s) told to reconnect (4001)") }
            })
        let stopCause = StopCauseRecord()
        let listenerSource = prepared.acquired.source
        services.append(
            .init(
                service: ReloadService(
                    reloader: reloader, logger: logger,
                    followUp: { changes, configuration in
                        await Self.restartFollowUp(
                            changes, configuration: configuration, listenerSource: listenerSource, stopCause: stopCause,
                            logger: logger)
                    }),
                successTerminationBehavior: .gracefullyShutdownGroup,
                serviceName: "reload"))
        services.append(
            .init(
                service: GatewayService(
                    .init(
                        server: server, adoption: adoption, stored: prepared.stored, urls: prepared.acquired.urls,
                        origin: Self.origin(of: prepared.acquired), lockURL: prepared.configuration.lockRequest.url,
                        secret: prepared.configuration.auth.secret, notifier: notifier, stopCause: stopCause),
                    logger: logger),
                successTerminationBehavior: .gracefullyShutdownGroup,
                failureTerminationBehavior: .gracefullyShutdownGroup,
                serviceName: "gateway"))
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))

        var status: Int32 = 0
        do {
            try await serviceGroup.run()
        } catch let error as GatewayLockError {
            printError(error.description)
            status = GatewayLockError.exitStatus
        } catch {
            printError("openclaw-gateway: \(error)")
            status = 1
        }
        // After a handover the sessions' channels are open still, and the next process waits
        // for this one to exit: the kernel closes their fds at exit, faster than NIO one by one.
        if !server.holdsHandedOverChannels {
            try? await group.shutdownGracefully()
        }
        if status == 0 && stopCause.value == .restartForConfiguration {
            status = RestartHandover.restartExitStatus
        }
        return status
    }

    /// Where the listeners came from, for the log and systemd's STATUS: the socket unit when
    /// systemd runs us as a service (FileDescriptorName= replaces the unit's name with "gateway",
    /// so the name alone does not say which unit); the fd names otherwise (systemd-socket-activate).
    static func origin(of acquired: GatewayLock.Acquired) -> String {
        switch acquired.source {
        case .systemd:
            let names = Set(acquired.listeners.compactMap(\.name)).sorted().joined(separator: ", ")
            return "socket from systemd: \(SystemdUnit.socketUnit() ?? names)"
        case .bound:
            return "bound by this process"
        }
    }

    /// After a reload: whether its changes call for a restart (``ReloadSettings/restartKeys(_:)``)
    /// that can happen. Only under a service manager that starts the gateway again after
    /// ``RestartHandover/restartExitStatus`` (the units' `RestartForceExitStatus=`); the
    /// listener's keys only when this process bound it (systemd's socket has its own).
    static func restartFollowUp(
        _ changes: ConfigurationChanges, configuration: GatewayConfiguration, listenerSource: GatewayLock.Source,
        stopCause: StopCauseRecord, logger: Logger
    ) async -> ReloadFollowUp {
        var keys = configuration.reload.restartKeys(changes)
        // A manual launch: the reload's own line said a restart is needed.
        guard !keys.isEmpty, FileDescriptorStore().isAvailable else { return .carryOn }
        let mode = "gateway.reload.mode \(configuration.reload.mode.rawValue)"
        if listenerSource == .systemd {
            let listenerKeys = keys.filter { changes.needRestart.contains($0) }
            if !listenerKeys.isEmpty {
                logger.notice(
                    "\(listenerKeys.joined(separator: ", ")) not taken up: the listener is systemd's (\(SystemdUnit.socketUnit() ?? "its socket unit")), whose ListenStream= decides; a restart would not change it")
                keys.removeAll { listenerKeys.contains($0) }
                guard !keys.isEmpty else { return .carryOn }
            }
        }
        if let refusal = await RestartHandover.selfRestartRefusal() {
            logger.notice("restart needed for \(keys.joined(separator: ", ")) (\(mode)), not done: \(refusal)")
            return .carryOn
        }
        stopCause.value = .restartForConfiguration
        logger.notice(
            "restarting to take up \(keys.joined(separator: ", ")) (\(mode)): exit \(RestartHandover.restartExitStatus), systemd starts the gateway again and the sessions are handed over")
        return .restart
    }
}

/// Runs `body` with every asynchronous signal blocked in this thread, so the threads it starts
/// inherit that mask; the synchronous ones (a fault, SIGSYS) stay deliverable for the crash
/// handler, as in Swift's own thread pool.
func withProcessSignalsBlocked<T>(_ body: () -> T) -> T {
    var blocked = sigset_t()
    sigfillset(&blocked)
    for signal in [SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV, SIGPIPE, SIGPROF, SIGSYS] {
        sigdelset(&blocked, signal)
    }
    var previous = sigset_t()
    pthread_sigmask(SIG_BLOCK, &blocked, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    return body()
}

/// Grows this process's fd table to hold `fds` descriptors now, while it has one thread: the kernel
/// grows it by doubling as fds are opened, and once other threads share it each doubling waits for
/// an RCU grace period (synchronize_rcu), several milliseconds. A restart receiving 1,000 sessions
/// spent 61 ms in recvmsg that way. Costs 8 bytes of kernel memory per slot, no user memory.
func reserveFileTable(fds: Int, using fd: Int32?) {
    var limit = rlimit()
    guard let fd, getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
    let highest = Int32(clamping: min(fds, Int(clamping: limit.rlim_cur)) - 1)
    // never over an open fd: dup2 would close it
    guard highest > fd, fcntl(highest, F_GETFD) == -1, dup2(fd, highest) == highest else { return }
    close(highest)
}

/// Each connection is an fd: raise the soft RLIMIT_NOFILE to the hard limit, as daemons do (the
/// soft default of 1024 would cap the gateway below its own --max-connections).
func raiseFileLimit() {
    var limit = rlimit()
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    guard getrlimit(resource, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    setrlimit(resource, &limit)
}

func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// The process environment as a dictionary (the environ block).
func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let pair = String(cString: entry)
        if let equals = pair.firstIndex(of: "=") {
            result[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        pointer += 1
    }
    return result
}

extension ServerConfiguration {
    /// What the configuration decides, at start and at each reload: the secret, browser origins,
    /// the failed-auth limit, trusted proxies, the file `config.get` shows, and the limits (for
    /// connections set up after it).
    mutating func take(_ configuration: GatewayConfiguration) {
        controlPlane.secret = configuration.auth.secret
        allowedOrigins = configuration.allowedOrigins
        let limit = AuthRateLimit.upstreamDefaults
        authRateLimit = AuthRateLimit(
            maxAttempts: configuration.rateLimit.maxAttempts ?? limit.maxAttempts,
            windowMs: configuration.rateLimit.windowMs ?? limit.windowMs,
            lockoutMs: configuration.rateLimit.lockoutMs ?? limit.lockoutMs,
            exemptLoopback: configuration.rateLimit.exemptLoopback ?? limit.exemptLoopback)
        trustedProxies = configuration.trustedProxies
        info.configFile = ConfigFileSource(path: configuration.configFile, contents: configuration.configFileContents)
        let limits = configuration.limits
        func value(_ key: Limits.Key) -> Int { limits[key] ?? key.defaultValue }
        maxConnections = value(.maxConnections)
        headerReadTimeout = .milliseconds(Int64(value(.headerTimeoutMs)))
        maxHeaderBytes = value(.maxHeaderBytes)
        controlPlane.maxPayload = value(.maxPayload)
        controlPlane.maxBufferedBytes = value(.maxBufferedBytes)
        controlPlane.handshakeTimeoutMs = value(.handshakeTimeoutMs)
        controlPlane.tickIntervalMs = value(.tickIntervalMs)
    }
}

extension GatewayConfiguration.Auth {
    /// The control plane's name for the same secret.
    var secret: SharedSecret {
        switch self {
        case .none: .none
        case .token(let token): .token(token)
        case .password(let password): .password(password)
        }
    }
}
