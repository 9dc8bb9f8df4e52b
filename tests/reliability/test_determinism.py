"""Determinism: the same input and pipeline give byte-identical vector outputs, run to run.

Across 1 vs 2 Dask workers: ``tests/pipeline/test_distributed.py`` compares a 2-worker
cluster's outputs with the in-process run byte for byte (not duplicated here).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from geoseg.pipeline.batch import run_batch
from geoseg.pipeline.pipeline import load_pipeline
from tests.conftest import SAMPLE_DATA


@pytest.mark.parametrize("fmt", ["shp", "gpkg", "geojson"])
def test_two_runs_give_the_same_bytes(fmt, tmp_path):
    scene = Path(shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", tmp_path / "a.tif"))
    pipe = load_pipeline("mask_to_centerlines")
    outs = [tmp_path / f"run{i}" for i in range(2)]
    for out in outs:
        [report] = run_batch(pipe, [scene], out, fmt=fmt)
        assert report.status == "done"
    files = sorted(p.name for p in outs[0].iterdir() if p.suffix not in (".json", ".lock"))
    assert len(files) >= 1 and files == sorted(p.name for p in outs[1].iterdir() if p.suffix not in (".json", ".lock"))
    for name in files:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
