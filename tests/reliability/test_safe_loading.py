"""Safe loading: nothing read from a user's file is unpickled or executed."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from geoseg.errors import ModelFileError
from geoseg.modelfile import load_model
from geoseg.pipeline.batch import run_batch
from geoseg.pipeline.pipeline import load_pipeline
from tests.conftest import REPO, SAMPLE_DATA


class _Payload:
    """Unpickling this creates a marker file: proof that the pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _plant(folder: Path) -> tuple[dict[str, Path], Path]:
    marker = folder / "EXECUTED"
    files = {}
    raw = folder / "raw_pickle.npz"  # a bare pickle named like a model
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    files["raw pickle"] = raw
    obj = folder / "object_array.npz"  # a real npz whose member is a pickled object array
    np.savez(obj, **{"__geoseg_header__": np.frombuffer(b'{"format": "geoseg-model"}', np.uint8), "w": np.array([_Payload(marker)], dtype=object)})
    files["npz with a pickled member"] = obj
    npy = folder / "object.npy.npz"  # a .npy holding a pickled object
    with open(npy, "wb") as fh:
        np.save(fh, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    files["npy with pickle"] = npy
    torch_like = folder / "model.pt.npz"  # a torch.save-style zip archive with data.pkl
    with zipfile.ZipFile(torch_like, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Payload(marker)))
    files["torch checkpoint"] = torch_like
    return files, marker


def test_malicious_pickles_disguised_as_models_are_refused_unexecuted(tmp_path):
    files, marker = _plant(tmp_path)
    scene = SAMPLE_DATA / "scene_a.tif"
    for what, path in files.items():
        with pytest.raises(ModelFileError) as info:
            load_model(path)
        assert str(path) in str(info.value), what
        with pytest.raises(ModelFileError) as info:  # before any scene
            run_batch(load_pipeline("road_segmentation", [f"model={path}"]), [scene], tmp_path / f"out_{path.stem}")
        assert str(path) in str(info.value), what
        assert not marker.exists(), f"{what}: the payload ran"
    with pytest.raises(ModelFileError, match="pickled data"):
        load_model(files["npz with a pickled member"])


UNSAFE = [
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\b(?:c?Pickle|dill|joblib|cloudpickle)\.load"), "pickle-like load"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"\byaml\.(?:load|unsafe_load|full_load)\("), "yaml.load without SafeLoader"),
    (re.compile(r"(?<![.\w])(?:eval|exec)\("), "eval/exec"),  # not torch's module.eval()
]


def test_no_unsafe_loading_in_the_package():
    """No pickle, unsafe YAML, eval, or torch.load without weights_only=True anywhere in geoseg."""
    problems = []
    for path in sorted((REPO / "geoseg").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern, what in UNSAFE:
            problems += [f"{path.relative_to(REPO)}: {what}" for _ in pattern.finditer(text)]
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in call.group(1):
                problems.append(f"{path.relative_to(REPO)}: torch.load without weights_only=True")
    assert not problems, problems
