"""Safe model files for geoseg: numeric arrays plus JSON metadata in one ``.npz``.

Format (``format_version`` 1): a zip written by :func:`numpy.savez_compressed` whose members
are the model's arrays (plain numeric/bool dtypes, never object arrays) plus one reserved
member ``__geoseg_header__``: a uint8 array holding the UTF-8 JSON text::

    {"format": "geoseg-model", "format_version": 1, "geoseg_version": "...",
     "kind": "<model kind>", "metadata": {...}}

Loading uses ``np.load(..., allow_pickle=False)``, so a file can hold nothing executable: a
pickle (or an npz member with pickled objects) is refused, never unpickled. Writing goes to
a temporary file in the destination folder, flushed and fsynced, then ``os.replace``-d onto
the destination, so a reader never sees a half-written model.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from geoseg.errors import ModelFileError, OutputWriteError

__all__ = ["FORMAT_MARKER", "FORMAT_VERSION", "HEADER_KEY", "load_model", "save_model"]

FORMAT_MARKER = "geoseg-model"
FORMAT_VERSION = 1
HEADER_KEY = "__geoseg_header__"


def _geoseg_version() -> str:
    try:
        return importlib_metadata.version("geoseg")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def save_model(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict) -> Path:
    """Write a model file atomically.

    Parameters
    ----------
    path : str or path-like
        Destination, conventionally ending in ``.npz`` (kept as given).
    arrays : dict of str to ndarray
        Numeric arrays; names must be non-empty and differ from ``__geoseg_header__``.
    metadata : dict
        JSON-serialisable settings; must hold a non-empty string ``kind`` (e.g. "mjcr").

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    ModelFileError
        Metadata without ``kind``, not JSON-serialisable, or arrays that are not plain numeric.
    OutputWriteError
        The file cannot be written.
    """
    path = Path(path)
    kind = metadata.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ModelFileError(f"{path}: metadata needs a non-empty string 'kind'")
    clean: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if not isinstance(name, str) or not name or name == HEADER_KEY:
            raise ModelFileError(f"{path}: invalid array name {name!r}")
        if a.dtype.hasobject or a.dtype.kind not in "biufc":
            raise ModelFileError(f"{path}: array {name!r} has unsupported dtype {a.dtype}")
        clean[name] = a
    header = {
        "format": FORMAT_MARKER,
        "format_version": FORMAT_VERSION,
        "geoseg_version": _geoseg_version(),
        "kind": kind,
        "metadata": metadata,
    }
    try:
        text = json.dumps(header, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: metadata is not JSON-serialisable: {exc}") from exc
    clean[HEADER_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    tmp_name = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as fh:
            tmp_name = fh.name
            np.savez_compressed(fh, **clean)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # temporary files are private; the model is not
        os.replace(tmp_name, path)
    except OSError as exc:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise OutputWriteError(f"{path}: cannot write model file: {exc}") from exc
    return path


def load_model(path: str | os.PathLike, kind: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read a model file written by :func:`save_model`, without executing anything.

    Parameters
    ----------
    path : str or path-like
        Model file.
    kind : str, optional
        Expected model kind; a file of another kind is refused.

    Returns
    -------
    arrays : dict of str to ndarray
        The stored arrays (header excluded).
    metadata : dict
        The stored metadata, as saved (it holds ``kind``).

    Raises
    ------
    ModelFileError
        Missing or unreadable file, not an npz, pickled content, missing format marker,
        corrupt JSON, unsupported format version or wrong kind. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{path}: not a geoseg model file (a bare .npy array, not an npz)")
        with loaded as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ModelFileError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ModelFileError(f"{path}: refused, the file holds pickled data ({exc})") from exc
        raise ModelFileError(f"{path}: not a valid npz model file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: unreadable or truncated model file ({exc!r})") from exc

    raw = arrays.pop(HEADER_KEY, None)
    if raw is None:
        raise ModelFileError(f"{path}: missing geoseg format marker ({HEADER_KEY})")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path}: malformed geoseg header (dtype {raw.dtype}, shape {raw.shape})")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt metadata JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_MARKER:
        raise ModelFileError(f"{path}: missing geoseg format marker")
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: unsupported model format version {header.get('format_version')!r}")
    meta = header.get("metadata")
    if not isinstance(meta, dict) or meta.get("kind") != header.get("kind"):
        raise ModelFileError(f"{path}: malformed metadata")
    if kind is not None and meta["kind"] != kind:
        raise ModelFileError(f"{path}: model kind is {meta['kind']!r}, expected {kind!r}")
    return arrays, meta
