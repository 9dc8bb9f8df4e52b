"""Running a classifier's ONNX graph in onnxruntime, without torch.

The graphs are those of :mod:`geoseg.nn.onnx` (an ONNX file of ``geoseg model export``, or a
model file converted on first use and kept in geoseg's cache folder, :mod:`geoseg.cache`).
Nothing here imports torch: with the scene preparation of :mod:`geoseg.nn.arrays` and
:mod:`geoseg.nn.resample` and the tiling of :mod:`geoseg.nn.inference`, a run of the
``nn_classify`` step on the onnxruntime backend loads neither torch nor the network's code
(about 1.3 s of start-up on this project's CPUs: docs/RESULTS.md).

onnxruntime (and onnx, for the conversion) are the optional extra ``geoseg[onnx]``; without them
the functions here raise a :class:`~geoseg.errors.ConfigError` naming the extra.

Examples
--------
>>> model = load_onnx_model("roads.onnx", threads=2)  # doctest: +SKIP
>>> model.module(np.zeros((1, 3, 64, 64), np.float32)).shape  # doctest: +SKIP
(1, 2, 64, 64)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.errors import ConfigError, ModelFileError
from geoseg.nn.modelfile import KIND, NNModel

__all__ = ["EXTRA_HINT", "OPSET", "OnnxModule", "conversion_key", "load_onnx_model", "require_module"]

#: What to install for the ONNX backend and export.
EXTRA_HINT = "pip install 'geoseg[onnx]' (onnxruntime and onnx)"

#: ONNX opset of the exported graphs (onnxruntime 1.16 and newer run it).
OPSET = 17


def require_module(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or say which extra installs it.

    Parameters
    ----------
    module : str
        Name of the top-level module to import.

    Returns
    -------
    Any
        The imported module.

    Raises
    ------
    ConfigError
        The module is not installed; the message names the extra (:data:`EXTRA_HINT`).

    Examples
    --------
    >>> try:
    ...     require_module("no_such_module")
    ... except ConfigError as exc:
    ...     print(str(exc).replace(EXTRA_HINT, "<EXTRA_HINT>"))
    the ONNX backend and export need no_such_module, which is not installed: <EXTRA_HINT>
    """
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"the ONNX backend and export need {module}, which is not installed: {EXTRA_HINT}") from None


def conversion_key(path: str | os.PathLike[str]) -> str:
    """Cache key (:mod:`geoseg.cache`) of the ONNX graph of the model file ``path``.

    It changes with the file, with geoseg's network and export code (every source file of
    :mod:`geoseg.nn`), and with the versions of geoseg, torch and onnx that export it. The
    versions are read from the installed packages' metadata, so computing the key imports
    neither torch nor onnx.

    Parameters
    ----------
    path : str or path-like
        The model file (read in full to hash it).

    Returns
    -------
    str
        32 hexadecimal digits (:func:`geoseg.cache.content_key`).

    Raises
    ------
    OSError
        ``path`` cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     model = Path(tmp) / "m.npz"
    ...     _ = model.write_bytes(b"one")
    ...     before = conversion_key(model)
    ...     _ = model.write_bytes(b"two")
    ...     len(before), conversion_key(model) == before
    (32, False)
    """
    from importlib.metadata import PackageNotFoundError, version

    from geoseg import __version__
    from geoseg.cache import content_key

    versions = []
    for package in ("torch", "onnx"):
        try:
            versions.append(version(package))
        except PackageNotFoundError:  # the conversion itself then names the missing package
            versions.append("absent")
    code = sorted(Path(__file__).parent.rglob("*.py"))
    return content_key([path, *code], __version__, *versions, str(OPSET))


class OnnxModule:
    """An ONNX graph of :mod:`geoseg.nn.onnx` run by onnxruntime on the CPU.

    Calling it with a float32 array ``(N, bands, H, W)`` of normalised bands gives the
    probabilities ``(N, heads, H, W)`` (:attr:`gives_probabilities`): the class probabilities,
    then the centerline probability when the model has that head.
    """

    gives_probabilities = True

    def __init__(self, data: bytes, source: str, threads: int | None = None) -> None:
        ort = require_module("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelFileError(f"{source}: onnxruntime cannot load this ONNX graph ({str(exc).splitlines()[0][:200]})") from None
        self.source = source
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outs = self.session.run(self.outputs, {"image": np.ascontiguousarray(x, dtype=np.float32)})
        return np.concatenate(outs, axis=1)


def load_onnx_model(path: str | os.PathLike[str], threads: int | None = None, data: bytes | None = None) -> NNModel:
    """An ONNX file of :func:`geoseg.nn.onnx.export_onnx` as an :class:`NNModel` whose module runs in onnxruntime.

    Parameters
    ----------
    path : str or path-like
        The ONNX file; only named in messages when ``data`` is given.
    threads : int, optional
        onnxruntime's intra-op threads (default: all cores).
    data : bytes, optional
        The file's contents, when already read (e.g. from geoseg's cache).

    Returns
    -------
    NNModel
        The classifier, its module an :class:`OnnxModule` and its settings (bands,
        statistics, GSD, tiling) read from the graph's geoseg metadata.

    Raises
    ------
    ModelFileError
        The file cannot be read or is no ONNX graph that onnxruntime loads; or its geoseg
        metadata is missing (not exported by geoseg: its bands, statistics and GSD are
        unknown), unreadable, inconsistent, or that of another kind of model. The message
        names the file.
    ConfigError
        onnxruntime is not installed.
    """
    source = str(path)
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelFileError(f"{source}: cannot read the ONNX file ({exc.strerror or exc})") from None
    module = OnnxModule(data, source, threads)
    meta_props = module.session.get_modelmeta().custom_metadata_map
    if "geoseg" not in meta_props:
        raise ModelFileError(f"{source}: an ONNX file without geoseg's metadata (bands, statistics, GSD): export it with `geoseg model export`")
    try:
        meta = json.loads(meta_props["geoseg"])
    except ValueError as exc:
        raise ModelFileError(f"{source}: unreadable geoseg metadata in the ONNX file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise ModelFileError(f"{source}: the ONNX file's geoseg metadata is not that of an nn classifier")
    try:
        return NNModel.from_metadata(module, meta)  # type: ignore[arg-type]  # duck-typed: called like the torch classifier
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: inconsistent geoseg metadata in the ONNX file ({exc!r})") from exc
