"""Fixtures for tests that run the CLI against moto's server on 127.0.0.1, as a user would."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from pipeline.config import ResourceNames
from pipeline.local.aws import endpoint_aws


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """One moto server per test module; tests keep apart by their own resource prefix."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def server_names(server: str) -> ResourceNames:
    """This test's own tables, stream and queue on the shared server, made as `logfan local up` makes them."""
    names = ResourceNames(f"t{os.urandom(4).hex()}")
    endpoint_aws(server, names)
    return names


@pytest.fixture
def endpoint(server: str, server_names: ResourceNames, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server, with AWS_ENDPOINT_URL and LOGFAN_CONFIG_TABLE pointing the CLI at this test's table."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", server)
    monkeypatch.setenv("LOGFAN_CONFIG_TABLE", server_names.config_table)
    return server
