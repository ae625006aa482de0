import GatewayLock
import Testing

@testable import GatewayConfig

#if canImport(Glibc)
import Glibc
#endif

/// A fresh HOME with an optional config file for a profile.
struct Home {
    let path: String

    init() {
        var template = Array("/tmp/openclaw-config-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: made!)
    }

    func writeConfig(_ text: String, profile: String? = nil) -> String {
        let dir = path + (profile.map { "/.openclaw-\($0)" } ?? "/.openclaw")
        mkdir(dir, 0o700)
        let file = dir + "/openclaw.json"
        let handle = fopen(file, "w")!
        fputs(text, handle)
        fclose(handle)
        return file
    }

    var environment: [String: String] { ["HOME": path] }
}

@Suite struct GatewayConfigurationTests {
    @Test func defaultsToLoopback18789() throws {
        let config = try GatewayConfiguration.resolve(.init(), environment: Home().environment)
        #expect(config.port == 18789)
        #expect(config.portOrigin == .builtInDefault)
        #expect(config.bindAddress == .loopback)
        #expect(config.lockRequest.url == "ws://127.0.0.1:18789")
    }

    @Test func portPrecedenceIsFlagThenEnvironmentThenConfigThenDefault() throws {
        let home = Home()
        _ = home.writeConfig(#"{"gateway":{"port":18003}}"#)
        var env = home.environment
        env["OPENCLAW_GATEWAY_PORT"] = "18002"
        #expect(try GatewayConfiguration.resolve(.init(port: "18001"), environment: env).port == 18001)
        #expect(try GatewayConfiguration.resolve(.init(), environment: env).port == 18002)
        env["OPENCLAW_GATEWAY_PORT"] = nil
        #expect(try GatewayConfiguration.resolve(.init(), environment: env).port == 18003)
    }

    @Test func profilesHaveTheirOwnStateDirectoryAndConfig() throws {
        let home = Home()
        let file = home.writeConfig(#"{"gateway":{"port":18100}}"#, profile: "work")
        let config = try GatewayConfiguration.resolve(.init(profile: "work"), environment: home.environment)
        #expect(config.stateDirectory == home.path + "/.openclaw-work")
        #expect(config.configFile == file)
        #expect(config.port == 18100)
    }

    @Test func devIsTheDevProfileOnPort19001() throws {
        let home = Home()
        let config = try GatewayConfiguration.resolve(.init(dev: true), environment: home.environment)
        #expect(config.profile == "dev")
        #expect(config.port == 19001)
        #expect(config.stateDirectory == home.path + "/.openclaw-dev")
    }

    @Test func devWithProfileIsAUsageError() {
        let error = #expect(throws: ConfigurationError.self) {
            try GatewayConfiguration.resolve(.init(profile: "x", dev: true), environment: Home().environment)
        }
        #expect(error?.exitStatus == 64)
    }

    @Test(arguments: ["0", "70000", "abc", "-1", ""])
    func invalidPortFlagsAreUsageErrors(port: String) {
        let error = #expect(throws: ConfigurationError.self) {
            try GatewayConfiguration.resolve(.init(port: port), environment: Home().environment)
        }
        #expect(error?.exitStatus == 64)
    }

    @Test func anInvalidPortInTheEnvironmentIsAUsageError() {
        var env = Home().environment
        env["OPENCLAW_GATEWAY_PORT"] = "port"
        let error = #expect(throws: ConfigurationError.self) { try GatewayConfiguration.resolve(.init(), environment: env) }
        #expect(error?.exitStatus == 64)
        #expect(error?.message.contains("OPENCLAW_GATEWAY_PORT") == true)
    }

    @Test func aMalformedConfigIsAConfigErrorNamingTheFileEvenWithPort() {
        let home = Home()
        let file = home.writeConfig(#"{"gateway": {"port": 18001,"#)
        let error = #expect(throws: ConfigurationError.self) {
            try GatewayConfiguration.resolve(.init(port: "18002"), environment: home.environment)
        }
        #expect(error?.exitStatus == 78)
        #expect(error?.message.hasPrefix("invalid config \(file): not valid JSON") == true)
    }

