"""geoseg's cache folder (geoseg.cache): made once, read after, never in the way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geoseg.cache import KEEP, cache_dir, cached_bytes, content_key, forget


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GEOSEG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_bytes_are_made_once_then_read(cache: Path) -> None:
    calls: list[int] = []

    def make() -> bytes:
        calls.append(1)
        return b"graph"

    assert cached_bytes("onnx", "k1", make) == b"graph"
    assert cached_bytes("onnx", "k1", make) == b"graph"
    assert len(calls) == 1 and (cache / "onnx" / "k1").read_bytes() == b"graph"
    forget("onnx", "k1")
    assert cached_bytes("onnx", "k1", make) == b"graph" and len(calls) == 2


def test_an_empty_setting_turns_the_cache_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSEG_CACHE_DIR", "")
    monkeypatch.chdir(tmp_path)
    assert cache_dir() is None
    assert cached_bytes("onnx", "k", lambda: b"x") == b"x"
    assert list(tmp_path.iterdir()) == []


def test_the_default_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GEOSEG_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "geoseg"


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GEOSEG_CACHE_DIR", str(blocker))  # mkdir below a file fails
    assert cached_bytes("onnx", "k", lambda: b"made") == b"made"


def test_a_read_only_cache_still_serves_its_entries(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Marking an entry as recently used fails on a read-only cache folder; the entry is still
    read, not made again (and written again, which fails too)."""
    calls: list[int] = []

    def make() -> bytes:
        calls.append(1)
        return b"graph"

    cached_bytes("onnx", "k1", make)

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(os, "utime", read_only)
    assert cached_bytes("onnx", "k1", make) == b"graph" and len(calls) == 1


def test_only_the_most_recently_used_entries_are_kept(cache: Path) -> None:
    for i in range(KEEP + 3):
        cached_bytes("onnx", f"k{i}", lambda: b"x")
        os.utime(cache / "onnx" / f"k{i}", (1000 + i, 1000 + i))
    cached_bytes("onnx", "k0", lambda: b"y")  # a hit: k0 becomes the most recent
    cached_bytes("onnx", "new", lambda: b"z")
    kept = {p.name for p in (cache / "onnx").iterdir()}
    assert len(kept) == KEEP and {"k0", "new"} <= kept and "k1" not in kept


def test_content_keys_change_with_any_input(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    key = content_key([a, b], "torch 2")
    assert key == content_key([a, b], "torch 2")
    assert len({key, content_key([b, a], "torch 2"), content_key([a, b], "torch 3")}) == 3
    a.write_bytes(b"3")
    assert content_key([a, b], "torch 2") != key
