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


def test_the_early_lock_refuses_and_fails_exactly_like_the_full_parse(tmp_path):
    # A plain `run` whose only flags are the lock's own takes the lock before ArgumentParser runs
    # (a duplicate is refused faster). Adding `--log-level info` changes nothing a user sees but
    # sends the same command line through ArgumentParser first: both must end the same way, for
    # every command line, the port held or not reachable.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        port = str(holder.getsockname()[1])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "OPENCLAW_GATEWAY_PORT": port}  # every default resolves to the held port: nothing starts
        corpus = [
            [], ["run"], ["--port", port], [f"--port={port}"], ["run", "--port", port], ["--dev"],
            ["--port", port, "--dev"], ["--profile", "work"], ["--profile=work", "--port", port],
            ["--bind", "loopback"], ["--bind", "lan"], ["--bind", "lan", "--token", "t"], ["--token", "t"],
            ["--bind", "127.0.0.1"], ["--bind", "not-an-address"], ["--port", "abc"], ["--port", "70000"],
            ["--port", "0"], ["--port="], ["--port"], ["--profile", "bad/name"], ["--dev", "--profile", "x"],
            ["--port", port, "--port", port], ["--dev=true"], ["--port", "-1"], ["run", "run"],
        ]
        for argv in corpus:
            early = _outcome(argv, env)
            # A command line ending in a flag that wants a value takes the extra flag as that value,
            # so the extra flag goes first there: the same command line is never run twice.
            full = _outcome([*argv, "--log-level", "info"] if argv[-1:] != ["--port"] else ["--log-level", "info", *argv], env)
            assert early[0] in (64, 78), (argv, early)  # nothing may start on a held port
            assert early == full, (argv, early, full)
        # and the refusal itself, through the early path
        rc, err = _outcome(["--port", port], env)
        assert rc == 78
        assert err.splitlines()[0] == f"GatewayLockError: another gateway instance is already listening on ws://127.0.0.1:{port}"


def test_a_bind_to_an_address_this_host_lacks_says_so_and_what_to_do(gateways):
    port = free_port()
    gw = gateways(["--bind", "192.0.2.1", "--port", str(port), "--token", "t"], notify=False)
    assert gw.wait() == 78
    assert gw.lines[0].startswith(f"GatewayLockError: failed to bind gateway socket on ws://192.0.2.1:{port}: bind(): ")
    assert gw.lines[1:] == ["hint: 192.0.2.1 is not an address of this host; use --bind loopback, --bind lan, "
                            "or an address that `ip -brief address` lists"]

