import GatewayProtocol
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket

#if canImport(Glibc)
import Glibc
#endif

/// One WebSocket connection crossing a restart: its socket and what the next process needs to
/// carry it on. Where the fd is kept in between (systemd's fd store) is not the server's business.
public struct HandedOverConnection: Sendable {
    /// A connected TCP socket. Owned by whoever holds this value, except for one that
    /// ``GatewayServer/handOver(flushTimeout:)`` gives: that is its channel's own fd, lent until
    /// ``GatewayServer/finishHandOver(_:sent:)``, and never to be closed by the borrower.
    public let fd: Int32
    public let state: ConnectionState
    /// The frozen channel the fd belongs to, for a connection leaving this process.
    let channel: Channel?

    public init(fd: Int32, state: ConnectionState) {
        self.init(fd: fd, state: state, channel: nil)
    }

    init(fd: Int32, state: ConnectionState, channel: Channel?) {
        self.fd = fd
        self.state = state
        self.channel = channel
    }
}

public struct ConnectionState: Sendable, Equatable {
    public var session: ControlPlaneSession.Snapshot
    /// Bytes the client sent that were read but not yet acted on (half a frame, say).
    public var undecoded: [UInt8]
    /// The client's address, for the per-peer auth rate limit.
    public var peer: String

    public init(session: ControlPlaneSession.Snapshot, undecoded: [UInt8], peer: String) {
        self.session = session
        self.undecoded = undecoded
        self.peer = peer
    }
}

extension GatewayServer {
    /// Takes the open WebSocket sessions out of this process for a restart: each stops reading
    /// and sends what it already queued (at most `flushTimeout`); then its socket, found by its
    /// addresses, and its state are lent to the caller, to send to the next process. The channel
    /// stays open and frozen until ``finishHandOver(_:sent:)`` says which went. Connections that
    /// cannot go (HTTP, closing, not draining) stay, for ``closeConnections(gracePeriod:)``.
    ///
    /// The clients wait for all of it, so it runs as one task per event loop, for all of that
    /// loop's connections at once, without a hop per connection. No socket is duplicated and no
    /// channel closed here: closing 10,000 channels took NIO about 100 ms, and duplicates double
    /// the process's fds at the moment it holds the most.
    public func handOver(flushTimeout: TimeAmount) async -> [HandedOverConnection] {
        var phases = PhaseClock()
        let channels = connections.all
        guard !channels.isEmpty else { return [] }
        // The sockets by their addresses, read once for every loop (NIO does not tell a channel's fd).
        let index = SocketIndex.ofThisProcess()
        phases.lap("find sockets")
        let logger = self.logger
        let perLoop = Self.byEventLoop(channels, \.eventLoop).map { loop, channels in
            loop.flatSubmit {
                Self.handOver(channels, on: loop, index: index, flushTimeout: flushTimeout, logger: logger)
            }
        }
        var handed: [HandedOverConnection] = []
        for future in perLoop {
            if let some = try? await future.get() { handed += some }
        }
        phases.lap("freeze and drain")
        logger.debug("handover of \(handed.count) connection(s): \(phases)")
        return handed
    }

    /// The end of ``handOver(flushTimeout:)``: the first `sent` of `handed` are in the next
    /// process's hands now. Those channels are no longer this process's: they leave the count
    /// and stay open and frozen until it exits (their fds close with it; NIO never touches the
    /// sockets again, so the clients see nothing). The others serve again, so that
    /// ``closeConnections(gracePeriod:)`` closes them with the event and 1012.
    public func finishHandOver(_ handed: [HandedOverConnection], sent: Int) async {
        for connection in handed.prefix(sent) {
            if let channel = connection.channel { connections.detach(channel) }
        }
        if sent > 0 { handedOverChannels.withLockedValue { $0 = true } }
        let staying = handed.dropFirst(sent).compactMap(\.channel)
        let thawing = Self.byEventLoop(staying, \.eventLoop).map { loop, channels in
            loop.submit {
                for channel in channels { Self.thaw(channel) }
            }
        }
        for future in thawing { try? await future.get() }
    }

    /// Connections went to the next process and are still open here: exit without closing
    /// them (the event loops' shutdown would close each, one by one).
    public var holdsHandedOverChannels: Bool { handedOverChannels.withLockedValue { $0 } }

