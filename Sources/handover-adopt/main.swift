// The check and adopt phases of a restart's take-back, without systemd: N loopback TCP sessions,
// checked (RestartHandover.connectedTCP, on one thread and then in its default shares), handed to
// GatewayServer.restore (a WebSocket pipeline on each, on 2 event loops) and then resumed, as
// RestartHandover.takeBack does with the sockets of the carrier. Prints one line per run and a
// RESULT line of medians. Not shipped; `make bench-adopt` runs it.
//
//   handover-adopt [SESSIONS] [RUNS]     (default 8000 sessions, 9 runs)
//
// Each run is a fresh process's worth of work: a new event loop group and server, new sockets.
// The sessions are authenticated snapshots, as a restart carries them.
import Foundation
import GatewayProtocol
import GatewayServer
import Logging
import NIOCore
import NIOPosix
import RestartHandover
import TestSupport

let arguments = CommandLine.arguments.dropFirst().map { Int($0) }
guard arguments.allSatisfy({ ($0 ?? 0) > 0 }), arguments.count <= 2 else {
    FileHandle.standardError.write(Data("usage: handover-adopt [SESSIONS] [RUNS]\n".utf8))
    exit(64)
}
let sessions = arguments.first.flatMap { $0 } ?? 8000
let runs = arguments.dropFirst().first.flatMap { $0 } ?? 9

/// Each session has two fds here (ours and the client's), plus a few for the loops.
func raiseFileLimit(to needed: Int) {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    guard limit.rlim_cur >= rlim_t(needed) else {
        FileHandle.standardError.write(Data("handover-adopt: \(needed) fds needed, the hard limit is \(limit.rlim_max)\n".utf8))
        exit(75)
    }
}

func fail(_ what: String, code: Int32 = errno) -> Never {
    FileHandle.standardError.write(Data("handover-adopt: \(what): \(String(cString: strerror(code)))\n".utf8))
    exit(1)
}

/// `count` connected loopback TCP pairs: (the accepted end, the client end).
func loopbackPairs(_ count: Int) -> [(server: Int32, client: Int32)] {
    let listener = Loopback.listener(backlog: 4096)
    defer { close(listener.fd) }
    var pairs: [(server: Int32, client: Int32)] = []
    pairs.reserveCapacity(count)
    var nodelay: Int32 = 1
    for _ in 0..<count {
        let (client, error) = Loopback.connect(port: listener.port)
        guard error == 0 else { fail("cannot connect session \(pairs.count)", code: error) }
        let server = accept(listener.fd, nil, nil)
        guard server >= 0 else { fail("cannot accept session \(pairs.count)") }
        // As the gateway's own accept leaves it (childChannelOption in makeBootstrap()).
        setsockopt(server, Int32(IPPROTO_TCP), TCP_NODELAY, &nodelay, socklen_t(MemoryLayout<Int32>.size))
        pairs.append((server, client))
    }
    return pairs
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

raiseFileLimit(to: 2 * sessions + 64)
let configuration = ServerConfiguration(
    controlPlane: ControlPlaneConfiguration(serverVersion: "bench", token: nil),
    info: ServerInfo(pid: Int(getpid()), urls: [], profile: nil, listenerSource: "systemd", listenerNames: [], startedAtMs: 0))
var adoptTimes: [Double] = []
var resumeTimes: [Double] = []
var checkOneThreadTimes: [Double] = []
var checkTimes: [Double] = []
for run in 1...runs {
    let pairs = loopbackPairs(sessions)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let server = GatewayServer(group: group, configuration: configuration, logger: Logger(label: "handover-adopt"))
    let connections = pairs.enumerated().map { index, pair in
        HandedOverConnection(
            fd: pair.server,
            state: ConnectionState(session: .init(connId: "bench-\(index)", connected: true, seq: 1), undecoded: [], peer: "127.0.0.1"))
    }
    // The check on one thread and in the default shares, in turn first (the second walks sockets
    // the first has just brought into the caches).
    let fds = pairs.map { Optional($0.server) }
    for shares in run % 2 == 1 ? [1, nil] : [nil, 1] {
        let checkStart = ContinuousClock.now
        guard RestartHandover.connectedTCP(fds, shares: shares).allSatisfy({ $0 }) else {
            FileHandle.standardError.write(Data("handover-adopt: a session's socket failed the check\n".utf8))
            exit(1)
        }
        let elapsed = milliseconds(ContinuousClock.now - checkStart)
        if shares == 1 { checkOneThreadTimes.append(elapsed) } else { checkTimes.append(elapsed) }
    }
    let start = ContinuousClock.now
    let results = await server.restore(connections)
    let adopted = ContinuousClock.now
    let restored = results.compactMap { try? $0.get() }
    await server.resume(restored)
    let resumed = ContinuousClock.now
    guard restored.count == sessions else {
        FileHandle.standardError.write(Data("handover-adopt: only \(restored.count) of \(sessions) sessions adopted\n".utf8))
        exit(1)
    }
    adoptTimes.append(milliseconds(adopted - start))
    resumeTimes.append(milliseconds(resumed - adopted))
    print("run \(run): check \(String(format: "%.1f", checkTimes.last!)) ms (one thread \(String(format: "%.1f", checkOneThreadTimes.last!))), adopt \(String(format: "%.1f", adoptTimes.last!)) ms, resume \(String(format: "%.1f", resumeTimes.last!)) ms")
    try? await group.shutdownGracefully()
    for pair in pairs { close(pair.client) }
}
let adopt = median(adoptTimes)
print(String(format: "RESULT figure=adopt_%d_ms median=%.1f per_session_us=%.2f resume_median=%.1f runs=%d", sessions, adopt, adopt * 1000 / Double(sessions), median(resumeTimes), runs))
print(String(format: "RESULT figure=check_%d_ms median=%.1f one_thread_median=%.1f runs=%d", sessions, median(checkTimes), median(checkOneThreadTimes), runs))
