import GatewayLock
import Logging
import PortHolder

#if canImport(Glibc)
import Glibc
#endif

/// The `hint:` lines printed after a lock conflict: who holds the port and what to do. The error
/// line before them never changes (it is a contract); these only add to it.
enum ConflictHints {
    static func lines(port: Int, lookup: PortHolder.Lookup, forceRefused: Bool = false) -> [String] {
        let otherPort = "use another port: openclaw-gateway --port <other>"
        switch lookup {
        case .free:
            return ["hint: port \(port) is free again; try once more"]
        case .hidden(let uid):
            let owner = uid.map { " owned by uid \($0)" } ?? ""
            return [
                "hint: port \(port) is held by another process\(owner) that this user cannot inspect",
                "hint: \(otherPort)",
            ]
        case .held(let all):
            let holders = all.filter { $0.pid != getpid() }
            if holders.contains(where: \.isSystemd) {
                let unit = SocketUnits.unit(listeningOn: port)
                let service = unit.hasSuffix(".socket") ? String(unit.dropLast(".socket".count)) + ".service" : unit
                let serving = holders.filter { !$0.isSystemd }.map(\.description)
                let by = serving.isEmpty ? "" : " (serving: \(serving.joined(separator: ", ")))"
                return [
                    "hint: port \(port) is held by systemd socket unit \(unit)\(by)",
                    "hint: stop it with: systemctl stop \(unit) \(service); or \(otherPort)",
                ]
            }
            let names = holders.map(\.description).joined(separator: ", ")
            if !holders.isEmpty && holders.allSatisfy(\.isGateway) {
                if forceRefused {
                    return [
                        "hint: port \(port) is held by \(names), which this user may not stop",
                        "hint: \(otherPort)",
                    ]
                }
                return [
                    "hint: port \(port) is held by \(names)",
                    "hint: stop it, replace it with: openclaw-gateway --force, or \(otherPort)",
                ]
            }
            let what = holders.isEmpty ? "a process of this gateway" : names
            return [
                "hint: port \(port) is held by \(what), which is not an openclaw-gateway"
                    + (forceRefused ? " (--force leaves it alone)" : ""),
                "hint: \(otherPort)",
            ]
        }
    }
}

/// The `hint:` line after a failed bind, when the errno says what to do; none otherwise.
enum BindHints {
    static func lines(_ error: GatewayLockError, address: String, port: Int) -> [String] {
        switch error.systemError {
        case EADDRNOTAVAIL:
            return ["hint: \(address) is not an address of this host; use --bind loopback, --bind lan, or an address that `ip -brief address` lists"]
        case EACCES where port < 1024:
            return ["hint: port \(port) is below 1024, which needs root or CAP_NET_BIND_SERVICE; use a port from 1024 up, or a systemd socket unit"]
        default:
            return []
        }
    }
}

/// `--force`: take the port from a running openclaw-gateway (SIGTERM, SIGKILL after a grace
/// period), never from anything else.
enum ForcedTakeover {
    enum Outcome {
        /// The holders are gone (or were never there): try the lock again.
        case portReleased
        /// Nothing was touched; the hints say why.
        case refused(PortHolder.Lookup)
    }

    static func release(port: Int, logger: Logger) -> Outcome {
        let lookup = PortHolder.lookup(port: port)
        guard case .held(let all) = lookup else {
            return lookup == .free ? .portReleased : .refused(lookup)
        }
        let holders = all.filter { $0.pid != getpid() }
        guard !holders.isEmpty else { return .portReleased }
        guard holders.allSatisfy({ $0.isGateway && !$0.isSystemd }),
            holders.allSatisfy({ Termination.maySignal(pid: $0.pid) })
        else { return .refused(lookup) }
        for holder in holders {
            logger.notice("--force: stopping \(holder.description), which holds port \(port)")
            let outcome = Termination.terminate(pid: holder.pid)
            switch outcome {
            case .exited, .killed:
                logger.notice("--force: \(holder.description) \(outcome == .killed ? "was killed after the grace period" : "exited")")
            case .notPermitted, .failed:
                logger.warning("--force: could not stop \(holder.description): \(outcome)")
                return .refused(lookup)
            }
        }
        return .portReleased
    }
}
