"""Seconds per training epoch of the shipped ``road_decouple`` config (issue 18, goal 7).

Trains ``geoseg train nn road_decouple`` through the CLI, as a user does, on the 6 Ottawa
RoadNet training tiles (``../shared/data/ottawa_roadnet``, 512² PNGs at 0.21 m, so
``--set data.gsd_m=0.21``) for a few epochs, and reads each epoch's seconds from the ``-v`` log.
It does so on a quiet machine, then again while one other CPU-bound process (a busy loop)
runs beside it, and prints the median epoch of each, their ratio (goal: ≤ 2.5), and the
time the shipped 30 epochs would take against the documented budget (docs/RESULTS.md: 10.7 s
per epoch, about 5 minutes).

Usage::

    python benchmarks/bench_train_epoch.py                 # 4 epochs quiet, 4 contended
    python benchmarks/bench_train_epoch.py --epochs 6 --no-contended
    python benchmarks/bench_train_epoch.py --no-contended --set precision=fp32   # the float32 arithmetic
    python benchmarks/bench_train_epoch.py --set threads=null   # all cores throughout, not the shipped threads: auto

The first epoch is left out of the median (it pays for the first calls of oneDNN's kernels).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ottawa_roadnet"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ottawa import TRAIN  # noqa: E402

#: Seconds per epoch the results document for this config (docs/RESULTS.md, DecoupleSegNet).
DOCUMENTED_S = 10.7
#: Longest a contended epoch may take, against a quiet one.
CONTENDED_GOAL = 2.5
_EPOCH = re.compile(r"epoch (\d+)/\d+: .*\(([\d.]+) s\)")


def _busy() -> subprocess.Popen[bytes]:
    """One CPU-bound process: a Python busy loop (stopped by the caller)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def epoch_seconds(epochs: int, outdir: Path, overrides: list[str]) -> list[float]:
    """Train ``epochs`` epochs through the CLI (with ``--set`` ``overrides``); the seconds of each, from its log."""
    images = [arg for t in TRAIN for arg in ("--images", str(DATA / "images" / f"{t}.png"))]
    masks = [arg for t in TRAIN for arg in ("--masks", str(DATA / "masks" / f"{t}.png"))]
    command = [
        shutil.which("geoseg") or "geoseg", "-v", "train", "nn", "road_decouple", *images, *masks,
        "--set", "data.gsd_m=0.21", "--set", f"epochs={epochs}", "-o", str(outdir / "model.nn.npz"),
        *(a for item in overrides for a in ("--set", item)),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=outdir)
    if done.returncode != 0:
        raise SystemExit(f"training failed:\n{done.stderr[-3000:]}")
    seconds = [float(m.group(2)) for m in _EPOCH.finditer(done.stderr)]
    if len(seconds) != epochs:
        raise SystemExit(f"expected {epochs} epoch lines in the log, found {len(seconds)}:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is not counted)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="training config override, e.g. precision=fp32")
    parser.add_argument("--no-contended", action="store_true", help="skip the run beside a busy process")
    args = parser.parse_args()
    if not (DATA / "images").is_dir():
        raise SystemExit(f"skipped: {DATA} is absent (the Ottawa RoadNet tiles of ../shared/data)")
    runs = {"quiet": False} if args.no_contended else {"quiet": False, "contended (1 busy process)": True}
    medians = {}
    for label, contended in runs.items():
        busy = _busy() if contended else None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                seconds = epoch_seconds(args.epochs, Path(tmp), args.overrides)
                wall = time.perf_counter() - start
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        medians[label] = statistics.median(seconds[1:] if len(seconds) > 1 else seconds)
        print(f"{label:28s} epochs {', '.join(f'{s:.1f}' for s in seconds)} s; median {medians[label]:.1f} s "
              f"(whole run {wall:.0f} s)")  # fmt: skip
    quiet = medians["quiet"]
    print(f"shipped 30 epochs, quiet: {30 * quiet / 60:.1f} min; documented {DOCUMENTED_S} s/epoch: ratio {quiet / DOCUMENTED_S:.2f}")
    if len(medians) > 1:
        ratio = medians["contended (1 busy process)"] / quiet
        print(f"contended / quiet: {ratio:.2f} (goal <= {CONTENDED_GOAL}): {'met' if ratio <= CONTENDED_GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
