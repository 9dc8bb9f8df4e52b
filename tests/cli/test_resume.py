"""`geoseg run` resumes: a batch killed with SIGKILL mid-way and rerun ends complete, with
no partial or duplicate outputs, byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from geoseg.atomic import TEMP_PREFIX
from geoseg.pipeline.batch import LOCK_NAME, MANIFEST_NAME, read_manifest, run_batch
from geoseg.pipeline.pipeline import load_pipeline
from tests.cli.test_cli_basics import GEOSEG, geoseg
from tests.conftest import REPO, SAMPLE_DATA

N_SCENES = 6
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


@pytest.fixture
def masks(tmp_path: Path) -> list[Path]:
    """Six copies of the sample road mask under different names."""
    folder = tmp_path / "in"
    folder.mkdir()
    return [Path(shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", folder / f"m{i}.tif")) for i in range(N_SCENES)]


def _run_until_first_scene_then_kill(args: list[str]) -> list[dict]:
    """Start `geoseg run ... --progress json`, SIGKILL its process group after the first done scene."""
    proc = subprocess.Popen([*GEOSEG, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True)
    events: list[dict] = []
    deadline = time.monotonic() + 120
    buffer = b""
    try:
        while time.monotonic() < deadline and not any(e.get("status") == "done" for e in events):
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                events += [json.loads(line) for line in lines if line.strip()]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    return events


def test_killed_batch_resumes_to_the_same_outputs(masks, tmp_path):
    out = tmp_path / "out"
    args = ["run", "mask_to_centerlines", *map(str, masks), "-o", str(out), "--progress", "json", "--workers", "2"]
    events = _run_until_first_scene_then_kill(args)
    assert events[0] == {"event": "start", "total": N_SCENES, "unit": "scene"}
    assert any(e.get("status") == "done" for e in events), "the first run reported no scene done before the deadline"
    killed = read_manifest(out)
    assert "running" in [s["status"] for s in killed["scenes"]]  # it was killed mid-way

    res = geoseg(*args)
    assert res.returncode == 0, res.stderr
    resumed = [e for e in map(json.loads, res.stdout.splitlines()) if e["event"] == "progress"]
    assert len(resumed) == N_SCENES and all(e["status"] == "done" for e in resumed)
    assert 1 <= sum(e["skipped"] for e in resumed) < N_SCENES
    manifest = read_manifest(out)
    assert sorted(s["input"] for s in manifest["scenes"]) == sorted(map(str, masks))
    assert all(s["status"] == "done" for s in manifest["scenes"])

    expected = {f"m{i}{suffix}{ext}" for i in range(N_SCENES) for suffix in ("", "_nodes") for ext in SHAPEFILE_PARTS}
    assert {p.name for p in out.iterdir()} == expected | {MANIFEST_NAME, LOCK_NAME}  # nothing partial, nothing twice
    assert not list(out.glob(TEMP_PREFIX + "*"))

    reference = tmp_path / "reference"
    run_batch(load_pipeline("mask_to_centerlines"), masks, reference)
    for name in sorted(n for n in expected if n.endswith((".shp", ".shx", ".dbf"))):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_overwrite_and_help(masks, tmp_path):
    out = tmp_path / "out"
    args = ["run", "mask_to_centerlines", str(masks[0]), "-o", str(out), "--progress", "json"]
    first = geoseg(*args)
    assert first.returncode == 0, first.stderr
    again = [e for e in map(json.loads, geoseg(*args).stdout.splitlines()) if e["event"] == "progress"]
    assert again[0]["skipped"] is True and again[0]["outputs"] == [str(out / "m0.shp"), str(out / "m0_nodes.shp")]
    redone = [e for e in map(json.loads, geoseg(*args, "--overwrite").stdout.splitlines()) if e["event"] == "progress"]
    assert redone[0]["skipped"] is False and redone[0]["status"] == "done"
    text = geoseg("run", "--help").stdout
    for option in ("--workers", "--scheduler", "GEOSEG_SCHEDULER", "--overwrite", "--report", "--truth", "geoseg-manifest.json"):
        assert option in text


def test_report_after_the_batch(masks, tmp_path):
    report = pytest.importorskip("geoseg.report", reason="geoseg.report (the HTML report) is not in this checkout yet")
    if not hasattr(report, "write_report"):
        pytest.skip("geoseg.report.write_report is not written yet")
    out = tmp_path / "out"
    res = geoseg("run", "mask_to_centerlines", str(masks[0]), "-o", str(out), "--progress", "none", "--report")
    assert res.returncode == 0, res.stderr
    assert "report:" in res.stderr
