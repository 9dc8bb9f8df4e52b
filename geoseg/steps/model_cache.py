"""Model files loaded once per process while unchanged on disk (shared by classifier steps)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from geoseg.errors import ModelFileError

__all__ = ["load_cached"]


@lru_cache(maxsize=8)
def _load(loader: Callable[[str], Any], path: str, mtime: float) -> Any:
    return loader(path)


def load_cached(path: str, loader: Callable[[str], Any]) -> Any:
    """``loader(path)``, cached while the file's modification time is unchanged.

    The cache keys on the resolved path, the modification time and ``loader``, and holds the
    8 models used last.

    Parameters
    ----------
    path : str
        The model file.
    loader : callable
        Reads a model from a path (called with the resolved path).

    Returns
    -------
    Any
        What ``loader`` returns; the same object while the file is unchanged.

    Raises
    ------
    ModelFileError
        No such file; ``loader`` may raise its own errors too.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> calls = []
    >>> def read(path):
    ...     calls.append(path)
    ...     return Path(path).read_text()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     model = Path(tmp) / "model.txt"
    ...     _ = model.write_text("weights")
    ...     first, again = load_cached(str(model), read), load_cached(str(model), read)
    >>> first, again, len(calls)
    ('weights', 'weights', 1)
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file")
    return _load(loader, str(p.resolve()), p.stat().st_mtime)