    /// ``handOver(flushTimeout:)`` for the connections of one loop, on that loop.
    private static func handOver(
        _ channels: [Channel], on loop: EventLoop, index: [SocketIndex.Key: Int32], flushTimeout: TimeAmount, logger: Logger
    ) -> EventLoopFuture<[HandedOverConnection]> {
        var frozen: [Frozen] = []
        for channel in channels {
            let pipeline = channel.pipeline.syncOperations
            guard channel.isActive,
                let handler = try? pipeline.handler(type: WebSocketHandler.self),
                let splitter = try? pipeline.handler(type: FrameSplitter.self),
                let context = try? pipeline.context(handler: handler),
                let encoder = try? pipeline.context(handlerType: WebSocketFrameEncoder.self),
                let snapshot = handler.freeze(context: context)
            else { continue }
            // In the same event loop turn as freeze: nothing is read and then dropped.
            try? channel.syncOptions?.setOption(.autoRead, value: false)
            // An empty write below the frame encoder completes once every frame queued before
            // it has reached the socket (writes complete in order): no promise per message.
            let flushed = encoder.writeAndFlush(NIOAny(ByteBuffer()))
            let state = ConnectionState(
                session: snapshot, undecoded: splitter.undecodedBytes, peer: channel.remoteAddress?.ipAddress ?? "?")
            frozen.append(Frozen(channel: channel, state: state, flushed: flushed))
        }
        let items = frozen
        return drained(items.map(\.flushed), within: flushTimeout, on: loop).map { drained in
            var handed: [HandedOverConnection] = []
            for (item, isDrained) in zip(items, drained) {
                let connId = item.state.session.connId
                guard isDrained else {
                    logger.notice("connection \(connId) did not drain its output in time; closing it instead")
                    thaw(item.channel)
                    continue
                }
                guard let key = SocketIndex.key(local: item.channel.localAddress, remote: item.channel.remoteAddress),
                    let fd = index[key]
                else {
                    logger.notice("connection \(connId): socket not found; closing it instead")
                    thaw(item.channel)
                    continue
                }
                handed.append(HandedOverConnection(fd: fd, state: item.state, channel: item.channel))
            }
            return handed
        }
    }

    /// A connection stopped for a handover: what it carries on with, and when what it had
    /// queued has reached its socket.
    private struct Frozen: Sendable {
        let channel: Channel
        let state: ConnectionState
        let flushed: EventLoopFuture<Void>
    }

    /// A frozen connection stays after all (on its loop): it reads and serves again, so that the
    /// shutdown that follows (``closeConnections(gracePeriod:)``) closes it with the event and
    /// 1012 like any other.
    private static func thaw(_ channel: Channel) {
        let pipeline = channel.pipeline.syncOperations
        guard let handler = try? pipeline.handler(type: WebSocketHandler.self),
            let context = try? pipeline.context(handler: handler)
        else { return }
        handler.thaw(context: context)
        try? channel.syncOptions?.setOption(.autoRead, value: true)
    }

    /// A handed-over connection adopted by this process but not reading yet (see ``restore(_:)``).
    public struct Restored: Sendable {
        let channel: Channel
        let undecoded: [UInt8]
    }

    /// Carries on connections an earlier process handed over: adopts each socket with a WebSocket
    /// pipeline (no HTTP upgrade). They read nothing until ``resume(_:)``, so that until then the
    /// clients' bytes stay in the sockets for whoever holds other copies of them. Each result is
    /// in the order of `connections`; the server owns the fd of each that succeeded. All are
    /// adopted at once and awaited once: the clients wait for the last.
    ///
    /// The connections are dealt out to the event loops in turn, and each loop adopts its share in
    /// one task: every channel is made and set up on its own loop, without a hop per connection,
    /// and the loops work side by side (made on the caller's thread, 10,000 channels took a
    /// serial eighth of the adoption's time, plus a task and a wake-up each).
    public func restore(_ connections: [HandedOverConnection]) async -> [Result<Restored, any Error>] {
        guard !connections.isEmpty else { return [] }
        configuration.info.presence.reserveCapacity(forMore: connections.count)
        let loops = Array(group.makeIterator())
        var shares = Array(repeating: [(index: Int, connection: HandedOverConnection)](), count: loops.count)
        for (index, connection) in connections.enumerated() {
            shares[index % loops.count].append((index, connection))
        }
        let adopting = zip(loops, shares).map { loop, share in
            loop.flatSubmit {
                EventLoopFuture.whenAllComplete(share.map { self.restoring($0.connection, on: loop) }, on: loop)
            }
        }
        var results = [Result<Restored, any Error>](repeating: .failure(ChannelError.ioOnClosedChannel), count: connections.count)
        for (share, future) in zip(shares, adopting) {
            let adopted = (try? await future.get()) ?? []  // whenAllComplete never fails
            for (item, result) in zip(share, adopted) { results[item.index] = result }
        }
        return results
    }

