"""One road model for two sources (issue 22 parts 2 and 4): the shipped ``road_general`` recipe.

Run ``python benchmarks/bench_road_general.py [--seeds 3] [--arms ottawa,massachusetts,both]
[--set key=value ...] [--keep DIR]`` (the UDA arms: ``--arms massachusetts,massachusetts-uda-ottawa``,
``--arms ottawa,ottawa-uda-massachusetts``). Data: ``shared/data/ottawa_roadnet`` and
``shared/data/massachusetts_roads`` beside the repository (skipped with a message when absent);
needs ``geoseg[pretrained]`` (the recipe's ImageNet encoder).

Protocol: ``pipelines/training/road_general.yaml`` as shipped (its crops, iterations, optimizer,
0.5 m working GSD), seeds ``first-seed ..``, the last epoch kept (no test data seen in
training). Arms, same recipe and budget:

- ``ottawa``: the 6 Ottawa training tiles (0.21 m PNGs);
- ``massachusetts``: the 200 ``training_*`` Massachusetts crops (1.0 m PNGs);
- ``both``: both sets in one run, each source given its GSD and half of the crops through
  ``data.source_weights`` (``{"*/ottawa_roadnet/*": 1, "*/massachusetts_roads/*": 1}``), as the
  README's command does with ``--source-gsd`` and ``--source-weight``;
- ``ottawa-uda-massachusetts``, ``massachusetts-uda-ottawa`` (issue 22, UDA on this base): the
  source's labelled scenes as in its own arm, plus the other source's training scenes
  **without their labels** as the target domain (``mode: uda``, :mod:`geoseg.nn.uda`: the
  uncertainty-aware mean teacher of ``road_uda`` (2 teacher passes), its consistency weight and entropy threshold
  ramped over the first half of the 1500 steps); the model written is the teacher. Compare with
  the source's own arm (source only) on the target's test set.

Every model is scored on both test sets: the 5 Ottawa test tiles (road IoU of ``p > 0.5``,
centerline quality at 3 px of ``deep_road_centerlines``; :mod:`bench_deep_ottawa`) and the 48
Massachusetts ``validation_*`` crops (pooled road IoU, centerline quality at 2 px against the
skeletons of the masks; :mod:`bench_massachusetts`). Goal: the ``both`` model within 0.03 of
each source's own model on that source.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

import bench_deep_ottawa  # noqa: E402
import bench_massachusetts as mass  # noqa: E402
from geoseg.nn.config import load_train_config  # noqa: E402
from geoseg.nn.efficientnet import imagenet_lite0_state  # noqa: E402
from geoseg.nn.train import SceneData, train  # noqa: E402
from ottawa import DATA as OTTAWA  # noqa: E402
from ottawa import TRAIN, scene  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "pipelines" / "training" / "road_general.yaml"
ARMS = ("ottawa", "massachusetts", "both", "ottawa-uda-massachusetts", "massachusetts-uda-ottawa")
#: Overrides of the UDA arms: road_uda's mean teacher, ramped over half of road_general's 1500 steps.
UDA = ["mode=uda", "uda.rampup_iterations=750", "uda.teacher_passes=2"]
BALANCE = "data.source_weights={'*/ottawa_roadnet/*': 1, '*/massachusetts_roads/*': 1}"
#: score -> label, printed in this order
SCORES = {"ot_iou": "Ottawa IoU", "ot_qual": "Ottawa quality@3px", "ma_iou": "Mass. IoU", "ma_qual": "Mass. quality@2px", "train_s": "train s"}


def training_data(arm: str) -> tuple[list[SceneData], list[SceneData]]:
    """The arm's labelled training scenes and its unlabelled target scenes (UDA arms), each named
    by its file path (what ``data.source_weights`` matches). Target scenes keep their masks, which
    the UDA mode uses only for the check IoU in its log."""
    ottawa = [dataclasses.replace(scene(t), source=str(OTTAWA / "images" / f"{t}.png")) for t in TRAIN]
    massachusetts = [
        SceneData(mass._image(n), mass._mask(n).astype(np.uint8), mass.GSD_M, str(mass.DATA / "images" / f"{n}.png")) for n in mass._names("training")
    ]
    return {
        "ottawa": (ottawa, []),
        "massachusetts": (massachusetts, []),
        "both": (ottawa + massachusetts, []),
        "ottawa-uda-massachusetts": (ottawa, massachusetts),
        "massachusetts-uda-ottawa": (massachusetts, ottawa),
    }[arm]


def score(model: Path) -> dict[str, float]:
    """The model's scores on both test sets."""
    ot = bench_deep_ottawa.evaluate(model)
    ma = mass.evaluate(model, mass._names("validation"))
    return {"ot_iou": ot["iou"], "ot_qual": ot["qual"], "ma_iou": ma["iou"], "ma_qual": ma["qual"]}


def main(argv: list[str] | None = None) -> int:
    """Train and score the arms; print one line per run and the table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms: {', '.join(ARMS)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="training config override, for every arm")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the trained models in (<arm>_seed<N>.npz)")
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if unknown := [a for a in arms if a not in ARMS]:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    load_train_config(CONFIG, [BALANCE, *UDA, *args.overrides])  # a bad override fails before any training
    imagenet_lite0_state(3)  # so does a missing geoseg[pretrained]
    for folder in (OTTAWA, mass.DATA):
        if not folder.is_dir():
            print(f"SKIP: data folder {folder} not found (see shared/data/README.md).")
            return 0
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for arm in arms:
                overrides = [f"seed={seed}", *([BALANCE] if arm == "both" else []), *(UDA if "-uda-" in arm else []), *args.overrides]
                cfg = load_train_config(CONFIG, overrides)
                path = out / f"{arm}_seed{seed}.npz"
                labelled, target = training_data(arm)
                t0 = time.perf_counter()
                train(cfg, labelled, best_path=path, progress=False, unlabeled_data=target)
                row = {**score(path), "train_s": time.perf_counter() - t0}
                results[arm].append(row)
                print(f"{arm} seed {seed}: " + " | ".join(f"{label} {row[k]:.3f}" for k, label in SCORES.items()), flush=True)
    print(f"\n== road_general {args.overrides}, mean ± std over {args.seeds} seed(s) ==")
    print(f"{'trained on':14s} " + " | ".join(SCORES.values()))
    for arm, rows in results.items():
        print(f"{arm:14s} " + " | ".join(f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}" for k in SCORES))
    if {"both", "ottawa", "massachusetts"} <= set(results):
        mean = {arm: {k: float(np.mean([r[k] for r in rows])) for k in SCORES} for arm, rows in results.items()}
        for own, keys in (("ottawa", ("ot_iou", "ot_qual")), ("massachusetts", ("ma_iou", "ma_qual"))):
            for k in keys:
                gap = mean["both"][k] - mean[own][k]
                print(f"both vs {own}'s own model, {SCORES[k]}: {gap:+.3f}  [goal >= -0.03: {'met' if gap >= -0.03 else 'not met'}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
