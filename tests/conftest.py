import os

import pytest

import harness


def pytest_configure(config):
    if not harness.BIN or not os.access(harness.BIN, os.X_OK):
        raise pytest.UsageError("set OPENCLAW_GATEWAY_BIN to the built openclaw-gateway (make test does)")


@pytest.fixture
def home(tmp_path):
    """An empty HOME, so no real ~/.openclaw is read."""
    path = tmp_path / "home"
    path.mkdir()
    return str(path)


@pytest.fixture
def gateways(home):
    """Starts gateways with `gateways(args, **kw)`; every one is killed and cleaned up after the test."""
    started = []

    def start(args=(), **kwargs):
        kwargs.setdefault("home", home)
        gw = harness.Gateway(list(args), **kwargs)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.cleanup()