    private func restoring(_ connection: HandedOverConnection, on loop: EventLoop) -> EventLoopFuture<Restored> {
        let configuration = self.configuration
        let connections = self.connections
        let rateLimiter = self.rateLimiter
        let refusals = self.refusals
        let maxBuffered = configuration.controlPlane.maxBufferedBytes
        let state = connection.state
        let bootstrap = ClientBootstrap(group: loop)
            // The socket keeps TCP_NODELAY from its accept (`childChannelOption` in
            // `makeBootstrap()`, and in 0.1.0): setting it again is one setsockopt and one future
            // per session (a ninth of an adoption, by perf). enableMPTCP(true) is NIO's only way
            // to drop that default; it does nothing else for a socket that is already connected.
            .enableMPTCP(true)
            .channelInitializer { channel in
                connections.add(channel)
                // The upgrade's headers are gone: a carried-on session counts by its socket, as a
                // client without Origin or forwarding headers would.
                let limiterKey = configuration.authRateLimit.key(
                    for: LimiterClient(channel: channel, head: nil), trustedProxies: configuration.trustedProxies)
                return channel.eventLoop.makeCompletedFuture {
                    // Set here, before the channel registers, rather than as the bootstrap's
                    // options, which are applied one future each (a third of a loop's share of
                    // an adoption, by perf at 10,000).
                    guard let options = channel.syncOptions else { throw ChannelError.operationUnsupported }
                    try options.setOption(.autoRead, value: false)
                    try options.setOption(.allowRemoteHalfClosure, value: false)
                    try options.setOption(.writeBufferWaterMark, value: .init(low: maxBuffered / 2, high: maxBuffered))
                    let session = ControlPlaneSession(
                        restoring: state.session, configuration: configuration.controlPlane, info: configuration.info,
                        peer: state.peer, connectionCount: { connections.count },
                        retryAfterMs: { rateLimiter.retryAfterMs(key: limiterKey) })
                    try Self.addWebSocketPipeline(
                        channel: channel, session: session, restored: true, configuration: configuration,
                        rateLimiter: rateLimiter, refusals: refusals, limiterKey: limiterKey)
                }
            }
        return bootstrap.withConnectedSocket(connection.fd).map { Restored(channel: $0, undecoded: state.undecoded) }
    }

    /// Starts restored connections: feeds each the bytes its previous process had read but not
    /// acted on, then reads from its socket. One task per event loop for all of its connections.
    public func resume(_ restored: [Restored]) async {
        let resuming = Self.byEventLoop(restored, \.channel.eventLoop).map { loop, connections in
            loop.submit {
                for connection in connections {
                    let channel = connection.channel
                    if !connection.undecoded.isEmpty {
                        channel.pipeline.syncOperations.fireChannelRead(NIOAny(channel.allocator.buffer(bytes: connection.undecoded)))
                    }
                    try? channel.syncOptions?.setOption(.autoRead, value: true)
                }
            }
        }
        for future in resuming { try? await future.get() }
    }

    /// `items` in groups of one event loop each, for one task per loop instead of one per item.
    private static func byEventLoop<Item>(_ items: [Item], _ loop: (Item) -> EventLoop) -> [(loop: EventLoop, items: [Item])] {
        var groups: [ObjectIdentifier: (loop: EventLoop, items: [Item])] = [:]
        for item in items {
            let itemLoop = loop(item)
            groups[ObjectIdentifier(itemLoop), default: (itemLoop, [])].items.append(item)
        }
        return Array(groups.values)
    }

    /// For each of `futures` (all of `loop`'s channels), whether it succeeded before `timeout`:
    /// the flushes run side by side under one timer, at most `timeout` in all. One timer, not one
    /// per connection: each cancel searches the loop's whole timer heap (see ``LazyTimer``).
    private static func drained(_ futures: [EventLoopFuture<Void>], within timeout: TimeAmount, on loop: EventLoop) -> EventLoopFuture<[Bool]> {
        guard !futures.isEmpty else { return loop.makeSucceededFuture([]) }
        final class Drain {
            var succeeded: [Bool]
            var remaining: Int
            var deadline: Scheduled<Void>?
            let promise: EventLoopPromise<[Bool]>

            init(count: Int, promise: EventLoopPromise<[Bool]>) {
                succeeded = Array(repeating: false, count: count)
                remaining = count
                self.promise = promise
            }

            func finish() {
                guard remaining >= 0 else { return }
                remaining = -1
                deadline?.cancel()
                promise.succeed(succeeded)
            }
        }
        let drain = NIOLoopBound(Drain(count: futures.count, promise: loop.makePromise()), eventLoop: loop)
        drain.value.deadline = loop.scheduleTask(in: timeout) { drain.value.finish() }
        for (index, future) in futures.enumerated() {
            future.hop(to: loop).whenComplete { result in
                let state = drain.value
                guard state.remaining > 0 else { return }
                if case .success = result { state.succeeded[index] = true }
                state.remaining -= 1
                if state.remaining == 0 { state.finish() }
            }
        }
        return drain.value.promise.futureResult
    }
}