    @Test func aConfigPortOfTheWrongTypeOrRangeIsAConfigError() {
        let home = Home()
        _ = home.writeConfig(#"{"gateway":{"port":"18001"}}"#)
        let wrongType = #expect(throws: ConfigurationError.self) { try GatewayConfiguration.resolve(.init(), environment: home.environment) }
        #expect(wrongType?.exitStatus == 78)
        #expect(wrongType?.message.contains("gateway.port has the wrong type") == true)
        _ = home.writeConfig(#"{"gateway":{"port":0}}"#)
        let outOfRange = #expect(throws: ConfigurationError.self) { try GatewayConfiguration.resolve(.init(), environment: home.environment) }
        #expect(outOfRange?.exitStatus == 78)
    }

    @Test func stateDirectoryPrecedence() throws {
        let home = Home()
        var env = home.environment
        env["STATE_DIRECTORY"] = "/var/lib/openclaw-gateway"
        #expect(try GatewayConfiguration.resolve(.init(), environment: env).stateDirectory == "/var/lib/openclaw-gateway")
        env["OPENCLAW_STATE_DIR"] = home.path + "/explicit"
        #expect(try GatewayConfiguration.resolve(.init(), environment: env).stateDirectory == home.path + "/explicit")
    }

    @Test func bindingBeyondLoopbackNeedsAToken() throws {
        let home = Home()
        let error = #expect(throws: ConfigurationError.self) { try GatewayConfiguration.resolve(.init(bind: "lan"), environment: home.environment) }
        #expect(error?.exitStatus == 78)
        var env = home.environment
        env["OPENCLAW_GATEWAY_TOKEN"] = "secret"
        let config = try GatewayConfiguration.resolve(.init(bind: "lan"), environment: env)
        #expect(config.lockRequest.url == "ws://0.0.0.0:18789")
        #expect(config.token == "secret")
        _ = home.writeConfig(#"{"gateway":{"auth":{"token":"from-file"}}}"#)
        #expect(try GatewayConfiguration.resolve(.init(bind: "::"), environment: home.environment).token == "from-file")
    }

    @Test func badBindAndProfileNamesAreUsageErrors() {
        #expect(throws: ConfigurationError.usage("--bind 'example.com': expected loopback, lan or an IP address")) {
            try GatewayConfiguration.resolve(.init(bind: "example.com"), environment: Home().environment)
        }
        let error = #expect(throws: ConfigurationError.self) {
            try GatewayConfiguration.resolve(.init(profile: "../etc"), environment: Home().environment)
        }
        #expect(error?.exitStatus == 64)
    }

    @Test func trustedProxiesAreAddressesAndRangesAndAnythingElseIsAConfigError() throws {
        let home = Home()
        _ = home.writeConfig(#"{"gateway":{"trustedProxies":["127.0.0.1"," 10.0.0.0/8","::1","fd00::/8","::ffff:192.168.0.0/112"]}}"#)
        let ranges = try GatewayConfiguration.resolve(.init(), environment: home.environment).trustedProxies
        #expect(ranges.map(\.description) == ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "192.168.0.0/16"])
        #expect(ranges[1].contains("10.200.3.4") && !ranges[1].contains("11.0.0.1"))
        #expect(ranges[1].contains("::ffff:10.1.2.3"))  // a dual-stack socket's IPv4 peer
        #expect(ranges[3].contains("fd12::7") && !ranges[3].contains("fe80::1"))
        #expect(ranges[4].contains("192.168.44.1") && !ranges[4].contains("192.169.0.1"))
        for bad in ["10.0.0.0/33", "localhost", "10.0.0.0/", "::/129", "1.2.3.4/8/8", "::ffff:1.2.3.4/95", "10.0.0.0/+8"] {
            let file = home.writeConfig(#"{"gateway":{"trustedProxies":["::1",""# + bad + #""]}}"#)
            #expect(throws: ConfigurationError.config(
                "invalid config \(file): gateway.trustedProxies[1] '\(bad)' is not an IP address or CIDR range "
                    + "(such as 127.0.0.1 or 10.0.0.0/8)")) {
                try GatewayConfiguration.resolve(.init(), environment: home.environment)
            }
        }
    }

    @Test func anUpstreamStyleJSON5FileIsRead() throws {
        let home = Home()
        _ = home.writeConfig("""
            // ~/.openclaw/openclaw.json, as upstream's docs write it
            {
              agents: { defaults: { workspace: '~/work', }, },  /* not ours: left alone */
              gateway: {
                port: 0x4651,
                auth: { token: 'from-json5', rateLimit: { maxAttempts: 3, }, },
                controlUi: { allowedOrigins: ['https://ui.example',], },
              },
            }
            """)
        let config = try GatewayConfiguration.resolve(.init(), environment: home.environment)
        #expect(config.port == 0x4651 && config.token == "from-json5" && config.rateLimit.maxAttempts == 3)
        #expect(config.allowedOrigins == ["https://ui.example"])
    }

    @Test func openclawConfigPathNamesTheFileAndTheStateDirectoryStays() throws {
        let home = Home()
        let elsewhere = home.writeConfig(#"{gateway: {port: 18111}}"#, profile: "elsewhere")
        var env = home.environment
        env["OPENCLAW_CONFIG_PATH"] = elsewhere
        let config = try GatewayConfiguration.resolve(.init(profile: "work"), environment: env)
        #expect(config.configFile == elsewhere && config.port == 18111)
        #expect(config.stateDirectory == home.path + "/.openclaw-work")
        env["OPENCLAW_CONFIG_PATH"] = "~/.openclaw-elsewhere/openclaw.json"
        #expect(try GatewayConfiguration.resolve(.init(), environment: env).configFile == elsewhere)
        env["OPENCLAW_CONFIG_PATH"] = home.path + "/missing.json"
        let missing = try GatewayConfiguration.resolve(.init(), environment: env)
        #expect(!missing.configFileLoaded && missing.port == GatewayConfiguration.defaultPort)
    }

    @Test func authModeAndItsSecretAsUpstreamResolvesThem() throws {
        let home = Home()
        var env = home.environment
        func resolve(_ options: CommandLineOptions = .init()) throws -> GatewayConfiguration.Auth {
            try GatewayConfiguration.resolve(options, environment: env).auth
        }
        #expect(try resolve() == .none)
        _ = home.writeConfig(#"{gateway: {auth: {token: 'tok'}}}"#)
        #expect(try resolve() == .token("tok"))
        // A password set and no mode: password wins, as upstream infers it.
        _ = home.writeConfig(#"{gateway: {auth: {token: 'tok', password: 'pw'}}}"#)
        #expect(try resolve() == .password("pw"))
        env["OPENCLAW_GATEWAY_PASSWORD"] = "env-pw"
        #expect(try resolve() == .password("env-pw"))
        _ = home.writeConfig(#"{gateway: {auth: {mode: 'token', token: 'tok', password: 'pw'}}}"#)
        #expect(try resolve() == .token("tok"))
        #expect(try resolve(.init(token: "flag")) == .token("flag"))
        let file = home.writeConfig(#"{gateway: {auth: {mode: 'token'}}}"#)
        #expect(throws: ConfigurationError.config(
            "invalid config \(file): gateway.auth.mode is \"token\" but no token is set (--token, OPENCLAW_GATEWAY_TOKEN or gateway.auth.token)"
        )) { try resolve() }
        env["OPENCLAW_GATEWAY_PASSWORD"] = nil
        _ = home.writeConfig(#"{gateway: {auth: {mode: 'password', token: 'tok'}}}"#)
        #expect(throws: ConfigurationError.config(
            "invalid config \(file): gateway.auth.mode is \"password\" but no password is set (OPENCLAW_GATEWAY_PASSWORD or gateway.auth.password)"
        )) { try resolve() }
        _ = home.writeConfig(#"{gateway: {auth: {mode: 'trusted-proxy'}}}"#)
        #expect(throws: ConfigurationError.config(
            "invalid config \(file): gateway.auth.mode \"trusted-proxy\" is not served by this gateway (token, password or none)"
        )) { try resolve() }
        // Beyond loopback, a password is a secret too.
        _ = home.writeConfig(#"{gateway: {auth: {password: 'pw'}}}"#)
        #expect(try GatewayConfiguration.resolve(.init(bind: "lan"), environment: env).auth == .password("pw"))
    }

    @Test func aReloadNamesWhatChangedAndKeepsTheListener() throws {
        let home = Home()
        _ = home.writeConfig(#"{gateway: {port: 18201, auth: {token: 'a'}}}"#)
        let before = try GatewayConfiguration.resolve(.init(), environment: home.environment)
        _ = home.writeConfig(#"{gateway: {port: 18202, bind: 'lan', auth: {token: 'b'}, controlUi: {allowedOrigins: ['https://x.example']}, reload: {mode: 'off'}}}"#)
        let after = try GatewayConfiguration.resolve(.init(), environment: home.environment)
        #expect(before.changes(to: after) == ConfigurationChanges(
            live: ["gateway.auth", "gateway.controlUi.allowedOrigins", "gateway.reload"], needRestart: ["gateway.port", "gateway.bind"]))
        let taken = before.takingUp(after)
        #expect(taken.port == 18201 && taken.bindAddress == before.bindAddress && taken.token == "b" && taken.reload.mode == .off)
        #expect(taken.changes(to: after).needRestart == ["gateway.port", "gateway.bind"])  // still pending
        #expect(before.changes(to: before).isEmpty)
    }

    @Test func reloadSettingsAreUpstreamsAndAnythingElseIsAConfigError() throws {
        let home = Home()
        #expect(try GatewayConfiguration.resolve(.init(), environment: home.environment).reload == ReloadSettings())
        let file = home.writeConfig(#"{gateway: {reload: {mode: 'sometimes'}}}"#)
        #expect(throws: ConfigurationError.config(
            "invalid config \(file): gateway.reload.mode \"sometimes\" is not one of off, hot, restart, hybrid")) {
            try GatewayConfiguration.resolve(.init(), environment: home.environment)
        }
        _ = home.writeConfig(#"{gateway: {reload: {mode: 'hot', debounceMs: 0}}}"#)
        let settings = try GatewayConfiguration.resolve(.init(), environment: home.environment).reload
        #expect(settings.mode == .hot && settings.debounceMs == 0)
    }

    @Test func limitsAreFlagThenEnvironmentThenTheFilesEnvBlockThenUnset() throws {
        let home = Home()
        _ = home.writeConfig(
            #"{env: {OPENCLAW_GATEWAY_MAX_CONNECTIONS: '30', OPENCLAW_GATEWAY_MAX_PAYLOAD: 4000, shellEnv: {enabled: true}, "#
                + #"vars: {OPENCLAW_GATEWAY_TICK_INTERVAL_MS: '700', OPENCLAW_GATEWAY_MAX_PAYLOAD: '1'}}}"#)
        var environment = home.environment
        environment["OPENCLAW_GATEWAY_MAX_CONNECTIONS"] = "20"
        let options = CommandLineOptions(limits: [.tickIntervalMs: 500])
        let limits = try GatewayConfiguration.resolve(options, environment: environment).limits
        // env.NAME wins over env.vars.NAME, as the later of upstream's two spellings
        #expect(limits == Limits([.maxConnections: 20, .maxPayload: 4000, .tickIntervalMs: 500]))
        #expect(Limits.Key.allCases.map(\.environmentName).allSatisfy(configurationEnvironmentNames.contains))
        for key in Limits.Key.allCases {  // the flag's name in upper case, after OPENCLAW_GATEWAY_
            #expect(key.environmentName == "OPENCLAW_GATEWAY_" + String(key.rawValue.uppercased().map { $0 == "-" ? "_" : $0 }))
        }
        let before = try GatewayConfiguration.resolve(.init(), environment: home.environment)
        _ = home.writeConfig(#"{env: {OPENCLAW_GATEWAY_MAX_CONNECTIONS: '31'}}"#)
        let after = try GatewayConfiguration.resolve(.init(), environment: home.environment)
        #expect(before.changes(to: after) == ConfigurationChanges(live: [
            "env.OPENCLAW_GATEWAY_MAX_CONNECTIONS", "env.OPENCLAW_GATEWAY_MAX_PAYLOAD", "env.OPENCLAW_GATEWAY_TICK_INTERVAL_MS",
        ]))
    }

    @Test func eachReloadModeRestartsForWhatUpstreamsDoes() {
        let changes = ConfigurationChanges(live: ["gateway.auth"], needRestart: ["gateway.port"])
        var settings = ReloadSettings()
        let restarts = ReloadSettings.Mode.allCases.map { mode in
            settings.mode = mode
            return "\(mode): \(settings.restartKeys(changes))"
        }
        #expect(restarts == [
            "off: []", "hot: []", "restart: [\"gateway.port\", \"gateway.auth\"]", "hybrid: [\"gateway.port\"]",
        ])
        settings.mode = .hybrid
        #expect(settings.restartKeys(ConfigurationChanges(live: ["gateway.auth"])).isEmpty)
    }
}
