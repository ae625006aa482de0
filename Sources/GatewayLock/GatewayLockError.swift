/// The one error of the lock: the gateway could not get its listening socket.
///
/// Its two messages are a contract (tests, docs and units match them letter for letter):
/// - `another gateway instance is already listening on ws://HOST:PORT` — the port is taken;
/// - `failed to bind gateway socket on ws://HOST:PORT: REASON` — anything else.
///
/// Printed as `GatewayLockError: <message>`; the process then exits with status 78 (EX_CONFIG).
public struct GatewayLockError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Sendable, Equatable {
        /// EADDRINUSE: another process (most likely another gateway) holds the port.
        case alreadyListening
        /// Any other failure: a bind error, or a socket passed by systemd that cannot serve.
        case bindFailed
    }

    public let kind: Kind
    /// `ws://HOST:PORT` the gateway tried to listen on.
    public let url: String
    /// For `.bindFailed`: what went wrong, for a person.
    public let reason: String?
    /// For a failed bind of our own: the errno, so that a hint can say what to do.
    public var systemError: Int32? = nil

    /// The exit status of a process that fails with this error (EX_CONFIG).
    public static let exitStatus: Int32 = 78

    public static func alreadyListening(on url: String) -> GatewayLockError {
        GatewayLockError(kind: .alreadyListening, url: url, reason: nil)
    }

    public static func bindFailed(on url: String, reason: String, systemError: Int32? = nil) -> GatewayLockError {
        GatewayLockError(kind: .bindFailed, url: url, reason: reason, systemError: systemError)
    }

    public var message: String {
        switch kind {
        case .alreadyListening:
            return "another gateway instance is already listening on \(url)"
        case .bindFailed:
            return "failed to bind gateway socket on \(url): \(reason ?? "unknown error")"
        }
    }

    public var description: String { "GatewayLockError: \(message)" }
}
