import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import GatewayProtocol
import IPRange

#if canImport(Glibc)
import Glibc
#endif

/// How the server behaves; every limit in one value.
public struct ServerConfiguration: Sendable {
    /// The control plane: identity, token, frame and buffer limits, tick and handshake timing.
    public var controlPlane: ControlPlaneConfiguration
    /// What the `status` method reports about this process.
    public var info: ServerInfo
    /// Browser origins allowed besides the gateway's own loopback origins.
    public var allowedOrigins: [String] = []
    /// listen() backlog applied after adoption (NIO lowers adopted sockets to 128).
    public var backlog: Int32 = 4096
    /// Open connections at most; beyond, HTTP 503.
    public var maxConnections: Int = Self.defaultMaxConnections
    /// A request's headers must arrive within this time (slow clients cannot pin connections).
    public var headerReadTimeout: TimeAmount = .milliseconds(Int64(Self.defaultHeaderReadTimeoutMs))
    /// All header lines of a request together, bytes; larger requests get 400 and are closed.
    public var maxHeaderBytes: Int = Self.defaultMaxHeaderBytes

    /// The defaults of the limits `run` has flags for (the flags and their help read them).
    public static let defaultMaxConnections = 1024
    public static let defaultHeaderReadTimeoutMs = 10_000
    public static let defaultMaxHeaderBytes = 16 * 1024
    /// How long a client has to answer our close frame before the connection is dropped.
    public var closeHandshakeTimeout: TimeAmount = .seconds(2)
    /// Failed tokens before a client must wait (upstream's gateway.auth.rateLimit).
    public var authRateLimit: AuthRateLimit = .upstreamDefaults
    /// Proxies whose forwarding headers name the client (upstream's gateway.trustedProxies).
    public var trustedProxies: [IPRange] = []

    public init(controlPlane: ControlPlaneConfiguration, info: ServerInfo) {
        self.controlPlane = controlPlane
        self.info = info
    }
}

/// Serves HTTP (health, readiness) and the WebSocket endpoint on listening sockets it is handed.
///
/// It never binds and never asks where a socket came from: it adopts fds, and on shutdown closes
/// them first (the port is free at once), then asks every connection to finish — WebSockets get
/// close code 1012 "service restart" — and drops what is left when the grace period ends.
public final class GatewayServer: Sendable {
    let group: EventLoopGroup
    /// What new connections get; ``reconfigure(_:)`` replaces it.
    private let live: NIOLockedValueBox<LiveConfiguration>
    let logger: Logger
    let connections = ConnectionRegistry()
    /// Connections went to the next process and are still open here (``finishHandOver(_:sent:)``).
    let handedOverChannels = NIOLockedValueBox(false)
    private let serverChannels = NIOLockedValueBox<[Channel]>([])
    let rateLimiter: AuthRateLimiter
    /// One rate-limited log line per refusal.
    let refusals: RefusalLog

    /// A `presence` broadcast is scheduled.
    private let presenceBroadcastPending = NIOLockedValueBox(false)
    /// Changes of presence within this window go out as one `presence` event.
    static let presenceWindow: TimeAmount = .seconds(1)

    public init(group: EventLoopGroup, configuration: ServerConfiguration, logger: Logger) {
        self.group = group
        self.live = NIOLockedValueBox(LiveConfiguration(configuration))
        self.logger = logger
        self.rateLimiter = AuthRateLimiter(configuration.authRateLimit)
        self.refusals = RefusalLog(logger: logger)
        configuration.info.presence.observe { [weak self] in self?.presenceChanged() }
    }

    /// The configuration in force: what a connection opened now gets.
    public var configuration: ServerConfiguration { live.withLockedValue { $0.configuration } }

