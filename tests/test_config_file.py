"""OpenClaw's own openclaw.json, as upstream reads it: JSON5, OPENCLAW_CONFIG_PATH. The real
binary, real files."""

import os

from harness import connect_as, free_port, http_get, refused_for

# The way upstream's docs write the file: comments, unquoted keys, single quotes, trailing commas,
# and keys that belong to the rest of OpenClaw.
JSON5 = """// ~/.openclaw/openclaw.json
{
  agents: { defaults: { workspace: '~/.openclaw/workspace', }, },  /* not the gateway's */
  gateway: {
    port: %d,
    auth: { token: 'json5-secret', },
    controlUi: { allowedOrigins: ['https://ui.example',], },
  },
}
"""


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_an_upstream_style_json5_file_starts_the_gateway(gateways, home):
    port = free_port()
    write(os.path.join(home, ".openclaw", "openclaw.json"), JSON5 % port)
    gw = gateways([])
    gw.wait_ready()
    assert http_get(port, "/healthz")[0] == 200
    assert refused_for(connect_as(port, "guess")) == "AUTH_TOKEN_MISMATCH"
    assert connect_as(port, "json5-secret", origin="https://ui.example")["ok"] is True


def test_openclaw_config_path_names_the_file(gateways, home, tmp_path):
    port = free_port()
    path = write(str(tmp_path / "elsewhere" / "gateway.json5"), JSON5 % port)
    write(os.path.join(home, ".openclaw", "openclaw.json"), "{gateway: {port: %d}}" % free_port())  # not read
    gw = gateways([], env={"OPENCLAW_CONFIG_PATH": path})
    gw.wait_ready()
    assert connect_as(port, "json5-secret")["ok"] is True


def test_a_broken_json5_file_is_exit_78_naming_the_file(gateways, home, tmp_path):
    path = write(str(tmp_path / "broken.json5"), "{gateway: {port: 1,, }}")
    gw = gateways(["--port", str(free_port())], notify=False, env={"OPENCLAW_CONFIG_PATH": path})
    assert gw.wait() == 78
    assert len(gw.lines) == 1 and gw.lines[0].startswith(f"openclaw-gateway: invalid config {path}: not valid JSON5")


def test_password_auth_as_upstream_has_it(gateways, home):
    # gateway.auth.password with no mode: password mode (upstream's inference), even with a token.
    port = free_port()
    write(os.path.join(home, ".openclaw", "openclaw.json"),
          "{gateway: {port: %d, auth: {token: 'tok', password: 'file-pw'}}}" % port)
    gw = gateways([], env={"OPENCLAW_GATEWAY_PASSWORD": "env-pw"})
    gw.wait_ready()
    assert refused_for(connect_as(port)) == "AUTH_PASSWORD_MISSING"
    assert refused_for(connect_as(port, token="tok")) == "AUTH_PASSWORD_MISSING"  # a token is no password
    wrong = connect_as(port, password="file-pw")  # the environment's wins
    assert refused_for(wrong) == "AUTH_PASSWORD_MISMATCH"
    assert wrong["error"]["message"] == ("unauthorized: gateway password mismatch "
                                         "(set gateway.remote.password to match gateway.auth.password)")
    hello = connect_as(port, password="env-pw")
    assert hello["ok"] is True and hello["payload"]["snapshot"]["authMode"] == "password"


def test_a_password_mode_without_a_password_is_exit_78(gateways, home):
    path = write(os.path.join(home, ".openclaw", "openclaw.json"), "{gateway: {auth: {mode: 'password'}}}")
    gw = gateways(["--port", str(free_port())], notify=False)
    assert gw.wait() == 78
    assert gw.lines == [f"openclaw-gateway: invalid config {path}: gateway.auth.mode is \"password\" but no password "
                        "is set (OPENCLAW_GATEWAY_PASSWORD or gateway.auth.password)"]