/// How long each step of a handover took, for the debug log: `freeze 3 ms, drain 1 ms, …`.
public struct PhaseClock: CustomStringConvertible, Sendable {
    private var last = ContinuousClock.now
    private var laps: [(String, Duration)] = []

    public init() {}

    public mutating func lap(_ name: String) {
        let now = ContinuousClock.now
        laps.append((name, now - last))
        last = now
    }

    public var description: String {
        laps.map { name, duration in
            let ms = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
            return "\(name) \((ms * 10).rounded() / 10) ms"
        }.joined(separator: ", ")
    }
}

/// This process's connected TCP sockets by their two addresses: NIO does not tell a channel's
/// fd, and a connection's (local, remote) pair names exactly one socket.
enum SocketIndex {
    /// One end of a TCP connection: family, address bytes, port.
    struct Endpoint: Hashable, Sendable {
        var family: Int32
        var high: UInt64 = 0
        var low: UInt64 = 0
        var port: UInt16

        init?(_ address: SocketAddress?) {
            switch address {
            case .v4(let v4): self.init(v4.address)
            case .v6(let v6): self.init(v6.address)
            default: return nil
            }
        }

        init(_ address: sockaddr_in) {
            family = AF_INET
            low = UInt64(address.sin_addr.s_addr)
            port = address.sin_port
        }

        init(_ address: sockaddr_in6) {
            family = AF_INET6
            (high, low) = withUnsafeBytes(of: address.sin6_addr) { ($0.loadUnaligned(as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
            port = address.sin6_port
        }

        init?(fd: Int32, _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let rc = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) }
            }
            guard rc == 0 else { return nil }
            switch Int32(storage.ss_family) {
            case AF_INET: self.init(withUnsafeBytes(of: storage) { $0.loadUnaligned(as: sockaddr_in.self) })
            case AF_INET6: self.init(withUnsafeBytes(of: storage) { $0.loadUnaligned(as: sockaddr_in6.self) })
            default: return nil
            }
        }
    }

    struct Key: Hashable, Sendable {
        var local: Endpoint
        var remote: Endpoint
    }

    static func key(local: SocketAddress?, remote: SocketAddress?) -> Key? {
        guard let local = Endpoint(local), let remote = Endpoint(remote) else { return nil }
        return Key(local: local, remote: remote)
    }

    static func ofThisProcess() -> [Key: Int32] {
        var index: [Key: Int32] = [:]
        guard let dir = opendir("/proc/self/fd") else { return index }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd != own else { continue }
            if let local = Endpoint(fd: fd, getsockname), let remote = Endpoint(fd: fd, getpeername) {
                index[Key(local: local, remote: remote)] = fd
            }
        }
        return index
    }
}

extension GatewayServer {
    /// Closes a handed-over connection that cannot be carried on, the way a stopping gateway
    /// closes any: the `shutdown` event (to a connected session) and close 1012 "service restart",
    /// written straight to the socket, then close(2). Takes ownership of the fd.
    public static func closeHandedOver(fd: Int32, session: ControlPlaneSession.Snapshot?, reason: String) {
        var bytes: [UInt8] = []
        if let session {
            let placeholder = ServerInfo(pid: 0, urls: [], profile: nil, listenerSource: "", listenerNames: [], startedAtMs: 0)
            let carried = ControlPlaneSession(
                restoring: session, configuration: ControlPlaneConfiguration(serverVersion: "", token: nil),
                info: placeholder, connectionCount: { 0 })
            for action in carried.shutdown(reason: reason, restartExpectedMs: nil) {
                switch action {
                case .send(let text): bytes += rawFrame(opcode: 0x1, payload: Array(text.utf8))
                case .close(let code, let why): bytes += closeFrame(code: code, reason: why)
                case .authenticationFailed, .refused: break
                }
            }
        } else {
            bytes = closeFrame(code: 1012, reason: "service restart")
        }
        // Best effort on a socket whose buffer is empty (its output was drained before the
        // handover); never block on a client that stopped reading.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        close(fd)
    }

    /// A close frame: the status code, big-endian, then the reason (RFC 6455, 5.5.1).
    private static func closeFrame(code: UInt16, reason: String) -> [UInt8] {
        rawFrame(opcode: 0x8, payload: [UInt8(code >> 8), UInt8(code & 0xFF)] + Array(reason.utf8))
    }

    /// One unmasked server frame (RFC 6455, 5.2).
    static func rawFrame(opcode: UInt8, payload: [UInt8]) -> [UInt8] {
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            frame += [126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            frame.append(127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        return frame + payload
    }
}