    /// A reload: connections opened from now on get `new` (secret, allowed origins, rate limit,
    /// trusted proxies, what `status` and `config.get` report). Open connections keep theirs, except
    /// that when the token or password changed, every session ends with the `shutdown` event and
    /// 4001 "gateway auth changed" (upstream's close for it): what it presented no longer holds.
    /// Listeners, the backlog and the connection cap stay as adopted. Returns how many sessions
    /// were told to end.
    @discardableResult
    public func reconfigure(_ new: ServerConfiguration) -> Int {
        let old = live.withLockedValue { live in
            defer { live = LiveConfiguration(new) }
            return live.configuration
        }
        rateLimiter.limit = new.authRateLimit
        guard new.controlPlane.secret != old.controlPlane.secret, new.controlPlane.secret != .none else { return 0 }
        let open = connections.all
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(CredentialsChanged())
        }
        return open.count
    }

    /// Clients came or went: every connected session gets a `presence` event with the whole list,
    /// as upstream broadcasts it, but at most one per ``presenceWindow`` (the list is encoded once
    /// per broadcast, not once per change and client), and none to a client that is not reading
    /// (upstream's dropIfSlow).
    private func presenceChanged() {
        let schedule = presenceBroadcastPending.withLockedValue { pending in
            defer { pending = true }
            return !pending
        }
        guard schedule else { return }
        group.next().scheduleTask(in: Self.presenceWindow) { [self] in
            presenceBroadcastPending.withLockedValue { $0 = false }
            let (payload, version) = configuration.info.presence.eventPayload(now: ControlPlaneSession.nowMs())
            let change = PresenceChanged(payload: payload, version: version)
            for channel in connections.all {
                channel.pipeline.fireUserInboundEventTriggered(change)
            }
        }
    }

    /// Open client connections (HTTP and WebSocket).
    public var connectionCount: Int { connections.count }

    /// Starts serving listening sockets and returns at once: each is registered on its event loop
    /// right away, so a connection waiting in the backlog is answered without waiting for the
    /// caller's next steps. The future succeeds once every socket serves, or fails with the first
    /// error. Ownership of each fd passes to the server, which closes it.
    public func adopt(listeningSockets fds: [Int32]) -> EventLoopFuture<Void> {
        let adopted = fds.map { fd in
            makeBootstrap().withBoundSocket(fd).flatMap { channel in
                // On the channel's loop: last in the pipeline, behind NIO's accept handler, which
                // forwards what fails there.
                channel.pipeline.addHandler(AcceptErrorLogger(logger: self.logger), position: .last).map {
                    self.serverChannels.withLockedValue { $0.append(channel) }
                    // NIO listen()s an adopted socket with a backlog of 128; restore ours.
                    if Glibc.listen(fd, self.configuration.backlog) != 0 {
                        self.logger.warning("could not restore the listen backlog on fd \(fd): \(String(cString: strerror(errno)))")
                    }
                }
            }
        }
        return EventLoopFuture.whenAllComplete(adopted, on: group.next()).flatMapThrowing { results in
            for case .failure(let error) in results { throw error }
        }
    }

    /// Closes every listening socket: no new connection is accepted and, unless another process
    /// (systemd) holds a copy, the port is free.
    public func closeListeners() async {
        let channels = serverChannels.withLockedValue { channels in
            defer { channels = [] }
            return channels
        }
        // Each listener stops accepting, waits until every connection it accepted is set up, and
        // closes: NIO sets a connection up on the loop it is given, hands it back to the listener's
        // loop, and closes it unanswered when the listener closed in between. All of it on the
        // listener's loop: one round trip, as a plain close.
        let closed = channels.map { channel in
            channel.setOption(.autoRead, value: false).flatMap {
                self.connections.whenAcceptedAreSetUp(on: channel.eventLoop, within: Self.setUpWait)
            }.flatMap {
                channel.close()
            }
        }
        for future in closed {
            try? await future.get()
        }
    }

    /// How long closing a listener waits for the connections it accepted to be set up (a setup
    /// takes microseconds; this only bounds a setup that never ends).
    static let setUpWait: TimeAmount = .milliseconds(100)

    /// Asks every open connection to finish (WebSockets: close 1012 "service restart"; HTTP: after
    /// the response in flight) and waits until all are closed or `gracePeriod` has passed, when the
    /// rest are closed hard.
    public func closeConnections(gracePeriod: TimeAmount) async {
        let open = connections.all
        guard !open.isEmpty else { return }
        logger.info("closing \(open.count) connection(s)")
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        let deadline = group.next().scheduleTask(in: gracePeriod) { [connections] in
            for channel in connections.all { channel.close(promise: nil) }
        }
        for channel in open {
            try? await channel.closeFuture.get()
        }
        deadline.cancel()
    }

    private func makeBootstrap() -> ServerBootstrap {
        let configuration = self.configuration
        let live = self.live
        let connections = self.connections
        let rateLimiter = self.rateLimiter
        let refusals = self.refusals
        let logger = self.logger
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: configuration.backlog)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .serverChannelInitializer { channel in
                // Before NIO's accept handler: every connection is counted, and judged against
                // the cap in force, in the order the listener accepts them.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionAdmission(
                            connections: connections,
                            maxConnections: { live.withLockedValue { $0.configuration.maxConnections } }))
                }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SetUpNotice(connections: connections))
                    if connections.isBeyondCap(channel) {
                        let cap = live.withLockedValue { $0.configuration.maxConnections }
                        refusals.refused(.cap, peer: channel.remoteAddress, reason: "too many connections",
                                         detail: ("max", String(cap)))
                        try channel.pipeline.syncOperations.addHandler(ServiceUnavailableHandler())
                        return
                    }
                    do {
                        try Self.configureHTTP(
                            channel: channel, live: live, connections: connections, rateLimiter: rateLimiter, refusals: refusals)
                    } catch {
                        logger.warning("cannot set up a connection: \(error)")
                        throw error
                    }
                }
            }
    }

    private static func configureHTTP(
        channel: Channel, live: NIOLockedValueBox<LiveConfiguration>, connections: ConnectionRegistry,
        rateLimiter: AuthRateLimiter, refusals: RefusalLog
    ) throws {
        let current = live.withLockedValue { $0 }
        let (configuration, origins, hosts) = (current.configuration, current.origins, current.hosts)
        let maxBuffered = configuration.controlPlane.maxBufferedBytes
        try channel.syncOptions?.setOption(.writeBufferWaterMark, value: .init(low: maxBuffered / 2, high: maxBuffered))
        let httpHandler = HTTPHandler(origins: origins, hosts: hosts, refusals: refusals, probeHeaders: current.probeHeaders)
        let idle = IdleStateHandler(readTimeout: configuration.headerReadTimeout)
        let gate = QuiesceGate()
        let boundHandlers = NIOLoopBound((httpHandler, idle, gate), eventLoop: channel.eventLoop)
        let peer = channel.remoteAddress?.ipAddress ?? "?"
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: configuration.controlPlane.maxPayload,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                let allowed = head.uri == "/" && hosts.allows(head, local: channel.localAddress)
                    && origins.allows(head, localPort: channel.localAddress?.port)
                    && head.headers["sec-websocket-key"].count == 1
                    && HTTPHandler.isValidWebSocketKey(head.headers["sec-websocket-key"][0])
                // Refused requests reach HTTPHandler, which answers 421 (Host), 403 (origin) or 400.
                return channel.eventLoop.makeSucceededFuture(allowed ? HTTPHeaders() : nil)
            },
            upgradePipelineHandler: { channel, head in
                // What is in force now: a reload may have come since the request began.
                let configuration = live.withLockedValue { $0.configuration }
                let limiterKey = configuration.authRateLimit.key(
                    for: LimiterClient(channel: channel, head: head), trustedProxies: configuration.trustedProxies)
                return channel.eventLoop.makeCompletedFuture {
                    let session = ControlPlaneSession(
                        configuration: configuration.controlPlane, info: configuration.info, peer: peer,
                        connectionCount: { connections.count },
                        retryAfterMs: { rateLimiter.retryAfterMs(key: limiterKey) })
                    // NIO's upgrader has added the frame encoder, decoder and error handler.
                    try Self.addWebSocketPipeline(
                        channel: channel, session: session, restored: false, configuration: configuration,
                        rateLimiter: rateLimiter, refusals: refusals, limiterKey: limiterKey)
                }
            })
        try channel.pipeline.syncOperations.addHandler(gate)
        try channel.pipeline.syncOperations.addHandler(idle)
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (
                upgraders: [upgrader],
                completionHandler: { context in
                    // After the upgrade: no HTTP handler, no header timeout (the handshake
                    // timeout of the control plane takes over), and no quiesce gate (the upgrade
                    // request was read, so it would only pass every frame through).
                    let (http, idle, gate) = boundHandlers.value
                    for handler in [http, idle, gate] as [RemovableChannelHandler] {
                        context.pipeline.syncOperations.removeHandler(handler, promise: nil)
                    }
                }
            ),
            withErrorHandling: true,
            withOutboundHeaderValidation: true,
            withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: Self.headerLimits(configuration.maxHeaderBytes))
        try channel.pipeline.syncOperations.addHandler(httpHandler)
    }

    /// The one pipeline of a WebSocket connection, whether it was just upgraded (NIO's upgrader
    /// has added the frame encoder, the decoder and its error handler) or carried on from an
    /// earlier process (`restored`: they are added here): the same handlers, the same rules.
    ///
    /// Inbound: FrameSplitter (whole frames only, for a handover) → NIO's frame decoder (frame
    /// size, control frame rules) → RFC6455Conformance (the rest of RFC 6455) → NIO's aggregator
    /// (a message's size) → WebSocketHandler (the control plane).
    static func addWebSocketPipeline(
        channel: Channel, session: ControlPlaneSession, restored: Bool, configuration: ServerConfiguration,
        rateLimiter: AuthRateLimiter, refusals: RefusalLog, limiterKey: String?
    ) throws {
        let pipeline = channel.pipeline.syncOperations
        let maxPayload = configuration.controlPlane.maxPayload
        if restored {
            try pipeline.addHandler(WebSocketFrameEncoder())
            try pipeline.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxPayload)))
            try pipeline.addHandler(WebSocketProtocolErrorHandler())
        }
        let decoder = try pipeline.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)
        try pipeline.addHandler(FrameSplitter(maxFrameSize: maxPayload), position: .before(decoder))
        try pipeline.addHandlers([
            RFC6455Conformance(messageTimeout: .milliseconds(Int64(configuration.controlPlane.handshakeTimeoutMs))),
            // Bounded by bytes (and RFC6455Conformance by time), not by how many fragments.
            NIOWebSocketFrameAggregator(
                minNonFinalFragmentSize: 0,
                maxAccumulatedFrameCount: .max,
                maxAccumulatedFrameSize: maxPayload),
            WebSocketHandler(
                session: session, configuration: configuration.controlPlane,
                closeHandshakeTimeout: configuration.closeHandshakeTimeout,
                rateLimiter: rateLimiter, refusals: refusals, limiterKey: limiterKey, restored: restored),
        ])
    }

    private static func headerLimits(_ bytes: Int) -> NIOHTTPDecoderLimitConfiguration {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = bytes
        limits.maxHeaderListSize = bytes
        return limits
    }
}

