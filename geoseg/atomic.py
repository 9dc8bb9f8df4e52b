"""Atomic output: write to a temporary place, then rename into the final name.

A failed or killed write never leaves a partial output under the final name. Multi-file
formats (a shapefile's ``.shp``, ``.shx``, ``.dbf``, ``.prj``, ``.cpg``; a GeoTIFF's
``.aux.xml``) are written together into a private temporary folder beside the destination,
then each file is renamed into place with the main file renamed **last**, so a reader that
looks for the main file finds it only once its sidecars are complete. Sidecars left over
from an earlier output of the same name are removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from geoseg.errors import GeosegError, OutputWriteError

__all__ = ["atomic_path", "check_output_file", "check_spares_inputs", "same_file_key", "remove_outputs", "TEMP_PREFIX"]

#: Prefix of the temporary folders; a batch can clean those left by a killed run.
TEMP_PREFIX = ".geoseg-tmp-"


_SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")


def check_output_file(path: str | os.PathLike[str], option: str, *, example_name: str = "model.npz") -> Path:
    """Fail at once, before any long work, when ``path`` cannot be written as a file.

    Commands that train or search for minutes call this on every file they will write, so
    that a mistyped ``-o`` costs one line instead of the run.

    Parameters
    ----------
    path : path-like
        The file the command will write.
    option : str
        The option that gave it (``-o``, ``--checkpoint``), named in the message.
    example_name : str, default "model.npz"
        A file name to suggest when ``path`` is a folder.

    Returns
    -------
    pathlib.Path
        ``path``, as a Path.

    Raises
    ------
    OutputWriteError
        ``path`` is a folder, or its folder does not exist, is not a folder or is not writable.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     print(check_output_file(pathlib.Path(tmp) / "roads.npz", "-o").name)
    ...     try:
    ...         check_output_file(tmp, "--checkpoint", example_name="ckpt.npz")
    ...     except OutputWriteError as exc:
    ...         print(str(exc).replace(tmp, "TMP"))
    roads.npz
    --checkpoint TMP: is a folder; give a file path (e.g. TMP/ckpt.npz)
    """
    target = Path(path)
    folder = target.parent
    where = f"{option} {target}"
    if target.is_dir():
        raise OutputWriteError(f"{where}: is a folder; give a file path (e.g. {target / example_name})")
    if not folder.exists():
        raise OutputWriteError(f"{where}: the folder {folder} does not exist; create it first (mkdir -p {folder}) or choose another path")
    if not folder.is_dir():
        raise OutputWriteError(f"{where}: {folder} is not a folder; choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputWriteError(f"{where}: the folder {folder} is not writable; choose another path")
    return target


def same_file_key(path: str | os.PathLike[str]) -> str:
    """A key equal for two paths of the same file (absolute, symbolic links resolved, case as the file system compares).

    Examples
    --------
    >>> same_file_key("data/../data/a.tif") == same_file_key("data/a.tif")
    True
    """
    return os.path.normcase(os.path.realpath(path))


def check_spares_inputs(outputs: Mapping[str, str | os.PathLike[str]], inputs: Sequence[str | os.PathLike[str]]) -> None:
    """Fail at once when an output file is one of the inputs, or two outputs are one file.

    Commands that read files for minutes and then write a model call this before reading,
    so that ``-o scene.tif`` cannot replace a training scene with the model.

    Parameters
    ----------
    outputs : mapping of str to path-like
        The files the command writes, by the option that names them (``-o``, ``--checkpoint``).
    inputs : sequence of path-like
        The local files it reads (URLs and GDAL virtual paths are not compared).

    Raises
    ------
    OutputWriteError
        The message names the option, the file and the input it would replace.

    Examples
    --------
    >>> try:
    ...     check_spares_inputs({"-o": "a_mask.tif"}, ["a.tif", "a_mask.tif"])
    ... except OutputWriteError as exc:
    ...     print(exc)
    -o a_mask.tif: is one of the inputs (a_mask.tif); writing it would destroy that input: choose another path
    """
    from geoseg.inputs import is_remote

    read = {same_file_key(p): os.fspath(p) for p in inputs if not is_remote(p)}
    written: dict[str, str] = {}
    for option, path in outputs.items():
        key = same_file_key(path)
        if key in read:
            raise OutputWriteError(f"{option} {os.fspath(path)}: is one of the inputs ({read[key]}); writing it would destroy that input: choose another path")
        if key in written:
            raise OutputWriteError(f"{option} {os.fspath(path)}: is the file {written[key]} names too; give each output its own path")
        written[key] = option


def _sidecars(folder: Path, stem: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and (p.stem == stem or p.name.startswith(stem + "."))]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; move it (and its sidecars) to ``path`` on success.

    Parameters
    ----------
    path : path-like
        Final destination. Its folder is created if missing.

    Yields
    ------
    pathlib.Path
        Where to write: same file name, inside a private temporary folder beside ``path``.

    Raises
    ------
    OutputWriteError
        The destination folder cannot be created or written to, or nothing was written to
        the yielded path. A plain ``OSError`` raised inside the ``with`` block (the writer
        failing) is re-raised as an ``OutputWriteError``; geoseg's own errors (a
        ``RasterReadError`` of an input read inside the block, say) and any other exception
        pass through unchanged, and nothing is moved to ``path``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     final = pathlib.Path(tmp) / "a.txt"
    ...     with atomic_path(final) as part:
    ...         _ = part.write_text("hello")
    ...         print(part.parent.name.startswith(TEMP_PREFIX), final.exists())
    ...     print(final.read_text(), sorted(p.name for p in final.parent.iterdir()))
    True False
    hello ['a.txt']
    """
    final = Path(path)
    folder = final.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=folder))
    except OSError as exc:
        raise OutputWriteError(f"{folder}: cannot write output here ({exc.strerror or exc})") from exc
    try:
        yield tmpdir / final.name
        written = _sidecars(tmpdir, final.stem)
        if not (tmpdir / final.name).exists():
            raise OutputWriteError(f"{final}: the writer produced no file")
        if final.suffix.lower() == ".shp":
            new_names = {w.name for w in written}
            for ext in _SHAPEFILE_SIDECARS:
                old = folder / (final.stem + ext)
                if old.name not in new_names:
                    old.unlink(missing_ok=True)
        main = tmpdir / final.name
        for part in sorted(written, key=lambda p: p == main):
            os.replace(part, folder / part.name)
    except OSError as exc:
        if isinstance(exc, GeosegError):  # geoseg's own read and write errors already say what failed
            raise
        raise OutputWriteError(f"{final}: cannot write output ({exc.strerror or exc})") from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def remove_outputs(paths: list[Path]) -> None:
    """Delete output files and their sidecars (a shapefile's .shx, .dbf, ..., a raster's .aux.xml): what a failed result leaves.

    Files that do not exist are skipped.

    Parameters
    ----------
    paths : list of pathlib.Path
        The main files of the outputs.

    Raises
    ------
    OSError
        A file exists but cannot be removed (no permission, or it is a folder).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = pathlib.Path(tmp)
    ...     for name in ["roads.shp", "roads.shx", "roads.dbf", "roads.csv", "mask.tif"]:
    ...         _ = (folder / name).write_bytes(b"")
    ...     _ = (folder / "mask.tif.aux.xml").write_bytes(b"")
    ...     remove_outputs([folder / "roads.shp", folder / "mask.tif", folder / "gone.tif"])
    ...     print(sorted(p.name for p in folder.iterdir()))
    ['roads.csv']
    """
    for path in paths:
        parts = [path, path.with_name(path.name + ".aux.xml")]
        if path.suffix.lower() == ".shp":
            parts += [path.with_suffix(ext) for ext in _SHAPEFILE_SIDECARS]
        for part in parts:
            part.unlink(missing_ok=True)
