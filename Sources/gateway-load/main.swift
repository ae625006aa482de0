// gateway-load: the project's own WebSocket load client for `make bench` (SwiftNIO, protocol v4).
//
//   gateway-load rpc   --port P [--conns 64] [--seconds 5] [--token T]   health round trips
//   gateway-load hold  --port P [--conns 10000] [--seconds 10] [--pid PID] idle authenticated conns
//   gateway-load churn --port P [--count 2000] [--conns 8]               connect + hello-ok + close
//   gateway-load hello --port P                                           one connect -> hello-ok
//
// Last line: `RESULT key=value ...`, like shared/peers/wsload.
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

#if canImport(Glibc)
import Glibc
#endif

typealias WS = NIOAsyncChannel<WebSocketFrame, WebSocketFrame>

enum UpgradeResult: Sendable {
    case websocket(WS)
    case notUpgraded
}

struct LoadError: Error, CustomStringConvertible {
    let description: String
}

struct Options {
    var mode = ""
    var port = 18789
    var conns = 0
    var seconds = 0.0
    var count = 2000
    var pid: Int32?
    var token: String?

    init(_ args: [String]) throws {
        guard let first = args.first else { throw LoadError(description: "usage: gateway-load rpc|hold|churn|hello --port P ...") }
        mode = first
        var i = 1
        func value() throws -> String {
            guard i + 1 < args.count else { throw LoadError(description: "\(args[i]) needs a value") }
            i += 1
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--port": port = Int(try value()) ?? port
            case "--conns": conns = Int(try value()) ?? conns
            case "--seconds": seconds = Double(try value()) ?? seconds
            case "--count": count = Int(try value()) ?? count
            case "--pid": pid = Int32(try value())
            case "--token": token = try value()
            default: throw LoadError(description: "unknown argument \(args[i])")
            }
            i += 1
        }
    }
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

func connectWebSocket(port: Int) async throws -> WS {
    let upgrade: EventLoopFuture<UpgradeResult> = try await ClientBootstrap(group: group)
        .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOTypedWebSocketClientUpgrader<UpgradeResult>(
                    maxFrameSize: 1 << 20,
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            .websocket(try WS(wrappingChannelSynchronously: channel))
                        }
                    })
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "127.0.0.1:\(port)")
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: headers)
                let configuration = NIOTypedHTTPClientUpgradeConfiguration(
                    upgradeRequestHead: head, upgraders: [upgrader],
                    notUpgradingCompletionHandler: { channel in channel.eventLoop.makeCompletedFuture { .notUpgraded } })
                return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                    configuration: .init(upgradeConfiguration: configuration))
            }
        }
    guard case .websocket(let ws) = try await upgrade.get() else { throw LoadError(description: "upgrade refused") }
    return ws
}

func textFrame(_ text: String) -> WebSocketFrame {
    WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text))
}

func connectRequest(token: String?) -> String {
    let auth = token.map { #","auth":{"token":"\#($0)"}"# } ?? ""
    return #"{"type":"req","id":"c","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"client":{"id":"gateway-load","version":"1","platform":"linux","mode":"bench"}\#(auth)}}"#
}

/// Connect, then read until hello-ok. The challenge is not waited for: when it arrives in the same
/// read as the 101 response, NIO's typed client upgrade can hand it over before the async channel
/// exists, and the gateway does not require clients to wait for it anyway.
func handshake(_ inbound: inout NIOAsyncChannelInboundStream<WebSocketFrame>.AsyncIterator,
               _ outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>, token: String?) async throws {
    try await outbound.write(textFrame(connectRequest(token: token)))
    while let frame = try await inbound.next() {
        if frame.opcode == .text, String(buffer: frame.unmaskedData).contains("\"hello-ok\"") { return }
        if frame.opcode == .connectionClose { break }
    }
    throw LoadError(description: "no hello-ok")
}

func close(_ outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>) async {
    var data = ByteBuffer()
    data.write(webSocketErrorCode: .normalClosure)
    try? await outbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data))
}

func percentile(_ sorted: [Double], _ q: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(q * Double(sorted.count - 1) + 0.5))]
}