/// A configuration and the policies made from it, made once per reload rather than per request.
struct LiveConfiguration: Sendable {
    let configuration: ServerConfiguration
    let origins: OriginPolicy
    let hosts: HostPolicy
    let probeHeaders: [(String, String)]

    init(_ configuration: ServerConfiguration) {
        self.configuration = configuration
        origins = OriginPolicy(allowedOrigins: configuration.allowedOrigins)
        hosts = HostPolicy(allowedOrigins: configuration.allowedOrigins)
        probeHeaders = [
            (Self.generationHeader, String(configuration.info.configGeneration)),
            (Self.lastReloadHeader, configuration.info.lastReload),
        ]
    }

    public static let generationHeader = "X-OpenClaw-Config-Generation"
    public static let lastReloadHeader = "X-OpenClaw-Last-Reload"
}

/// Every open client connection, so shutdown can reach them all, and which of those a listener
/// accepted that are not set up yet.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        let channel: Channel
        /// Accepted while the cap was reached: answered 503 and closed.
        let beyondCap: Bool
    }

    private struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        /// Accepted, not yet active: NIO is still setting them up.
        var settingUp: Set<ObjectIdentifier> = []
        /// Waiting for `settingUp` to empty.
        var waiters: [EventLoopPromise<Void>] = []

        /// `key` is set up or gone; the waiters to complete when it was the last one being set up.
        mutating func settled(_ key: ObjectIdentifier) -> [EventLoopPromise<Void>] {
            guard settingUp.remove(key) != nil, settingUp.isEmpty else { return [] }
            defer { waiters = [] }
            return waiters
        }
    }

    private let state = NIOLockedValueBox(State())

    /// A connection a listener accepted: counted as open until it closes, and as being set up
    /// until ``setUp(_:)``. It is beyond the cap when `maxConnections` are open already.
    func admit(_ channel: Channel, maxConnections: Int) {
        insert(channel, settingUp: true, maxConnections: maxConnections)
    }

    /// A connection that did not come from a listener (a session handed over by a restart).
    func add(_ channel: Channel) {
        insert(channel, settingUp: false, maxConnections: .max)
    }

    private func insert(_ channel: Channel, settingUp: Bool, maxConnections: Int) {
        let key = ObjectIdentifier(channel)
        state.withLockedValue { state in
            let beyondCap = state.entries.count >= maxConnections
            state.entries[key] = Entry(channel: channel, beyondCap: beyondCap)
            if settingUp { state.settingUp.insert(key) }
        }
        channel.closeFuture.whenComplete { [self] _ in
            let waiters = state.withLockedValue { state in
                state.entries.removeValue(forKey: key)
                return state.settled(key)
            }
            for waiter in waiters { waiter.succeed() }
        }
    }

    /// `channel` went to the next process: it is no longer this one's to count or close.
    func detach(_ channel: Channel) {
        let key = ObjectIdentifier(channel)
        let waiters = state.withLockedValue { state in
            state.entries.removeValue(forKey: key)
            return state.settled(key)
        }
        for waiter in waiters { waiter.succeed() }
    }

    /// `channel` is active: NIO has handed it back to its listener and registered it.
    func setUp(_ channel: Channel) {
        let waiters = state.withLockedValue { $0.settled(ObjectIdentifier(channel)) }
        for waiter in waiters { waiter.succeed() }
    }

    /// Succeeds on `loop` once no accepted connection is being set up, or after `limit`.
    func whenAcceptedAreSetUp(on loop: EventLoop, within limit: TimeAmount) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let idle = state.withLockedValue { state -> Bool in
            if state.settingUp.isEmpty { return true }
            state.waiters.append(promise)
            return false
        }
        if idle {
            promise.succeed()
        } else {
            let timeout = loop.scheduleTask(in: limit) { promise.succeed() }  // a second success is ignored
            promise.futureResult.whenComplete { _ in timeout.cancel() }
        }
        return promise.futureResult
    }

    func isBeyondCap(_ channel: Channel) -> Bool {
        state.withLockedValue { $0.entries[ObjectIdentifier(channel)]?.beyondCap ?? false }
    }

    var all: [Channel] { state.withLockedValue { $0.entries.values.map(\.channel) } }
    var count: Int { state.withLockedValue { $0.entries.count } }
}

