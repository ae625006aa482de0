"""Flags, environment and config file, as a user meets them: exit statuses and one-line errors."""

import json
import os
import re
import socket
import subprocess

import pytest

from harness import BIN, free_port, http_get, port_accepts


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_documents_the_exit_statuses(gateways, argv):
    gw = gateways(argv, notify=False)
    assert gw.wait() == 0
    text = " ".join(gw.stdout().split())
    for status, meaning in (("0", "clean shutdown"), ("64", "usage error"), ("75", "systemd to start it again"),
                            ("78", "GatewayLockError")):
        assert re.search(rf"\b{status} [^.;]*{meaning}", text), (status, meaning, text)


@pytest.mark.parametrize("port", ["0", "70000", "abc"])
def test_an_invalid_port_flag_is_a_usage_error(gateways, port):
    gw = gateways(["--port", port], notify=False)
    assert gw.wait() == 64
    assert gw.lines == [f"openclaw-gateway: invalid --port '{port}': expected a port number from 1 to 65535"]


def test_an_invalid_port_in_the_environment_is_a_usage_error(gateways):
    gw = gateways([], notify=False, env={"OPENCLAW_GATEWAY_PORT": "lots"})
    assert gw.wait() == 64
    assert "OPENCLAW_GATEWAY_PORT" in gw.lines[0]


@pytest.mark.parametrize("argv,says", [(["--prot", "1"], "--prot"), (["--log-level", "loud"], "loud"),
                                       (["--max-connections", "0"], "--max-connections"),
                                       (["status", "--bogus"], "--bogus")])
def test_a_usage_error_is_one_line_and_64(gateways, argv, says):
    # A daemon's errors land in a journal: one line each, as the README's table promises.
    gw = gateways(argv, notify=False)
    assert gw.wait() == 64
    assert len(gw.lines) == 1 and gw.lines[0].startswith("openclaw-gateway: ") and says in gw.lines[0], gw.lines


def test_dev_with_profile_is_a_usage_error(gateways):
    gw = gateways(["--dev", "--profile", "work"], notify=False)
    assert gw.wait() == 64
    assert "--dev and --profile cannot be combined" in gw.stderr


