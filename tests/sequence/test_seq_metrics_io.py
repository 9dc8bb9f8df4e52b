"""Sequence input (folders, stacks, georeferencing, time tags, GIF) and the J/F/ID-switch scores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.errors import InputMismatchError, NotGeoreferencedWarning, RasterReadError
from geoseg.sequence.io import frame_files, natural_key, read_frames, write_frames
from geoseg.sequence.metrics import boundary_f, sequence_scores


def _labels() -> np.ndarray:
    gt = np.zeros((4, 32, 32), np.int32)
    for t in range(4):
        gt[t, 4:12, 2 + 3 * t:10 + 3 * t] = 1
        gt[t, 20:28, 20 - 2 * t:28 - 2 * t] = 2
    return gt


def test_scores_perfect_and_relabelled():
    gt = _labels()
    s = sequence_scores(gt, gt * 7)  # other ids, same objects: perfect
    assert s["J"] == 1 and s["F"] == 1 and s["id_switches"] == 0 and s["matched"] == 1


def test_scores_count_identity_switches_and_misses():
    gt = _labels()
    pred = gt.copy()
    pred[2:][gt[2:] == 1] = 5  # object 1 gets a new id from frame 2
    s = sequence_scores(gt, pred)
    assert s["id_switches"] == 1 and s["J"] == pytest.approx(0.75)
    missing = gt.copy()
    missing[missing == 2] = 0
    assert sequence_scores(gt, missing)["J"] == pytest.approx(0.5)


def test_boundary_f_tolerance():
    a = np.zeros((40, 40), bool)
    a[10:30, 10:30] = True
    b = np.roll(a, 1, axis=1)
    assert boundary_f(b, a, tolerance=1) == 1.0
    assert boundary_f(np.roll(a, 5, axis=1), a, tolerance=1) < 0.8


def test_folder_natural_order_georeferencing_and_time(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (11, 3, 16, 20), dtype=np.uint8)
    transform = Affine(0.5, 0, 500000, 0, -0.5, 4500000)
    times = [f"2024-05-01T10:00:{k:02d}" for k in range(11)]
    write_frames(frames, tmp_path / "seq", crs="EPSG:32633", transform=transform, times=times)
    assert natural_key("frame_2.tif") < natural_key("frame_10.tif")
    files = frame_files([tmp_path / "seq"])
    assert [f.name for f in files[:3]] == ["frame_0.tif", "frame_1.tif", "frame_2.tif"] and files[-1].name == "frame_10.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        read = read_frames(tmp_path / "seq")
    assert len(read) == 11 and np.array_equal(read[10].array, frames[10])
    assert read[3].geo.crs == "EPSG:32633" and read[3].geo.transform == transform and read[3].time == times[3]


def test_band_stack_and_plain_frames_warn_once(tmp_path):
    stack = np.arange(6 * 8 * 8, dtype=np.uint8).reshape(6, 8, 8)
    path = tmp_path / "stack.tif"
    with rasterio.open(path, "w", driver="GTiff", count=6, height=8, width=8, dtype="uint8", crs="EPSG:3857",
                       transform=Affine(1, 0, 0, 0, -1, 8)) as ds:
        ds.write(stack)
        ds.update_tags(4, TIME="t1")
    frames = read_frames(path, bands_per_frame=3)
    assert len(frames) == 2 and np.array_equal(frames[1].array, stack[3:]) and frames[1].time == "t1"
    write_frames(np.zeros((3, 3, 8, 8), np.uint8), tmp_path / "png", fmt="png")
    with pytest.warns(NotGeoreferencedWarning) as record:
        plain = read_frames(tmp_path / "png")
    assert len(plain) == 3 and not plain[0].geo.georeferenced
    assert len([w for w in record if issubclass(w.category, NotGeoreferencedWarning)]) == 1


def test_animated_gif_and_errors(tmp_path):
    from PIL import Image

    imgs = [Image.fromarray(np.full((10, 12, 3), v, np.uint8)) for v in (10, 120, 240)]
    imgs[0].save(tmp_path / "clip.gif", save_all=True, append_images=imgs[1:])
    with pytest.warns(NotGeoreferencedWarning):
        frames = read_frames(tmp_path / "clip.gif")
    assert len(frames) == 3 and frames[2].array.shape == (3, 10, 12) and abs(int(frames[2].array.mean()) - 240) <= 2
    with pytest.raises(RasterReadError, match="nowhere"):
        read_frames(tmp_path / "nowhere")
    write_frames(np.zeros((1, 3, 8, 8), np.uint8), tmp_path / "mixed", prefix="a")
    write_frames(np.zeros((1, 3, 9, 8), np.uint8), tmp_path / "mixed", prefix="b")
    with pytest.raises(InputMismatchError, match="frame size"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        read_frames(tmp_path / "mixed")
