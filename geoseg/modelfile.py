"""Safe model files for geoseg: numeric arrays plus JSON metadata in one ``.npz``.

Format (``format_version`` 1): a zip written by :func:`numpy.savez_compressed` (training
checkpoints: :func:`numpy.savez`, members stored, not deflated) whose members are the model's
arrays (plain numeric/bool dtypes, never object arrays) plus one reserved member
``__geoseg_header__``: a uint8 array holding the UTF-8 JSON text::

    {"format": "geoseg-model", "format_version": 1, "geoseg_version": "...",
     "kind": "<model kind>", "metadata": {...}}

Loading first looks at the file's first bytes: anything but a zip archive is refused
without being parsed (a raster, a vector file or text given as a model is named for what it
looks like; a pickle is refused as pickled data). An npz is read with
``np.load(..., allow_pickle=False)``, so a file can hold nothing executable: a member with
pickled objects is refused, never unpickled. Writing goes through
:func:`geoseg.atomic.atomic_path` (a temporary file beside the destination, flushed and
fsynced, then moved onto it), so a reader never sees a half-written model.

Every kind of model file is registered in :data:`MODEL_KINDS` (:func:`register_kind`): where
it is used (for messages about a file of the wrong kind) and the ``"module:function"`` that
builds the model from a file's arrays and metadata; :func:`read_model` reads any file into its
model. The builder's module is imported only when such a file is read, so the kinds'
modules may build on this one.
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.atomic import atomic_path
from geoseg.errors import ModelFileError

__all__ = [
    "FORMAT_MARKER",
    "FORMAT_VERSION",
    "HEADER_KEY",
    "MODEL_FILES",
    "MODEL_KINDS",
    "ModelKind",
    "kind_hint",
    "load_model",
    "read_model",
    "register_kind",
    "save_model",
]

FORMAT_MARKER = "geoseg-model"
FORMAT_VERSION = 1
HEADER_KEY = "__geoseg_header__"

#: What a model file is, for messages about files that are not one.
MODEL_FILES = "model files are the .npz files written by geoseg train"


@dataclass(frozen=True)
class ModelKind:
    """A registered kind of model file.

    Attributes
    ----------
    name : str
        The ``kind`` of the file's metadata.
    use : str
        Where a model of this kind is used (for messages about a file of the wrong kind).
    builder : str or None
        ``"module:function"`` (``function`` may be ``Class.method``) called as
        ``builder(path, arrays, metadata)`` to build the model; None for files that are not
        models by themselves (training checkpoints).
    """

    name: str
    use: str
    builder: str | None

    def build(self, path: Path, arrays: dict[str, np.ndarray], meta: dict) -> Any:
        """The model of a file's contents (the builder's module is imported now)."""
        if self.builder is None:
            raise ModelFileError(f"{path}: a {self.name} file is not a model; it is for {self.use}")
        module, name = self.builder.split(":")
        build: Any = importlib.import_module(module)
        for attr in name.split("."):
            build = getattr(build, attr)
        return build(path, arrays, meta)


#: The kinds of model file, by name.
MODEL_KINDS: dict[str, ModelKind] = {}


def register_kind(name: str, use: str, builder: str | None) -> None:
    """Register a kind of model file (see :class:`ModelKind`); a kind added by a plugin module calls this once.

    Registering a name again replaces its earlier entry.

    Parameters
    ----------
    name : str
        The ``kind`` in the files' metadata.
    use : str
        Where a model of this kind is used, for messages.
    builder : str or None
        ``"module:function"`` that builds the model (see :class:`ModelKind`); None for files
        that are not models by themselves.

    Examples
    --------
    >>> register_kind("demo", "the demo step", None)
    >>> MODEL_KINDS["demo"]
    ModelKind(name='demo', use='the demo step', builder=None)
    >>> kind_hint("demo")
    '; a demo model is for the demo step'
    >>> del MODEL_KINDS["demo"]
    """
    MODEL_KINDS[name] = ModelKind(name, use, builder)


register_kind("mjcr", "the mjcr_classify step (road_centerlines, road_segmentation)", "geoseg.classifiers.mjcr:MJCRClassifier.from_file")
register_kind("nn", "the nn_classify step (deep_road_centerlines)", "geoseg.nn.modelfile:build_nn_model")
register_kind("nn-quantized", "the nn_classify step (deep_road_centerlines)", "geoseg.nn.quant.qmodelfile:build_quantized")
register_kind("ovs-sequence", "the sequence_objects pipeline", "geoseg.sequence.modelfile:build_sequence_model")
register_kind("checkpoint", "resuming a training (--resume); the trained model is the file given to -o", None)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
#: First bytes of files users give as a model by mistake, and what they are.
_SIGNATURES = (
    ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "a TIFF or GeoTIFF raster"),
    ((b"\x89PNG",), "a PNG image"),
    ((b"\xff\xd8\xff",), "a JPEG image"),
    ((b"SQLite format 3\x00",), "an SQLite database (e.g. a GeoPackage)"),
    ((b"\x00\x00\x27\x0a",), "a shapefile"),
    ((_NPY_MAGIC,), "a bare .npy array, not an npz"),
)


def _geoseg_version() -> str:
    try:
        return importlib_metadata.version("geoseg")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def save_model(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict, *, compress: bool = True) -> Path:
    """Write a model file atomically.

    Parameters
    ----------
    path : str or path-like
        Destination, conventionally ending in ``.npz`` (kept as given).
    arrays : dict of str to ndarray
        Numeric arrays; names must be non-empty and differ from ``__geoseg_header__`` and ``allow_pickle``.
    metadata : dict
        JSON-serialisable settings; must hold a non-empty string ``kind`` (e.g. "mjcr").
    compress : bool, default True
        Deflate the members (the default, for files that are kept and shared). Training
        checkpoints, rewritten every epoch, are stored instead: float weights shrink by only a
        few per cent, and deflating them took 0.55 s of a 13 s epoch. :func:`load_model` reads
        both.

    Returns
    -------
    pathlib.Path
        The written path (``path`` as a Path).

    Raises
    ------
    ModelFileError
        Metadata without ``kind`` or not JSON-serialisable (NaN and infinity included), an
        invalid array name, or arrays that are not plain numeric or bool.
    OutputWriteError
        The file cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_model(f"{tmp}/m.npz", {"w": np.arange(3.0)}, {"kind": "mjcr", "classes": 2})
    ...     arrays, meta = load_model(path, kind="mjcr")
    >>> path.name, arrays["w"].tolist(), meta
    ('m.npz', [0.0, 1.0, 2.0], {'classes': 2, 'kind': 'mjcr'})
    >>> save_model("m.npz", {"w": np.array(["a"])}, {"kind": "mjcr"})
    Traceback (most recent call last):
    ...
    geoseg.errors.ModelFileError: m.npz: array 'w' has unsupported dtype <U1
    """
    path = Path(path)
    kind = metadata.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ModelFileError(f"{path}: metadata needs a non-empty string 'kind'")
    clean: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if not isinstance(name, str) or not name or name in (HEADER_KEY, "allow_pickle"):  # np.savez_compressed takes allow_pickle as its flag
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

    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, allow_pickle=False, **clean)
        fh.flush()
        os.fsync(fh.fileno())
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

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_model(f"{tmp}/m.npz", {"w": np.zeros(2)}, {"kind": "mjcr"})
    ...     _ = (Path(tmp) / "roads.geojson").write_text('{"type": "FeatureCollection"}')
    ...     for args in [(path, "nn"), (Path(tmp) / "roads.geojson", None)]:
    ...         try:
    ...             load_model(*args)
    ...         except ModelFileError as exc:
    ...             print(str(exc).split(": ", 1)[1])  # doctest: +NORMALIZE_WHITESPACE
    model kind is 'mjcr', expected 'nn';
        a mjcr model is for the mjcr_classify step (road_centerlines, road_segmentation)
    not a geoseg model file (it looks like JSON or GeoJSON text;
        model files are the .npz files written by geoseg train)
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file ({MODEL_FILES})")
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    _refuse_non_zip(path)
    arrays = _read_npz(path)

    raw = arrays.pop(HEADER_KEY, None)
    if raw is None:
        raise ModelFileError(f"{path}: not a geoseg model file: missing geoseg format marker ({HEADER_KEY}); {MODEL_FILES}")
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
        raise ModelFileError(f"{path}: model kind is {meta['kind']!r}, expected {kind!r}{kind_hint(meta['kind'])}")
    return arrays, meta


def kind_hint(kind: str) -> str:
    """``; a nn model is for the nn_classify step (...)``: where a model of ``kind`` belongs, for messages (empty when unknown).

    Parameters
    ----------
    kind : str
        A model kind.

    Returns
    -------
    str
        The text to append to a message, or ``""`` when ``kind`` is not registered.

    Examples
    --------
    >>> kind_hint("nn")
    '; a nn model is for the nn_classify step (deep_road_centerlines)'
    >>> kind_hint("no such kind")
    ''
    """
    spec = MODEL_KINDS.get(kind)
    return f"; a {kind} model is for {spec.use}" if spec else ""


def read_model(path: str | os.PathLike, kinds: Collection[str]) -> Any:
    """Read a model file of one of ``kinds`` into its model (built by its kind's registered builder).

    Parameters
    ----------
    path : str or path-like
        Model file.
    kinds : collection of str
        The kinds accepted, e.g. ``["nn", "nn-quantized"]``.

    Returns
    -------
    Any
        The model, as its kind's builder returns it.

    Raises
    ------
    ModelFileError
        Not a geoseg model file, a file of another kind (the message says where that kind is
        used), a kind with no registered builder (a training checkpoint), or contents its
        builder refuses; the message names the file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_model(f"{tmp}/m.npz", {"w": np.zeros(3)}, {"kind": "mjcr"})
    ...     try:
    ...         read_model(path, ["nn", "nn-quantized"])
    ...     except ModelFileError as exc:
    ...         print(str(exc).split(": ", 1)[1])  # doctest: +NORMALIZE_WHITESPACE
    model kind is 'mjcr', expected 'nn' or 'nn-quantized';
        a mjcr model is for the mjcr_classify step (road_centerlines, road_segmentation)
    """
    path = Path(path)
    arrays, meta = load_model(path)
    kind = meta["kind"]
    if kind not in kinds:
        raise ModelFileError(f"{path}: model kind is {kind!r}, expected {' or '.join(map(repr, kinds))}{kind_hint(kind)}")
    spec = MODEL_KINDS.get(kind)
    if spec is None:
        raise ModelFileError(f"{path}: no reader is registered for model kind {kind!r}")
    return spec.build(path, arrays, meta)


def _describe_content(head: bytes) -> str:
    """What a file that is no zip archive looks like, from its first bytes."""
    if not head:
        return "the file is empty"
    for magics, what in _SIGNATURES:
        if head.startswith(magics):
            return f"it looks like {what}"
    try:
        text = head.decode("utf-8").lstrip("\ufeff \t\r\n")
    except UnicodeDecodeError:
        return "unknown binary content"
    if text.startswith(("{", "[")):
        return "it looks like JSON or GeoJSON text"
    return "it looks like text"


def _refuse_non_zip(path: Path) -> None:
    """Refuse, without parsing it, a file that is no zip archive (an npz is one): a pickle as such, anything else as no model file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise ModelFileError(f"{path}: unreadable model file ({exc.strerror or exc})") from exc
    if head.startswith(_ZIP_MAGIC):
        return
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise ModelFileError(f"{path}: refused, the file holds pickled data (a Python pickle, never loaded by geoseg; {MODEL_FILES})")
    raise ModelFileError(f"{path}: not a geoseg model file ({_describe_content(head)}; {MODEL_FILES})")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an npz archive, read without unpickling anything."""
    try:
        # opened here, so that the file is closed when np.load fails on it (a truncated archive)
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            arrays = {}
            for name in npz.files:
                try:
                    arrays[name] = npz[name]
                except ValueError as exc:
                    if "pickle" in str(exc).lower():
                        raise ModelFileError(f"{path}: refused, the file holds pickled data (member {name!r}, never loaded by geoseg; {MODEL_FILES})") from exc
                    raise
                if not isinstance(arrays[name], np.ndarray):  # a zip member that is no .npy: np.load returns its bytes
                    raise ModelFileError(f"{path}: not a geoseg model file (member {name!r} is no numpy array; {MODEL_FILES})")
            return arrays
    except ModelFileError:
        raise
    except ValueError as exc:
        raise ModelFileError(f"{path}: not a valid npz model file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: unreadable or truncated model file ({exc!r})") from exc