func rssKiB(_ pid: Int32) -> Int {
    guard let file = fopen("/proc/\(pid)/status", "r") else { return 0 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix("VmRSS:") {
            return Int(text.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
        }
    }
    return 0
}

func raiseFileLimit() {
    var limit = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
}

// MARK: - modes

func rpc(_ o: Options) async throws {
    let conns = o.conns > 0 ? o.conns : 64
    let seconds = o.seconds > 0 ? o.seconds : 5
    let clock = ContinuousClock()
    let deadline = clock.now + .milliseconds(Int64(seconds * 1000))
    let started = clock.now
    let results = try await withThrowingTaskGroup(of: ([Double], Int).self) { tasks in
        for c in 0..<conns {
            tasks.addTask {
                let ws = try await connectWebSocket(port: o.port)
                return try await ws.executeThenClose { inbound, outbound in
                    var iterator = inbound.makeAsyncIterator()
                    try await handshake(&iterator, outbound, token: o.token)
                    var latencies: [Double] = []
                    var errors = 0
                    var n = 0
                    while clock.now < deadline {
                        n += 1
                        let sent = clock.now
                        try await outbound.write(textFrame(#"{"type":"req","id":"\#(c)-\#(n)","method":"health"}"#))
                        while let frame = try await iterator.next() {
                            guard frame.opcode == .text else { continue }
                            let text = String(buffer: frame.unmaskedData)
                            guard text.contains("\"res\"") else { continue }  // a tick
                            if !text.contains("\"ok\":true") { errors += 1 }
                            break
                        }
                        let elapsed = clock.now - sent
                        latencies.append(Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6)
                    }
                    await close(outbound)
                    return (latencies, errors)
                }
            }
        }
        var all: [Double] = []
        var errors = 0
        for try await (latencies, e) in tasks {
            all += latencies
            errors += e
        }
        return (all, errors)
    }
    let elapsed = clock.now - started
    let total = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let sorted = results.0.sorted()
    print("RESULT rps=\(Int(Double(sorted.count) / total)) p50_us=\(Int(percentile(sorted, 0.5))) p99_us=\(Int(percentile(sorted, 0.99))) errors=\(results.1)")
}

func hold(_ o: Options) async throws {
    let conns = o.conns > 0 ? o.conns : 10_000
    let seconds = o.seconds > 0 ? o.seconds : 10
    raiseFileLimit()
    let failed = NIOLockedValueBox(0)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        // Open in batches of 100: each connection reports when its hello-ok arrived (or failed),
        // then stays open, reading, until it is closed at the end.
        var opened: [Channel] = []
        for batchStart in stride(from: 0, to: conns, by: 100) {
            var ready: [EventLoopFuture<Channel?>] = []
            for _ in batchStart..<min(conns, batchStart + 100) {
                let promise = group.next().makePromise(of: Channel?.self)
                ready.append(promise.futureResult)
                tasks.addTask {
                    do {
                        let ws = try await connectWebSocket(port: o.port)
                        try await ws.executeThenClose { inbound, outbound in
                            var iterator = inbound.makeAsyncIterator()
                            try await handshake(&iterator, outbound, token: o.token)
                            promise.succeed(ws.channel)
                            // Idle, but reading what the server sends (ticks, presence), as a
                            // real client does: one that stops reading is a slow client, for
                            // which the server queues up to maxBufferedBytes (4 MiB) before it
                            // drops it. Until the channel is closed at the end.
                            while (try? await iterator.next()) != nil {}
                        }
                    } catch {
                        failed.withLockedValue { $0 += 1 }
                        promise.succeed(nil)
                    }
                }
            }
            for future in ready {
                if let channel = try await future.get() { opened.append(channel) }
            }
        }
        try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
        let rss = o.pid.map(rssKiB) ?? 0
        let dropped = opened.filter { !$0.isActive }.count
        print("RESULT held=\(opened.count - dropped) failed=\(failed.withLockedValue { $0 } + dropped) server_rss_kib=\(rss)")
        for channel in opened { channel.close(promise: nil) }
        try await tasks.waitForAll()
    }
}

func churn(_ o: Options) async throws {
    let workers = o.conns > 0 ? o.conns : 8
    let clock = ContinuousClock()
    let started = clock.now
    let counter = NIOLockedValueBox(0)
    let latencies = try await withThrowingTaskGroup(of: [Double].self) { tasks in
        for _ in 0..<workers {
            tasks.addTask {
                var mine: [Double] = []
                while counter.withLockedValue({ value -> Bool in value += 1; return value <= o.count }) {
                    let t0 = clock.now
                    let ws = try await connectWebSocket(port: o.port)
                    try await ws.executeThenClose { inbound, outbound in
                        var iterator = inbound.makeAsyncIterator()
                        try await handshake(&iterator, outbound, token: o.token)
                        await close(outbound)
                    }
                    let d = clock.now - t0
                    mine.append(Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12)
                }
                return mine
            }
        }
        var all: [Double] = []
        for try await part in tasks { all += part }
        return all.sorted()
    }
    let elapsed = clock.now - started
    let total = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    print("RESULT conns_per_s=\(Int(Double(latencies.count) / total)) p50_us=\(Int(percentile(latencies, 0.5))) p99_us=\(Int(percentile(latencies, 0.99))) errors=0")
}

func hello(_ o: Options) async throws {
    let clock = ContinuousClock()
    let t0 = clock.now
    let ws = try await connectWebSocket(port: o.port)
    try await ws.executeThenClose { inbound, outbound in
        var iterator = inbound.makeAsyncIterator()
        try await handshake(&iterator, outbound, token: o.token)
        let d = clock.now - t0
        print("RESULT hello_ms=\(String(format3(Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15)))")
        await close(outbound)
    }
}

func format3(_ value: Double) -> String {
    let scaled = Int((value * 1000).rounded())
    let fraction = scaled % 1000
    return "\(scaled / 1000).\(fraction < 10 ? "00" : fraction < 100 ? "0" : "")\(fraction)"
}

do {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    switch options.mode {
    case "rpc": try await rpc(options)
    case "hold": try await hold(options)
    case "churn": try await churn(options)
    case "hello": try await hello(options)
    default: throw LoadError(description: "unknown mode \(options.mode)")
    }
} catch {
    print("gateway-load: \(error)")
    exit(1)
}
