"""geoseg's cache folder: files that are slow to make and can always be made again.

Today it holds the ONNX graphs that ``nn_classify`` converts model files to (onnxruntime runs
them; converting takes about a second per process, which a single-scene run paid every time).
Deleting the folder, or any file in it, is always safe: a missing or unreadable entry is made
again.

Where it is: ``$GEOSEG_CACHE_DIR`` when set (empty: no cache at all), else
``$XDG_CACHE_HOME/geoseg``, else ``~/.cache/geoseg``. Each kind of entry keeps its
:data:`KEEP` most recently used files. A cache that cannot be written (read-only home, full
disk) only costs the time it would have saved.

Examples
--------
>>> import os, tempfile
>>> from unittest import mock
>>> with tempfile.TemporaryDirectory() as tmp:
...     with mock.patch.dict(os.environ, {"GEOSEG_CACHE_DIR": tmp}):
...         print(cached_bytes("demo", "key1", lambda: b"slow result"))
...         print(cached_bytes("demo", "key1", lambda: b"not made again: read from the cache"))
b'slow result'
b'slow result'
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from geoseg.atomic import atomic_path

__all__ = ["KEEP", "cache_dir", "cached_bytes", "content_key", "forget"]

log = logging.getLogger("geoseg")

#: Entries of one kind kept; the least recently used beyond these are removed.
KEEP = 16


def cache_dir() -> Path | None:
    """The cache folder (not created), or None when ``GEOSEG_CACHE_DIR`` is set empty (or no home folder is known).

    Returns
    -------
    pathlib.Path or None
        ``$GEOSEG_CACHE_DIR`` (``~`` expanded), else ``$XDG_CACHE_HOME/geoseg``, else
        ``~/.cache/geoseg``.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"GEOSEG_CACHE_DIR": "~/scratch/cache"}):
    ...     print(cache_dir().relative_to(Path.home()).as_posix())
    scratch/cache
    >>> with mock.patch.dict(os.environ, {"GEOSEG_CACHE_DIR": ""}):
    ...     print(cache_dir())
    None
    >>> with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": "/var/cache/me"}):
    ...     _ = os.environ.pop("GEOSEG_CACHE_DIR", None)
    ...     print(cache_dir().as_posix())
    /var/cache/me/geoseg
    """
    chosen = os.environ.get("GEOSEG_CACHE_DIR")
    if chosen is not None:
        return Path(chosen).expanduser() if chosen else None
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "geoseg"
    try:
        return Path.home() / ".cache" / "geoseg"
    except RuntimeError:  # no HOME and no password-database entry
        return None


def content_key(files: Iterable[str | os.PathLike[str]], *extra: str) -> str:
    """A key that changes when any of ``files`` or ``extra`` changes (SHA-256 of their contents).

    Parameters
    ----------
    files : iterable of path-like
        Files whose bytes the key depends on, in order.
    *extra : str
        Texts the key also depends on (e.g. a version or an option).

    Returns
    -------
    str
        The first 32 hexadecimal digits of the digest.

    Raises
    ------
    OSError
        A file cannot be read.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     model = pathlib.Path(tmp) / "m.npz"
    ...     _ = model.write_bytes(b"weights")
    ...     key = content_key([model], "opset 17")
    ...     _ = model.write_bytes(b"new weights")
    ...     new_key = content_key([model], "opset 17")
    >>> key, new_key != key
    ('26f81f4a20a9616b9b446e7209489be0', True)
    """
    digest = hashlib.sha256()
    for path in files:
        digest.update(Path(path).read_bytes())
        digest.update(b"\0")
    for text in extra:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def cached_bytes(kind: str, key: str, make: Callable[[], bytes]) -> bytes:
    """The bytes cached as ``kind/key``, else ``make()``, written to the cache for the next time.

    Parameters
    ----------
    kind : str
        Folder of this kind of entry (e.g. ``onnx``).
    key : str
        File name of the entry: it must change whenever the bytes would (:func:`content_key`).
    make : callable
        Makes the bytes when they are not cached (called without arguments).

    Returns
    -------
    bytes
        The cached bytes, or those ``make`` returned. Without a cache folder (see
        :func:`cache_dir`), or when the cache cannot be read or written, ``make()`` is
        returned: such errors are logged, never raised. Errors of ``make`` are raised.

    Examples
    --------
    >>> import os, tempfile
    >>> from unittest import mock
    >>> calls = []
    >>> def make():
    ...     calls.append("made")
    ...     return b"slow result"
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with mock.patch.dict(os.environ, {"GEOSEG_CACHE_DIR": tmp}):
    ...         first = cached_bytes("demo", "key1", make)
    ...         second = cached_bytes("demo", "key1", make)
    ...         files = sorted(p.relative_to(tmp).as_posix() for p in Path(tmp).rglob("*"))
    >>> first, second, calls, files
    (b'slow result', b'slow result', ['made'], ['demo', 'demo/key1'])
    """
    root = cache_dir()
    if root is None:
        return make()
    path = root / kind / key
    try:
        data = path.read_bytes()
    except OSError:
        pass
    else:
        with contextlib.suppress(OSError):  # a read-only cache still serves its entries
            os.utime(path)  # recently used: pruned last
        return data
    data = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
        _prune(path.parent)
    except OSError as exc:
        log.debug("cache entry %s not written: %s", path, exc)
    return data


def forget(kind: str, key: str) -> None:
    """Remove the entry ``kind/key`` (one found unusable), if there is one.

    Parameters
    ----------
    kind : str
        Folder of this kind of entry, as given to :func:`cached_bytes`.
    key : str
        File name of the entry.

    Raises
    ------
    OSError
        The entry exists but cannot be removed.

    Examples
    --------
    >>> import os, tempfile
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with mock.patch.dict(os.environ, {"GEOSEG_CACHE_DIR": tmp}):
    ...         _ = cached_bytes("demo", "key1", lambda: b"broken")
    ...         forget("demo", "key1")
    ...         forget("demo", "never cached")
    ...         print(cached_bytes("demo", "key1", lambda: b"made again"))
    b'made again'
    """
    root = cache_dir()
    if root is not None:
        (root / kind / key).unlink(missing_ok=True)


def _prune(folder: Path) -> None:
    """Remove all but the :data:`KEEP` most recently used files of ``folder``."""
    entries = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)
