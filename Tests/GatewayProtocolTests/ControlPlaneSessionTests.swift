import Testing

@testable import GatewayProtocol

import Foundation  // JSONSerialization, to read frames the way an independent client would

func makeSession(
    token: String? = nil, password: String? = nil, retryAfter: Int? = nil, presence: PresenceBoard = PresenceBoard(), connId: String = "c1",
    configFile: ConfigFileSource? = nil
) -> ControlPlaneSession {
    ControlPlaneSession(
        configuration: ControlPlaneConfiguration(
            serverVersion: "0.1.0", secret: password.map(SharedSecret.password) ?? token.map(SharedSecret.token) ?? .none),
        info: ServerInfo(
            pid: 42, urls: ["ws://127.0.0.1:18789"], profile: nil, listenerSource: "bound", listenerNames: [], startedAtMs: 0,
            presence: presence, configFile: configFile),
        connId: connId, connectionCount: { 1 }, retryAfterMs: { retryAfter })
}

func connect(
    id: String = "1", min: Int = 4, max: Int = 4, token: String? = nil, password: String? = nil, role: String? = nil,
    scopes: [String]? = ["operator.read"], clientId: String = "cli", mode: String = "cli"
) -> String {
    let secrets = [token.map { #""token":"\#($0)""# }, password.map { #""password":"\#($0)""# }].compactMap { $0 }
    let auth = secrets.isEmpty ? "" : #","auth":{\#(secrets.joined(separator: ","))}"#
    let roleField = role.map { #","role":"\#($0)""# } ?? ""
    let scopesField = scopes.map { #","scopes":[\#($0.map { "\"\($0)\"" }.joined(separator: ","))]"# } ?? ""
    return #"{"type":"req","id":"\#(id)","method":"connect","params":{"minProtocol":\#(min),"maxProtocol":\#(max),"client":{"id":"\#(clientId)","version":"1","platform":"linux","mode":"\#(mode)"}\#(auth)\#(roleField)\#(scopesField)}}"#
}

func payload(_ action: SessionAction) -> [String: Any]? { json(action)?["payload"] as? [String: Any] }
func error(_ action: SessionAction) -> [String: Any]? { json(action)?["error"] as? [String: Any] }

func json(_ action: SessionAction) -> [String: Any]? {
    guard case .send(let text) = action else { return nil }
    return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}

@Suite struct ControlPlaneSessionTests {
    @Test func opensWithAChallenge() {
        let frame = json(makeSession().open()[0])
        #expect(frame?["type"] as? String == "event")
        #expect(frame?["event"] as? String == "connect.challenge")
        let payload = frame?["payload"] as? [String: Any]
        #expect((payload?["nonce"] as? String)?.count == 32)
    }

    @Test func connectGetsHelloOkAndThenHealthAndStatus() {
        let session = makeSession()
        let hello = json(session.receive(connect())[0])
        #expect(hello?["ok"] as? Bool == true)
        let payload = hello?["payload"] as? [String: Any]
        #expect(payload?["type"] as? String == "hello-ok")
        #expect(payload?["protocol"] as? Int == 4)
        #expect(payload?["auth"] as? [String: [String]] == nil)  // role is a string: see below
        #expect((payload?["auth"] as? [String: Any])?["role"] as? String == "operator")
        #expect((payload?["auth"] as? [String: Any])?["scopes"] as? [String] == ["operator.read"])
        #expect(session.state == .connected)
        let health = json(session.receive(#"{"type":"req","id":"2","method":"health"}"#)[0])
        #expect((health?["payload"] as? [String: Any])?["status"] as? String == "live")
        let status = json(session.receive(#"{"type":"req","id":"3","method":"status"}"#)[0])
        let statusPayload = status?["payload"] as? [String: Any]
        #expect(statusPayload?["pid"] as? Int == 42)
        #expect(statusPayload?["connId"] as? String == "c1")
        #expect(statusPayload?.keys.contains("profile") == true)  // null, but present
    }

    @Test func aRestoredSessionCarriesOnWithItsConnIdStateAndSequence() {
        let session = makeSession()
        _ = session.open()  // seq 1
        _ = session.receive(connect())
        _ = session.tick()  // seq 2
        let snapshot = session.snapshot
        #expect(snapshot?.connId == "c1" && snapshot?.connected == true && snapshot?.seq == 2)
        #expect(snapshot?.role == "operator" && snapshot?.scopes == ["operator.read"] && snapshot?.presence?.host == "cli")

        let restored = ControlPlaneSession(
            restoring: snapshot!, configuration: ControlPlaneConfiguration(serverVersion: "0.1.0", token: "secret"),
            info: ServerInfo(pid: 43, urls: [], profile: nil, listenerSource: "systemd", listenerNames: [], startedAtMs: 0),
            connectionCount: { 1 })
        #expect(restored.state == .connected)  // no second connect, even with a token now set
        let status = json(restored.receive(#"{"type":"req","id":"3","method":"status"}"#)[0])
        let payload = status?["payload"] as? [String: Any]
        #expect(payload?["connId"] as? String == "c1")
        #expect(payload?["pid"] as? Int == 43)
        #expect(json(restored.tick()[0])?["seq"] as? Int == 3)
    }

    @Test func aClosedSessionHasNoSnapshotAndAnAwaitingOneIsNotConnected() {
        let session = makeSession()
        _ = session.open()
        #expect(session.snapshot?.connected == false)
        _ = session.shutdown(reason: "bye", restartExpectedMs: nil)
        #expect(session.snapshot == nil)
    }

    @Test func anUnknownMethodIsInvalidRequestAndTheConnectionStays() {
        let session = makeSession()
        _ = session.receive(connect())
        let actions = session.receive(#"{"type":"req","id":"9","method":"nope"}"#)
        #expect(actions.count == 1)
        #expect((json(actions[0])?["error"] as? [String: Any])?["code"] as? String == "INVALID_REQUEST")
        #expect(session.state == .connected)
    }

    @Test func aFirstFrameThatIsNotConnectCloses1008() {
        let actions = makeSession().receive(#"{"type":"req","id":"1","method":"health"}"#)
        #expect(actions.last == .close(code: 1008, reason: "connect first"))
    }

    @Test func aProtocolOutsideTheRangeIsAnErrorThen1002() {
        let actions = makeSession().receive(connect(min: 5, max: 6))
        #expect((json(actions[0])?["error"] as? [String: Any])?["code"] as? String == "INVALID_REQUEST")
        #expect(actions.last == .close(code: 1002, reason: "protocol mismatch"))
    }

    @Test func aWrongOrMissingTokenIsRefusedInUpstreamsWords() {
        for (token, detail, reason) in [("wrong", "AUTH_TOKEN_MISMATCH", "token_mismatch"), ("", "AUTH_TOKEN_MISSING", "token_missing"),
                                        (nil, "AUTH_TOKEN_MISSING", "token_missing")] as [(String?, String, String)] {
            let session = makeSession(token: "s3cret")
            let actions = session.receive(connect(token: token))
            #expect(actions.first == .authenticationFailed)
            #expect(actions[1] == .refused(code: detail))  // for the log
            let error = error(actions[2])
            #expect(error?["code"] as? String == "INVALID_REQUEST")
            let details = error?["details"] as? [String: Any]
            #expect(details?["code"] as? String == detail)
            #expect(details?["authReason"] as? String == reason)
            #expect(details?["recommendedNextStep"] as? String == (token == "wrong" ? "update_auth_credentials" : "update_auth_configuration"))
            let message = error?["message"] as? String ?? ""
            #expect(message.hasPrefix(token == "wrong" ? "unauthorized: gateway token mismatch" : "unauthorized: gateway token missing"))
            #expect(actions.last == .close(code: 1008, reason: message))
            #expect(session.state == .closed)
        }
        let ok = makeSession(token: "s3cret").receive(connect(token: "s3cret"))
        #expect(json(ok[0])?["ok"] as? Bool == true)
    }

    @Test func aPasswordGatewayWantsThePasswordInUpstreamsWords() {
        for (password, detail, reason) in [("wrong", "AUTH_PASSWORD_MISMATCH", "password_mismatch"),
                                           (nil, "AUTH_PASSWORD_MISSING", "password_missing")] as [(String?, String, String)] {
            // The right token is no password.
            let actions = makeSession(token: "pw", password: "pw").receive(connect(token: "pw", password: password, clientId: "webchat-ui", mode: "webchat"))
            #expect(actions.first == .authenticationFailed && actions[1] == .refused(code: detail))
            let details = error(actions[2])?["details"] as? [String: Any]
            #expect(details?["code"] as? String == detail && details?["authReason"] as? String == reason)
            let message = error(actions[2])?["message"] as? String ?? ""
            #expect(message == "unauthorized: gateway password \(password == nil ? "missing" : "mismatch") (enter the password in Control UI settings)")
            #expect(actions.last == .close(code: 1008, reason: AuthFailure.closeReason(message)))
        }
        let ok = makeSession(password: "pw").receive(connect(password: "pw"))
        #expect(json(ok[0])?["ok"] as? Bool == true)
        #expect((payload(ok[0])?["snapshot"] as? [String: Any])?["authMode"] as? String == "password")
    }

    @Test func aRateLimitedPeerIsToldToWait() {
        let actions = makeSession(token: "s3cret", retryAfter: 1234).receive(connect(token: "s3cret"))
        #expect(!actions.contains(.authenticationFailed))  // a refusal unseen is not a failure
        #expect(actions[0] == .refused(code: "AUTH_RATE_LIMITED"))
        let error = error(actions[1])
        #expect(error?["code"] as? String == "INVALID_REQUEST")
        #expect(error?["retryAfterMs"] as? Int == 1234 && error?["retryable"] as? Bool == true)
        #expect((error?["details"] as? [String: Any])?["code"] as? String == "AUTH_RATE_LIMITED")
        #expect((error?["details"] as? [String: Any])?["recommendedNextStep"] as? String == "wait_then_retry")
        #expect(actions.last == .close(code: 1008, reason: "unauthorized: too many failed authentication attempts (retry later)"))
    }

    @Test func aProtocolMismatchCarriesUpstreamsNumbers() {
        let actions = makeSession().receive(connect(min: 3, max: 3))
        let details = error(actions[0])?["details"] as? [String: Any]
        #expect(details?["code"] as? String == "PROTOCOL_MISMATCH")
        #expect(details?["expectedProtocol"] as? Int == 4 && details?["minimumProbeProtocol"] as? Int == 4)
        #expect(details?["clientMinProtocol"] as? Int == 3 && details?["clientMaxProtocol"] as? Int == 3)
    }

    @Test func theGrantIsTheRequestedOperatorScopesOnly() {
        let session = makeSession()
        let hello = payload(session.receive(connect(scopes: ["operator.admin", "operator.read", "made.up", "operator.admin"]))[0])
        let auth = hello?["auth"] as? [String: Any]
        #expect(auth?["role"] as? String == "operator")
        #expect(auth?["scopes"] as? [String] == ["operator.admin", "operator.read"])
    }

    @Test func withoutAReadScopeOnlyHealthAnswers() {
        let session = makeSession()
        _ = session.receive(connect(scopes: ["operator.pairing"]))
        #expect(json(session.receive(#"{"type":"req","id":"h","method":"health"}"#)[0])?["ok"] as? Bool == true)
        for method in ["status", "system-presence", "config.get"] {
            let refused = error(session.receive(#"{"type":"req","id":"x","method":"\#(method)"}"#)[0])
            #expect(refused?["code"] as? String == "INVALID_REQUEST")
            #expect(refused?["message"] as? String == "missing scope: operator.read")
        }
        #expect(session.state == .connected)
        let writer = makeSession()
        _ = writer.receive(connect(scopes: ["operator.write"]))  // write implies read, as upstream has it
        #expect(json(writer.receive(#"{"type":"req","id":"s","method":"status"}"#)[0])?["ok"] as? Bool == true)
    }

    @Test func aNodeMayAskForHealthOnlyAndAnUnknownRoleIsRefused() {
        let node = makeSession()
        let hello = payload(node.receive(connect(role: "node", scopes: ["operator.admin"]))[0])
        #expect((hello?["auth"] as? [String: Any])?["role"] as? String == "node")
        #expect((hello?["auth"] as? [String: Any])?["scopes"] as? [String] == [])
        #expect(json(node.receive(#"{"type":"req","id":"h","method":"health"}"#)[0])?["ok"] as? Bool == true)
        #expect(error(node.receive(#"{"type":"req","id":"s","method":"status"}"#)[0])?["message"] as? String == "unauthorized role: node")
        let stranger = makeSession().receive(connect(role: "admin"))
        #expect(error(stranger[0])?["code"] as? String == "INVALID_REQUEST")
        #expect(stranger.last == .close(code: 1008, reason: "invalid role"))
    }

    @Test func presenceListsTheGatewayAndEachConnectedClientUntilItLeaves() {
        let board = PresenceBoard(gateway: .gateway(host: "box", ip: "192.0.2.7", version: "0.1.0", platform: "linux 6.1", modelIdentifier: "x86_64"))
        let first = makeSession(presence: board, connId: "a")
        _ = first.receive(connect(clientId: "first"))
        let second = makeSession(presence: board, connId: "b")
        let hello = payload(second.receive(connect(clientId: "second"))[0])
        let snapshot = hello?["snapshot"] as? [String: Any]
        #expect((snapshot?["presence"] as? [[String: Any]])?.compactMap { $0["host"] as? String } == ["box", "second", "first"])
        #expect((snapshot?["stateVersion"] as? [String: Any])?["presence"] as? Int == 2)
        let listed = json(first.receive(#"{"type":"req","id":"p","method":"system-presence"}"#)[0])?["payload"] as? [[String: Any]]
        #expect(listed?.first?["reason"] as? String == "self" && listed?.first?["mode"] as? String == "gateway")
        #expect(listed?.first?["text"] as? String == "Gateway: box (192.0.2.7) · app 0.1.0 · mode gateway · reason self")
        #expect(listed?.last?["roles"] as? [String] == ["operator"] && listed?.last?["reason"] as? String == "connect")
        second.disconnected()
        #expect(board.list(now: 0).compactMap(\.host) == ["box", "first"])
        #expect(board.version == 3)
    }

    @Test func presenceEventsCarryTheListAndTheVersionsAndADroppedOneUsesUpItsSequence() throws {
        let board = PresenceBoard()
        let changes = Counter()
        board.observe { changes.bump() }
        let session = makeSession(presence: board)
        _ = session.open()  // seq 1
        _ = session.receive(connect(mode: "ui"))
        #expect(changes.value == 1)
        let cliRun = makeSession(presence: board, connId: "c2")
        _ = cliRun.receive(connect())  // mode cli: reads presence by asking, gets no events
        let (payload, version) = board.eventPayload(now: 5)
        #expect(cliRun.presenceEvent(payload: payload, presenceVersion: version).isEmpty)
        let event = json(session.presenceEvent(payload: payload, presenceVersion: version)[0])
        #expect(event?["event"] as? String == "presence" && event?["seq"] as? Int == 2)
        #expect((event?["stateVersion"] as? [String: Any])?["presence"] as? Int == 2)
        #expect(((event?["payload"] as? [String: Any])?["presence"] as? [Any])?.count == 3)
        session.skipEvent()  // seq 3, not sent
        #expect(json(session.tick()[0])?["seq"] as? Int == 4)
        // A session carried across a restart rejoins without an event: nobody saw it leave.
        _ = ControlPlaneSession(
            restoring: session.snapshot!, configuration: ControlPlaneConfiguration(serverVersion: "0", token: nil),
            info: ServerInfo(pid: 2, urls: [], profile: nil, listenerSource: "systemd", listenerNames: [], startedAtMs: 0, presence: board),
            connectionCount: { 1 })
        #expect(changes.value == 2)
    }

    @Test func theHandWrittenHealthFrameEqualsWhatJSONEncoderWrites() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        var rng = SplitMix64(state: 0x4EA1_7)
        var ids = ["h1", "", "a\"b", "back\\slash", "new\nline\r\t\u{08}\u{0C}", "\u{00}\u{1F}\u{7F}", "/path/", "κόσμε", "😀\u{2028}\u{2029}"]
        for _ in 0..<2000 {
            let scalars = (0..<Int(rng.next() % 12)).compactMap { _ in Unicode.Scalar(UInt32(rng.next() % [0x80, 0x800, 0x11_0000][Int(rng.next() % 3)])) }
            ids.append(String(String.UnicodeScalarView(scalars)))
        }
        let numbers = [0, 7, -1, 9, 10, 1_795_000_000_123, Int.max, Int.min, -1_000_000]
        for (n, id) in ids.enumerated() {
            let health = HealthPayload(
                ok: n % 5 != 0, status: n % 7 == 0 ? id : "live", ts: numbers[n % numbers.count], durationMs: numbers[(n / 3) % numbers.count],
                uptimeMs: Int(rng.next() % 1_000_000), connections: numbers[(n / 7) % numbers.count])
            let fast = health.responseFrame(id: id)
            let slow = String(decoding: try encoder.encode(ResponseFrame(id: id, ok: true, payload: health, error: nil)), as: UTF8.self)
            let a = try JSONSerialization.jsonObject(with: Data(fast.utf8)) as? NSDictionary
            let b = try JSONSerialization.jsonObject(with: Data(slow.utf8)) as? NSDictionary
            #expect(a != nil && a == b, "\(fast) != \(slow)")
        }
    }

    @Test func configGetAnswersTheRedactedSnapshot() {
        let file = #"{"gateway":{"auth":{"token":"t0ps3cret","password":"pw\"x"},"port":18800},"models":{"maxTokens":5,"apiKey":"${KEY}"}}"#
        let session = makeSession(configFile: ConfigFileSource(path: "/s/openclaw.json", contents: Array(file.utf8)))
        _ = session.receive(connect())
        let answer = json(session.receive(#"{"type":"req","id":"g","method":"config.get","params":{}}"#)[0])
        let text = String(describing: answer)
        #expect(!text.contains("t0ps3cret") && !text.contains("pw"))
        let body = answer?["payload"] as? [String: Any]
        #expect(body?["path"] as? String == "/s/openclaw.json" && body?["exists"] as? Bool == true && body?["valid"] as? Bool == true)
        let gateway = (body?["config"] as? [String: Any])?["gateway"] as? [String: Any]
        #expect((gateway?["auth"] as? [String: Any])?["token"] as? String == ConfigSnapshot.redacted)
        #expect(gateway?["port"] as? Int == 18800)
        let models = (body?["config"] as? [String: Any])?["models"] as? [String: Any]
        #expect(models?["maxTokens"] as? Int == 5 && models?["apiKey"] as? String == "${KEY}")  // not secrets
        #expect((body?["raw"] as? String)?.contains(ConfigSnapshot.redacted) == true)
        #expect(body?["hash"] as? String == SHA256.hex(Array(file.utf8)))
    }

    @Test func aMissingConfigFileIsReportedAsMissing() {
        let snapshot = ConfigSnapshot(path: "/nowhere/openclaw.json", contents: nil)
        #expect(!snapshot.exists && snapshot.raw == nil && snapshot.valid)
        #expect(snapshot.hash == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")  // SHA-256 of ""
    }

    @Test func sha256MatchesTheStandardsVectors() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test func sensitivePathsAreUpstreams() {
        for path in ["gateway.auth.token", "x.password", "a.clientSecret", "p.apiKey", "p.api_key", "g.serviceAccount"] {
            #expect(ConfigSnapshot.isSensitive(path), "\(path)")
        }
        for path in ["models.maxTokens", "x.passwordFile", "gateway.port", "tokens.count", "a.capital"] {
            #expect(!ConfigSnapshot.isSensitive(path), "\(path)")
        }
    }

    @Test func aSessionFromTheReleasedFormatCarriesOnWithReadAccess() {
        let restored = ControlPlaneSession(
            restoring: .init(connId: "old", connected: true, seq: 7), configuration: ControlPlaneConfiguration(serverVersion: "0.2.0", token: nil),
            info: ServerInfo(pid: 43, urls: [], profile: nil, listenerSource: "systemd", listenerNames: [], startedAtMs: 0),
            connectionCount: { 1 })
        #expect(json(restored.receive(#"{"type":"req","id":"s","method":"status"}"#)[0])?["ok"] as? Bool == true)
        #expect(restored.snapshot?.scopes == ["operator.read"])
    }

    @Test func unreadableIdsClose1007() {
        for text in ["not json", "[1,2]", #"{"type":"req","method":"connect"}"#, #"{"type":"req","id":7,"method":"connect"}"#, #"{"id":""}"#] {
            #expect(makeSession().receive(text).last == .close(code: 1007, reason: text == "not json" ? "invalid JSON" : "a request needs a non-empty string id"))
        }
    }

    @Test func shutdownSendsTheEventThenCloses1012() {
        let session = makeSession()
        _ = session.receive(connect())
        let actions = session.shutdown(reason: "gateway stopping", restartExpectedMs: nil)
        let event = json(actions[0])
        #expect(event?["event"] as? String == "shutdown")
        #expect((event?["payload"] as? [String: Any])?.keys.sorted() == ["reason"])  // omitted, never null
        #expect(actions.last == .close(code: 1012, reason: "service restart"))
    }

    @Test func tokensCompareInConstantTimeButCorrectly() {
        #expect(ControlPlaneSession.constantTimeEquals("abc", "abc"))
        #expect(!ControlPlaneSession.constantTimeEquals("abc", "abd"))
        #expect(!ControlPlaneSession.constantTimeEquals("abc", "abcd"))
        #expect(!ControlPlaneSession.constantTimeEquals("", "a"))
    }
}

/// A seeded generator (SplitMix64): the same inputs on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct ControlPlaneFuzzTests {
    static let errorCodes: Set<String> = ["NOT_LINKED", "NOT_PAIRED", "AGENT_TIMEOUT", "INVALID_REQUEST", "APPROVAL_NOT_FOUND", "UNAVAILABLE"]
    static let closeCodes: Set<UInt16> = [1002, 1007, 1008, 1012]

    /// What is wrong with the actions a session answered one input with, if anything: every frame
    /// is a JSON response or event of the protocol's shape, a close (if any) comes last with a
    /// code the session may send and a reason that fits a close frame, and the session is closed
    /// exactly when it sent a close.
    static func problem(_ actions: [SessionAction], state: ControlPlaneSession.State) -> String? {
        for (index, action) in actions.enumerated() {
            switch action {
            case .send(let text):
                guard let frame = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
                    return "not a JSON object: \(text)"
                }
                switch frame["type"] as? String {
                case "res":
                    guard let id = frame["id"] as? String, !id.isEmpty, let ok = frame["ok"] as? Bool else { return "bad response: \(text)" }
                    if !ok {
                        let error = frame["error"] as? [String: Any]
                        guard let code = error?["code"] as? String, errorCodes.contains(code),
                            let message = error?["message"] as? String, !message.isEmpty
                        else { return "bad error: \(text)" }
                    } else if frame["payload"] == nil {
                        return "a success without a payload: \(text)"
                    }
                case "event":
                    guard let name = frame["event"] as? String, !name.isEmpty, frame["payload"] != nil else { return "bad event: \(text)" }
                default:
                    return "neither response nor event: \(text)"
                }
            case .close(let code, let reason):
                guard closeCodes.contains(code), reason.utf8.count <= 123 else { return "bad close \(code) \(reason)" }
                guard index == actions.count - 1 else { return "actions after a close" }
            case .authenticationFailed, .refused:
                break
            }
        }
        let closed = actions.contains { if case .close = $0 { true } else { false } }
        if closed != (state == .closed) { return "closed \(closed) but state \(state)" }
        return nil
    }

    /// One million inputs through the decoding path of a session: mutations of valid frames and
    /// purely random text (any Unicode: the transport passes only UTF-8). Every input's actions
    /// are checked (``problem(_:state:)``), and no input may crash it.
    @Test func oneMillionInputsDecodeWithoutACrash() {
        var rng = SplitMix64(state: 0x0C1A_3A7E)
        let seeds = [
            connect(), #"{"type":"req","id":"2","method":"health"}"#, #"{"type":"req","id":"3","method":"status","params":{}}"#,
            #"{"type":"req","id":"4","method":"system-presence"}"#, #"{"type":"req","id":"5","method":"config.get","params":{}}"#,
            connect(min: 1, max: 9, token: "x"), connect(token: "tok", role: "node"), connect(role: "root"),
            #"{"type":"event","event":"tick"}"#, "[]", "{}", "null",
        ]
        let alphabet = Array(#"{}[]":,0123456789.-+eE truefalsnul\"#.utf8) + [0, 0xC3, 0xA9, 0xFF, 0x7F]
        var problems: [String] = []
        var answered = 0
        var session = makeSession(token: "tok")
        for i in 0..<1_000_000 {
            let text: String
            if i % 4 == 3 {
                // purely random text: scalars from ASCII up to the supplementary planes
                let scalars = (0..<Int(rng.next() % 48)).compactMap { _ -> Unicode.Scalar? in
                    let limit: UInt64 = [0x80, 0x800, 0x11_0000][Int(rng.next() % 3)]
                    return Unicode.Scalar(UInt32(rng.next() % limit))
                }
                text = String(String.UnicodeScalarView(scalars))
            } else {
                var bytes = Array(seeds[Int(rng.next() % UInt64(seeds.count))].utf8)
                let mutations = Int(rng.next() % 4)
                for _ in 0...mutations where !bytes.isEmpty {
                    let at = Int(rng.next() % UInt64(bytes.count))
                    switch rng.next() % 3 {
                    case 0: bytes[at] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                    case 1: bytes.remove(at: at)
                    default: bytes.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                    }
                }
                text = String(decoding: bytes, as: UTF8.self)
            }
            if i % 5 == 0 || session.state == .closed { session = makeSession(token: i % 2 == 0 ? "tok" : nil) }
            let actions = session.receive(text)
            if !actions.isEmpty { answered += 1 }
            if let problem = Self.problem(actions, state: session.state), problems.count < 5 {
                problems.append("\(problem) (input: \(text))")
            }
        }
        #expect(problems.isEmpty, "\(problems)")
        #expect(answered > 900_000, "inputs answered: \(answered)")  // nearly every input gets an answer
    }
}

final class Counter: @unchecked Sendable {
    private(set) var value = 0
    func bump() { value += 1 }
}
