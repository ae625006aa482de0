/// What a connection may do: the role it connected as and the operator scopes granted, judged
/// the way upstream judges them (src/gateway/method-scopes.ts, authorizeGatewayMethod in
/// src/gateway/server-methods.ts).
struct Grant: Equatable {
    static let roles: Set<String> = ["operator", "node"]
    static let adminScope = "operator.admin"
    static let readScope = "operator.read"
    static let writeScope = "operator.write"
    /// Upstream's operator scopes; anything else a client asks for is not granted.
    static let operatorScopes: Set<String> = [
        adminScope, readScope, writeScope, "operator.approvals", "operator.pairing", "operator.talk.secrets",
    ]

    let role: String
    let scopes: [String]

    init(role: String, scopes: [String]) {
        self.role = role
        self.scopes = scopes
    }

    /// What a client that passed auth is granted: the operator scopes it asked for (upstream keeps
    /// the declared scopes of a local client that authenticated with the shared secret, or of any
    /// client when no auth is configured); a node gets none.
    init(role: String, requested: [String]) {
        self.role = role
        var seen = Set<String>()
        scopes = role == "operator" ? requested.filter { Self.operatorScopes.contains($0) && seen.insert($0).inserted } : []
    }

    /// nil when `method` may be called; otherwise upstream's message for the refusal. Every method
    /// served here is a read method, and `health` is open to every role.
    func refusal(for method: String) -> String? {
        if method == "health" { return nil }
        guard role == "operator" else { return "unauthorized role: \(role)" }
        if scopes.contains(Self.adminScope) || scopes.contains(Self.readScope) || scopes.contains(Self.writeScope) {
            return nil
        }
        return "missing scope: \(Self.readScope)"
    }
}

/// A connect refused for its credentials, answered as upstream answers it: INVALID_REQUEST with
/// upstream's message and connect-error details (code, authReason, recommendedNextStep), then
/// close 1008 with the message as the reason.
enum AuthFailure: Equatable {
    case tokenMissing
    case tokenMismatch
    case passwordMissing
    case passwordMismatch
    case rateLimited(retryAfterMs: Int)

    var reason: String {
        switch self {
        case .tokenMissing: "token_missing"
        case .tokenMismatch: "token_mismatch"
        case .passwordMissing: "password_missing"
        case .passwordMismatch: "password_mismatch"
        case .rateLimited: "rate_limited"
        }
    }

    var detailCode: String {
        switch self {
        case .tokenMissing: "AUTH_TOKEN_MISSING"
        case .tokenMismatch: "AUTH_TOKEN_MISMATCH"
        case .passwordMissing: "AUTH_PASSWORD_MISSING"
        case .passwordMismatch: "AUTH_PASSWORD_MISMATCH"
        case .rateLimited: "AUTH_RATE_LIMITED"
        }
    }

    /// What the client should do next (upstream's recommendedNextStep values).
    var nextStep: String {
        switch self {
        case .tokenMissing, .passwordMissing: "update_auth_configuration"
        case .tokenMismatch, .passwordMismatch: "update_auth_credentials"
        case .rateLimited: "wait_then_retry"
        }
    }

    /// Upstream's formatGatewayAuthFailureMessage (auth-messages.ts), with its hint per client.
    func message(clientId: String, clientMode: String) -> String {
        let (tokenHint, passwordHint): (String, String)
        if clientId == "cli" || clientMode == "cli" {
            tokenHint = "set gateway.remote.token to match gateway.auth.token"
            passwordHint = "set gateway.remote.password to match gateway.auth.password"
        } else if clientId == "openclaw-control-ui" || clientId == "webchat-ui" || clientMode == "webchat" {
            tokenHint = "open the dashboard URL and paste the token in Control UI settings"
            passwordHint = "enter the password in Control UI settings"
        } else {
            tokenHint = "provide gateway auth token"
            passwordHint = "provide gateway auth password"
        }
        switch self {
        case .tokenMissing: return "unauthorized: gateway token missing (\(tokenHint))"
        case .tokenMismatch: return "unauthorized: gateway token mismatch (\(tokenHint))"
        case .passwordMissing: return "unauthorized: gateway password missing (\(passwordHint))"
        case .passwordMismatch: return "unauthorized: gateway password mismatch (\(passwordHint))"
        case .rateLimited: return "unauthorized: too many failed authentication attempts (retry later)"
        }
    }

    func actions(
        id: String, client: ConnectRequest.Params.Client, encode: (String, ErrorShape) -> SessionAction
    ) -> [SessionAction] {
        let message = message(clientId: client.id, clientMode: client.mode)
        var details = ErrorDetails(code: detailCode)
        details.authReason = reason
        details.canRetryWithDeviceToken = false  // this gateway issues no device tokens
        details.recommendedNextStep = nextStep
        var error = ErrorShape(code: .invalidRequest, message: message, details: details)
        var actions: [SessionAction] = []
        if case .rateLimited(let wait) = self {
            error.retryable = true
            error.retryAfterMs = wait
        } else {
            actions.append(.authenticationFailed)
        }
        actions.append(.refused(code: detailCode))
        actions.append(encode(id, error))
        actions.append(.close(code: 1008, reason: Self.closeReason(message)))
        return actions
    }

    /// A close reason fits in 123 bytes (RFC 6455, 5.5: a control frame's payload is at most 125).
    static func closeReason(_ message: String) -> String {
        var reason = ""
        for character in message {
            if reason.utf8.count + String(character).utf8.count > 123 { break }
            reason.append(character)
        }
        return reason
    }
}
