"""One scene from file to output files: the unit of work of a batch."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from geoseg.pipeline.engine import execute, open_source
from geoseg.pipeline.outputs import GeoTiffSink, write_network_output
from geoseg.pipeline.pipeline import Pipeline

__all__ = ["SceneOutput", "process_scene"]

log = logging.getLogger("geoseg.scene")


@dataclass
class SceneOutput:
    """Files written for a scene and the warnings raised while processing it."""

    outputs: list[Path]
    warnings: list[str] = field(default_factory=list)
    tiles: int = 1


def process_scene(
    pipeline: Pipeline,
    scene: str | Path,
    outdir: str | Path,
    *,
    stem: str,
    fmt: str,
    on_tile: Callable[[int, int], None] | None = None,
) -> SceneOutput:
    """Run ``pipeline`` on ``scene`` tile by tile and write ``outdir/<stem>...`` atomically.

    Raster outputs are written tile by tile into tiled GeoTIFFs and the network is stitched
    from per-tile pieces, so memory stays bounded by ``max_memory`` whatever the scene size
    (the network itself is held in memory: it is small next to the rasters).
    """
    outputs = pipeline.output_layers()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_source(scene, pipeline.engine.assume_gsd_m)
    for w in caught:
        log.warning("warning: %s", w.message)
    with GeoTiffSink(outputs, Path(outdir), stem, source.geo) as sink:
        result = execute(
            pipeline.steps,
            source,
            sink=sink,
            output_layers=sink.names,
            max_memory=pipeline.engine.max_memory_bytes,
            tile_px=pipeline.engine.tile_px,
            on_tile=on_tile,
        )
    written = [*write_network_output(result, outputs, Path(outdir), stem, fmt), *sink.paths]
    return SceneOutput(written, [*(str(w.message) for w in caught), *result.warnings], result.tiles)
