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
>>> before = dict(os.environ)
>>> os.environ["GEOSEG_CACHE_DIR"] = tempfile.mkdtemp()
>>> cached_bytes("demo", "key1", lambda: b"slow result")
b'slow result'
>>> cached_bytes("demo", "key1", lambda: b"not made again: read from the cache")
b'slow result'
>>> os.environ.clear(); os.environ.update(before)
"""

from __future__ import annotations

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
    """The cache folder (not created), or None when ``GEOSEG_CACHE_DIR`` is set empty (or no home folder is known)."""
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
    """A key that changes when any of ``files`` or ``extra`` changes (SHA-256 of their contents)."""
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
        Makes the bytes when they are not cached.

    Returns
    -------
    bytes
    """
    root = cache_dir()
    if root is None:
        return make()
    path = root / kind / key
    try:
        data = path.read_bytes()
        os.utime(path)  # recently used: pruned last
        return data
    except OSError:
        pass
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
    """Remove the entry ``kind/key`` (one found unusable), if there is one."""
    root = cache_dir()
    if root is not None:
        (root / kind / key).unlink(missing_ok=True)


def _prune(folder: Path) -> None:
    """Remove all but the :data:`KEEP` most recently used files of ``folder``."""
    entries = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)
