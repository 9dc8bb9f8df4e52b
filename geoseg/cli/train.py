"""``geoseg train``: fit road classifiers and write model files."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geoseg.atomic import check_output_file, check_spares_inputs
from geoseg.cli._common import expand_inputs, named_files, resume_hint
from geoseg.errors import InputMismatchError, NotGeoreferencedWarning

if TYPE_CHECKING:
    from geoseg.classifiers.road_map import RoadMap, RoadMapSettings
    from geoseg.raster import Raster

log = logging.getLogger("geoseg.cli")

#: The road-map options of `geoseg train mjcr` and `geoseg train nn`, as (option, RoadMapSettings field or None); an
#: option's parameter is named as its field, so that the command's keyword arguments are the settings.
_ROAD_MAP_OPTIONS = (
    (click.option("--roads", default=None, help="Road map labelling the --images instead of --masks: centerlines, any vector format and CRS."), None),
    (
        click.option("--road-width-m", "width_m", type=click.FloatRange(min=0, min_open=True), default=None, help="Road width where the map gives none [6]."),
        "width_m",
    ),
    (click.option("--width-field", default=None, help="Map attribute holding each road's width in metres."), "width_field"),
    (click.option("--lanes-field", default=None, help="Map attribute holding each road's lane count (3.5 m per lane)."), "lanes_field"),
    (click.option("--ignore-m", type=click.FloatRange(min=0), default=None, help="Band either side of each road's edge left out of training [1]."), "ignore_m"),
    (
        click.option(
            "--labelled-within-m",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Label only pixels this near a road (a map of part of the scene; the rest is unlabelled).",
        ),
        "labelled_within_m",
    ),  # fmt: skip
    (click.option("--labelled-area", default=None, help="Polygons (vector file) outside which nothing is labelled."), None),
)


def road_map_options(command: Any) -> Any:
    """Add the road-map options (``--roads`` and how it is drawn) to a training command."""
    for option, _ in reversed(_ROAD_MAP_OPTIONS):
        command = option(command)
    return command


def road_map_settings(base: RoadMapSettings, **options: Any) -> RoadMapSettings:
    """``base`` with the road-map options the user gave (those not None) in place of its values.

    Raises
    ------
    click.UsageError
        The options contradict each other (a width field and a lanes field).
    """
    from pydantic import ValidationError

    from geoseg.classifiers.road_map import RoadMapSettings

    given = {field: options[field] for _, field in _ROAD_MAP_OPTIONS if field and options.get(field) is not None}
    try:
        return RoadMapSettings.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        raise click.UsageError(f"road map options: {exc.errors()[0]['msg']}") from None


@click.group("train")
def command() -> None:
    """Train a road classifier and write a model file (safe format: .npz + JSON, no pickle)."""


@command.command("mjcr")
@click.option("--images", "images", multiple=True, help="Training scenes (files or globs); pair with --masks by file stem.")
@click.option("--masks", "masks", multiple=True, help="Road masks (non-zero = road), same stems as the images (a '_mask' suffix is allowed).")
@click.option("--image", "image", type=click.Path(dir_okay=False), help="One scene to label with --samples.")
@click.option("--samples", type=click.Path(dir_okay=False), help="Vector file of labelled samples (polygons/lines/points) over --image.")
@click.option("--class-field", default="class", show_default=True, help="Field of --samples: 1 = road, 0 = background (see --road-value).")
@click.option("--road-value", default="1", show_default=True, help="Value of --class-field that marks road samples (e.g. road).")
@click.option("--background-value", default="0", show_default=True, help="Value of --class-field that marks background samples (e.g. bg).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (e.g. roads.mjcr.npz).")
@click.option("--bands", default=None, help="1-based bands to use, comma-separated (default: the first three).")
@click.option("--scales-m", default="1,2.5,5", show_default=True, help="Feature scales in metres, comma-separated.")
@click.option("--lambda", "lam", type=float, default=0.1, show_default=True, help="Ridge parameter of the collaborative representation.")
@click.option("--atoms", type=click.IntRange(min=1), default=1000, show_default=True, help="Dictionary atoms per class.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--gsd-m", type=click.FloatRange(min=0, min_open=True), default=None, help="GSD of training files without georeferencing [default: 0.3, with a warning]."
)
@road_map_options
def mjcr(images, masks, image, samples, class_field, road_value, background_value, output, bands, scales_m, lam, atoms, seed, gsd_m, roads, labelled_area,
         **road_options) -> None:  # fmt: skip
    """Train the MJCR (multiscale joint collaborative representation) road classifier.

    \b
    From image/mask pairs (matched by file stem):
      geoseg train mjcr --images "tiles/*.tif" --masks "masks/*.tif" -o roads.mjcr.npz
    From labelled samples drawn over one scene (e.g. in QGIS):
      geoseg train mjcr --image scene.tif --samples samples.gpkg --class-field class -o roads.mjcr.npz
      geoseg train mjcr --image scene.tif --samples s.gpkg --class-field cls --road-value road --background-value bg -o roads.mjcr.npz
    From a road map (centerlines drawn at their width; an ignore band along each edge):
      geoseg train mjcr --images "scenes/*.tif" --roads osm_roads.gpkg --lanes-field lanes -o roads.mjcr.npz

    Then: geoseg run road_centerlines scene.tif -o out/ --set model=roads.mjcr.npz
    """
    from geoseg.classifiers.mjcr import MJCRClassifier
    from geoseg.classifiers.road_map import RoadMapSettings
    from geoseg.classifiers.training_data import mask_labels, pair_by_stem, sample_labels
    from geoseg.raster import DEFAULT_ASSUMED_GSD_M

    if bool(images or masks or roads) == bool(image or samples):
        raise click.UsageError("give either --images with --masks or --roads, or --image and --samples")
    check_output_file(output, "-o", example_name="roads.mjcr.npz")
    check_spares_inputs({"-o": output}, named_files(images, masks, [image, samples, roads, labelled_area]))
    gsd = DEFAULT_ASSUMED_GSD_M if gsd_m is None else gsd_m
    start = time.perf_counter()
    if roads:
        if masks or not images:
            raise click.UsageError("--roads labels the --images: give --images, and --masks or --roads, not both")
        road_map = read_road_map_option(roads, road_map_settings(RoadMapSettings(), **road_options), labelled_area)
        scenes = [read_image(im, gsd) for im in expand_inputs(images)]
        labels = [road_map.labels(scene) for scene in scenes]
    elif samples or image:
        if not (samples and image):
            raise click.UsageError("--image and --samples go together")
        scene = read_image(image, gsd)
        scenes, labels = [scene], [sample_labels(scene, samples, class_field, road_value=road_value, background_value=background_value)]
    else:
        if not (images and masks):
            raise click.UsageError("--images and --masks go together")
        pairs = pair_by_stem(expand_inputs(images), expand_inputs(masks))
        scenes, labels = [], []
        for im, mk in pairs:
            scene = read_image(im, gsd)
            scenes.append(scene)
            labels.append(mask_labels(scene, mk))
    warn_assumed_gsd(scenes, gsd, "--gsd-m" if gsd_m is None else None, "training data")
    try:
        band_list = [int(b) for b in bands.split(",")] if bands else None
        scales = [float(s) for s in scales_m.split(",")]
    except ValueError as exc:
        raise InputMismatchError(f"--bands/--scales-m: {exc}") from None
    log.info("training MJCR on %d scene(s), %d labelled pixels", len(scenes), int(sum(((lab == 0) | (lab == 1)).sum() for lab in labels)))
    classifier = MJCRClassifier.train(
        [s.array for s in scenes],
        labels,
        [s.geo.gsd_m for s in scenes],
        bands=band_list,
        scales_m=scales,
        lam=lam,
        atoms_per_class=atoms,
        seed=seed,
        band_names=scenes[0].band_names,
    )
    classifier.provenance = {"scenes": [s.source for s in scenes], "seed": seed}
    classifier.save(output)
    log.info("wrote %s (%.1f s)", output, time.perf_counter() - start)


def _pattern_values(values: Sequence[str], option: str, unit: str, example: str) -> dict[str, float]:
    """``--source-gsd`` / ``--source-weight`` values (``PATTERN=UNIT``, a number above 0) as a mapping."""
    out = {}
    for value in values:
        pattern, sep, number = value.rpartition("=")
        try:
            parsed = float(number)
        except ValueError:
            parsed = -1.0
        if not sep or not pattern or not parsed > 0:
            raise click.UsageError(f'{option} {value!r}: give PATTERN={unit} ({unit.lower()} above 0), e.g. "{example}"')
        out[pattern] = parsed
    return out


def read_road_map_option(roads: str, settings: RoadMapSettings, labelled_area: str | None) -> RoadMap:
    """The road map of ``--roads`` (read once for all scenes); says in the log how it labels."""
    from geoseg.classifiers.road_map import RoadMap

    road_map = RoadMap.read(roads, settings, labelled_area)
    width = f"field {settings.width_field}" if settings.width_field else f"{settings.lanes_field} x {settings.lane_width_m:g} m" if settings.lanes_field else ""
    log.info("labels from the road map %s: %d line(s), width %s%g m, ignore band %g m%s", roads, len(road_map.roads), f"{width} or " if width else "",
             settings.width_m, settings.ignore_m, " (partial: only near its roads or inside its area)" if road_map.partial else "")  # fmt: skip
    return road_map


def source_gsd_m(path: str | os.PathLike[str], gsd_m: float, gsd_by_pattern: Mapping[str, float]) -> tuple[float, bool]:
    """The GSD assumed for ``path`` if it has no georeferencing: that of the first pattern of
    ``gsd_by_pattern`` that matches it (a shell-style glob on the path), else ``gsd_m``; and
    whether a pattern matched.

    Examples
    --------
    >>> source_gsd_m("data/ottawa/1.png", 0.3, {"*/ottawa/*": 0.21, "*mass*": 1.0})
    (0.21, True)
    >>> source_gsd_m("other/x.png", 0.3, {"*/ottawa/*": 0.21})
    (0.3, False)
    """
    from geoseg.nn.config import matching_pattern

    pattern = matching_pattern(os.fspath(path), list(gsd_by_pattern))
    return (gsd_m, False) if pattern is None else (float(gsd_by_pattern[pattern]), True)


def read_image(path: str | os.PathLike[str], gsd_m: float) -> Raster:
    """A training scene; missing georeferencing is reported once for all scenes (:func:`warn_assumed_gsd`)."""
    from geoseg.raster import read_raster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return read_raster(path, assume_gsd_m=gsd_m)


def _read_label_raster(path: str | os.PathLike[str]) -> Raster:
    """An edge or centerline raster: only its grid counts, so nothing is said about its georeferencing."""
    from geoseg.raster import read_raster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return read_raster(path, bands=[1])


def warn_assumed_gsd(scenes: Sequence[Raster], gsd_m: float, how_to_set: str | None, what: str) -> None:
    """One warning for all ``scenes`` without georeferencing, naming how to set their GSD.

    Parameters
    ----------
    scenes : sequence of Raster
        The scenes read.
    gsd_m : float
        The GSD they were read with.
    how_to_set : str or None
        The option that sets it (``--gsd-m``); None when the user gave the GSD: no warning.
    what : str
        Which scenes, for the message (``training data``).
    """
    from geoseg.raster import not_georeferenced_message

    plain = [s.source for s in scenes if not s.geo.georeferenced]
    if plain and how_to_set is not None:
        names = ", ".join(plain[:3]) + (f" and {len(plain) - 3} more" if len(plain) > 3 else "")
        log.warning("warning: %s", not_georeferenced_message(f"{what}: {names}", gsd_m, how_to_set, pixel_outputs=False))


def config_gsd_option(value: float | None, overrides: Sequence[str], key: str) -> str | None:
    """How to set a config's GSD of files without georeferencing, for :func:`warn_assumed_gsd`.

    Returns None when the user set it: with ``--set KEY=...``, or a value other than the default.
    """
    from geoseg.raster import DEFAULT_ASSUMED_GSD_M

    given = any(o.partition("=")[0].strip() == key for o in overrides)
    if given or (value is not None and value != DEFAULT_ASSUMED_GSD_M):
        return None
    return f"--set {key}=VALUE, or {key} in the config"


def read_scenes(
    images: list,
    masks: list,
    edges: list,
    centerlines: list,
    gsd_m: float,
    what: str,
    *,
    gsd_option: str | None,
    road_map: RoadMap | None = None,
    gsd_by_pattern: Mapping[str, float] | None = None,
) -> list:
    """Raw scenes with labels (and edge/centerline rasters, matched by stem) for training.

    The labels come from the ``masks`` (paired by stem), or from ``road_map`` when no masks
    are given. Files without georeferencing get the GSD of :func:`source_gsd_m`.
    ``gsd_option`` is how the user sets ``gsd_m`` (None: they did), for :func:`warn_assumed_gsd`.
    """
    from geoseg.classifiers.training_data import mask_labels, pair_by_stem
    from geoseg.nn.fitting import SceneData

    pairs: Sequence[tuple[Path, Path | None]]
    if road_map is not None and not masks:
        pairs = [(im, None) for im in expand_inputs(tuple(images))]
    elif bool(images) != bool(masks):
        raise click.UsageError(f"{what}: images and masks go together (or give a road map, --roads)")
    else:
        pairs = pair_by_stem(expand_inputs(tuple(images)), expand_inputs(tuple(masks)))
    extra = {}
    for name, patterns in (("edges", edges), ("centerlines", centerlines)):
        if patterns:
            extra[name] = dict(pair_by_stem([im for im, _ in pairs], expand_inputs(tuple(patterns)), what=f"{name.rstrip('s')} raster (--{name})"))
    scenes, images_read = [], []
    for im, mk in pairs:
        gsd, matched = source_gsd_m(im, gsd_m, gsd_by_pattern or {})
        scene = read_image(im, gsd)
        if not matched:
            images_read.append(scene)
        rasters = {}
        for name, by_image in extra.items():
            r = _read_label_raster(by_image[im])
            if r.shape != scene.shape:
                raise InputMismatchError(f"{by_image[im]}: {name} raster is {r.shape[1]}x{r.shape[0]} px but {im} is {scene.shape[1]}x{scene.shape[0]}")
            rasters[name] = r.array[0]
        labels = mask_labels(scene, mk) if mk is not None else road_map.labels(scene)  # type: ignore[union-attr]  # no mask: a road map
        scenes.append(SceneData(scene.array, labels, scene.geo.gsd_m, scene.source, band_names=scene.band_names, **rasters))
    warn_assumed_gsd(images_read, gsd_m, gsd_option, what)
    return scenes


def _read_unlabeled(images: list, masks: list, gsd_m: float, gsd_option: str | None, gsd_by_pattern: Mapping[str, float]) -> list:
    """Unlabelled scenes (labels all 255), with check labels from ``masks`` where a mask matches the stem (for reporting only)."""
    import numpy as np

    from geoseg.classifiers.training_data import mask_labels, pair_by_stem
    from geoseg.nn.fitting import SceneData

    mask_files = expand_inputs(tuple(masks)) if masks else []
    scenes, images_read = [], []
    for im in expand_inputs(tuple(images)):
        gsd, matched = source_gsd_m(im, gsd_m, gsd_by_pattern)
        scene = read_image(im, gsd)
        if not matched:
            images_read.append(scene)
        labels = np.full(scene.shape, 255, np.uint8)
        if mask_files:
            try:
                labels = mask_labels(scene, pair_by_stem([im], mask_files)[0][1])
            except InputMismatchError as exc:
                if "no mask with the same file stem" not in str(exc):
                    raise
        scenes.append(SceneData(scene.array, labels, scene.geo.gsd_m, scene.source, band_names=scene.band_names))
    warn_assumed_gsd(images_read, gsd_m, gsd_option, "unlabelled data")
    return scenes


@command.command("nn")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--images", "images", multiple=True, help="Training scenes (files or globs); replace the config's data.images.")
@click.option("--masks", "masks", multiple=True, help="Road masks (non-zero = road) paired by file stem; replace data.masks.")
@click.option("--edges", "edges", multiple=True, help="Optional road-edge rasters paired by stem (default: derived from the masks).")
@click.option("--centerlines", "centerlines", multiple=True, help="Optional 1-px centerline rasters paired by stem (for model.centerline_head).")
@click.option("--val-images", "val_images", multiple=True, help="Validation scenes: road IoU per epoch, best model kept.")
@click.option("--val-masks", "val_masks", multiple=True, help="Validation masks paired by stem.")
@click.option("--unlabeled", "unlabeled", multiple=True, help="Unlabelled scenes (files or globs) for mode uda (target domain) or ssl; replace data.unlabeled.")
@click.option(
    "--unlabeled-masks", "unlabeled_masks", multiple=True,
    help="Optional road masks of unlabelled scenes, paired by stem: used ONLY to report pseudo-label IoU in the log.",
)  # fmt: skip
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (best epoch), e.g. roads.nn.npz.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Checkpoint written every epoch [default: OUTPUT with .ckpt.npz].")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue from a checkpoint written by an earlier run of the same config.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field, e.g. epochs=5 or optimizer.lr=1e-3. Repeatable.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@click.option(
    "--source-gsd", "source_gsd", multiple=True, metavar="PATTERN=METRES",
    help="GSD of the files without georeferencing that match a glob (e.g. \"ottawa/*=0.21\"): sources at several GSDs in one run. Repeatable.",
)  # fmt: skip
@click.option(
    "--source-weight", "source_weight", multiple=True, metavar="PATTERN=WEIGHT",
    help="Relative share of the training crops drawn from the files that match a glob (e.g. \"ottawa/*=1\" and \"mass/*=1\": half each, "
    "however many files each has); files matching none form one more source of weight 1. Repeatable.",
)  # fmt: skip
@road_map_options
def nn(config, images, masks, edges, centerlines, val_images, val_masks, unlabeled, unlabeled_masks, output, checkpoint, resume, overrides, progress,
       source_gsd, source_weight, roads, labelled_area, **road_options) -> None:  # fmt: skip
    """Train a deep road classifier (baseline encoder-decoder or DecoupleSegNet) from a YAML config.

    \b
    geoseg train nn road_decouple \\
        --images "tiles/*.png" --masks "masks/*.png" -o roads.nn.npz --set epochs=5
    Then: geoseg run deep_road_centerlines scene.tif -o out/ --set model=roads.nn.npz

    CONFIG is a YAML file or the name of a shipped training config (road_decouple,
    road_baseline, road_general, road_uda, road_ssl); without it the defaults are used.

    \b
    Several sources in one model (PNG tiles carry no GSD; half the crops from each source):
      geoseg train nn road_general --images "ottawa/*.png" --masks "ottawa_masks/*.png" \\
          --images "mass/*.png" --masks "mass_masks/*.png" \\
          --source-gsd "ottawa/*=0.21" --source-gsd "mass/*=1.0" \\
          --source-weight "ottawa/*=1" --source-weight "mass/*=1" -o roads.nn.npz

    \b
    Labels from a road map instead of masks (centerlines drawn at their width, with an
    ignore band along each edge; the map is reprojected to each scene):
      geoseg train nn road_decouple --images "scenes/*.tif" --roads osm_roads.gpkg \\
          --lanes-field lanes --ignore-m 1 -o roads.nn.npz
    A map of only part of each scene: add --labelled-within-m 30 (or --labelled-area
    area.gpkg); with road_ssl the unlabelled rest is learnt from by self-training.

    \b
    Learning from unlabelled scenes (mode: uda or ssl in the config):
      geoseg train nn road_uda --images "src/*.png" --masks "src_masks/*.png" \\
          --unlabeled "target/*.tif" -o roads.nn.npz
      geoseg train nn road_ssl --images "lab/*.png" --masks "lab_masks/*.png" \\
          --unlabeled "unlab/*.png" -o roads.nn.npz
    """

    from geoseg.nn.config import load_train_config
    from geoseg.nn.train import train

    cfg = load_train_config(config or None, overrides)
    data = cfg.data
    given = {"images": images, "masks": masks, "edges": edges, "centerlines": centerlines, "val_images": val_images, "val_masks": val_masks}
    given.update(unlabeled=unlabeled, unlabeled_masks=unlabeled_masks)
    data = data.model_copy(update={k: list(v) for k, v in given.items() if v})
    updates = {"roads": roads, "labelled_area": labelled_area, "road_map": road_map_settings(data.road_map, **road_options)}
    if source_gsd:
        updates["gsd_by_pattern"] = {**data.gsd_by_pattern, **_pattern_values(source_gsd, "--source-gsd", "METRES", "ottawa/*=0.21")}
    if source_weight:
        updates["source_weights"] = {**data.source_weights, **_pattern_values(source_weight, "--source-weight", "WEIGHT", "ottawa/*=1")}
    data = data.model_copy(update={k: v for k, v in updates.items() if v is not None})
    if not data.images:
        raise click.UsageError("no training data: give --images with --masks or --roads, or data.images with data.masks or data.roads in the config")
    if data.roads and data.masks:
        raise click.UsageError("give masks (--masks, data.masks) or a road map (--roads, data.roads), not both")
    if cfg.model.pretrained:  # a missing geoseg[pretrained] is refused before the scenes are read
        from geoseg.nn.efficientnet import imagenet_lite0_state

        imagenet_lite0_state(3)
    if data.source_weights:  # a pattern matching no file is refused before the scenes are read
        from geoseg.nn.fitting import source_groups

        source_groups([p.as_posix() for p in expand_inputs(tuple(data.images))], list(data.source_weights))
    ckpt = checkpoint or str(Path(output).with_suffix("")) + ".ckpt.npz"
    check_output_file(output, "-o", example_name="roads.nn.npz")
    check_output_file(ckpt, "--checkpoint", example_name="roads.ckpt.npz")
    read = (data.images, data.masks, data.edges, data.centerlines, data.val_images, data.val_masks, data.unlabeled, data.unlabeled_masks)
    check_spares_inputs({"-o": output, "--checkpoint": ckpt}, named_files(*read, [data.roads, data.labelled_area]))
    gsd_option = config_gsd_option(data.gsd_m, overrides, "data.gsd_m")
    start = time.perf_counter()
    road_map = read_road_map_option(data.roads, data.road_map, data.labelled_area) if data.roads else None
    sources = data.gsd_by_pattern
    train_scenes = read_scenes(
        data.images, data.masks, data.edges, data.centerlines, data.gsd_m, "training data", gsd_option=gsd_option, road_map=road_map, gsd_by_pattern=sources
    )
    val_scenes = []
    if data.val_images:
        val_scenes = read_scenes(
            data.val_images, data.val_masks, [], [], data.gsd_m, "validation data", gsd_option=gsd_option, road_map=road_map, gsd_by_pattern=sources
        )
    cfg = cfg.model_copy(update={"data": data})
    unlabeled_scenes = []
    if cfg.mode == "supervised" and data.unlabeled:
        log.warning("mode supervised: the unlabelled scenes are not used (set mode=uda or mode=ssl to learn from them)")
    partial = cfg.mode == "ssl" and road_map is not None and road_map.partial
    if partial:  # what the map leaves unlabelled is learnt from as unlabelled scenes; its labels only check the pseudo-labels
        unlabeled_scenes = list(train_scenes)
        log.info("mode ssl: the %d scene(s) the road map labels in part are also used as unlabelled scenes", len(train_scenes))
    if cfg.mode != "supervised":
        if not data.unlabeled and not partial:
            raise click.UsageError(f"mode {cfg.mode} needs unlabelled scenes: give --unlabeled or data.unlabeled in the config")
        unlabeled_option = gsd_option if data.unlabeled_gsd_m is None else config_gsd_option(data.unlabeled_gsd_m, overrides, "data.unlabeled_gsd_m")
        if data.unlabeled:
            unlabeled_scenes += _read_unlabeled(data.unlabeled, data.unlabeled_masks, data.unlabeled_gsd_m or data.gsd_m, unlabeled_option, sources)
        log.info("mode %s: %d unlabelled scene(s)%s", cfg.mode, len(unlabeled_scenes), " (check masks for reporting only)" if data.unlabeled_masks else "")
    log.info("training %s on %d scene(s), validating on %d", cfg.model.architecture, len(train_scenes), len(val_scenes))
    with resume_hint(ckpt):
        result = train(cfg, train_scenes, val_scenes, checkpoint_path=ckpt, resume=resume, best_path=output, progress=progress, unlabeled_data=unlabeled_scenes)
    best = f", best val road IoU {result.best_iou:.4f} at epoch {result.best_epoch}" if val_scenes else ""
    log.info("wrote %s%s (%.1f s; checkpoint %s)", output, best, time.perf_counter() - start, ckpt)


from geoseg.cli.train_sequence import command as _sequence_command  # noqa: E402  (issue 12: `geoseg train sequence`)

command.add_command(_sequence_command)
