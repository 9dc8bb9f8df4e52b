"""Start-up (issue 18): help, version and the error for a missing input load none of the heavy libraries.

Each case runs ``python -m geoseg.cli`` in a fresh interpreter and reports, after the command
exits, which of torch, geopandas, scipy, dask and scikit-learn it imported. No timings: the
machines that run the tests are too noisy for them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "geopandas", "scipy", "dask", "sklearn")

#: Runs ``python -m geoseg.cli ARGS``; at exit its last line on stderr names the heavy modules loaded.
_PROBE = f"""
import atexit, json, runpy, sys
atexit.register(lambda: sys.stderr.write("\\n" + json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))) + "\\n"))
sys.argv[0] = "geoseg"
runpy.run_module("geoseg.cli", run_name="__main__", alter_sys=True)
"""


def _geoseg(*args: object) -> tuple[int, list[str], str, str]:
    """Run geoseg with ``args`` in a fresh interpreter: exit code, heavy modules loaded, stdout, stderr."""
    res = subprocess.run(
        [sys.executable, "-c", _PROBE, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    *errors, last = res.stderr.rstrip("\n").split("\n")
    return res.returncode, json.loads(last), res.stdout, "\n".join(errors).strip()


@pytest.mark.parametrize(
    ("args", "shown"),
    [(["--help"], "Usage: geoseg"), (["--version"], "geoseg, version")],
    ids=["help", "version"],
)
def test_help_and_version_load_nothing_heavy(args: list[str], shown: str) -> None:
    code, loaded, out, err = _geoseg(*args)
    assert (code, loaded, err) == (0, [], "")
    assert out.startswith(shown)


def test_run_with_a_missing_scene_stops_before_loading_anything_heavy(
    tmp_path: Path,
) -> None:
    missing, out = tmp_path / "missing.tif", tmp_path / "out"
    code, loaded, _, err = _geoseg("run", "mask_to_centerlines", missing, "-o", out)
    assert (code, loaded) == (1, [])
    assert err == f"geoseg: error: {missing}: no such file"
    assert not out.exists()  # no manifest of a batch that could do nothing


def test_run_names_the_missing_scenes_in_one_line(tmp_path: Path) -> None:
    scenes = [tmp_path / f"s{i}.tif" for i in range(5)]
    code, loaded, _, err = _geoseg(
        "run", "mask_to_centerlines", *scenes, "-o", tmp_path / "out"
    )
    assert (code, loaded) == (1, [])
    named = "; ".join(f"{scene}: no such file" for scene in scenes[:3])
    assert err == f"geoseg: error: {named}; and 2 more input(s) that do not exist"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["eval", "{missing}", "sample_data/scene_a_centerlines.geojson"],
            "{missing}: no such file",
        ),
        (["report", "{missing}"], "{missing}: no such output folder"),
    ],
    ids=["eval", "report"],
)
def test_other_commands_report_a_missing_input_before_loading_anything_heavy(
    command: list[str], message: str, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    code, loaded, _, err = _geoseg(*(arg.format(missing=missing) for arg in command))
    assert (code, loaded) == (1, [])
    assert err == "geoseg: error: " + message.format(missing=missing)


def test_a_batch_done_earlier_is_still_skipped_after_its_scenes_were_removed(
    plus_tif: Path, tmp_path: Path
) -> None:
    # a manifest may record the missing scenes as done: then the batch runs as usual and skips them
    out = tmp_path / "out"
    args = ["run", "mask_to_centerlines", plus_tif, "-o", out, "--progress", "none"]
    first = _geoseg(*args)
    assert first[0] == 0, first
    plus_tif.unlink()
    code, _, _, err = _geoseg(*args)
    assert code == 0, err
    assert "1 of 1 scene(s) already done" in err


def test_running_an_mjcr_model_does_not_load_the_training_library(tmp_path: Path) -> None:
    """scikit-learn (0.7 s to import) fits MJCR's calibration; applying a model needs none of it."""
    code, loaded, _, err = _geoseg(
        "run", "road_centerlines", "sample_data/scene_a.tif", "-o", tmp_path / "out", "--progress", "none",
        "--set", "model=sample_data/roads.mjcr.npz",
    )  # fmt: skip
    assert code == 0, err
    assert "sklearn" not in loaded and "scipy" in loaded
