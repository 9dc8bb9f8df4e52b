"""Tests of geoseg.modelfile."""

from __future__ import annotations

import gc
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from geoseg.errors import ModelFileError
from geoseg.modelfile import HEADER_KEY, load_model, save_model


def _arrays() -> dict[str, np.ndarray]:
    return {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "idx": np.array([1, 5], np.int64)}


def test_round_trip(tmp_path: Path) -> None:
    meta = {"kind": "mjcr", "lam": 0.1, "names": ["a", "b"], "nested": {"x": [1, 2]}}
    out = save_model(tmp_path / "m.npz", _arrays(), meta)
    assert out == tmp_path / "m.npz" and sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temp left
    arrays, meta2 = load_model(out, kind="mjcr")
    assert meta2 == meta
    assert set(arrays) == {"w", "idx"}
    for k, v in _arrays().items():
        assert arrays[k].dtype == v.dtype
        np.testing.assert_array_equal(arrays[k], v)


def test_model_files_are_deflated_and_uncompressed_ones_read_back(tmp_path: Path) -> None:
    """Kept files are deflated; ``compress=False`` (training checkpoints, rewritten every epoch)
    stores the members, and both read back the same."""
    big = {"w": np.tile(np.arange(64, dtype=np.float32), (64, 1))}
    kept = save_model(tmp_path / "kept.npz", big, {"kind": "mjcr"})
    stored = save_model(tmp_path / "stored.npz", big, {"kind": "mjcr"}, compress=False)
    with zipfile.ZipFile(kept) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    with zipfile.ZipFile(stored) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    assert stored.stat().st_size > 2 * kept.stat().st_size
    for path in (kept, stored):
        arrays, meta = load_model(path, kind="mjcr")
        np.testing.assert_array_equal(arrays["w"], big["w"])
        assert meta == {"kind": "mjcr"}


def test_wrong_kind_and_bad_metadata(tmp_path: Path) -> None:
    p = save_model(tmp_path / "m.npz", _arrays(), {"kind": "rf"})
    with pytest.raises(ModelFileError, match="expected 'mjcr'"):
        load_model(p, kind="mjcr")
    with pytest.raises(ModelFileError):
        save_model(tmp_path / "n.npz", _arrays(), {"lam": 1})  # no kind
    with pytest.raises(ModelFileError):
        save_model(tmp_path / "n.npz", _arrays(), {"kind": "x", "f": object()})
    with pytest.raises(ModelFileError):
        save_model(tmp_path / "n.npz", {"o": np.array([{}], dtype=object)}, {"kind": "x"})
    assert not (tmp_path / "n.npz").exists()


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)))
    # Sanity: unpickling it really would create the marker.
    pickle.loads(payload).close()
    assert marker.exists()
    marker.unlink()
    bad = tmp_path / "model.npz"
    bad.write_bytes(payload)
    with pytest.raises(ModelFileError, match="model.npz"):
        load_model(bad)
    assert not marker.exists()
    # An npz whose member holds a pickled object array is refused too.
    with open(tmp_path / "obj.npz", "wb") as fh:
        np.savez(fh, **{"x": np.array([_Exploit(str(marker))], dtype=object), HEADER_KEY: np.zeros(2, np.uint8)})
    with pytest.raises(ModelFileError, match="pickled"):
        load_model(tmp_path / "obj.npz")
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    p = save_model(tmp_path / "m.npz", {"w": np.random.default_rng(0).random(5000)}, {"kind": "mjcr"})
    data = p.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ModelFileError, match="cut.npz"):
            load_model(cut)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # the file was closed (a CLI printed "unclosed file")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.npz")
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.ones(3))
    with pytest.raises(ModelFileError, match="marker"):
        load_model(plain)
    npy = tmp_path / "arr.npz"
    with open(npy, "wb") as fh:
        np.save(fh, np.ones(3))
    with pytest.raises(ModelFileError):
        load_model(npy)
    text = tmp_path / "t.npz"
    text.write_text("hello")
    with pytest.raises(ModelFileError):
        load_model(text)


def test_corrupt_json_header(tmp_path: Path) -> None:
    p = tmp_path / "c.npz"
    np.savez(p, **{HEADER_KEY: np.frombuffer(b"{not json", np.uint8), "w": np.ones(2)})
    with pytest.raises(ModelFileError, match="JSON"):
        load_model(p)