def _write_config(home, data, profile=None):
    directory = os.path.join(home, f".openclaw-{profile}" if profile else ".openclaw")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "openclaw.json")
    with open(path, "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_malformed_config_exits_78_naming_the_file(gateways, home):
    path = _write_config(home, '{"gateway": {"port": ')
    gw = gateways(["--port", str(free_port())], notify=False)
    assert gw.wait() == 78
    assert len(gw.lines) == 1
    assert gw.lines[0].startswith(f"openclaw-gateway: invalid config {path}: not valid JSON")


def test_port_precedence_flag_env_config(gateways, home):
    flag, env, conf = free_port(), free_port(), free_port()
    _write_config(home, {"gateway": {"port": conf}})
    gw = gateways(["--port", str(flag)], env={"OPENCLAW_GATEWAY_PORT": str(env)})
    assert f"ws://127.0.0.1:{flag}" in gw.wait_ready()
    gw.stop()
    gw = gateways([], env={"OPENCLAW_GATEWAY_PORT": str(env)})
    assert f"ws://127.0.0.1:{env}" in gw.wait_ready()
    gw.stop()
    gw = gateways([])
    assert f"ws://127.0.0.1:{conf}" in gw.wait_ready()
    gw.stop()


class Held:
    """Something listening on 127.0.0.1:port for the test: this socket, or, when the port is
    taken already (`make run`, the installed .deb), whatever holds it. Either way the gateway must
    refuse it, so the port it resolved shows without binding a fixed port."""

    def __init__(self, port):
        self.sock = socket.socket()
        try:
            self.sock.bind(("127.0.0.1", port))
            self.sock.listen(1)
        except OSError:
            self.sock.close()
            self.sock = None
        assert port_accepts(port), f"nothing listens on {port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.sock:
            self.sock.close()


def _resolved_port(gateways, args, port):
    with Held(port):
        gw = gateways(args, notify=False)
        assert gw.wait() == 78
    return gw.lines[0]


def test_without_anything_the_port_is_18789(gateways):
    line = _resolved_port(gateways, [], 18789)
    assert line == "GatewayLockError: another gateway instance is already listening on ws://127.0.0.1:18789"


def test_a_profile_reads_its_own_config(gateways, home):
    port = free_port()
    _write_config(home, {"gateway": {"port": port}}, profile="work")
    gw = gateways(["--profile", "work"])
    assert f"ws://127.0.0.1:{port}" in gw.wait_ready()


def test_dev_defaults_to_port_19001(gateways):
    line = _resolved_port(gateways, ["--dev"], 19001)
    assert line == "GatewayLockError: another gateway instance is already listening on ws://127.0.0.1:19001"


def test_state_dir_from_openclaw_state_dir(gateways, tmp_path):
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    (state / "openclaw.json").write_text(json.dumps({"gateway": {"port": port}}))
    gw = gateways([], env={"OPENCLAW_STATE_DIR": str(state)})
    assert f"ws://127.0.0.1:{port}" in gw.wait_ready()


def test_lan_without_a_token_is_refused_with_78(gateways):
    gw = gateways(["--bind", "lan", "--port", str(free_port())], notify=False)
    assert gw.wait() == 78
    assert "without a token" in gw.lines[0]


def test_lan_with_a_token_listens_on_every_address(gateways):
    port = free_port()
    gw = gateways(["--bind", "lan", "--port", str(port)], env={"OPENCLAW_GATEWAY_TOKEN": "s3cret"})
    assert f"ws://0.0.0.0:{port}" in gw.wait_ready()
    assert http_get(port, "/healthz")[0] == 200


def test_a_bind_that_is_not_an_address_is_a_usage_error(gateways):
    gw = gateways(["--bind", "example.com"], notify=False)
    assert gw.wait() == 64


def _outcome(argv, env):
    proc = subprocess.run([BIN, *argv], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    return proc.returncode, proc.stderr.decode()


def test_run_has_one_parser_and_every_command_line_ends_in_64_or_78_on_a_held_port(tmp_path):
    # `run` is read by one hand-written parser (ArgumentParser reads the other commands): each of
    # these command lines is refused (a usage error, or the held port) with the status and the
    # line it calls for, and nothing starts.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        port = str(holder.getsockname()[1])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "OPENCLAW_GATEWAY_PORT": port}  # every default resolves to the held port: nothing starts
        duplicate = f"GatewayLockError: another gateway instance is already listening on ws://127.0.0.1:{port}"
        usage = "openclaw-gateway: {} (see openclaw-gateway run --help)"
        corpus = [
            ([], 78, duplicate), (["run"], 78, duplicate), (["--port", port], 78, duplicate),
            ([f"--port={port}"], 78, duplicate), (["run", "--port", port], 78, duplicate),
            (["--port", "1", "--port", port], 78, duplicate),  # the last one wins, as in ArgumentParser
            (["--profile=work", "--port", port], 78, duplicate), (["--log-level", "debug"], 78, duplicate),
            (["--max-connections", "5"], 78, duplicate), (["--bind", "127.0.0.1"], 78, duplicate),
            (["--bind", "lan"], 78, "openclaw-gateway: refusing to listen on ws://0.0.0.0:%s without a token or password: " % port),
            (["--bind", "not-an-address"], 64, "openclaw-gateway: --bind 'not-an-address': expected loopback, lan or an IP address"),
            (["--port", "abc"], 64, "openclaw-gateway: invalid --port 'abc': expected a port number from 1 to 65535"),
            (["--port", "-1"], 64, "openclaw-gateway: invalid --port '-1': expected a port number from 1 to 65535"),
            (["--port="], 64, "openclaw-gateway: invalid --port '': expected a port number from 1 to 65535"),
            (["--port"], 64, usage.format("missing value for '--port <port>'")),
            (["--port", "--dev"], 64, usage.format("missing value for '--port <port>'")),
            (["--dev=true"], 64, usage.format("'--dev' takes no value")),
            (["run", "run"], 64, usage.format("unexpected argument 'run'")),
            (["--prot", "1"], 64, usage.format("unknown option '--prot'")),
            (["--max-connections", "x"], 64, usage.format("invalid --max-connections 'x': expected a whole number")),
            (["--max-connections", "0"], 64, usage.format("invalid --max-connections 0: expected a positive number")),
            (["--log-level", "loud"], 64, usage.format(
                "invalid --log-level 'loud': expected trace, debug, info, notice, warning, error or critical")),
            (["--dev", "--profile", "x"], 64, 'openclaw-gateway: --dev and --profile cannot be combined (--dev is the profile "dev")'),
            (["--profile", "bad/name"], 64, "openclaw-gateway: invalid profile name 'bad/name': use letters, digits, '.', '_' and '-'"),
        ]
        for argv, status, first_line in corpus:
            rc, err = _outcome(argv, env)
            assert (rc, err.splitlines()[0][:len(first_line)]) == (status, first_line), (argv, rc, err)


def test_the_completion_scripts_know_every_option_of_run_help(gateways):
    # ArgumentParser writes the completion scripts from RunCommand, which declares run's options
    # from the parser's own table: the two lists must be the same.
    import re
    helped = subprocess.run([BIN, "run", "--help"], capture_output=True, text=True, timeout=15).stdout
    names = set(re.findall(r"^  (--[a-z-]+)", helped, re.M)) - {"--help"}
    script = subprocess.run([BIN, "--generate-completion-script", "bash"], capture_output=True, text=True, timeout=15).stdout
    body = script[script.index("_openclaw-gateway_run()"):]
    body = body[:body.index("\n}\n")]
    declared = set(re.findall(r"--[a-z][a-z-]+", " ".join(re.findall(r"non_repeating_(?:flags|options)=\(([^)]*)\)", body))))
    assert names and names == declared - {"--version", "--help"}, (names ^ declared)
    assert subprocess.run([BIN, "help", "run"], capture_output=True, text=True, timeout=15).stdout == helped


def test_a_bind_to_an_address_this_host_lacks_says_so_and_what_to_do(gateways):
    port = free_port()
    gw = gateways(["--bind", "192.0.2.1", "--port", str(port), "--token", "t"], notify=False)
    assert gw.wait() == 78
    assert gw.lines[0].startswith(f"GatewayLockError: failed to bind gateway socket on ws://192.0.2.1:{port}: bind(): ")
    assert gw.lines[1:] == ["hint: 192.0.2.1 is not an address of this host; use --bind loopback, --bind lan, "
                            "or an address that `ip -brief address` lists"]



@pytest.mark.parametrize("argv,status,says", [
    (["handover-formats"], 0, "openclaw-gateway-carrier/1"),
    (["reload"], 64, "openclaw-gateway: Missing expected argument '--pid <pid>'"),
    (["status", "--help"], 0, "OVERVIEW: Tell whether a gateway serves the port"),
    (["help", "status"], 0, "OVERVIEW: Tell whether a gateway serves the port"),
])
def test_the_other_commands_are_argument_parsers(argv, status, says):
    # Every command but run, named in GatewayCommandLine.argumentParserCommands, reaches ArgumentParser.
    proc = subprocess.run([BIN, *argv], capture_output=True, text=True, timeout=15)
    assert proc.returncode == status and says in proc.stdout + proc.stderr, (argv, proc)
