"""``geoseg train``: fit road classifiers and write model files."""

from __future__ import annotations

import logging
import time

import click

from geoseg.cli._common import expand_inputs
from geoseg.errors import InputMismatchError

log = logging.getLogger("geoseg.cli")


@click.group("train")
def command() -> None:
    """Train a road classifier and write a model file (safe format: .npz + JSON, no pickle)."""


@command.command("mjcr")
@click.option("--images", "images", multiple=True, help="Training scenes (files or globs); pair with --masks by file stem.")
@click.option("--masks", "masks", multiple=True, help="Road masks (non-zero = road), same stems as the images (a '_mask' suffix is allowed).")
@click.option("--image", "image", type=click.Path(dir_okay=False), help="One scene to label with --samples.")
@click.option("--samples", type=click.Path(dir_okay=False), help="Vector file of labelled samples (polygons/lines/points) over --image.")
@click.option("--class-field", default="class", show_default=True, help="Field of --samples: 1 = road, 0 = background.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (e.g. roads.mjcr.npz).")
@click.option("--bands", default=None, help="1-based bands to use, comma-separated (default: the first three).")
@click.option("--scales-m", default="1,2.5,5", show_default=True, help="Feature scales in metres, comma-separated.")
@click.option("--lambda", "lam", type=float, default=0.1, show_default=True, help="Ridge parameter of the collaborative representation.")
@click.option("--atoms", type=int, default=1000, show_default=True, help="Dictionary atoms per class.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--gsd-m", type=float, default=0.3, show_default=True, help="GSD assumed for training files without georeferencing.")
def mjcr(images, masks, image, samples, class_field, output, bands, scales_m, lam, atoms, seed, gsd_m) -> None:
    """Train the MJCR (multiscale joint collaborative representation) road classifier.

    \b
    From image/mask pairs (matched by file stem):
      geoseg train mjcr --images "tiles/*.tif" --masks "masks/*.tif" -o roads.mjcr.npz
    From labelled samples drawn over one scene (e.g. in QGIS):
      geoseg train mjcr --image scene.tif --samples samples.gpkg --class-field class -o roads.mjcr.npz

    Then: geoseg run road_centerlines scene.tif -o out/ --set model=roads.mjcr.npz
    """
    from geoseg.classifiers.mjcr import MJCRClassifier
    from geoseg.classifiers.training_data import mask_labels, pair_by_stem, sample_labels
    from geoseg.raster import read_raster

    if bool(images or masks) == bool(image or samples):
        raise click.UsageError("give either --images and --masks, or --image and --samples")
    start = time.perf_counter()
    if samples or image:
        if not (samples and image):
            raise click.UsageError("--image and --samples go together")
        scene = read_raster(image, assume_gsd_m=gsd_m)
        scenes, labels = [scene], [sample_labels(scene, samples, class_field)]
    else:
        if not (images and masks):
            raise click.UsageError("--images and --masks go together")
        pairs = pair_by_stem(expand_inputs(images), expand_inputs(masks))
        scenes, labels = [], []
        for im, mk in pairs:
            scene = read_raster(im, assume_gsd_m=gsd_m)
            scenes.append(scene)
            labels.append(mask_labels(scene, mk))
    try:
        band_list = [int(b) for b in bands.split(",")] if bands else None
        scales = [float(s) for s in scales_m.split(",")]
    except ValueError as exc:
        raise InputMismatchError(f"--bands/--scales-m: {exc}") from None
    log.info("training MJCR on %d scene(s), %d labelled pixels", len(scenes), int(sum(((lab == 0) | (lab == 1)).sum() for lab in labels)))
    classifier = MJCRClassifier.train(
        [s.array for s in scenes], labels, [s.geo.gsd_m for s in scenes],
        bands=band_list, scales_m=scales, lam=lam, atoms_per_class=atoms, seed=seed,
    )
    classifier.provenance = {"scenes": [s.source for s in scenes], "seed": seed}
    classifier.save(output)
    log.info("wrote %s (%.1f s)", output, time.perf_counter() - start)
