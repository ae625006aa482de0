import ArgumentParser
import GatewayConfig
import GatewayLock
import PortHolder

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// `openclaw-gateway status`: is a gateway serving this port, who holds it, is it healthy.
/// Exit 0 running, 3 nothing listens (like `systemctl is-active`), 4 the port is held by something
/// that is not a healthy gateway.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Tell whether a gateway serves the port, who holds it, and its health.",
        discussion: """
            Exit statuses: 0 a gateway answers on the port; 3 nothing listens; 4 the port is held \
            by something that is not a healthy gateway; 64 usage; 78 configuration error. Under \
            socket activation, the health request starts the service, as any connection would.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Port to check (same precedence as run).", valueName: "port"))
    var port: String?

    @Option(name: .long, help: ArgumentHelp("Profile whose configuration names the port.", valueName: "name"))
    var profile: String?

    @Flag(name: .long, help: "The 'dev' profile (port 19001).")
    var dev = false

    @Flag(name: .long, help: "One JSON object on stdout, for scripts.")
    var json = false

    struct Report: Encodable {
        struct Holder: Encodable {
            let pid: Int32
            let name: String
            let executable: String?
        }

        struct Health: Encodable {
            let httpStatus: Int
            let ok: Bool?
            let status: String?
            /// The gateway's configuration in force, and how its last reload ended (from the
            /// probe's headers; absent from something that is not a gateway).
            var configGeneration: Int? = nil
            var lastReload: String? = nil
        }

        let url: String
        let port: Int
        /// running | stopped | foreign
        let state: String
        let running: Bool
        /// The process serving the port (not PID 1 when a service serves it), or nil.
        let pid: Int32?
        let process: String?
        let holders: [Holder]
        let socketActivated: Bool
        let socketUnit: String?
        let health: Health?

        enum CodingKeys: String, CodingKey {
            case url, port, state, running, pid, process, holders, socketActivated, socketUnit, health
        }

        /// Absent values are written as null: a script reads the same keys in every state.
        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(url, forKey: .url)
            try container.encode(port, forKey: .port)
            try container.encode(state, forKey: .state)
            try container.encode(running, forKey: .running)
            try container.encode(pid, forKey: .pid)
            try container.encode(process, forKey: .process)
            try container.encode(holders, forKey: .holders)
            try container.encode(socketActivated, forKey: .socketActivated)
            try container.encode(socketUnit, forKey: .socketUnit)
            try container.encode(health, forKey: .health)
        }
    }

    func run() throws {
        let environment = processEnvironment()
        let configuration: GatewayConfiguration
        do {
            configuration = try GatewayConfiguration.resolve(
                CommandLineOptions(port: port, profile: profile, dev: dev), environment: environment)
        } catch {
            printError("openclaw-gateway: \(error.message)")
            throw ExitCode(error.exitStatus)
        }
        let port = configuration.port
        let probeAddress: BindAddress =
            configuration.bindAddress == .anyIPv4 ? .loopback
            : configuration.bindAddress == BindAddress(literal: "::")! ? .ipv6Loopback : configuration.bindAddress

        // Health first: under socket activation it starts the service, whose pid the lookup then finds.
        let health = HealthProbe.get(address: probeAddress, port: port)
        let lookup = PortHolder.lookup(port: port)
        var holders: [PortHolder.Process] = []
        if case .held(let found) = lookup { holders = found }
        let serving = holders.first { !$0.isSystemd } ?? holders.first
        let activated = holders.contains(where: \.isSystemd)
        let healthy = health?.httpStatus == 200 && health?.ok == true
        let state = healthy ? "running" : (lookup == .free && health == nil ? "stopped" : "foreign")

        let report = Report(
            url: probeAddress.webSocketURL(port: port), port: port, state: state, running: healthy,
            pid: serving?.pid, process: serving.map { $0.isGateway ? "openclaw-gateway" : $0.name },
            holders: holders.map { Report.Holder(pid: $0.pid, name: $0.name, executable: $0.executable) },
            socketActivated: activated, socketUnit: activated ? SocketUnits.unit(listeningOn: port) : nil,
            health: health)

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(report)
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(text(report, lookup: lookup))
        }
        switch state {
        case "running": return
        case "stopped": throw ExitCode(3)
        default: throw ExitCode(4)
        }
    }

    private func text(_ report: Report, lookup: PortHolder.Lookup) -> String {
        var lines: [String] = []
        switch report.state {
        case "running": lines.append("openclaw-gateway on \(report.url): running")
        case "stopped": lines.append("openclaw-gateway on \(report.url): not running (nothing listens on port \(report.port))")
        default: lines.append("openclaw-gateway on \(report.url): port \(report.port) is held by something that is not a healthy gateway")
        }
        if let unit = report.socketUnit {
            lines.append("  socket: systemd socket unit \(unit) (socket-activated)")
        }
        if let pid = report.pid, let process = report.process, pid != 1 {
            lines.append("  holder: pid \(pid) (\(process))")
        } else if case .hidden(let uid) = lookup {
            lines.append("  holder: another process\(uid.map { " owned by uid \($0)" } ?? "") that this user cannot inspect")
        }
        if let health = report.health {
            lines.append("  health: HTTP \(health.httpStatus)\(health.status.map { " \($0)" } ?? "")")
            if let generation = health.configGeneration {
                lines.append("  config: generation \(generation), last reload: \(health.lastReload ?? "none")")
            }
        } else if report.state != "stopped" {
            lines.append("  health: no HTTP answer on /healthz")
        }
        return lines.joined(separator: "\n")
    }
}

/// One `GET /healthz` with a 2-second budget; nil when nothing answers HTTP.
enum HealthProbe {
    struct Body: Decodable {
        let ok: Bool?
        let status: String?
    }

    static func get(address: BindAddress, port: Int) -> StatusCommand.Report.Health? {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, address: address, port: port) else { return nil }
        let request = Array("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            return nil
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while response.count < 65536 {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { break }
            response.append(contentsOf: chunk[0..<n])
        }
        let text = String(decoding: response, as: UTF8.self)
        let statusLine = text.prefix { $0 != "\r" && $0 != "\n" }
        let words = statusLine.split(separator: " ")
        guard words.count >= 2, words[0].hasPrefix("HTTP/"), let code = Int(words[1]) else { return nil }
        var body: Body?
        var headers: [String: String] = [:]
        let separator: [UInt8] = [13, 10, 13, 10]
        if let end = (0..<max(0, response.count - 3)).first(where: { Array(response[$0..<$0 + 4]) == separator }) {
            body = try? JSONDecoder().decode(Body.self, from: Data(response[(end + 4)...]))
            for line in String(decoding: response[..<end], as: UTF8.self).split(separator: "\r\n").dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingPrefix(" ").description
            }
        }
        return StatusCommand.Report.Health(
            httpStatus: code, ok: body?.ok, status: body?.status,
            configGeneration: headers["x-openclaw-config-generation"].flatMap { Int($0) },
            lastReload: headers["x-openclaw-last-reload"])
    }

    private static func connect(_ fd: Int32, address: BindAddress, port: Int) -> Bool {
        address.withSocketAddress(port: port) { Glibc.connect(fd, $0, $1) } == 0
    }
}

extension StatusCommand.Report.Health: Equatable {}
