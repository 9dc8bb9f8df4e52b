"""Crash safety: `geoseg run` killed with SIGKILL at random moments (several seeds), then run
again, ends with exactly the outputs of an uninterrupted run, byte for byte.

``tests/cli/test_resume.py`` kills once, after the first scene; here the moment is random,
so the kill also lands during start-up, inside a scene's writes, or between manifest updates.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from geoseg.atomic import TEMP_PREFIX
from geoseg.pipeline.batch import LOCK_NAME, MANIFEST_NAME, read_manifest
from tests.cli.test_cli_basics import GEOSEG
from tests.conftest import REPO, SAMPLE_DATA

SEEDS = (1, 2, 3)
N = 4


def _run(args: list[str], kill_after: float | None = None) -> subprocess.CompletedProcess | None:
    proc = subprocess.Popen([*GEOSEG, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
    try:
        if kill_after is None:
            out, err = proc.communicate(timeout=120)
            return subprocess.CompletedProcess(args, proc.returncode, out, err)
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        return None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[list[Path], Path, float]:
    folder = tmp_path_factory.mktemp("crash")
    scenes = [Path(shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", folder / f"m{i}.tif")) for i in range(N)]
    out = folder / "reference"
    start = time.monotonic()
    res = _run(["run", "mask_to_centerlines", *map(str, scenes), "-o", str(out), "--workers", "1", "--progress", "none"])
    assert res.returncode == 0, res.stderr
    return scenes, out, time.monotonic() - start


@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_at_a_random_moment_then_rerun(seed, reference, tmp_path):
    scenes, ref, duration = reference
    out = tmp_path / "out"
    args = ["run", "mask_to_centerlines", *map(str, scenes), "-o", str(out), "--workers", "1", "--progress", "json"]
    delay = random.Random(seed).uniform(0.1, duration)
    _run(args, kill_after=delay)

    res = _run(args)
    assert res.returncode == 0, (delay, res.stderr)
    events = [e for e in map(json.loads, res.stdout.splitlines()) if e["event"] == "progress"]
    assert sorted(e["input"] for e in events) == sorted(map(str, scenes)) and all(e["status"] == "done" for e in events)
    assert all(s["status"] == "done" for s in read_manifest(out)["scenes"])
    expected = {p.name for p in ref.iterdir()}
    assert {p.name for p in out.iterdir()} == expected, delay  # nothing partial, nothing twice
    assert not list(out.glob(TEMP_PREFIX + "*"))
    for name in sorted(expected - {MANIFEST_NAME, LOCK_NAME}):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), (name, delay)
