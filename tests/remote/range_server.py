"""A loopback HTTP file server with byte-range support, for tests of remote (``/vsicurl/``) reads.

:class:`RangeServer` serves the files of one folder on ``127.0.0.1`` at a free port from a
background thread. It speaks HTTP/1.1 with keep-alive, answers ``HEAD`` and ``GET``, honours
single byte ranges (``bytes=START-END``, ``bytes=START-``, ``bytes=-SUFFIX``) and counts, per
file name, the requests it received and the body bytes it sent, so that a test can check that a
reader fetched only the parts of a file it needed. Faults can be injected per name: a fixed HTTP
status (:meth:`RangeServer.fail`) or a delay before answering (:meth:`RangeServer.stall`).

Examples
--------
>>> with RangeServer(folder) as server:                      # doctest: +SKIP
...     with rasterio.open("/vsicurl/" + server.url("scene.tif")) as src:
...         window = src.read(1, window=Window(0, 0, 64, 64))
...     assert server.bytes_sent("scene.tif") < os.path.getsize(folder / "scene.tif")
"""

from __future__ import annotations

import dataclasses
import email.utils
import os
import re
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are not evaluated at run time
    from typing_extensions import Self

__all__ = ["MULTI_RANGE", "UNSATISFIABLE", "RangeServer", "RequestRecord", "parse_byte_range"]

#: :func:`parse_byte_range` result: the header asks several ranges at once.
MULTI_RANGE = "multi"
#: :func:`parse_byte_range` result: no byte of the asked range lies in the file (answer 416).
UNSATISFIABLE = "unsatisfiable"

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_CHUNK = 64 * 1024

# Ports handed out by any RangeServer of this process. GDAL caches /vsicurl/ answers per URL
# for the life of the process, so a later server must not reuse an earlier server's port.
_PORTS_USED: set[int] = set()
_PORTS_LOCK = threading.Lock()


