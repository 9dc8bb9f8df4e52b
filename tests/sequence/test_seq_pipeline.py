"""The sequence pipeline end to end: CLI run → GeoPackage with consistent track ids; API; training CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
from affine import Affine

from geoseg.errors import ConfigError, NotGeoreferencedWarning
from geoseg.sequence import run_sequence
from geoseg.sequence.io import write_frames
from geoseg.sequence.modelfile import load_sequence_model
from geoseg.configfile import pipeline_kind
from geoseg.pipeline.pipeline import Pipeline, load_pipeline
from geoseg.pipeline.sequence import run_sequence_to_dir
from geoseg.sequence.train import load_sequence_train_config
from geoseg.shipped import resolve_file
from tests.conftest import SAMPLE_DATA

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "pipelines" / "sequence_objects.yaml"
GEOSEG = [sys.executable, "-m", "geoseg.cli"] if shutil.which("geoseg") is None else ["geoseg"]


def geoseg(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 shared cores: one torch thread avoids oversubscription
    return subprocess.run([*GEOSEG, *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300, env=env)


def _rasterize(frame: gpd.GeoDataFrame, n_frames: int, shape: tuple[int, int], transform: Affine) -> dict[int, np.ndarray]:
    """Track id → (frames, H, W) bool masks from the polygons."""
    out: dict[int, np.ndarray] = {}
    for row in frame.itertuples():
        m = out.setdefault(int(row.track_id), np.zeros((n_frames, *shape), bool))
        m[int(row.frame)] |= rasterio.features.rasterize([(row.geometry, 1)], out_shape=shape, transform=transform, dtype="uint8") > 0
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _dominant_tracks(sample, tracks: dict[int, np.ndarray], min_iou: float) -> dict[int, tuple[int | None, float]]:
    """Per ground-truth object: the track that matches it (IoU >= min_iou) in most visible frames, and that fraction."""
    out = {}
    for obj in sample.ids:
        frames = [t for t in range(len(sample.frames)) if (sample.instances[t] == obj).sum() >= 8]
        votes: dict[int, int] = {}
        for t in frames:
            gt = sample.instances[t] == obj
            best = max(tracks, key=lambda k: _iou(tracks[k][t], gt), default=None)
            if best is not None and _iou(tracks[best][t], gt) >= min_iou:
                votes[best] = votes.get(best, 0) + 1
        tid = max(votes, key=votes.get) if votes else None
        out[obj] = (tid, votes.get(tid, 0) / len(frames))
    return out


def test_pipeline_file_is_recognised_and_checked():
    assert pipeline_kind(PIPELINE) == pipeline_kind("sequence_objects") == "sequence"
    assert pipeline_kind(REPO / "pipelines" / "mask_to_centerlines.yaml") == "scene"
    pipe = load_pipeline("sequence_objects", ["score_threshold=0.4", "bands_per_frame=3", "name=clip"])
    assert pipe.kind == "sequence" and pipe.output_layers() == ["objects"] and pipe.required_params() == ["model"]
    assert (pipe.engine.bands_per_frame, pipe.engine.name) == (3, "clip")
    step = pipe.with_overrides({"model": "m.ovs.npz"}).steps[0]
    assert step.type_name == "segment_sequence" and step.score_threshold == 0.4 and step.inference_params().tracking.gate_px == 24
    assert Pipeline.from_yaml_text(pipe.to_yaml()) == pipe  # kind and engine settings survive a round trip
    with pytest.raises(ConfigError, match="no pipeline parameter or engine setting 'modle'"):
        load_pipeline(PIPELINE, ["modle=x.npz"])
    with pytest.raises(ConfigError, match="field 'model': pipeline parameter model is not set"):
        run_sequence(PIPELINE, [REPO / "sample_data" / "sequence" / "frames"])


def test_one_pipeline_object_for_both_kinds_with_the_kind_checked():
    # the layers a kind starts from decide which steps fit: scene steps cannot run on frames, nor the reverse
    with pytest.raises(ConfigError, match=r"needs layer\(s\) \['image'\].*available: \['frames'\]"):
        Pipeline([{"type": "threshold_mask"}], kind="sequence")
    with pytest.raises(ConfigError, match=r"needs layer\(s\) \['frames'\]"):
        Pipeline([{"type": "segment_sequence", "model": "m.ovs.npz"}])
    with pytest.raises(ConfigError, match="no pipeline parameter or engine setting 'bands_per_frame'"):
        load_pipeline("mask_to_centerlines", ["bands_per_frame=3"])
    with pytest.raises(ConfigError, match="bands_per_frame is no setting of a scene pipeline"):
        Pipeline([{"type": "threshold_mask"}], engine={"bands_per_frame": 3})
    with pytest.raises(ConfigError, match="max_memory is no setting of a sequence pipeline"):
        Pipeline([{"type": "segment_sequence", "model": "m.ovs.npz"}], kind="sequence", engine={"max_memory": "2GB"})
    with pytest.raises(ConfigError, match="unknown pipeline kind 'movie'"):
        Pipeline.from_yaml_text("schema_version: 1\nkind: movie\nsteps: [{type: threshold_mask}]")
    with pytest.raises(ConfigError, match="a sequence pipeline lists its steps"):  # the format without steps
        Pipeline.from_yaml_text("schema_version: 1\nkind: sequence\nparams: {model: null}")
    seq = load_pipeline("sequence_objects", ["model=m.ovs.npz"])
    with pytest.raises(ConfigError, match="use geoseg.pipeline.sequence.run_sequence"):
        seq.run(REPO / "sample_data" / "scene_a_mask.tif")
    with pytest.raises(ConfigError, match="not a sequence pipeline"):
        run_sequence_to_dir("mask_to_centerlines", [REPO / "sample_data" / "sequence" / "frames"], REPO / "never-written")


def test_cli_writes_geopackage_with_track_ids_of_the_first_frame_masks(tmp_path, tiny_model_file, two_object_sequence):
    sample = two_object_sequence
    frames_dir = tmp_path / "clip"
    write_frames(sample.frames, frames_dir, fmt="png")
    first = tmp_path / "first.tif"
    write_frames(sample.instances[:1, None].astype(np.uint8), tmp_path / "first", fmt="tif")
    (tmp_path / "first" / "frame_0.tif").rename(first)
    out = geoseg("run", PIPELINE, frames_dir, "-o", tmp_path / "out", "--set", f"model={tiny_model_file}", "--set", f"first_masks={first}")
    assert out.returncode == 0, out.stderr
    gpkg = tmp_path / "out" / "clip.gpkg"
    result = gpd.read_file(gpkg, layer="objects")
    assert {"frame", "track_id", "score", "area_px", "geometry"} <= set(result.columns)
    assert result.crs is None  # PNG frames: pixel coordinates
    assert sorted(result["frame"].unique()) == list(range(len(sample.frames)))
    tracks = _rasterize(result, len(sample.frames), sample.instances.shape[1:], Affine.identity())
    dominant = _dominant_tracks(sample, tracks, min_iou=0.5)
    for obj, (tid, fraction) in dominant.items():
        assert tid == obj and fraction >= 0.75, dominant  # the same object keeps the id it was given


def test_api_discovers_objects_in_georeferenced_frames(tmp_path, tiny_model_file, two_object_sequence):
    sample = two_object_sequence
    transform = Affine(0.3, 0, 600000, 0, -0.3, 5000000)
    write_frames(sample.frames, tmp_path / "geo", crs="EPSG:32632", transform=transform,
                 times=[f"2024-06-01T12:00:{k:02d}Z" for k in range(len(sample.frames))])
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        result = run_sequence("sequence_objects", [tmp_path / "geo"], {"model": str(tiny_model_file)})
    assert result.crs == "EPSG:32632"
    x0, y0, x1, y1 = result.total_bounds
    assert 600000 <= x0 and x1 <= 600000 + 96 * 0.3 and 5000000 - 96 * 0.3 <= y0 and y1 <= 5000000
    assert result["time"].iloc[0].startswith("2024-06-01T12:00")
    tracks = _rasterize(result, len(sample.frames), sample.instances.shape[1:], transform)
    dominant = _dominant_tracks(sample, tracks, min_iou=0.4)
    ids = [tid for tid, _ in dominant.values()]
    assert None not in ids and len(set(ids)) == len(ids), dominant  # each object its own track
    assert all(fraction >= 0.75 for _, fraction in dominant.values()), dominant
    # the loaded model object gives the same rows as the model file
    again = run_sequence(PIPELINE, [tmp_path / "geo"], model=load_sequence_model(tiny_model_file))
    assert again[["frame", "track_id", "area_px"]].equals(result[["frame", "track_id", "area_px"]])


def test_train_sequence_cli_writes_a_model(tmp_path):
    out = geoseg("train", "sequence", "-o", tmp_path / "m.ovs.npz", "--set", "iterations=2", "--set", "frame_size=32",
                 "--set", "n_sequences=1", "--set", "n_frames=3", "--set", "widths=[4,4,4]")
    assert out.returncode == 0, out.stderr
    model = load_sequence_model(tmp_path / "m.ovs.npz")
    assert model.training["config"]["iterations"] == 2 and model.hyper["widths"] == [4, 4, 4]
    shipped = load_sequence_train_config(resolve_file("sequence_ovs", "training"))
    assert shipped.frame_size % 8 == 0 and shipped.backgrounds == []
    with pytest.raises(ConfigError, match="field 'iteration': unknown field"):
        load_sequence_train_config(None, ["iteration=2"])


def test_frames_without_any_detection_give_an_empty_result(tmp_path, tiny_model_file, two_object_sequence):
    # A weak model, or an empty scene, detects nothing: no objects, and no crash.
    write_frames(two_object_sequence.frames[:3], tmp_path / "frames")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        result = run_sequence("sequence_objects", [tmp_path / "frames"], {"model": str(tiny_model_file), "score_threshold": 1.01})
    assert len(result) == 0


def test_the_sequence_output_stays_in_its_folder_and_out_of_geojson_in_pixels(tiny_model_file, tmp_path) -> None:
    """``--set name=../x`` wrote outside OUTDIR, and GeoJSON held pixel coordinates read as degrees."""
    from geoseg.errors import InputMismatchError, OutputWriteError
    from geoseg.pipeline.sequence import run_sequence_to_dir

    frames = [str(p) for p in sorted((SAMPLE_DATA / "sequence" / "frames").glob("*.png"))]
    pipeline = load_pipeline("sequence_objects", [f"model={tiny_model_file}", "name=../escaped"])
    with pytest.raises(OutputWriteError, match="outputs never leave the output folder"):
        run_sequence_to_dir(pipeline, frames, tmp_path / "out")
    with pytest.raises(InputMismatchError, match="no CRS, so its vectors would be in pixel coordinates"):
        run_sequence_to_dir(load_pipeline("sequence_objects", [f"model={tiny_model_file}"]), frames, tmp_path / "out", fmt="geojson")
    assert list(tmp_path.iterdir()) == []
