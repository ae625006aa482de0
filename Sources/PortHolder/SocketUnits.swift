#if canImport(Glibc)
import Glibc
#endif

/// The systemd socket unit that listens on a port, when PID 1 holds it.
public enum SocketUnits {
    /// From `systemctl list-sockets` when systemctl answers; otherwise by the units' convention
    /// (openclaw-gateway.socket on 18789, openclaw-gateway@PORT.socket elsewhere).
    public static func unit(listeningOn port: Int) -> String {
        if let listed = listedUnit(port: port) { return listed }
        return port == 18789 ? "openclaw-gateway.socket" : "openclaw-gateway@\(port).socket"
    }

    static func listedUnit(port: Int) -> String? {
        guard let output = run(["systemctl", "list-sockets", "--all", "--full", "--no-legend", "--no-pager"]) else {
            return nil
        }
        // LISTEN UNIT ACTIVATES — e.g. "127.0.0.1:18789 openclaw-gateway.socket openclaw-gateway.service"
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, fields[0].hasSuffix(":\(port)"), fields[1].hasSuffix(".socket") else { continue }
            return String(fields[1])
        }
        return nil
    }

    /// Runs a command (PATH lookup) with no input; its stdout when it exits 0 within 2 seconds.
    static func run(_ argv: [String]) -> String? {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { return nil }
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }  // the child gets stdout by dup2 only
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], STDOUT_FILENO)
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, environ)
        close(pipeFDs[1])
        defer { close(pipeFDs[0]) }
        guard rc == 0 else { return nil }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var poller = pollfd(fd: pipeFDs[0], events: Int16(POLLIN), revents: 0)
        var timedOut = false
        while true {
            guard poll(&poller, 1, 2000) > 0 else {
                timedOut = true
                break
            }
            let n = read(pipeFDs[0], &chunk, chunk.count)
            if n <= 0 { break }
            output.append(contentsOf: chunk[0..<n])
        }
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        guard !timedOut else { return nil }
        guard (status & 0x7f) == 0, (status >> 8) & 0xff == 0 else { return nil }
        return String(decoding: output, as: UTF8.self)
    }
}
