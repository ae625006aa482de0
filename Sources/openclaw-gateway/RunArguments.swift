import GatewayConfig
import Logging

/// `run`'s command line, read by hand: the only parser `run` has. ArgumentParser reads the other
/// commands (and prints the top-level help and the completion scripts, from ``RunCommand``, which
/// declares these same options from this same table). By hand because a duplicate is refused before
/// anything else happens, and ArgumentParser's parse alone takes longer than a whole
/// bind-and-refuse.
enum RunArguments {
    /// What a command line asks of `run`.
    enum Request: Equatable {
        case run(RunSettings)
        case help
        case version
    }

    struct UsageError: Error, Equatable {
        let message: String
    }

    /// One option of `run`: its name (`--port`), the name of its value (nil for a flag), what it
    /// does, and how it sets ``RunSettings``.
    struct Option: Sendable {
        let name: String
        let valueName: String?
        /// Made when asked (help, completions), not at every start.
        let helpText: @Sendable () -> String
        let apply: @Sendable (inout RunSettings, String) throws(UsageError) -> Void

        init(
            name: String, valueName: String?, help: @escaping @Sendable @autoclosure () -> String,
            apply: @escaping @Sendable (inout RunSettings, String) throws(UsageError) -> Void
        ) {
            self.name = name
            self.valueName = valueName
            self.helpText = help
            self.apply = apply
        }

        var help: String { helpText() }
    }

    /// Every option, in the order the help lists them.
    static let options: [Option] = [
        Option(
            name: "--port", valueName: "port",
            help: "Port to listen on (1-65535). Precedence: --port, OPENCLAW_GATEWAY_PORT, config gateway.port, \(GatewayConfiguration.defaultPort) (\(GatewayConfiguration.devPort) for --dev)."
        ) { settings, value in settings.options.port = value },
        Option(
            name: "--profile", valueName: "name",
            help: "Isolated profile: state directory ~/.openclaw-<name> with its own openclaw.json."
        ) { settings, value in settings.options.profile = value },
        Option(
            name: "--dev", valueName: nil,
            help: "The 'dev' profile (default port \(GatewayConfiguration.devPort)). Cannot be combined with --profile."
        ) { settings, _ in settings.options.dev = true },
        Option(
            name: "--bind", valueName: "loopback|lan|ip",
            help: "Address to listen on: loopback (127.0.0.1, plus [::1] best-effort), lan (0.0.0.0) or an IP address. Beyond loopback a token or password (OPENCLAW_GATEWAY_PASSWORD, gateway.auth.password) is required."
        ) { settings, value in settings.options.bind = value },
        Option(
            name: "--token", valueName: "token",
            help: "Shared token clients must present (also OPENCLAW_GATEWAY_TOKEN or config gateway.auth.token). Prefer the environment: flags are visible in ps."
        ) { settings, value in settings.options.token = value },
        Option(
            name: "--log-level", valueName: "level",
            help: "trace, debug, info, notice, warning, error or critical (also OPENCLAW_LOG_LEVEL, then config logging.level). Default: info."
        ) { (settings, value) throws(UsageError) in
            guard Logger.Level(rawValue: value) != nil else {
                throw UsageError(message: "invalid --log-level '\(value)': expected trace, debug, info, notice, warning, error or critical")
            }
            settings.logLevel = value
        },
        Option(
            name: "--force", valueName: nil,
            help: "If another openclaw-gateway holds the port, stop it (SIGTERM, SIGKILL after 5 s) and take the port. Never touches anything else."
        ) { settings, _ in settings.force = true },
    ] + Limits.Key.allCases.map { key in
        Option(name: key.flag, valueName: key.valueName, help: key.helpText) { (settings, value) throws(UsageError) in
            guard let number = Int(value) else {
                throw UsageError(message: "invalid \(key.flag) '\(value)': expected a whole number")
            }
            guard number >= 1 else {
                throw UsageError(message: "invalid \(key.flag) \(number): expected a positive number")
            }
            settings.options.limits[key] = number
        }
    }

    static func option(_ name: String) -> Option? {
        options.first { $0.name == name }
    }

    /// Reads `arguments` (after the program's name, with or without `run` first). An option given
    /// twice takes the last value, as ArgumentParser does.
    static func parse(_ arguments: [String]) -> Result<Request, UsageError> {
        var rest = arguments[...]
        if rest.first == "run" { rest = rest.dropFirst() }
        var settings = RunSettings()
        while let argument = rest.popFirst() {
            switch argument {
            case "--help", "-h": return .success(.help)
            case "--version": return .success(.version)
            default: break
            }
            guard argument.hasPrefix("--") else {
                return .failure(UsageError(message: "unexpected argument '\(argument)'"))
            }
            var name = argument
            var attached: String?
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                attached = String(argument[argument.index(after: equals)...])
            }
            guard let option = option(name) else {
                return .failure(UsageError(message: "unknown option '\(name)'"))
            }
            let value: String
            if let valueName = option.valueName {
                // `--port -1` is a value; `--port --dev` is a missing value
                if let attached {
                    value = attached
                } else if let next = rest.first, !next.hasPrefix("--") {
                    value = next
                    rest = rest.dropFirst()
                } else {
                    return .failure(UsageError(message: "missing value for '\(name) <\(valueName)>'"))
                }
            } else {
                guard attached == nil else {
                    return .failure(UsageError(message: "'\(name)' takes no value"))
                }
                value = ""
            }
            do throws(UsageError) {
                try option.apply(&settings, value)
            } catch {
                return .failure(error)
            }
        }
        return .success(.run(settings))
    }

    static let abstract = "Serve the gateway (the default command)."
    static let discussion = """
        The listening socket comes from systemd (socket activation: LISTEN_FDS, fds named \
        'gateway' preferred) or, without it, from a bind of --bind:--port by this process. A \
        second gateway on the same port exits at once with status 78:
          GatewayLockError: another gateway instance is already listening on ws://127.0.0.1:<port>

        Exit statuses: 0 clean shutdown (SIGTERM or SIGINT); 64 usage error (bad flag, port, \
        profile or bind); 75 stopped for systemd to start it again with a changed configuration \
        (gateway.reload.mode restart or hybrid); 78 the listener could not be had \
        (GatewayLockError) or the configuration is wrong.
        """

    /// `openclaw-gateway run --help`, from the table.
    static var helpText: String {
        var lines = ["OVERVIEW: \(abstract)", ""]
        lines += discussion.split(separator: "\n", omittingEmptySubsequences: false).flatMap { paragraph in
            paragraph.hasPrefix("  ") ? [String(paragraph)] : wrap(String(paragraph), width: 79, indent: "")
        }
        lines += ["", "USAGE: openclaw-gateway [run] [<options>]", "", "OPTIONS:"]
        for option in options + [Option(name: "--help", valueName: nil, help: "Show help information.") { _, _ in }] {
            let head = "  " + option.name + (option.valueName.map { " <\($0)>" } ?? "")
            let body = wrap(option.help, width: 79 - 26, indent: "")
            if head.count < 24 {
                lines.append(head.padding(to: 26) + (body.first ?? ""))
            } else {
                lines.append(head)
                lines.append(String(repeating: " ", count: 26) + (body.first ?? ""))
            }
            lines += body.dropFirst().map { String(repeating: " ", count: 26) + $0 }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func wrap(_ text: String, width: Int, indent: String) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > width {
                lines.append(line)
                line = indent
            }
            line += (line.isEmpty || line == indent ? "" : " ") + word
        }
        if !line.isEmpty || lines.isEmpty { lines.append(line) }
        return lines
    }
}

extension String {
    fileprivate func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