def parse_byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """Interpret an HTTP ``Range`` header against a body of ``size`` bytes.

    Parameters
    ----------
    header : str or None
        The ``Range`` header's value (``None`` when the request has none).
    size : int
        Length of the full body in bytes.

    Returns
    -------
    tuple of (int, int) or str or None
        ``(start, end)`` (inclusive, clipped to the body) for a satisfiable single range;
        :data:`UNSATISFIABLE` when no byte of the range lies in the body; :data:`MULTI_RANGE`
        when several ranges are asked (comma-separated); ``None`` when there is no header or it
        is not a valid ``bytes`` range, in which case the header is ignored (RFC 9110, 14.2) and
        the whole body is sent.
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return MULTI_RANGE
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # bytes=-SUFFIX: the last SUFFIX bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        return UNSATISFIABLE
    end = size - 1 if not last else min(int(last), size - 1)
    return start, end


@dataclasses.dataclass
class RequestRecord:
    """One request as the server saw and answered it (recorded before its body is sent).

    Attributes
    ----------
    method : str
        ``"GET"``, ``"HEAD"``...
    name : str
        File name asked (URL path without the leading slash, percent-decoded, query dropped).
    range : str or None
        The ``Range`` header as received.
    status : int
        HTTP status answered (0 when the connection was dropped before answering).
    body_bytes : int
        File body bytes sent (so far, while the body is being sent).
    """

    method: str
    name: str
    range: str | None
    status: int
    body_bytes: int = 0


class _Handler(BaseHTTPRequestHandler):
    """Answers one connection's requests for :class:`RangeServer`."""

    protocol_version = "HTTP/1.1"
    server_version = "RangeServer/1.0"
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms stalls
    server: _HTTPServer

    # -- plumbing -------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.owner._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._connection_closed(self.connection)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: no request log on stderr."""

    def send_response(self, code: int, message: str | None = None) -> None:
        """Send the status line, plus ``Accept-Ranges: bytes`` on every answer."""
        super().send_response(code, message)
        self.send_header("Accept-Ranges", "bytes")

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    # -- answers ----------------------------------------------------------------------------------
    def _answer(self, head: bool) -> None:
        owner = self.server.owner
        name = unquote(urlsplit(self.path).path).lstrip("/")
        range_header = self.headers.get("Range")
        delay = owner._arrive(name)
        if delay > 0 and owner._closing.wait(delay):
            self.close_connection = True  # the server is closing: drop the stalled request
            owner._record(RequestRecord(self.command, name, range_header, 0))
            return
        status = owner._fault_of(name)
        if status is not None:
            owner._record(RequestRecord(self.command, name, range_header, status))
            self._send_text(status, f"{name}: status {status} set by RangeServer.fail\n", head)
            return
        path = owner._resolve(name)
        if path is None:
            owner._record(RequestRecord(self.command, name, range_header, 404))
            self._send_text(404, f"{name}: not found\n", head)
            return
        stat = path.stat()
        size = stat.st_size
        # Range handling is defined for GET only: a HEAD gets the full length (RFC 9110, 14.2).
        wanted = None if head else parse_byte_range(range_header, size)
        if wanted == UNSATISFIABLE:
            owner._record(RequestRecord(self.command, name, range_header, 416))
            self._send_text(416, f"{name}: range {range_header!r} not satisfiable\n", head,
                            extra={"Content-Range": f"bytes */{size}"})
            return
        if wanted == MULTI_RANGE:
            owner._count_multi_range(name)
        if isinstance(wanted, tuple):
            status, (start, end) = 206, wanted
        else:
            status, start, end = 200, 0, size - 1
        length = end - start + 1
        record = RequestRecord(self.command, name, range_header, status)
        owner._record(record)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not head:
            self._send_file(path, name, start, length, record)

    def _send_file(self, path: Path, name: str, start: int, length: int, record: RequestRecord) -> None:
        """Write ``length`` bytes of ``path`` from ``start``, counting them for ``name``.

        Each chunk is counted before it is written (so a client that has read a body never sees
        a counter lagging behind it) and discounted when writing it fails.
        """
        owner = self.server.owner
        sent = 0
        try:
            with path.open("rb") as f:
                f.seek(start)
                while sent < length:
                    chunk = f.read(min(_CHUNK, length - sent))
                    if not chunk:  # the file shrank under us: the promised length cannot be kept
                        self.close_connection = True
                        break
                    owner._count_bytes(name, len(chunk), record)
                    try:
                        self.wfile.write(chunk)
                    except OSError:
                        owner._count_bytes(name, -len(chunk), record)
                        raise
                    sent += len(chunk)
        except OSError:  # client went away (broken pipe, reset) or the server is closing
            self.close_connection = True

    def _send_text(self, status: int, text: str, head: bool, extra: dict[str, str] | None = None) -> None:
        """Answer ``status`` with a short plain-text body (not counted as file bytes)."""
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            try:
                self.wfile.write(body)
            except OSError:
                self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    """The threaded HTTP server behind a :class:`RangeServer`."""

    daemon_threads = True
    block_on_close = False  # RangeServer.close joins its handler threads itself, with a timeout

    def __init__(self, owner: RangeServer, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet on clients that hang up; print a traceback for anything else (a bug)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN (a DNS query that can take seconds)
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class RangeServer:
    """Serve the files of a folder over loopback HTTP, with byte ranges, counters and faults.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder whose files are served; a URL path ``/a/b.tif`` maps to ``folder/a/b.tif``.
        Paths leading outside the folder, folders and missing files answer 404 (so do sidecars
        GDAL probes for, such as ``.aux.xml``, ``.ovr``, ``.msk``, unless they exist).
    host : str, default "127.0.0.1"
        Address to listen on.

    Notes
    -----
    Use as a context manager (``with RangeServer(folder) as server:``) or call :meth:`start` and
    :meth:`close`. Each server listens on a port that no earlier server of this process used,
    so GDAL's per-URL ``/vsicurl/`` cache never answers for a new server.

    Counters are kept per file name (the URL path, percent-decoded, without the leading slash
    and the query): :meth:`requests` counts every request (HEAD, GET, 404, faults),
    :meth:`bytes_sent` only file body bytes actually written to the socket (status texts of
    404, 416 and :meth:`fail` answers are not counted). A request with several ranges at once
    is answered 200 with the whole file and counted by :meth:`multi_range_requests`.
    """

    def __init__(self, folder: str | os.PathLike[str], host: str = "127.0.0.1") -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise NotADirectoryError(f"RangeServer: {self.folder} is not a folder")
        self.host = host
        self._lock = threading.Lock()
        self._bytes: dict[str, int] = {}
        self._requests: dict[str, int] = {}
        self._multi: dict[str, int] = {}
        self._history: list[RequestRecord] = []
        self._faults: dict[str, int] = {}
        self._stalls: dict[str, float] = {}
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._closing = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind a free port and serve from a background thread.

        Returns
        -------
        RangeServer
            ``self``, so that ``server = RangeServer(folder).start()`` works.
        """
        if self._httpd is not None:
            raise RuntimeError("RangeServer: already started")
        rejected: list[_HTTPServer] = []
        try:
            for _ in range(50):
                httpd = _HTTPServer(self, (self.host, 0))
                with _PORTS_LOCK:
                    if httpd.server_port not in _PORTS_USED:
                        _PORTS_USED.add(httpd.server_port)
                        break
                rejected.append(httpd)  # keep it bound so that the next bind gets another port
            else:
                raise RuntimeError("RangeServer: found no port unused by earlier servers")
        finally:
            for other in rejected:
                other.server_close()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"RangeServer:{httpd.server_port}", daemon=True,
        )
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, drop open connections, wake stalled requests and join the threads.

        Parameters
        ----------
        timeout : float, default 5.0
            Most seconds to wait for the handler threads to end.
        """
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._closing.set()
        httpd.shutdown()
        thread.join(timeout)
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        for handler_thread in connections.values():
            handler_thread.join(timeout)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- addresses ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port served (the server must be started)."""
        if self._httpd is None:
            raise RuntimeError("RangeServer: not started")
        return self._httpd.server_port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def url(self, name: str) -> str:
        """URL of a file of the folder.

        Parameters
        ----------
        name : str
            Path relative to the served folder (``"x.tif"``, ``"sub/x.tif"``).

        Returns
        -------
        str
            ``http://127.0.0.1:PORT/name``, percent-encoded where needed.
        """
        return f"{self.base_url}/{quote(name.lstrip('/'))}"

    # -- counters -------------------------------------------------------------------------------
    def bytes_sent(self, name: str) -> int:
        """File body bytes sent for ``name`` since start or the last :meth:`reset_counts`."""
        with self._lock:
            return self._bytes.get(name, 0)

    def total_bytes(self) -> int:
        """File body bytes sent for all names."""
        with self._lock:
            return sum(self._bytes.values())

    def requests(self, name: str) -> int:
        """Requests received for ``name`` (any method and answer)."""
        with self._lock:
            return self._requests.get(name, 0)

    def total_requests(self) -> int:
        """Requests received for all names."""
        with self._lock:
            return sum(self._requests.values())

    def multi_range_requests(self, name: str | None = None) -> int:
        """Requests that asked several ranges at once (answered 200 with the whole file).

        Parameters
        ----------
        name : str, optional
            Count for this name only; all names when omitted.
        """
        with self._lock:
            return self._multi.get(name, 0) if name is not None else sum(self._multi.values())

    def history(self) -> list[RequestRecord]:
        """Every request answered or being answered, in the order the answers began (copies)."""
        with self._lock:
            return [dataclasses.replace(record) for record in self._history]

    def reset_counts(self) -> None:
        """Zero all counters and forget the history (faults and stalls stay)."""
        with self._lock:
            self._bytes.clear()
            self._requests.clear()
            self._multi.clear()
            self._history.clear()

    # -- faults ---------------------------------------------------------------------------------
    def fail(self, name: str, status: int | None) -> None:
        """Make every request for ``name`` answer ``status`` (e.g. 403, 500).

        Parameters
        ----------
        name : str
            File name as in :meth:`url`.
        status : int or None
            HTTP status to answer; ``None`` serves the name normally again.
        """
        with self._lock:
            if status is None:
                self._faults.pop(name, None)
            else:
                self._faults[name] = int(status)

    def stall(self, name: str, seconds: float) -> None:
        """Make requests for ``name`` wait ``seconds`` before being answered.

        Parameters
        ----------
        name : str
            File name as in :meth:`url`.
        seconds : float
            Delay; 0 or less removes it. A stalled request is dropped without an answer when
            the server closes.
        """
        with self._lock:
            if seconds > 0:
                self._stalls[name] = float(seconds)
            else:
                self._stalls.pop(name, None)

    # -- used by the handler ------------------------------------------------------------------------
    def _resolve(self, name: str) -> Path | None:
        if not name or "\x00" in name:
            return None
        try:
            path = (self.folder / name).resolve()
        except (OSError, ValueError):
            return None
        if not path.is_relative_to(self.folder) or not path.is_file():
            return None
        return path

    def _fault_of(self, name: str) -> int | None:
        with self._lock:
            return self._faults.get(name)

    def _arrive(self, name: str) -> float:
        """Count a request for ``name`` on arrival; return its stall in seconds."""
        with self._lock:
            self._requests[name] = self._requests.get(name, 0) + 1
            return self._stalls.get(name, 0.0)

    def _count_bytes(self, name: str, n: int, record: RequestRecord) -> None:
        with self._lock:
            self._bytes[name] = self._bytes.get(name, 0) + n
            record.body_bytes += n

    def _count_multi_range(self, name: str) -> None:
        with self._lock:
            self._multi[name] = self._multi.get(name, 0) + 1

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._history.append(record)

    def _connection_opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections[conn] = threading.current_thread()

    def _connection_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.pop(conn, None)
