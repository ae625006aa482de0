import GatewayServer
import Logging
import Systemd

#if canImport(Glibc)
import Glibc
#endif

/// The fds 0.1.0 left in the store: each session's socket as `conn-<connId>`, their state as a
/// memfd named `state`.
enum Legacy {
    static let stateName = "state"
    static let connectionPrefix = "conn-"

    static func isStoreName(_ name: String) -> Bool {
        name == stateName || name.hasPrefix(connectionPrefix)
    }
}

/// What the fd store passed back, sorted out: the state, the session sockets by connId, and what
/// must go from the store once the sessions are this process's (or closed).
struct StoredSessions {
    var record: StateRecord?
    /// Session sockets by the connId the state gives them.
    var sockets: [String: Int32] = [:]
    /// Session sockets the state does not name (it was lost, or lists fewer).
    var unmatched: [Int32] = []
    /// Names to remove from the store.
    private(set) var names: Set<String> = []
    /// The carrier this process stored while it takes the sessions back, and its sending end.
    private var forward: (sending: Int32, stored: Int32)?

    /// Reads the carriers (forwarding their messages into a new one kept in `store`, when given)
    /// and 0.1.0's entries. Logs what it cannot use; every fd in `passed` ends up in the result or
    /// closed.
    static func collect(
        _ passed: [SystemdActivation.PassedSocket], keepingIn store: FileDescriptorStore?, logger: Logger?
    ) -> StoredSessions {
        var result = StoredSessions()
        var phases = PhaseClock()
        result.names = Set(passed.map(\.name))
        var states: [Int32] = []
        var batches: [(first: Int, fds: [Int32])] = []
        var legacy: [String: Int32] = [:]

        let carriers = passed.filter { $0.name == Carrier.storeName }
        if !carriers.isEmpty, let store {
            result.forward = Self.keepForward(in: store, logger: logger)
        }
        phases.lap("forward carrier")
        for carrier in carriers {
            let (messages, problems) = Carrier.receiveAll(from: carrier.fd, forwardingTo: result.forward?.sending)
            close(carrier.fd)
            for problem in problems { logger?.warning("the stored carrier: \(problem)") }
            for message in messages {
                switch message {
                case .state(let fd): states.append(fd)
                case .sessions(let first, let fds): batches.append((first, fds))
                }
            }
        }
        phases.lap("receive")
        for socket in passed where Legacy.isStoreName(socket.name) {
            if socket.name == Legacy.stateName {
                states.append(socket.fd)
            } else if legacy[socket.name] == nil {
                legacy[socket.name] = socket.fd
            } else {
                close(socket.fd)  // the same name twice: not ours to guess which
            }
        }

        for fd in states {
            if result.record == nil {
                do {
                    result.record = try StateFile.read(fd)
                } catch {
                    logger?.warning("the stored connection state cannot be read (\(error)); closing the stored connections")
                }
            }
            close(fd)
        }
        phases.lap("read state")
        let entries = result.record?.connections ?? []
        for batch in batches {
            for (offset, fd) in batch.fds.enumerated() {
                let index = batch.first + offset
                if index < entries.count, result.sockets[entries[index].connId] == nil {
                    result.sockets[entries[index].connId] = fd
                } else {
                    result.unmatched.append(fd)
                }
            }
        }
        for (name, fd) in legacy {
            let connId = String(name.dropFirst(Legacy.connectionPrefix.count))
            if result.record != nil, result.sockets[connId] == nil {
                result.sockets[connId] = fd
            } else {
                result.unmatched.append(fd)
            }
        }
        phases.lap("match")
        logger?.debug("reading the fd store: \(phases)")
        if result.record == nil, !result.unmatched.isEmpty {
            logger?.warning("\(result.unmatched.count) stored connection(s) came back without their state; closing them")
        }
        return result
    }

    /// A new carrier in the store under the same name, before the old one is read: what is
    /// forwarded into it stays in the store if this process dies. nil (logged) if the store
    /// cannot confirm it; the take-back goes on without that safety.
    private static func keepForward(in store: FileDescriptorStore, logger: Logger?) -> (sending: Int32, stored: Int32)? {
        do {
            let pair = try Carrier.makePair()
            do {
                try store.store(pair.stored, name: Carrier.storeName, poll: false)
                try store.barrier()
                return pair
            } catch {
                close(pair.sending)
                close(pair.stored)
                throw error
            }
        } catch {
            logger?.notice("taking the sessions back without a second carrier (\(error)): a crash before READY would lose them")
            return nil
        }
    }

    /// Closes every session socket still held, cleanly (``GatewayServer/closeHandedOver(fd:session:reason:)``
    /// without a session: none is known for them here): those the state does not name, or names
    /// but that were not taken out.
    mutating func closeRemaining(reason: String) {
        for fd in sockets.values { GatewayServer.closeHandedOver(fd: fd, session: nil, reason: reason) }
        for fd in unmatched { GatewayServer.closeHandedOver(fd: fd, session: nil, reason: reason) }
        sockets = [:]
        unmatched = []
    }

    /// Empties the store of every name that came back (and of the forward carrier, which has the
    /// carrier's name); returns what failed.
    mutating func release(from store: FileDescriptorStore) -> [ServiceManagerError] {
        var failures: [ServiceManagerError] = []
        for name in names.sorted() {
            do { try store.remove(name: name) } catch { failures.append(error) }
        }
        if let forward {
            close(forward.sending)
            close(forward.stored)
            self.forward = nil
        }
        return failures
    }
}
