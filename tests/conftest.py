"""Shared fixtures: TensorFlow's golden outputs, an embedded server and a real server process."""

from __future__ import annotations

import pytest

from support import ClusterProcesses, ServerProcess, load_golden


@pytest.fixture(scope="session")
def golden() -> dict:
    return load_golden()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The notebook's five-task cluster as real processes, shared by every test that needs one
    (a test that stops a task starts it again)."""
    c = ClusterProcesses(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def server_process():
    server = ServerProcess()
    yield server
    server.stop()


@pytest.fixture
def local_server():
    from queueserver import Server

    server = Server.create_local_server()
    yield server
    server.stop()
