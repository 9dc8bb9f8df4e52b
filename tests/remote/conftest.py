"""Fixtures for remote-read tests: a loopback byte-range HTTP server.

``range_server`` is a factory: call it with a folder to get a started
:class:`~tests.remote.range_server.RangeServer` serving that folder; every server it made is
closed after the test. Each call gives a new server on a port no earlier server of the process
used, so GDAL's per-URL ``/vsicurl/`` cache never answers for it::

    def test_remote_window(range_server, tmp_path):
        server = range_server(tmp_path)
        with rasterio.open("/vsicurl/" + server.url("scene.tif")) as src:
            ...
        assert server.bytes_sent("scene.tif") < (tmp_path / "scene.tif").stat().st_size

The fixture also adds the loopback addresses to ``NO_PROXY``/``no_proxy`` for the test, so an
HTTP proxy set in the environment does not capture requests to the server (libcurl, hence
GDAL, and :mod:`urllib` both honour these variables).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.remote.range_server import RangeServer

_LOOPBACK = "127.0.0.1,localhost"


@pytest.fixture
def range_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | os.PathLike[str]], RangeServer]]:
    """Factory of started :class:`RangeServer` objects, closed after the test.

    Yields
    ------
    callable
        ``serve(folder) -> RangeServer``: serves ``folder`` on ``127.0.0.1`` at a fresh port.
    """
    for var in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(var)
        monkeypatch.setenv(var, f"{current},{_LOOPBACK}" if current else _LOOPBACK)
    servers: list[RangeServer] = []

    def serve(folder: str | os.PathLike[str]) -> RangeServer:
        server = RangeServer(Path(folder)).start()
        servers.append(server)
        return server

    yield serve
    for server in reversed(servers):
        server.close()