/// First in every accepted connection's pipeline: tells the registry when the connection becomes
/// active (NIO has handed it back to its listener), then leaves the pipeline.
final class SetUpNotice: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny

    let connections: ConnectionRegistry

    init(connections: ConnectionRegistry) {
        self.connections = connections
    }

    func channelActive(context: ChannelHandlerContext) {
        connections.setUp(context.channel)
        context.fireChannelActive()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// On a listening socket, ahead of NIO's accept handler: registers each accepted connection when
/// it is accepted, in accept order, on the listener's loop. Counted later — in the connection's
/// initializer, on whichever loop it was given — a connection could be judged against the cap
/// before one accepted earlier, and shutdown could miss a connection accepted but not yet set up
/// (closing a listener happens on this loop, so every connection it accepted is registered by then).
final class ConnectionAdmission: ChannelInboundHandler, Sendable {
    typealias InboundIn = Channel

    let connections: ConnectionRegistry
    /// The cap in force when a connection is accepted (a reload may change it).
    let maxConnections: @Sendable () -> Int

    init(connections: ConnectionRegistry, maxConnections: @escaping @Sendable () -> Int) {
        self.connections = connections
        self.maxConnections = maxConnections
    }

    convenience init(connections: ConnectionRegistry, maxConnections: Int) {
        self.init(connections: connections, maxConnections: { maxConnections })
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connections.admit(unwrapInboundIn(data), maxConnections: maxConnections())
        context.fireChannelRead(data)
    }
}

/// Logs what goes wrong on a listening socket (accept errors: EMFILE and the like) instead of
/// letting it pass unseen.
final class AcceptErrorLogger: ChannelInboundHandler, Sendable {
    typealias InboundIn = Channel

    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.warning("error on listening socket \(context.channel.localAddress.map { "\($0)" } ?? "?"): \(error)")
        context.fireErrorCaught(error)
    }
}

