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
    """``loader(path)``, cached while the file's modification time is unchanged."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file")
    return _load(loader, str(p.resolve()), p.stat().st_mtime)
