"""Fixtures for the real model server (see server.py), reusable by any test module:
`real_server` starts once per session on a free loopback port; `real_gateway` is a
powergate in front of it with every job on the real model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Gateway, GatewayFactory
from tests.real.server import MODEL_ALIAS, RealLlamaServer, RealServerError, model_file, real_config

__all__ = ["MODEL_ALIAS", "RealLlamaServer", "real_gateway", "real_server"]


@pytest.fixture(scope="session")
def real_server() -> Iterator[RealLlamaServer]:
    try:
        srv = RealLlamaServer(model_file())
    except RealServerError as exc:
        pytest.fail(str(exc))
    yield srv
    srv.stop()


@pytest.fixture
def real_gateway(real_server: RealLlamaServer, make_gateway: GatewayFactory) -> Gateway:
    return make_gateway(config=real_config(real_server.url), profile="balanced")
