import GatewayProtocol
import NIOCore
import NIOPosix
import NIOWebSocket

#if canImport(Glibc)
import Glibc
#endif

/// One WebSocket connection crossing a restart: its socket and what the next process needs to
/// carry it on. Where the fd is kept in between (systemd's fd store) is not the server's business.
public struct HandedOverConnection: Sendable {
    /// A connected TCP socket, owned by whoever holds this value.
    public let fd: Int32
    public let state: ConnectionState

    public init(fd: Int32, state: ConnectionState) {
        self.fd = fd
        self.state = state
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
    /// Takes the open WebSocket sessions out of this process for a restart: each stops
    /// reading, sends what it already queued (at most `flushTimeout`), and leaves as a duplicate of
    /// its socket plus its state. Its NIO channel is closed with close(2) only — never shutdown(2) —
    /// so the client sees nothing. Connections that cannot go (HTTP, closing, not draining) stay,
    /// for ``closeConnections(gracePeriod:)``.
    public func handOver(flushTimeout: TimeAmount) async -> [HandedOverConnection] {
        // Every connection is frozen on its own loop, all at once (one hop each, in parallel, not
        // one after another: the clients wait for the slowest step times the count otherwise).
        let freezing = connections.all.map { channel in
            channel.eventLoop.submit { () -> (Channel, ConnectionState, EventLoopFuture<Void>)? in
                let pipeline = channel.pipeline.syncOperations
                guard channel.isActive,
                    let handler = try? pipeline.handler(type: WebSocketHandler.self),
                    let splitter = try? pipeline.handler(type: FrameSplitter.self),
                    let context = try? pipeline.context(handler: handler),
                    let encoder = try? pipeline.context(handlerType: WebSocketFrameEncoder.self),
                    let snapshot = handler.freeze(context: context)
                else { return nil }
                // In the same event loop turn as freeze: nothing is read and then dropped.
                try? channel.syncOptions?.setOption(.autoRead, value: false)
                // An empty write below the frame encoder completes once every frame queued before
                // it has reached the socket (writes complete in order): no promise per message.
                let flushed = encoder.writeAndFlush(NIOAny(ByteBuffer()))
                let state = ConnectionState(
                    session: snapshot, undecoded: splitter.undecodedBytes,
                    peer: channel.remoteAddress?.ipAddress ?? "?")
                return (channel, state, flushed)
            }
        }
        var frozen: [(channel: Channel, state: ConnectionState, flushed: EventLoopFuture<Void>)] = []
        for future in freezing {
            if let item = try? await future.get() ?? nil { frozen.append(item) }
        }
        guard !frozen.isEmpty else { return [] }

        // The flush timeouts run side by side: at most `flushTimeout` in all.
        let drainedFlags = frozen.map { Self.completes($0.flushed, within: flushTimeout, on: $0.channel.eventLoop) }
        var drained: [(channel: Channel, state: ConnectionState)] = []
        for (item, flag) in zip(frozen, drainedFlags) {
            if (try? await flag.get()) == true {
                drained.append((item.channel, item.state))
            } else {
                logger.notice("connection \(item.state.session.connId) did not drain its output in time; closing it instead")
            }
        }

        let index = SocketIndex.ofThisProcess()
        var handed: [HandedOverConnection] = []
        var closing: [EventLoopFuture<Void>] = []
        for (channel, state) in drained {
            guard let key = SocketIndex.key(local: channel.localAddress, remote: channel.remoteAddress),
                let fd = index[key]
            else {
                logger.notice("connection \(state.session.connId): socket not found; closing it instead")
                continue
            }
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
            guard copy >= 0 else {
                logger.notice("connection \(state.session.connId): dup failed (\(String(cString: strerror(errno)))); closing it instead")
                continue
            }
            handed.append(HandedOverConnection(fd: copy, state: state))
            closing.append(channel.close())
        }
        for future in closing { try? await future.get() }
        return handed
    }

    /// A handed-over connection adopted by this process but not reading yet (see ``restore(_:)``).
    public struct Restored: Sendable {
        let channel: Channel
        let undecoded: [UInt8]
    }

    /// Carries on a connection an earlier process handed over: adopts the socket with a WebSocket
    /// pipeline (no HTTP upgrade). It reads nothing until ``resume(_:)``, so that until then the
    /// client's bytes stay in the socket for whoever holds another copy of it. Takes ownership of
    /// the fd when it succeeds.
    public func restore(_ connection: HandedOverConnection) async throws -> Restored {
        let configuration = self.configuration
        let connections = self.connections
        let rateLimiter = self.rateLimiter
        let refusals = self.refusals
        let maxBuffered = configuration.controlPlane.maxBufferedBytes
        let state = connection.state
        let bootstrap = ClientBootstrap(group: group)
            .channelOption(.autoRead, value: false)
            .channelOption(.allowRemoteHalfClosure, value: false)
            .channelOption(.writeBufferWaterMark, value: .init(low: maxBuffered / 2, high: maxBuffered))
            .channelInitializer { channel in
                connections.add(channel)
                // The upgrade's headers are gone: a carried-on session counts by its socket, as a
                // client without Origin or forwarding headers would.
                let limiterKey = configuration.authRateLimit.key(
                    for: LimiterClient(channel: channel, head: nil), trustedProxies: configuration.trustedProxies)
                return channel.eventLoop.makeCompletedFuture {
                    let session = ControlPlaneSession(
                        restoring: state.session, configuration: configuration.controlPlane, info: configuration.info,
                        peer: state.peer, connectionCount: { connections.count },
                        retryAfterMs: { rateLimiter.retryAfterMs(key: limiterKey) })
                    try Self.addWebSocketPipeline(
                        channel: channel, session: session, restored: true, configuration: configuration,
                        rateLimiter: rateLimiter, refusals: refusals, limiterKey: limiterKey)
                }
            }
        let channel = try await bootstrap.withConnectedSocket(connection.fd).get()
        return Restored(channel: channel, undecoded: state.undecoded)
    }

    /// Starts a restored connection: feeds it the bytes its previous process had read but not
    /// acted on, then reads from the socket.
    public func resume(_ restored: Restored) async throws {
        let channel = restored.channel
        try await channel.eventLoop.submit {
            if !restored.undecoded.isEmpty {
                channel.pipeline.syncOperations.fireChannelRead(NIOAny(channel.allocator.buffer(bytes: restored.undecoded)))
            }
            try channel.syncOptions?.setOption(.autoRead, value: true)
        }.get()
    }

    /// True once `future` succeeds, false when it fails or `timeout` passes first.
    private static func completes(_ future: EventLoopFuture<Void>, within timeout: TimeAmount, on loop: EventLoop) -> EventLoopFuture<Bool> {
        let promise = loop.makePromise(of: Bool.self)
        let timer = loop.scheduleTask(in: timeout) { promise.succeed(false) }
        future.whenComplete { result in
            timer.cancel()
            if case .success = result { promise.succeed(true) } else { promise.succeed(false) }
        }
        return promise.futureResult
    }
}

/// This process's connected TCP sockets by their two addresses: NIO does not tell a channel's
/// fd, and a connection's (local, remote) pair names exactly one socket.
enum SocketIndex {
    static func key(local: SocketAddress?, remote: SocketAddress?) -> String? {
        guard let local, let remote, let lip = local.ipAddress, let lport = local.port,
            let rip = remote.ipAddress, let rport = remote.port
        else { return nil }
        return key(local: (lip, lport), remote: (rip, rport))
    }

    private static func key(local: (String, Int), remote: (String, Int)) -> String {
        "\(local.0)|\(local.1)|\(remote.0)|\(remote.1)"
    }

    static func ofThisProcess() -> [String: Int32] {
        var index: [String: Int32] = [:]
        guard let dir = opendir("/proc/self/fd") else { return index }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd != own else { continue }
            if let local = address(fd, getsockname), let remote = address(fd, getpeername) {
                index[key(local: local, remote: remote)] = fd
            }
        }
        return index
    }

    private static func address(
        _ fd: Int32, _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) -> (String, Int)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        let family = Int32(storage.ss_family)
        guard family == AF_INET || family == AF_INET6 else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let port: UInt16 = withUnsafePointer(to: &storage) { pointer in
            if family == AF_INET {
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var address = sin.pointee.sin_addr
                    inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
                    return UInt16(bigEndian: sin.pointee.sin_port)
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var address = sin6.pointee.sin6_addr
                inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
                return UInt16(bigEndian: sin6.pointee.sin6_port)
            }
        }
        return (String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), Int(port))
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
