import Testing

@testable import GatewayProtocol

import Foundation  // JSONSerialization, to read frames the way an independent client would

func makeSession(token: String? = nil, retryAfter: Int? = nil) -> ControlPlaneSession {
    ControlPlaneSession(
        configuration: ControlPlaneConfiguration(serverVersion: "0.1.0", token: token),
        info: ServerInfo(pid: 42, urls: ["ws://127.0.0.1:18789"], profile: nil, listenerSource: "bound", listenerNames: [], startedAtMs: 0),
        connId: "c1", connectionCount: { 1 }, retryAfterMs: { retryAfter })
}

func connect(id: String = "1", min: Int = 4, max: Int = 4, token: String? = nil) -> String {
    let auth = token.map { #","auth":{"token":"\#($0)"}"# } ?? ""
    return #"{"type":"req","id":"\#(id)","method":"connect","params":{"minProtocol":\#(min),"maxProtocol":\#(max),"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"}\#(auth)}}"#
}

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
        #expect(payload?["auth"] == nil)
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
        #expect(snapshot == ControlPlaneSession.Snapshot(connId: "c1", connected: true, seq: 2))

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

    @Test func aWrongOrMissingTokenIsUnauthorized() {
        for token in ["wrong", "", nil] as [String?] {
            let actions = makeSession(token: "s3cret").receive(connect(token: token))
            #expect(actions.first == .authenticationFailed)
            let error = json(actions[1])?["error"] as? [String: Any]
            #expect(error?["code"] as? String == "UNAUTHORIZED")
            #expect((error?["details"] as? [String: Any])?["code"] as? String == "AUTH_TOKEN_MISMATCH")
            #expect(actions.last == .close(code: 1008, reason: "unauthorized"))
        }
        let ok = makeSession(token: "s3cret").receive(connect(token: "s3cret"))
        #expect(json(ok[0])?["ok"] as? Bool == true)
    }

    @Test func aRateLimitedPeerIsToldToWait() {
        let actions = makeSession(token: "s3cret", retryAfter: 1234).receive(connect(token: "s3cret"))
        let error = json(actions[0])?["error"] as? [String: Any]
        #expect(error?["retryAfterMs"] as? Int == 1234)
        #expect(actions.last == .close(code: 1008, reason: "rate limited"))
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
    /// One million inputs through the decoding path of a session (mutations of valid frames and
    /// random bytes); every one must end in a defined action, never a crash.
    @Test func oneMillionInputsDecodeWithoutACrash() {
        var rng = SplitMix64(state: 0x0C1A_3A7E)
        let seeds = [
            connect(), #"{"type":"req","id":"2","method":"health"}"#, #"{"type":"req","id":"3","method":"status","params":{}}"#,
            connect(min: 1, max: 9, token: "x"), #"{"type":"event","event":"tick"}"#, "[]", "{}", "null",
        ]
        let alphabet = Array(#"{}[]":,0123456789.-+eE truefalsnul\"#.utf8) + [0, 0xC3, 0xA9, 0xFF, 0x7F]
        var actionsSeen = 0
        var invalidFrames: [String] = []
        var session = makeSession(token: "tok")
        for i in 0..<1_000_000 {
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
            let text = String(decoding: bytes, as: UTF8.self)
            if i % 5 == 0 || session.state == .closed { session = makeSession(token: i % 2 == 0 ? "tok" : nil) }
            let actions = session.receive(text)
            actionsSeen += actions.count
            // Every tenth answer is parsed back: ids are echoed, so escaping is exercised too.
            if i % 10 == 0 {
                for case .send(let out) in actions where (try? JSONSerialization.jsonObject(with: Data(out.utf8))) == nil {
                    invalidFrames.append(out)
                }
            }
        }
        #expect(actionsSeen > 0)
        #expect(invalidFrames.isEmpty, "\(invalidFrames.prefix(3))")
    }
}