/// Beyond the connection cap: 503 and close, without reading the request.
final class ServiceUnavailableHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func handlerAdded(context: ChannelHandlerContext) {
        let body = #"{"ok":false,"error":"too many connections"}"#
        let response = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nRetry-After: 1\r\nConnection: close\r\n\r\n\(body)"
        let channel = context.channel
        // Half-close after the answer and drain what the client sends: closing with its request
        // unread would reset the connection before the client reads the 503.
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: response))).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
        context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}  // drained
}

/// Holds back shutdown for a connection that was accepted but has not sent a byte yet: its request
/// may be on the way (sent right before the listener closed). Closing it at once would fail a
/// client that did nothing wrong — seen in the restart-under-load test. Such a connection gets
/// `window` to send its request; the request is then answered and the connection closed.
final class QuiesceGate: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let window: TimeAmount
    private var seenBytes = false
    private var held: Scheduled<Void>?

    init(window: TimeAmount = .milliseconds(500)) {
        self.window = window
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        seenBytes = true
        context.fireChannelRead(data)
        if let held {
            // The request came: let the HTTP layer finish it and close.
            held.cancel()
            self.held = nil
            context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent, !seenBytes else {
            return context.fireUserInboundEventTriggered(event)
        }
        let channel = context.channel
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        held = context.eventLoop.scheduleTask(in: window) {
            let (gate, context) = bound.value
            gate.held = nil
            guard channel.isActive else { return }
            context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        held?.cancel()
    }
}
